"""Session artifacts: requests.jsonl, metrics_summary.csv, time series, MANIFEST.json, report.json/html.

Everything here works from a ``ReportContext``, so the same code writes the
artifacts at the end of a live session, collects a kept session again later,
re-renders a session offline, or reports on any monitor over a time window.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from orchestrator.version import __version__
from orchestrator.errors import OrchestratorError
from orchestrator.bench.kpi import KPI, Window, client_kpis, measured, throughput_series, window_of
from orchestrator.times import parse_duration
from orchestrator.reports.html import render_report

REQUEST_FIELDS = ["start", "latency_s", "ttft_s", "status", "ok", "tokens_out", "error"]


@dataclass
class ReportContext:
    orch: object | None                      # None: offline, from the files alone
    session_id: str
    benchmark: str
    out_dir: Path
    scrape_interval: str
    services: dict[str, str]                 # name -> service ID
    clients: list[str] = field(default_factory=list)
    monitor_id: str | None = None
    go_time: float | None = None
    interrupted: bool = False
    errors: list[str] = field(default_factory=list)
    recipes: dict = field(default_factory=dict)   # benchmark_recipe, service_recipes (for the manifest)
    jobs: list[dict] | None = None               # known jobs (later runs keep the session's)
    say: Callable[[str], None] = lambda m: None


def git_commit() -> str | None:
    """The commit of the tool that ran (a source checkout), with -dirty for local changes; None if installed."""
    PROJECT_ROOT = Path(__file__).resolve().parents[2]
    if not (PROJECT_ROOT / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
        dirty = subprocess.run(["git", "-C", str(PROJECT_ROOT), "status", "--porcelain"], capture_output=True,
                               text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds") if t else "-"


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


def read_requests(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]


def write_summary(path: Path, kpis: list[KPI]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["kpi", "value", "unit", "source"])
        for k in kpis:
            w.writerow([k.kpi, "" if k.value is None else repr(float(k.value)), k.unit, k.source])
    tmp.replace(path)


# -- Prometheus ------------------------------------------------------------------------
def prometheus_kpis(ctx: ReportContext, window: Window) -> tuple[list[KPI], dict]:
    """Service-side KPIs over the window; absent sources stay absent."""
    if ctx.monitor_id is None or ctx.orch is None:
        return [], {}
    interval = parse_duration(ctx.scrape_interval)
    wait = window.end + 2 * interval - time.time()
    if wait > 0:
        time.sleep(wait)  # let the last scrape after the load land
    w = f"{max(1, math.ceil(window.seconds))}s"
    step = f"{max(1, int(interval))}s"
    multi = len(ctx.services) > 1
    queries: dict[str, tuple[str, str, float]] = {}
    for name, sid in ctx.services.items():
        sel = f'service_id="{sid}"'
        p = f"{name}." if multi else ""
        hq = lambda q, metric: f"histogram_quantile({q}, sum by (le) (increase({metric}_bucket{{{sel}}}[{w}])))"
        queries.update({
            p + "cpu_utilisation": (f'100 * (1 - avg(rate(node_cpu_seconds_total{{mode="idle",{sel}}}[{w}])))', "%", window.end),
            p + "memory_used_max": (f"max_over_time((sum(node_memory_MemTotal_bytes{{{sel}}}) - "
                                    f"sum(node_memory_MemAvailable_bytes{{{sel}}}))[{w}:{step}])", "bytes", window.end),
            p + "gpu_utilisation": (f"avg(avg_over_time(DCGM_FI_DEV_GPU_UTIL{{{sel}}}[{w}]))", "%", window.end),
            p + "gpu_memory_used_max": (f"max(max_over_time(DCGM_FI_DEV_FB_USED{{{sel}}}[{w}]))", "MiB", window.end),
            p + "service_latency_p50": (hq(0.5, "vllm:e2e_request_latency_seconds"), "s", window.end),
            p + "service_latency_p99": (hq(0.99, "vllm:e2e_request_latency_seconds"), "s", window.end),
            p + "service_ttft_p50": (hq(0.5, "vllm:time_to_first_token_seconds"), "s", window.end),
            p + "service_ttft_p99": (hq(0.99, "vllm:time_to_first_token_seconds"), "s", window.end),
            p + "service_requests_running_max": (f"max(max_over_time(vllm:num_requests_running{{{sel}}}[{w}]))", "requests", window.end),
            p + "service_requests_waiting_max": (f"max(max_over_time(vllm:num_requests_waiting{{{sel}}}[{w}]))", "requests", window.end),
            p + "service_requests_counted@start": (f"sum(vllm:request_success_total{{{sel}}})", "requests", ctx.go_time or window.start),
            p + "service_requests_counted@end": (f"sum(vllm:request_success_total{{{sel}}})", "requests", window.end + 2 * interval),
        })
    names = list(queries)
    results = ctx.orch.monitors.query_many_at(ctx.monitor_id, [(queries[n][0], queries[n][2]) for n in names])
    values = {}
    for n, r in zip(names, results):
        v = r.series[0].values[0][1] if r.series else None
        values[n] = None if v is None or math.isnan(v) else v
    kpis = [KPI(n, values[n], queries[n][1], "prometheus", "" if values[n] is not None else "absent: no such series on the monitor")
            for n in names if "@" not in n]
    for name in ctx.services:
        p = f"{name}." if multi else ""
        a, b = values.get(p + "service_requests_counted@start"), values.get(p + "service_requests_counted@end")
        if b is None:
            note = "absent: the service exposes no request counter"
        elif a is None:
            note = "absent: the counter has no sample at the window start (the service started later?)"
        else:
            note = "successful requests the service counted during the session (warm-up included)"
        kpis.append(KPI(p + "service_requests_counted", b - a if a is not None and b is not None else None,
                        "requests", "prometheus", note))
    return kpis, {n: q[0] for n, q in queries.items()}


def timeseries(ctx: ReportContext, window: Window) -> tuple[dict, dict]:
    """Per-metric range queries; a CSV each; the series for the charts and the PromQL used."""
    if ctx.monitor_id is None or ctx.orch is None:
        return {}, {}
    interval = parse_duration(ctx.scrape_interval)
    sids = "|".join(ctx.services.values())
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
    start = min(ctx.go_time or window.start, window.start)
    series = {}
    names = list(queries)
    try:  # every metric in one remote command
        results = ctx.orch.monitors.query_range_many(ctx.monitor_id, [queries[n] for n in names], start,
                                                     window.end + interval, max(1.0, interval))
    except OrchestratorError as exc:
        ctx.errors.append(f"time series: {exc}")
        return {}, queries
    for name, res in zip(names, results):
        rows = [[f"{t:.3f}", s.labels.get("service_id") or s.labels.get("job") or name,
                 "" if math.isnan(v) else repr(v)] for s in res.series for t, v in s.values]
        write_series_csv(ctx.out_dir / "timeseries" / f"{name}.csv", rows)
        series[name] = [(s.labels.get("service_id", name), s.values) for s in res.series]
    return series, queries


def write_series_csv(path: Path, rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "series", "value"])
        w.writerows(rows)


def read_series_csv(path: Path) -> list[tuple[str, list[tuple[float, float]]]]:
    by: dict[str, list] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            by.setdefault(row["series"], []).append((float(row["timestamp"]), float(row["value"] or "nan")))
    return list(by.items())


# -- writing ---------------------------------------------------------------------------
def write_artifacts(ctx: ReportContext, records: list[dict], warmup_until: float | None,
                    window: Window | None = None, offline_kpis: list[KPI] | None = None) -> dict:
    """Every artifact of a session. ``offline_kpis``: Prometheus KPIs kept from an earlier run."""
    out = ctx.out_dir
    out.mkdir(parents=True, exist_ok=True)
    write_requests(out / "requests.jsonl", records)
    if window is None:
        window = window_of(records, warmup_until) if warmup_until is not None else Window(0.0, 0.0)
    kpis = client_kpis(records, window) if records else []
    promql: dict = {}
    series: dict = {}
    live = ctx.orch is not None and ctx.monitor_id is not None and not ctx.interrupted and window.end > 0
    if live:
        try:
            prom_kpis, promql = prometheus_kpis(ctx, window)
            kpis += prom_kpis
        except OrchestratorError as exc:
            ctx.errors.append(f"Prometheus KPIs: {exc}")
        series, ts_queries = timeseries(ctx, window)
        promql.update({f"timeseries.{k}": v for k, v in ts_queries.items()})
    elif offline_kpis is not None:
        kpis += offline_kpis
        for csv_path in sorted((out / "timeseries").glob("*.csv")):
            if csv_path.stem != "throughput":
                series[csv_path.stem] = read_series_csv(csv_path)
    tput = throughput_series(records, window) if records else []
    write_series_csv(out / "timeseries" / "throughput.csv", [[f"{t:.3f}", "ok_requests_per_s", repr(v)] for t, v in tput])
    series["throughput"] = tput
    write_summary(out / "metrics_summary.csv", kpis)
    manifest = build_manifest(ctx, window, promql)
    _write_atomic(out / "MANIFEST.json", json.dumps(manifest, indent=2))
    errors_by_msg = Counter(r["error"] for r in measured(records, window) if not r["ok"])
    report = {
        "session": ctx.session_id, "benchmark": ctx.benchmark, "interrupted": ctx.interrupted, "errors": ctx.errors,
        "window": {"start": window.start, "end": window.end, "seconds": window.seconds,
                   "start_iso": _iso(window.start), "end_iso": _iso(window.end)},
        "kpis": [k.to_dict() for k in kpis], "top_errors": errors_by_msg.most_common(10),
        "records": {"total": len(records), "measured": len(measured(records, window))}, "manifest": manifest,
    }
    _write_atomic(out / "report.json", json.dumps(report, indent=2))
    _write_atomic(out / "report.html", render_report({**report, "kpi_objects": kpis}, measured(records, window), series))
    ctx.say(f"report: {out / 'report.html'}")
    return report


def build_manifest(ctx: ReportContext, window: Window, promql: dict) -> dict:
    jobs = ctx.jobs
    if jobs is None:
        tracked = ctx.orch.servers.store.load() if ctx.orch is not None else {}
        roles = {sid: "service" for sid in ctx.services.values()}
        roles.update({sid: "client" for sid in ctx.clients})
        if ctx.monitor_id:
            roles[ctx.monitor_id] = "monitor"
        jobs = [{"role": role, "service_id": sid, "job_id": tracked.get(sid, {}).get("job_id", ""),
                 "nodes": tracked.get(sid, {}).get("nodelist", ""), "recipe": tracked.get(sid, {}).get("recipe", ""),
                 "recipe_sha256": tracked.get(sid, {}).get("recipe_sha256", "")} for sid, role in roles.items()]
    return {
        "session": ctx.session_id, "benchmark": ctx.benchmark, "tool_version": __version__, "git_commit": git_commit(),
        **ctx.recipes, "services": ctx.services, "clients": ctx.clients, "monitor_id": ctx.monitor_id,
        "jobs": jobs, "go_time": ctx.go_time,
        "window": {"start": window.start, "end": window.end, "start_iso": _iso(window.start), "end_iso": _iso(window.end)},
        "scrape_interval": ctx.scrape_interval, "promql": promql, "interrupted": ctx.interrupted,
    }


# -- later: a kept session, a session offline, any monitor over a window -------------------
def context_from_dir(orch, session_dir: Path, say=lambda m: None) -> tuple[ReportContext, dict]:
    manifest_path = session_dir / "MANIFEST.json"
    if not manifest_path.exists():
        raise OrchestratorError(f"{session_dir}: no MANIFEST.json: not a session directory")
    m = json.loads(manifest_path.read_text())
    recipes = {k: m[k] for k in ("benchmark_recipe", "service_recipes") if k in m}
    ctx = ReportContext(orch=orch, session_id=m["session"], benchmark=m.get("benchmark", m["session"]),
                        out_dir=session_dir, scrape_interval=m["scrape_interval"], services=m.get("services", {}),
                        clients=m.get("clients", []), monitor_id=m.get("monitor_id"), go_time=m.get("go_time"),
                        interrupted=m.get("interrupted", False), recipes=recipes, jobs=m.get("jobs"), say=say)
    return ctx, m


def recollect_session(orch, session_dir: Path, say=lambda m: None) -> dict:
    """Query the session's monitor again for its window (the monitor must still run: --keep)."""
    ctx, m = context_from_dir(orch, session_dir, say)
    if not ctx.monitor_id:
        raise OrchestratorError(f"{session_dir}: the session had no monitor")
    window = Window(m["window"]["start"], m["window"]["end"])
    return write_artifacts(ctx, read_requests(session_dir / "requests.jsonl"), None, window=window)


def rerender_session(session_dir: Path, say=lambda m: None) -> dict:
    """Recompute client KPIs from requests.jsonl and re-render, without the cluster."""
    ctx, m = context_from_dir(None, session_dir, say)
    old = json.loads((session_dir / "report.json").read_text()) if (session_dir / "report.json").exists() else {}
    prom = [KPI(**k) for k in old.get("kpis", []) if k["source"] == "prometheus"]
    window = Window(m["window"]["start"], m["window"]["end"])
    return write_artifacts(ctx, read_requests(session_dir / "requests.jsonl"), None, window=window, offline_kpis=prom)


def monitor_window_report(orch, monitor_id: str, start: float, end: float, out_dir: Path, say=lambda m: None) -> dict:
    """A report of any monitor's services over [start, end], from Prometheus alone."""
    mid = orch.monitors.monitor_for(monitor_id)
    rec = orch.monitors.store.get(mid) or {}
    services = {t["job_name"]: t["service_id"] for t in rec.get("targets", [])
                if t.get("kind") == "service" and t.get("service_id") and not t["service_id"].startswith("client-")}
    if not services:
        raise OrchestratorError(f"monitor {mid}: no service targets known here to report on")
    ctx = ReportContext(orch=orch, session_id=f"{mid}-{datetime.fromtimestamp(start, timezone.utc):%Y%m%dT%H%M%SZ}",
                        benchmark=f"monitor {mid}", out_dir=out_dir, scrape_interval=rec.get("scrape_interval", "15s"),
                        services=services, monitor_id=mid, go_time=start, say=say)
    return write_artifacts(ctx, [], None, window=Window(start, end))
