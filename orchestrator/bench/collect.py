"""Gathering what a session's monitor says about a window: the one place reports' data comes from
Prometheus (queries from ``monitoring.queries``), before ``reports.artifacts`` writes anything.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path

from orchestrator import waiting
from orchestrator.bench.kpi import KPI, Window
from orchestrator.errors import OrchestratorError
from orchestrator.monitoring.queries import (
    COUNTED_AT_END,
    COUNTED_AT_START,
    service_kpi_queries,
    timeseries_queries,
)
from orchestrator.reports.artifacts import (
    PrometheusData,
    ReportContext,
    context_from_dir,
    read_requests,
    write_artifacts,
)
from orchestrator.times import parse_duration

ABSENT = "absent: no such series on the monitor"


def prometheus_kpis_from(services: dict[str, str], units: dict[str, str], values: dict[str, float | None]) -> list[KPI]:
    """KPIs from the instant values (pure); the request counter becomes the count over the window."""
    kpis = [KPI(n, values.get(n), unit, "prometheus", "" if values.get(n) is not None else ABSENT)
            for n, unit in units.items() if "@" not in n]
    multi = len(services) > 1
    for name in services:
        p = f"{name}." if multi else ""
        a, b = values.get(p + COUNTED_AT_START), values.get(p + COUNTED_AT_END)
        if b is None:
            note = "absent: the service exposes no request counter"
        elif a is None:
            note = "absent: the counter has no sample at the window start (the service started later?)"
        else:
            note = "successful requests the service counted during the session (warm-up included)"
        kpis.append(KPI(p + "service_requests_counted", b - a if a is not None and b is not None else None,
                        "requests", "prometheus", note))
    return kpis


def gather_prometheus(monitors, monitor_id: str, services: dict[str, str], scrape_interval: str, window: Window,
                      go_time: float | None, errors: list[str]) -> PrometheusData:
    """Service-side KPIs and time series over ``window`` (absent sources stay absent).

    Waits until the scrape after the load's end has landed, so the window's
    last counters are in; failures are added to ``errors``, never raised.
    """
    interval = parse_duration(scrape_interval)
    delay = window.end + 2 * interval - waiting.now()
    if delay > 0:
        waiting.sleep(delay)
    data = PrometheusData()
    queries = service_kpi_queries(services, window.seconds, int(interval))
    names = list(queries)
    at = {n: (go_time or window.start) if n.endswith(COUNTED_AT_START) else
          (window.end + 2 * interval if n.endswith(COUNTED_AT_END) else window.end) for n in names}
    try:
        results = monitors.query_many_at(monitor_id, [(queries[n][0], at[n]) for n in names])
        values = {}
        for n, r in zip(names, results):
            v = r.series[0].values[0][1] if r.series else None
            values[n] = None if v is None or math.isnan(v) else v
        data.kpis = prometheus_kpis_from(services, {n: q[1] for n, q in queries.items()}, values)
        data.promql = {n: q[0] for n, q in queries.items()}
    except OrchestratorError as exc:  # the monitor is gone (cancelled, its node failed): say so, keep going
        errors.append(f"Prometheus KPIs: {exc}")
        data.kpis = [KPI(n, None, q[1], "prometheus", f"absent: the monitor did not answer ({exc})")
                     for n, q in queries.items() if "@" not in n]
        data.promql = {n: q[0] for n, q in queries.items()}
    series_q = timeseries_queries(list(services.values()), interval)
    start = min(go_time or window.start, window.start)
    try:  # every metric in one remote command
        results = monitors.query_range_many(monitor_id, list(series_q.values()), start, window.end + interval,
                                            max(1.0, interval))
        for name, res in zip(series_q, results):
            data.series[name] = [(s.labels.get("service_id") or s.labels.get("job") or name, s.values)
                                 for s in res.series]
    except OrchestratorError as exc:
        errors.append(f"time series: {exc}")
    data.promql.update({f"timeseries.{k}": v for k, v in series_q.items()})
    return data


def recollect_session(orch, session_dir: Path) -> dict:
    """Query the session's monitor again for its window (the monitor must still run: --keep)."""
    ctx, m = context_from_dir(session_dir)
    if not ctx.monitor_id:
        raise OrchestratorError(f"{session_dir}: the session had no monitor")
    window = Window(m["window"]["start"], m["window"]["end"])
    ctx.prometheus = gather_prometheus(orch.monitors, ctx.monitor_id, ctx.services, ctx.scrape_interval, window,
                                       ctx.go_time, ctx.errors)
    return write_artifacts(ctx, read_requests(session_dir / "requests.jsonl"), window)


def monitor_window_report(orch, monitor_id: str, start: float, end: float, out_dir: Path) -> dict:
    """A report of any monitor's services over [start, end], from Prometheus alone."""
    mid = orch.monitors.monitor_for(monitor_id)
    rec = orch.monitors.store.get(mid) or {}
    services = {t["job_name"]: t["service_id"] for t in rec.get("targets", [])
                if t.get("kind") == "service" and t.get("service_id") and not t["service_id"].startswith("client-")}
    if not services:
        raise OrchestratorError(f"monitor {mid}: no service targets known here to report on")
    ctx = ReportContext(session_id=f"{mid}-{datetime.fromtimestamp(start, timezone.utc):%Y%m%dT%H%M%SZ}",
                        benchmark=f"monitor {mid}", out_dir=out_dir, scrape_interval=rec.get("scrape_interval", "15s"),
                        services=services, monitor_id=mid, go_time=start)
    window = Window(start, end)
    ctx.prometheus = gather_prometheus(orch.monitors, mid, services, ctx.scrape_interval, window, start, ctx.errors)
    return write_artifacts(ctx, [], window)
