"""Session artifacts: requests.jsonl, metrics_summary.csv, time series, MANIFEST.json, report.json/html."""

from __future__ import annotations

import csv
import json
import math
import subprocess
from collections import Counter
from pathlib import Path

from . import __version__
from .errors import OrchestratorError
from .kpi import KPI, Window, client_kpis, measured, throughput_series, window_of
from .promql import parse_duration
from .recipes import PROJECT_ROOT
from .report import render_report

REQUEST_FIELDS = ["start", "latency_s", "ttft_s", "status", "ok", "tokens_out", "error"]


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
        dirty = subprocess.run(["git", "-C", str(PROJECT_ROOT), "status", "--porcelain"], capture_output=True,
                               text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def write_requests(path: Path, records: list[dict]) -> None:
    lines = []
    for r in records:
        row = {k: r.get(k) for k in REQUEST_FIELDS}
        row.update({k: v for k, v in r.items() if k not in row})
        lines.append(json.dumps(row))
    _write_atomic(path, "\n".join(lines) + ("\n" if lines else ""))


def write_summary(path: Path, kpis: list[KPI]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["kpi", "value", "unit", "source"])
        for k in kpis:
            w.writerow([k.kpi, "" if k.value is None else repr(float(k.value)), k.unit, k.source])
    tmp.replace(path)


def _timeseries(session, window: Window, out: Path) -> tuple[dict, dict]:
    """Per-metric range queries over the session; CSV each; returns series for the charts and the PromQL."""
    mid = session.state.monitor_id
    if mid is None:
        return {}, {}
    interval = parse_duration(session.recipe.scrape_interval)
    sids = "|".join(session.state.services.values())
    r = f"{max(4 * int(interval), 4)}s"
    queries = {
        "cpu_utilisation": f'100 * (1 - avg by (service_id) (rate(node_cpu_seconds_total{{mode="idle",service_id=~"{sids}"}}[{r}])))',
        "memory_used_bytes": f'sum by (service_id) (node_memory_MemTotal_bytes{{service_id=~"{sids}"}} - node_memory_MemAvailable_bytes{{service_id=~"{sids}"}})',
        "gpu_utilisation": f'DCGM_FI_DEV_GPU_UTIL{{service_id=~"{sids}"}}',
        "gpu_memory_used_mib": f'DCGM_FI_DEV_FB_USED{{service_id=~"{sids}"}}',
        "service_requests_running": f'vllm:num_requests_running{{service_id=~"{sids}"}}',
        "service_requests_waiting": f'vllm:num_requests_waiting{{service_id=~"{sids}"}}',
        "client_in_flight": "sum(orch_client_in_flight)",
    }
    start = min(session.state.go_time or window.start, window.start)
    series = {}
    tdir = out / "timeseries"
    tdir.mkdir(exist_ok=True)
    for name, q in queries.items():
        try:
            res = session.orch.monitors.query_range(mid, q, start, window.end + interval, max(1.0, interval))
        except OrchestratorError as exc:
            session.state.errors.append(f"time series {name}: {exc}")
            continue
        with open(tdir / f"{name}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["timestamp", "series", "value"])
            for s in res.series:
                label = s.labels.get("service_id") or s.labels.get("job") or name
                w.writerows([f"{t:.3f}", label, "" if math.isnan(v) else repr(v)] for t, v in s.values)
        series[name] = [(s.labels.get("service_id", name), s.values) for s in res.series]
    return series, queries


def write_artifacts(session, records: list[dict], warmup_until: float | None) -> dict:
    out = session.state.out_dir
    out.mkdir(parents=True, exist_ok=True)
    write_requests(out / "requests.jsonl", records)
    window = window_of(records, warmup_until) if warmup_until is not None else Window(0.0, 0.0)
    kpis = client_kpis(records, window) if records else []
    promql: dict = {}
    if records and session.state.monitor_id and not session.state.interrupted:
        try:
            prom_kpis, promql = session.prometheus_kpis(window)
            kpis += prom_kpis
        except OrchestratorError as exc:
            session.state.errors.append(f"Prometheus KPIs: {exc}")
    series, ts_queries = ({}, {})
    if records and session.state.monitor_id and not session.state.interrupted:
        series, ts_queries = _timeseries(session, window, out)
    tput = throughput_series(records, window) if records else []
    with open(out / "timeseries" / "throughput.csv" if (out / "timeseries").exists() else out / "throughput.csv",
              "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "series", "value"])
        w.writerows([f"{t:.3f}", "ok_requests_per_s", repr(v)] for t, v in tput)
    series["throughput"] = tput
    write_summary(out / "metrics_summary.csv", kpis)
    manifest = build_manifest(session, window, {**promql, **{f"timeseries.{k}": v for k, v in ts_queries.items()}})
    _write_atomic(out / "MANIFEST.json", json.dumps(manifest, indent=2))
    errors_by_msg = Counter(r["error"] for r in measured(records, window) if not r["ok"])
    report = {
        "session": session.state.session_id, "benchmark": session.recipe.name,
        "interrupted": session.state.interrupted, "errors": session.state.errors,
        "window": {"start": window.start, "end": window.end, "seconds": window.seconds,
                   "start_iso": _iso(window.start), "end_iso": _iso(window.end)},
        "kpis": [k.to_dict() for k in kpis], "top_errors": errors_by_msg.most_common(10),
        "records": {"total": len(records), "measured": len(measured(records, window))},
        "manifest": manifest,
    }
    _write_atomic(out / "report.json", json.dumps(report, indent=2))
    html = render_report({**report, "kpi_objects": kpis}, measured(records, window), series)
    _write_atomic(out / "report.html", html)
    session.say(f"report: {out / 'report.html'}")
    return report


def _iso(t: float) -> str:
    from datetime import datetime, timezone
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds") if t else "-"


def build_manifest(session, window: Window, promql: dict) -> dict:
    servers = session.orch.servers
    tracked = servers.store.load()
    jobs = []
    roles = {sid: "service" for sid in session.state.services.values()}
    roles.update({sid: "client" for sid in session.state.clients})
    if session.state.monitor_id:
        roles[session.state.monitor_id] = "monitor"
    for sid, role in roles.items():
        rec = tracked.get(sid, {})
        jobs.append({"role": role, "service_id": sid, "job_id": rec.get("job_id", ""),
                     "nodes": rec.get("nodelist", ""), "recipe": rec.get("recipe", ""),
                     "recipe_sha256": rec.get("recipe_sha256", "")})
    return {
        "session": session.state.session_id, "tool_version": __version__, "git_commit": git_commit(),
        "benchmark_recipe": {"source": session.recipe.source, "sha256": session.recipe.sha256,
                             "text": session.recipe.text},
        "service_recipes": {name: {"source": r.source, "sha256": r.sha256, "text": r.text}
                            for name, r in session.service_recipes.items()},
        "jobs": jobs, "go_time": session.state.go_time,
        "window": {"start": window.start, "end": window.end, "start_iso": _iso(window.start),
                   "end_iso": _iso(window.end)},
        "scrape_interval": session.recipe.scrape_interval, "promql": promql,
        "interrupted": session.state.interrupted,
    }
