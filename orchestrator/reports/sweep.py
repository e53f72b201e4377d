"""Top-level artifacts of a sweep: the curve, saturation/knee/SLO verdicts, per-point reports."""

from __future__ import annotations

import csv
import json
from html import escape

from orchestrator.reports.artifacts import _iso, _write_atomic, build_manifest, write_requests, write_summary
from orchestrator.bench.experiments import knee, point_results, saturation, slo_limit
from orchestrator.bench.kpi import KPI, Window
from orchestrator.reports.html import CSS
from orchestrator.reports.svg import line_chart


def verdicts(session, results) -> list[dict]:
    out = []
    if len(session.recipe.sweep) != 1:
        return [{"kind": "note", "label": None, "text": "Saturation, knee and SLO limit are computed for "
                 "one-dimensional sweeps; this grid has " + ", ".join(session.recipe.sweep) + "."}]
    for kind, (point, text) in (("saturation", saturation(results)), ("knee", knee(results)),
                                ("slo", slo_limit(results, session.recipe.slo))):
        if text:
            out.append({"kind": kind, "label": point.label if point else None, "x": point.x if point else None,
                        "text": text})
    return out


def write_sweep_artifacts(session) -> dict:
    st = session.state
    out = st.out_dir
    done = [p for p in st.points if p.report]
    kpis_by_point = [{k["kpi"]: k["value"] for k in p.report["kpis"]} for p in done]
    results = point_results([p.point for p in done], kpis_by_point)
    found = verdicts(session, results) if results else []
    records = [r for p in done for r in p.records]
    write_requests(out / "requests.jsonl", records)
    kpis = [KPI(f"{p.point.label}/{k['kpi']}", k["value"], k["unit"], k["source"], k["note"])
            for p in done for k in p.report["kpis"]]
    write_summary(out / "metrics_summary.csv", kpis)
    with open(out / "points.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["point", "x", "throughput_rps", "latency_p50_s", "latency_p99_s", "ttft_p99_s", "error_rate"])
        for r in results:
            w.writerow([r.label, r.x, r.throughput, r.p50, r.p99, r.ttft_p99, r.error_rate])
    starts = [p.report["window"]["start"] for p in done if p.report["window"]["start"]]
    ends = [p.report["window"]["end"] for p in done if p.report["window"]["end"]]
    whole = Window(min(starts) if starts else 0.0, max(ends) if ends else 0.0)
    from orchestrator.reports.artifacts import ReportContext
    ctx = ReportContext(orch=session.orch, session_id=st.session_id, benchmark=session.recipe.name, out_dir=out,
                        scrape_interval=session.recipe.scrape_interval, services=dict(st.services),
                        clients=[c for p in st.points for c in p.clients], monitor_id=st.monitor_id,
                        interrupted=st.interrupted, errors=st.errors, recipes=session.recipes_manifest())
    manifest = build_manifest(ctx, whole, {})
    manifest["jobs"] += [j for p in done for j in p.report["manifest"]["jobs"]
                         if j["service_id"] not in {x["service_id"] for x in manifest["jobs"]}]
    manifest["sweep"] = session.recipe.sweep
    manifest["slo"] = session.recipe.slo
    manifest["points"] = [{"label": p.point.label, "values": p.point.values, "dir": f"points/{p.point.dirname}",
                           "window": p.report["manifest"]["window"], "go_time": p.go_time, "clients": p.clients,
                           "promql": p.report["manifest"]["promql"]} for p in done]
    _write_atomic(out / "MANIFEST.json", json.dumps(manifest, indent=2))
    report = {"session": st.session_id, "benchmark": session.recipe.name, "interrupted": st.interrupted,
              "errors": st.errors, "sweep": session.recipe.sweep, "slo": session.recipe.slo,
              "window": {"start": whole.start, "end": whole.end, "seconds": whole.seconds,
                         "start_iso": _iso(whole.start), "end_iso": _iso(whole.end)},
              "points": [{"label": r.label, "x": r.x, "throughput": r.throughput, "latency_p50": r.p50,
                          "latency_p99": r.p99, "ttft_p99": r.ttft_p99, "error_rate": r.error_rate} for r in results],
              "point_kpis": {p.point.label: p.report["kpis"] for p in done},
              "kpis": [k.to_dict() for k in kpis],
              "verdicts": found, "manifest": manifest}
    _write_atomic(out / "report.json", json.dumps(report, indent=2))
    _write_atomic(out / "report.html", render_sweep(report, done))
    session.say(f"sweep report: {out / 'report.html'}")
    for v in found:
        session.say(v["text"])
    return report


def render_sweep(report: dict, done) -> str:
    pts = report["points"]
    field = ", ".join(report["sweep"])
    at: dict[float, list[str]] = {}
    for v in report["verdicts"]:
        if v.get("x") is not None:
            at.setdefault(v["x"], []).append(v["kind"])
    marks = [(x, ", ".join(kinds)) for x, kinds in at.items()]
    tput = [("ok requests/s", [(p["x"], p["throughput"]) for p in pts if p["throughput"] is not None])]
    lat = [("p50", [(p["x"], p["latency_p50"]) for p in pts if p["latency_p50"] is not None]),
           ("p99", [(p["x"], p["latency_p99"]) for p in pts if p["latency_p99"] is not None])]
    charts = [line_chart(f"Throughput vs {field}", tput, field, "requests/s", marks=marks),
              line_chart(f"Latency vs {field}", lat, field, "latency (s)", marks=marks)]
    fmt = lambda v, scale=1.0, unit="": "-" if v is None else (f"{v * scale:,.0f}{unit}" if v * scale >= 100 else f"{v * scale:,.3g}{unit}")
    rows = "".join(
        f"<tr><td><a href='points/{escape(p.point.dirname)}/report.html'>{escape(p.point.label)}</a></td>"
        f"<td class='num'>{fmt(r['throughput'])}</td><td class='num'>{fmt(r['latency_p50'], 1000, ' ms')}</td>"
        f"<td class='num'>{fmt(r['latency_p99'], 1000, ' ms')}</td><td class='num'>{fmt(r['ttft_p99'], 1000, ' ms')}</td>"
        f"<td class='num'>{fmt(r['error_rate'], 100, ' %')}</td></tr>"
        for r in pts for p in done if p.point.label == r["label"])
    verdict_items = "".join(f"<li><b>{escape(v['kind'])}</b>: {escape(v['text'])}</li>" for v in report["verdicts"])
    status = "INTERRUPTED: partial results" if report["interrupted"] else "complete"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Sweep {escape(report['session'])}</title>
<style>{CSS}</style></head><body>
<h1>Sweep {escape(report['benchmark'])} over {escape(field)}</h1>
<div class="meta">session <b>{escape(report['session'])}</b> · {status} · {len(pts)} points ·
tool {escape(report['manifest']['tool_version'])}</div>
<h2>Verdicts</h2><ul>{verdict_items or '<li>none</li>'}</ul>
<p class="meta">Knee: the last point before the first step where p99 grows by more than 20% and by more than 3x
the relative throughput growth. Each point is its own measured window (warm-up excluded).</p>
<h2>Curves</h2><div class="charts">{''.join(charts)}</div>
<h2>Points</h2>
<table><tr><th>point</th><th>throughput (req/s)</th><th>p50</th><th>p99</th><th>TTFT p99</th><th>errors</th></tr>{rows}</table>
{('<h2>Problems during the session</h2><ul>' + ''.join(f'<li>{escape(e)}</li>' for e in report['errors']) + '</ul>') if report['errors'] else ''}
</body></html>
"""
