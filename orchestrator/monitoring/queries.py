"""Every PromQL query the tool asks on its own, defined once (pure text builders).

The monitor report, a session's service-side KPIs and its time series all take
their queries from here, so a metric name is changed in one place.
"""

from __future__ import annotations

from orchestrator.engines import engine_named

REPORT_QUERIES = {
    "up": "up",
    "scrape_duration_seconds": "scrape_duration_seconds",
    "process_cpu_cores": "rate(process_cpu_seconds_total[1m])",
    "process_resident_memory_bytes": "process_resident_memory_bytes",
    "node_cpu_utilisation_percent":
        '100 * (1 - avg by (instance, service_id) (rate(node_cpu_seconds_total{mode="idle"}[1m])))',
    "node_memory_used_bytes": "node_memory_MemTotal_bytes - node_memory_MemAvailable_bytes",
    "gpu_utilisation_percent": "DCGM_FI_DEV_GPU_UTIL",
    "gpu_memory_used_mib": "DCGM_FI_DEV_FB_USED",
}

# the engine's own counters, read at the session's start and at its end: name@start / name@end
COUNTERS = ("requests", "output_tokens", "input_tokens", "prefix_cache_hits", "prefix_cache_queries")
COUNTED_AT_START = "service_requests_counted@start"   # (kept for callers of the older name)
COUNTED_AT_END = "service_requests_counted@end"


def selected(metric: str, sel: str) -> str:
    """``metric{sel}``, or the service's matcher added to the metric's own (``name{a="b",sel}``)."""
    if metric.endswith("}"):
        return f"{metric[:-1]},{sel}}}"
    return f"{metric}{{{sel}}}"


def service_kpi_queries(services: dict[str, str], window_seconds: float, step_seconds: int,
                        engines: dict[str, str] | None = None) -> dict[str, tuple[str | None, str]]:
    """``{kpi name: (promql or None, unit)}`` over a window of ``window_seconds`` ending at the query time.

    Engine metrics come from engines.py by each service's declared engine; a metric the
    engine does not have is ``None`` (reported absent, with the reason). With several services each
    name is prefixed ``<service name>.``; ``service_<counter>_counted@start|@end`` are instants of the
    engine's counters (requests, output_tokens, input_tokens), not KPIs.
    """
    w = f"{max(1, int(-(-window_seconds // 1)))}s"
    step = f"{max(1, int(step_seconds))}s"
    multi = len(services) > 1
    out: dict[str, tuple[str | None, str]] = {}
    for name, sid in services.items():
        engine = engine_named((engines or {}).get(name))
        sel = f'service_id="{sid}"'
        p = f"{name}." if multi else ""

        def hq(q: float, metric: str | None) -> str | None:
            return metric and f"histogram_quantile({q}, sum by (le) (increase({metric}_bucket{{{sel}}}[{w}])))"

        def gauge_max(metric: str | None) -> str | None:
            return metric and f"max(max_over_time({selected(metric, sel)}[{w}]))"

        out.update({
            p + "cpu_utilisation": (f'100 * (1 - avg(rate(node_cpu_seconds_total{{mode="idle",{sel}}}[{w}])))', "%"),
            p + "memory_used_max": (f"max_over_time((sum(node_memory_MemTotal_bytes{{{sel}}}) - "
                                    f"sum(node_memory_MemAvailable_bytes{{{sel}}}))[{w}:{step}])", "bytes"),
            p + "memory_total": (f"max(max_over_time(node_memory_MemTotal_bytes{{{sel}}}[{w}]))", "bytes"),
            p + "gpu_utilisation": (f"avg(avg_over_time(DCGM_FI_DEV_GPU_UTIL{{{sel}}}[{w}]))", "%"),
            p + "gpu_memory_used_max": (f"max(max_over_time(DCGM_FI_DEV_FB_USED{{{sel}}}[{w}]))", "MiB"),
            p + "service_latency_p50": (hq(0.5, engine.latency_histogram), "s"),
            p + "service_latency_p99": (hq(0.99, engine.latency_histogram), "s"),
            p + "service_ttft_p50": (hq(0.5, engine.ttft_histogram), "s"),
            p + "service_ttft_p99": (hq(0.99, engine.ttft_histogram), "s"),
            p + "service_tpot_p50": (hq(0.5, engine.tpot_histogram), "s"),
            p + "service_tpot_p99": (hq(0.99, engine.tpot_histogram), "s"),
            p + "service_itl_p50": (hq(0.5, engine.itl_histogram), "s"),
            p + "service_itl_p99": (hq(0.99, engine.itl_histogram), "s"),
            p + "service_queue_time_p50": (hq(0.5, engine.queue_histogram), "s"),
            p + "service_queue_time_p99": (hq(0.99, engine.queue_histogram), "s"),
            p + "service_requests_running_max": (gauge_max(engine.running), "requests"),
            p + "service_requests_waiting_max": (gauge_max(engine.waiting), "requests"),
        })
        for counter in COUNTERS:
            metric = getattr(engine, counter)
            unit = "requests" if counter == "requests" else "tokens"   # (the prefix cache counts tokens)
            q = metric and f"sum({selected(metric, sel)})"
            if q and engine.up:
                q = f"({q} or 0 * sum({selected(engine.up, sel)}))"
            if q and counter == "input_tokens" and engine.input_tokens_cached:
                q += f" + (sum({selected(engine.input_tokens_cached, sel)}) or vector(0))"
            if q and counter == "prefix_cache_queries" and engine.prefix_cache_queries_plus_hits:
                q += f" + (sum({selected(engine.prefix_cache_hits, sel)}) or vector(0))"
            for at in ("start", "end"):
                out[f"{p}service_{counter}_counted@{at}"] = (q, unit)
        # when the counters above were scraped: the client's requests are counted between the same instants
        stamp = engine.up or engine.requests or engine.output_tokens
        # and how long those scrapes took: the engine read its counters somewhere within that time
        read = stamp and f"max(scrape_duration_seconds and on (instance, job) {selected(stamp, sel)})"
        for at in ("start", "end"):
            out[f"{p}service_counted_at@{at}"] = (stamp and f"max(timestamp({selected(stamp, sel)}))", "s")
            out[f"{p}service_counted_read@{at}"] = (read, "s")
    return out


# the engine histogram each service_<name>_p<q> KPI reads (its source, named in the report)
HISTOGRAM_KPIS = {"service_latency": "latency_histogram", "service_ttft": "ttft_histogram",
                  "service_tpot": "tpot_histogram", "service_itl": "itl_histogram",
                  "service_queue_time": "queue_histogram"}


def timeseries_queries(service_ids: list[str], scrape_interval_seconds: float) -> dict[str, str]:
    """The range queries behind a report's charts, one CSV each."""
    sids = "|".join(service_ids)
    r = f"{max(4 * int(scrape_interval_seconds), 4)}s"
    return {
        "cpu_utilisation": f'100 * (1 - avg by (service_id) (rate(node_cpu_seconds_total{{mode="idle",service_id=~"{sids}"}}[{r}])))',
        "memory_used_bytes": f'sum by (service_id) (node_memory_MemTotal_bytes{{service_id=~"{sids}"}} - node_memory_MemAvailable_bytes{{service_id=~"{sids}"}})',
        "gpu_utilisation": f'DCGM_FI_DEV_GPU_UTIL{{service_id=~"{sids}"}}',
        "gpu_memory_used_mib": f'DCGM_FI_DEV_FB_USED{{service_id=~"{sids}"}}',
        "service_requests_running": f'vllm:num_requests_running{{service_id=~"{sids}"}}',
        "service_requests_waiting": f'vllm:num_requests_waiting{{service_id=~"{sids}"}}',
        "client_in_flight": "sum(orch_client_in_flight)",
    }
