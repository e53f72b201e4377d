"""Gathering what a session's monitor says about a window: the one place reports' data comes from
Prometheus (queries from ``monitoring.queries``), before ``reports.artifacts`` writes anything.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path

from orchestrator import waiting
from orchestrator.analysis.kpi import KPI, Window
from orchestrator.analysis.records import RequestTable
from orchestrator.errors import OrchestratorError
from orchestrator.engines import engine_named
from orchestrator.monitoring.queries import (
    COUNTERS,
    HISTOGRAM_KPIS,
    service_kpi_queries,
    timeseries_queries,
)
from orchestrator.reports.artifacts import (
    PrometheusData,
    ReportContext,
    context_from_dir,
    write_artifacts,
)
from orchestrator.times import parse_duration

ABSENT = "absent: no such series on the monitor"


def prometheus_kpis_from(services: dict[str, str], queries: dict[str, tuple[str | None, str]],
                         values: dict[str, float | None], engines: dict[str, str] | None = None) -> list[KPI]:
    """KPIs from the instant values (pure); each engine counter becomes its count over the session."""
    kpis = []
    for n, (q, unit) in queries.items():
        if "@" in n:
            continue
        engine = _engine_of(n, services, engines)
        if q is None:
            note = f"absent: {engine.name} has no such metric"
        elif values.get(n) is None:
            note = ABSENT
        else:
            base = n.split(".", 1)[-1].rsplit("_p", 1)[0]
            metric = getattr(engine, HISTOGRAM_KPIS[base]) if base in HISTOGRAM_KPIS else None
            # the engine's own measurement, from its histogram's buckets (interpolated within a bucket)
            note = f"{engine.name}'s own {metric} histogram over the window" if metric else ""
        kpis.append(KPI(n, values.get(n), unit, "prometheus", note))
    multi = len(services) > 1
    for name in services:
        p = f"{name}." if multi else ""
        engine = engine_named((engines or {}).get(name))
        for counter in COUNTERS:
            if counter.startswith("prefix_cache") and engine.prefix_cache_hits is None:
                continue   # an engine without a prefix cache (or its counters): no rows to say absent
            a, b = values.get(f"{p}service_{counter}_counted@start"), values.get(f"{p}service_{counter}_counted@end")
            metric = getattr(engine, counter)
            if metric and counter == "input_tokens" and engine.input_tokens_cached:
                metric = f"{metric} + {engine.input_tokens_cached}"
            if metric and counter == "prefix_cache_queries" and engine.prefix_cache_queries_plus_hits:
                metric = f"{metric} + {engine.prefix_cache_hits}"
            if metric is None:
                note = f"absent: {engine.name} has no {counter.replace('_', ' ')} counter"
            elif b is None:
                note = f"absent: no {metric} series on the monitor"
            elif a is None:
                note = f"absent: {metric} has no sample at the window's start (the service started later?)"
            elif engine.window_counts:
                note = f"{metric} between its scrapes that bound the measured window"
            else:
                note = f"{metric} over the session (warm-up included: its counters are published late)"
            kpis.append(KPI(f"{p}service_{counter}_counted", b - a if a is not None and b is not None else None,
                            "requests" if counter == "requests" else "tokens", "prometheus", note))
        if engine.prefix_cache_hits is not None:
            kpis.append(hit_rate_kpi(p, engine, {k.kpi: k for k in kpis}))
    return kpis


def hit_rate_kpi(p: str, engine, by: dict) -> KPI:
    """The prefix cache's hit rate over the measured window, from the engine's own counters: the
    prompt tokens it found in the cache over those it looked up, both as deltas over the window."""
    hits, queries = by.get(f"{p}service_prefix_cache_hits_counted"), by.get(f"{p}service_prefix_cache_queries_counted")
    if hits is None or queries is None or hits.value is None or queries.value is None:
        return KPI(f"{p}prefix_cache_hit_rate", None, "ratio", "prometheus",
                   (hits.note if hits and hits.value is None else queries.note if queries else "absent"))
    if queries.value <= 0:
        return KPI(f"{p}prefix_cache_hit_rate", None, "ratio", "prometheus",
                   "absent: the engine looked up no prompt tokens in the window")
    return KPI(f"{p}prefix_cache_hit_rate", hits.value / queries.value, "ratio", "prometheus",
               f"the engine's own counters over the window: increase of {engine.prefix_cache_hits} / increase of "
               f"{engine.prefix_cache_queries}" + (f" + {engine.prefix_cache_hits}"
                                                   if engine.prefix_cache_queries_plus_hits else ""))


def _engine_of(kpi: str, services: dict[str, str], engines: dict[str, str] | None):
    name = kpi.split(".", 1)[0] if len(services) > 1 else next(iter(services), "")
    return engine_named((engines or {}).get(name))


def gather_prometheus(monitors, monitor_id: str, services: dict[str, str], scrape_interval: str, window: Window,
                      go_time: float | None, errors: list[str], engines: dict[str, str] | None = None) -> PrometheusData:
    """Service-side KPIs and time series over ``window`` (absent sources stay absent).

    Waits until the scrape after the load's end has landed, so the window's
    last counters are in; failures are added to ``errors``, never raised.
    """
    interval = parse_duration(scrape_interval)
    # the first scrape after the end comes within one interval; half of one more (at most 1 s) for
    # Prometheus to have it stored
    settled = window.end + interval + min(1.0, interval / 2)
    delay = settled - waiting.now()
    if delay > 0:
        waiting.sleep(delay)
    data = PrometheusData(engines=dict(engines or {}))
    queries = service_kpi_queries(services, window.seconds, int(interval), engines)
    asked = [n for n, (q, _) in queries.items() if q is not None]
    multi = len(services) > 1

    def start_of(n: str) -> float:
        """Counters are read at the first scrape inside the measured window (one interval after its
        start, while the window lasts that long), or at the session's go for a late-publishing engine."""
        if not _engine_of(n, services, engines).window_counts:
            return go_time or window.start
        return min(window.start + interval, window.end)
    at = {n: start_of(n) if n.endswith("@start") else
          (settled if n.endswith("@end") else window.end) for n in asked}
    values: dict[str, float | None] = {}
    series_q = timeseries_queries(list(services.values()), interval)
    start = min(go_time or window.start, window.start)
    series_failed = None
    try:  # the KPIs and every time series in one remote command
        results, ranged = monitors.query_at_and_range(monitor_id, [(queries[n][0], at[n]) for n in asked],
                                                      list(series_q.values()), start, window.end + interval,
                                                      max(1.0, interval))
    except OrchestratorError as exc:
        results = ranged = None
        series_failed = exc
    try:
        if results is None:
            raise series_failed
        for n, r in zip(asked, results):
            v = r.series[0].values[0][1] if r.series else None
            values[n] = None if v is None or math.isnan(v) else v
        data.kpis = prometheus_kpis_from(services, queries, values, engines)
        for name in services:
            engine = engine_named((engines or {}).get(name))
            p = f"{name}." if multi else ""
            if not engine.window_counts:
                continue
            # the scrapes' own times; where a counter has no timestamp (no series yet), the query's
            a = values.get(f"{p}service_counted_at@start") or at.get(f"{p}service_counted_at@start")
            b = values.get(f"{p}service_counted_at@end") or at.get(f"{p}service_counted_at@end")
            if a is not None and b is not None and b > a:
                data.counted_between[name] = (a, b)
                data.counter_reads[name] = (values.get(f"{p}service_counted_read@start") or 0.0,
                                            values.get(f"{p}service_counted_read@end") or 0.0)
    except OrchestratorError as exc:  # the monitor is gone (cancelled, its node failed): say so, keep going
        errors.append(f"Prometheus KPIs: {exc}")
        data.kpis = [KPI(n, None, q[1], "prometheus", f"absent: the monitor did not answer ({exc})")
                     for n, q in queries.items() if "@" not in n]
    data.promql = {n: q[0] for n, q in queries.items() if q is not None}
    if ranged is None:
        errors.append(f"time series: {series_failed}")
    for name, res in zip(series_q, ranged or []):
        data.series[name] = [(s.labels.get("service_id") or s.labels.get("job") or name, s.values)
                             for s in res.series]
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
    with RequestTable.from_jsonl(session_dir / "requests.jsonl") as table:
        return write_artifacts(ctx, table, window)


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
    with RequestTable.from_records([]) as table:
        return write_artifacts(ctx, table, window)
