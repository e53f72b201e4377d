"""Top-level artifacts of a sweep: the curve, saturation/knee/SLO verdicts, per-point reports (pure)."""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from markupsafe import Markup

from orchestrator.analysis.experiments import knee, point_results, saturation, scaling, slo_limit
from orchestrator.analysis.kpi import KPI, Window
from orchestrator.analysis.sweep import Point
from orchestrator.fileio import atomic_open, write_atomic
from orchestrator.reports.artifacts import (
    ReportContext,
    build_manifest,
    write_summary,
)
from orchestrator.charts import line_chart
from orchestrator.templating import render_html
from orchestrator.times import iso


@dataclass
class SweepPoint:
    point: Point
    report: dict                         # the point's report.json
    out_dir: Path                        # the point's directory (its requests.jsonl)
    go_time: float | None = None
    clients: list[str] = field(default_factory=list)


@dataclass
class SweepData:
    ctx: ReportContext                   # the session as a whole (clients: every point's)
    sweep: dict
    slo: dict
    points: list[SweepPoint]             # the points that finished, in order
    search: dict | None = None           # a search: its range, SLO, each point tried and why, the answer


def verdicts(sweep: dict, slo: dict, results) -> list[dict]:
    if len(sweep) != 1:
        return [{"kind": "note", "label": None, "text": "Saturation, knee and SLO limit are computed for "
                 "one-dimensional sweeps; this grid has " + ", ".join(sweep) + "."}]
    out = []
    for kind, (point, text) in (("saturation", saturation(results)), ("knee", knee(results)),
                                ("slo", slo_limit(results, slo))):
        if text:
            out.append({"kind": kind, "label": point.label if point else None, "x": point.x if point else None,
                        "text": text})
    return out


def write_sweep_artifacts(data: SweepData) -> dict:
    ctx, done = data.ctx, data.points
    out = ctx.out_dir
    kpis_by_point = [{k["kpi"]: k["value"] for k in p.report["kpis"]} for p in done]
    results = point_results([p.point for p in done], kpis_by_point)
    found = verdicts(data.sweep, data.slo, results) if results else []
    with atomic_open(out / "requests.jsonl", "w") as f:  # every point's, one after the other
        for p in done:
            with open(p.out_dir / "requests.jsonl") as src:
                shutil.copyfileobj(src, f)
    kpis = [KPI(f"{p.point.label}/{k['kpi']}", k["value"], k["unit"], k["source"], k["note"])
            for p in done for k in p.report["kpis"]]
    write_summary(out / "metrics_summary.csv", kpis)
    with atomic_open(out / "points.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["point", "x", "throughput_rps", "latency_p50_s", "latency_p99_s", "ttft_p99_s", "error_rate"])
        for r in results:
            w.writerow([r.label, r.x, r.throughput, r.p50, r.p99, r.ttft_p99, r.error_rate])
    starts = [p.report["window"]["start"] for p in done if p.report["window"]["start"]]
    ends = [p.report["window"]["end"] for p in done if p.report["window"]["end"]]
    whole = Window(min(starts) if starts else 0.0, max(ends) if ends else 0.0)
    manifest = build_manifest(ctx, whole, {})
    known = {j["service_id"] for j in manifest["jobs"]}
    manifest["jobs"] += [j for p in done for j in p.report["manifest"]["jobs"] if j["service_id"] not in known]
    manifest["sweep"] = data.sweep
    manifest["slo"] = data.slo
    manifest["points"] = [{"label": p.point.label, "values": p.point.values, "dir": f"points/{p.point.dirname}",
                           "window": p.report["manifest"]["window"], "go_time": p.go_time, "clients": p.clients,
                           "promql": p.report["manifest"]["promql"]} for p in done]
    write_atomic(out / "MANIFEST.json", json.dumps(manifest, indent=2))
    valid, reasons = sweep_validity(done, data.search, ctx.interrupted)
    report = {"valid": valid, "invalid_reasons": reasons, **({"search": data.search} if data.search else {}),
              "session": ctx.session_id, "benchmark": ctx.benchmark, "interrupted": ctx.interrupted,
              "errors": ctx.errors, "sweep": data.sweep, "slo": data.slo,
              "window": {"start": whole.start, "end": whole.end, "seconds": whole.seconds,
                         "start_iso": iso(whole.start), "end_iso": iso(whole.end)},
              "points": [{"label": r.label, "x": r.x, "throughput": r.throughput, "latency_p50": r.p50,
                          "latency_p99": r.p99, "ttft_p99": r.ttft_p99, "error_rate": r.error_rate} for r in results],
              "point_kpis": {p.point.label: p.report["kpis"] for p in done},
              "kpis": [k.to_dict() for k in kpis],
              "verdicts": found, "manifest": manifest,
              "scaling": scaling(data.sweep, results, {p.point.label: kpis_by_point[i] for i, p in enumerate(done)})}
    write_atomic(out / "report.json", json.dumps(report, indent=2))
    write_atomic(out / "report.html", render_sweep(report, done))
    return report


def sweep_validity(done: list[SweepPoint], search: dict | None, interrupted: bool) -> tuple[bool, list[str]]:
    """A grid is valid when every point is; a search expects points that fail (its boundary), and is
    valid when it ran to its end on points that are themselves valid or failed for a reason it judged."""
    reasons = []
    if interrupted:
        reasons.append("the session was interrupted before its last point ended")
    if not done:
        reasons.append("no point finished")
    if search is None:
        reasons += [f"{p.point.label}: {r}" for p in done for r in p.report.get("invalid_reasons", [])]
    elif search.get("answer") is None and done:
        reasons.append("the search found no load that meets the SLO: " + search["points"][-1]["next"])
    return not reasons, reasons


def _fmt(v, scale: float = 1.0, unit: str = "") -> str:
    if v is None:
        return "-"
    return f"{v * scale:,.0f}{unit}" if v * scale >= 100 else f"{v * scale:,.3g}{unit}"


def render_sweep(report: dict, done: list[SweepPoint]) -> str:
    pts = report["points"]
    field_names = ", ".join(report["sweep"])
    at: dict[float, list[str]] = {}
    for v in report["verdicts"]:
        if v.get("x") is not None:
            at.setdefault(v["x"], []).append(v["kind"])
    marks = [(x, ", ".join(kinds)) for x, kinds in at.items()]
    tput = [("ok requests/s", [(p["x"], p["throughput"]) for p in pts if p["throughput"] is not None])]
    lat = [("p50", [(p["x"], p["latency_p50"]) for p in pts if p["latency_p50"] is not None]),
           ("p99", [(p["x"], p["latency_p99"]) for p in pts if p["latency_p99"] is not None])]
    charts = [line_chart(f"Throughput vs {field_names}", tput, field_names, "requests/s", marks=marks),
              line_chart(f"Latency vs {field_names}", lat, field_names, "latency (s)", marks=marks)]
    dirs = {p.point.label: p.point.dirname for p in done}
    rows = [{"label": r["label"], "dir": dirs[r["label"]], "throughput": _fmt(r["throughput"]),
             "p50": _fmt(r["latency_p50"], 1000, " ms"), "p99": _fmt(r["latency_p99"], 1000, " ms"),
             "ttft_p99": _fmt(r["ttft_p99"], 1000, " ms"), "errors": _fmt(r["error_rate"], 100, " %")}
            for r in pts if r["label"] in dirs]
    return render_html("reports/sweep.html.j2", report=report, field=field_names, rows=rows,
                       charts=[Markup(c) for c in charts])
