"""Session artifacts: requests.jsonl, metrics_summary.csv, time series, MANIFEST.json, report.json/html.

Pure: data in, files out. The session (or ``bench.collect`` for a kept session or
any monitor's window) gathers the records and what Prometheus said first; this
module never talks to the cluster and never waits, so the same code writes a
live session, a re-collected one and an offline re-render.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.analysis.kpi import (
    DEFAULT_PERCENTILES,
    DEFINITIONS,
    KPI,
    Window,
    client_kpis,
    count_in_window,
    errors_in_window,
    group_rows,
    histogram,
    latency_points,
    ok_totals,
    ok_totals_between,
    op_phases,
    replica_rows,
    throughput_series,
    window_of,
)
from orchestrator.analysis.limits import Validity, validity_from
from orchestrator.analysis.records import RequestTable
from orchestrator.analysis.validity import assess, delivery
from orchestrator.errors import OrchestratorError
from orchestrator.fileio import atomic_open, write_atomic
from orchestrator.engines import engine_named
from orchestrator.analysis.bottleneck import Load, verdict
from orchestrator.reports.html import render_report
from orchestrator.times import iso
from orchestrator.version import __version__, git_commit
from orchestrator.state import ServiceRecord


@dataclass
class PrometheusData:
    """What a session's monitor said about its window, gathered before anything is written."""
    kpis: list[KPI] = field(default_factory=list)
    promql: dict[str, str] = field(default_factory=dict)       # name -> the query that produced it
    series: dict = field(default_factory=dict)                 # chart name -> [(label, [(t, v)])]
    engines: dict[str, str] = field(default_factory=dict)      # service name -> engine whose metrics were read
    # service name -> (a, b): the scrape times of its counters that bound the measured window
    counted_between: dict[str, tuple[float, float]] = field(default_factory=dict)
    # service name -> how long those two scrapes took (s): the counters were read somewhere within them
    counter_reads: dict[str, tuple[float, float]] = field(default_factory=dict)


@dataclass
class ReportContext:
    """Everything a report is made of besides the request records: no connection, no clock."""
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
    jobs: list[dict] = field(default_factory=list)   # role, service_id, job_id, nodes, recipe, recipe_sha256
    runtime: dict = field(default_factory=dict)     # service ID -> runtime.txt lines and sbatch options
    prometheus: PrometheusData | None = None        # None: no monitor, interrupted, or offline
    percentiles: tuple[float, ...] = DEFAULT_PERCENTILES
    client_slo: dict = field(default_factory=dict)  # per request, seconds (goodput)
    engines: dict[str, str] = field(default_factory=dict)
    service_counts: dict[str, int] = field(default_factory=dict)  # service name -> items it holds after the load
    load: Load | None = None                        # what the clients offered (the bottleneck verdict reads it)
    logs: list[dict] = field(default_factory=list)  # each job's log saved under logs/ (service_id, role, path, verdict)
    counted_between: dict = field(default_factory=dict)  # offline: a report's earlier counter sample times
    counter_reads: dict = field(default_factory=dict)    # offline: and how long those scrapes took
    replicas: dict[str, list[str]] = field(default_factory=dict)  # a replicated service -> its replicas' names
    rpc: list[dict] = field(default_factory=list)   # llama.cpp RPC workers' traffic in the window (analysis.rpc)
    validity: Validity = field(default_factory=Validity)  # the recipe's limits of a valid session
    cache: dict[str, str] = field(default_factory=dict)   # service name -> how its prefix cache started the load
    conversations: dict = field(default_factory=dict)     # multiturn: cut (to fit the context), context_tokens
    lost_clients: list[str] = field(default_factory=list)  # client jobs that ended before their load did
    what_ran: list[dict] = field(default_factory=list)  # what the report says first: {role, name, text} each


def write_summary(path: Path, kpis: list[KPI]) -> None:
    with atomic_open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["kpi", "value", "unit", "source"])
        for k in kpis:
            w.writerow([k.kpi, "" if k.value is None else repr(float(k.value)), k.unit, k.source])


def write_series_csv(path: Path, rows: list[list]) -> None:
    with atomic_open(path, "w", newline="") as f:
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
def window_for(table: RequestTable, warmup_until: float | None) -> Window:
    """The measured window: warm-up excluded, ending at the last completion."""
    return window_of(table, warmup_until) if warmup_until is not None and len(table) else Window(0.0, 0.0)


def write_artifacts(ctx: ReportContext, table: RequestTable, window: Window,
                    offline_kpis: list[KPI] | None = None) -> dict:
    """Every artifact of a session from data already gathered; returns report.json's content.

    ``table``: the request records, already in requests.jsonl (written as they were read).
    ``offline_kpis``: Prometheus KPIs kept from an earlier run (re-rendering without the cluster).
    """
    out = ctx.out_dir
    out.mkdir(parents=True, exist_ok=True)
    records = len(table) > 0
    phases = op_phases(table, window)
    kpis = client_kpis(table, window, ctx.percentiles, ctx.client_slo, phases) if records else []
    promql: dict = {}
    series: dict = {}
    between = dict(ctx.prometheus.counted_between if ctx.prometheus is not None else ctx.counted_between)
    reads = dict(ctx.prometheus.counter_reads if ctx.prometheus is not None else ctx.counter_reads)
    if ctx.prometheus is not None:
        kpis += ctx.prometheus.kpis
        promql = dict(ctx.prometheus.promql)
        for name, data in ctx.prometheus.series.items():
            rows = [[f"{t:.3f}", label, "" if math.isnan(v) else repr(v)] for label, values in data for t, v in values]
            write_series_csv(out / "timeseries" / f"{name}.csv", rows)
            series[name] = data
    elif offline_kpis is not None:
        kpis += offline_kpis
        for csv_path in sorted((out / "timeseries").glob("*.csv")):
            if csv_path.stem != "throughput":
                series[csv_path.stem] = read_series_csv(csv_path)
    tput = throughput_series(table, window) if records else []
    write_series_csv(out / "timeseries" / "throughput.csv", [[f"{t:.3f}", "ok_requests_per_s", repr(v)] for t, v in tput])
    series["throughput"] = tput
    load = ctx.load
    deliver = delivery(table, window, load.rate if load else None, ctx.validity,
                       load.concurrency if load else None) if records else None
    if deliver:
        kpis += [KPI("achieved_rate", deliver["achieved_rate"], "requests/s", "client",
                     "requests actually sent per second, over the span of their sends (the schedule asked "
                     + ("-" if deliver["schedule_rate"] is None else f"{deliver['schedule_rate']:.4g}") + "/s)"),
                 KPI("send_lag_p50", deliver["send_lag_p50"], "s", "client", "when sent minus when scheduled"),
                 KPI("send_lag_p99", deliver["send_lag_p99"], "s", "client", "when sent minus when scheduled")]
    write_summary(out / "metrics_summary.csv", kpis)
    manifest = build_manifest(ctx, window, promql)
    write_atomic(out / "MANIFEST.json", json.dumps(manifest, indent=2))
    values = {k.kpi: k.value for k in kpis}
    checked = with_replica_totals(cross_check(ctx, table, kpis, between, reads), ctx.replicas)
    valid, reasons = assess(values, deliver, checked, ctx.validity, ctx.interrupted, len(table), ctx.lost_clients)
    report = {
        "valid": valid, "invalid_reasons": reasons, "delivery": deliver,
        "what_ran": ctx.what_ran, "headline": headline(values),
        "counts": counts_explained(len(table), count_in_window(table, window), values, checked),
        "cache": ctx.cache, "conversations": ctx.conversations,
        "by_turn": group_rows(table, window, "turn") if records else [],
        "by_model": group_rows(table, window, "model", table.models) if records and table.models else [],
        "bottleneck": verdict(values, ctx.load, values.get("memory_total")).to_dict() if records else None,
        "cross_check": checked,
        "counted_between": between, "counter_reads_s": reads, "logs": own_logs(ctx.logs), "rpc_workers": ctx.rpc,
        "replicas": replica_rows(table, window, ctx.replicas, kpis) if records and ctx.replicas else [],
        "client_beside_engine": client_beside_engine(kpis, list(ctx.services)),
        "open_services": open_services(ctx.jobs),
        "definitions": DEFINITIONS,
        "session": ctx.session_id, "benchmark": ctx.benchmark, "interrupted": ctx.interrupted, "errors": ctx.errors,
        "window": {"start": window.start, "end": window.end, "seconds": window.seconds,
                   "start_iso": iso(window.start), "end_iso": iso(window.end)},
        "kpis": [k.to_dict() for k in kpis], "top_errors": errors_in_window(table, window),
        "phases": [{"name": op, "start": w.start, "end": w.end, "seconds": w.seconds, "start_iso": iso(w.start),
                    "end_iso": iso(w.end)} for op, w in phases.items()],
        "records": {"total": len(table), "measured": count_in_window(table, window)}, "manifest": manifest,
    }
    write_atomic(out / "report.json", json.dumps(report, indent=2))
    write_atomic(out / "report.html", render_report({**report, "kpi_objects": kpis}, {
        **series, "latency": latency_points(table, window), "latency_histogram": histogram(table, window),
        "ttft": latency_points(table, window, column="ttft_s"),
        "tpot": latency_points(table, window, column="tpot_s")}))
    return report


# The report's first card: the answer a reader looks for, in the units the KPI table uses
HEADLINE = (("requests/s", "throughput", "rate"), ("output tokens/s", "output_tokens_per_second", "rate"),
            ("TTFT p50", "ttft_p50", "ms"), ("TTFT p99", "ttft_p99", "ms"), ("TPOT p50", "tpot_p50", "ms"),
            ("TPOT p99", "tpot_p99", "ms"), ("latency p99", "latency_p99", "ms"),
            ("goodput", "goodput", "rate"), ("errors", "requests_error", "count"))


def headline(values: dict) -> list[dict]:
    """The headline figures that were measured (a KPI that is absent is left out, never shown as 0)."""
    out = []
    for label, kpi, kind in HEADLINE:
        v = values.get(kpi)
        if v is None:
            continue
        if kind == "ms":
            text = f"{v * 1000:,.1f} ms" if v < 10 else f"{v:,.2f} s"
        elif kind == "count":
            rate = values.get("error_rate")
            text = f"{v:,.0f}" + (f" ({rate * 100:.2f}%)" if rate is not None else "")
        else:
            text = f"{v:,.4g}" if v < 1000 else f"{v:,.0f}"
        out.append({"label": label, "kpi": kpi, "text": text})
    return out


def counts_explained(total: int, measured: int, values: dict, checked: list[dict]) -> list[str]:
    """Why the report's request counts differ from one another, said where they stand."""
    out = []
    if total != measured:
        out.append(f"{total:,} requests were sent in all; {measured:,} fall in the measured window (the "
                   "warm-up's and those after the window's end are not measured)")
    done = next((c for c in checked if c.get("what") == "requests"), None)
    if done is not None and done.get("client") not in (None, measured):
        out.append(f"The cross-check counts {done['client']:,.0f}: the requests that completed between the "
                   "engine's two scrapes that bound the window, so that both sides count the same requests")
    retried = values.get("requests_retried")
    if retried:
        out.append(f"{retried:,.0f} request(s) were sent a second time on a new connection, because the server "
                   "had closed the kept-alive one: each is one request (counted once), its latency includes "
                   "the failed first send")
    return out


_LOG_PATH = re.compile(r"logs/[A-Za-z0-9_.-]+\.log")


def own_logs(logs: list[dict]) -> list[dict]:
    """The session's job logs as the report links them: only a relative path to a file of its own
    ``logs/`` folder is a link (a MANIFEST from elsewhere may name ``javascript:`` or ``/etc``)."""
    return [{**entry, "path": entry.get("path") if _LOG_PATH.fullmatch(str(entry.get("path") or "")) else None}
            for entry in logs if isinstance(entry, dict)]


def cross_check(ctx: ReportContext, table: RequestTable, kpis: list[KPI],
                between: dict[str, tuple[float, float]] | None = None,
                reads: dict[str, tuple[float, float]] | None = None) -> list[dict]:
    """The clients' own counts against the engine's counters: requests and output/input tokens.

    Where ``between`` has a service's counter sample times (a, b), both sides count the measured window:
    the engine's counters from their scrape at a to their scrape at b, the clients' OK requests that
    completed in (a, b]. A sample's time is when its scrape began; the engine read its counters at some
    moment of the scrape (``reads``: how long each took; a busy engine answers /metrics late). Requests
    in flight during a sample's scrape (or completing within 50 ms of it) may be counted on one side
    only, wholly or in part: they bound the difference. Otherwise the whole session is compared
    (warm-up included), within one request."""
    by = {k.kpi: k for k in kpis}
    rows = []
    multi = len(ctx.services) > 1
    totals = ok_totals(table)
    for name in ctx.services:
        engine = engine_named(ctx.engines.get(name))
        p = f"{name}." if multi else ""
        scope = name if multi else None
        whole = totals.merged(scope)
        window = (between or {}).get(name)
        if window:
            read = tuple((reads or {}).get(name) or (0.0, 0.0))
            inside, edge = ok_totals_between(table, tuple(window), read)
            mine, slack = inside.merged(scope), edge.merged(scope)
            tolerance = {"requests": float(max(1, slack.requests)),
                         "output_tokens": float(max(slack.tokens_out, mine.max_out)),
                         "input_tokens": float(max(slack.tokens_in, mine.max_in))}
            span = (f"between the counter's scrapes at {iso(window[0])} and {iso(window[1])} (the measured window; "
                    f"the scrapes took {read[0]:.3g} s and {read[1]:.3g} s)")
        else:
            mine = whole
            tolerance = {"requests": 1.0, "output_tokens": float(mine.max_out), "input_tokens": float(mine.max_in)}
            span = "over the whole session (warm-up included)"
        client = {"requests": float(mine.requests), "output_tokens": float(mine.tokens_out),
                  "input_tokens": float(mine.tokens_in), "prefix_cache_hits": float(mine.cached)}
        tolerance["prefix_cache_hits"] = tolerance["input_tokens"]
        for counter in ("requests", "output_tokens", "input_tokens", "prefix_cache_hits"):
            if counter == "prefix_cache_hits" and not (whole.any_cached and engine.prefix_cache_hits):
                continue  # the answers did not say what was cached (or the engine does not count it)
            k = by.get(f"{p}service_{counter}_counted")
            metric = getattr(engine, counter)
            if counter != "requests" and metric is None and not (whole.any_out or whole.any_in):
                continue  # no tokens on either side (a data service): nothing to say
            if counter == "requests" and metric is None and name in ctx.service_counts:
                continue  # no request counter, but the service's count of what it holds (below)
            if metric and counter == "input_tokens" and engine.input_tokens_cached:
                metric = f"{metric} + {engine.input_tokens_cached}"
            if metric and counter == "input_tokens" and engine.input_tokens_cached_within:
                metric = f"{metric} (cached prompt tokens included: {engine.input_tokens_cached_within} is part of it)"
            if metric and counter == "requests" and engine.requests_summed_over:
                metric += f" (summed over {engine.requests_summed_over})"
            row = {"service": name, "engine": engine.name, "what": counter.replace("_", " "), "metric": metric,
                   "client": client[counter], "engine_count": k.value if k else None, "span": span,
                   "tolerance": tolerance[counter]}
            if metric is None or k is None or k.value is None:
                row.update(agree=None, note=k.note if k and k.note else f"absent: {engine.name} has no such counter")
            elif counter != "requests" and not {"output_tokens": mine.any_out, "input_tokens": mine.any_in,
                                                "prefix_cache_hits": mine.any_cached}[counter]:
                row.update(agree=None, note="the API reported no token counts to compare")
            else:
                diff = abs(client[counter] - k.value)
                row.update(agree=diff <= tolerance[counter], note="agree" if diff <= tolerance[counter] else (
                    f"differ by {diff:g} (more than the {tolerance[counter]:g} that requests at the window's edges "
                    "explain): requests the engine finished after the clients gave up, or that failed on the way, "
                    "count on one side only"))
            rows.append(row)
        if name in ctx.service_counts:  # a vector database: asked by the client after the load
            held, sent = ctx.service_counts[name], whole.items
            rows.append({"service": name, "engine": engine.name, "what": "items stored",
                         "metric": "the collection's count, asked after the load", "client": float(sent),
                         "engine_count": float(held), "agree": held == sent,
                         "note": "agree" if held == sent else (
                             f"differ by {abs(held - sent):g}: the collection held vectors before the session, or "
                             "an upsert failed on the way after the service applied it")})
    return rows


def with_replica_totals(rows: list[dict], replicas: dict[str, list[str]]) -> list[dict]:
    """After each replicated service's per-replica rows, one that adds the replicas together: the clients'
    counts against the sum of the replicas' engine counters, within the sum of their tolerances."""
    out = list(rows)
    for group, names in replicas.items():
        for what in dict.fromkeys(r["what"] for r in rows if r["service"] in names):
            mine = [r for r in rows if r["service"] in names and r["what"] == what]
            if len(mine) != len(names) or any(r.get("engine_count") is None for r in mine):
                continue   # a replica without the counter: no total to state
            client, engine = sum(r["client"] for r in mine), sum(r["engine_count"] for r in mine)
            tolerance = sum(r.get("tolerance") or 0 for r in mine)
            agree = abs(client - engine) <= tolerance
            out.append({"service": f"{group} ({len(names)} replicas)", "engine": mine[0]["engine"], "what": what,
                        "metric": f"{mine[0]['metric']}, summed over {', '.join(names)}", "client": client,
                        "engine_count": engine, "span": mine[0].get("span", ""), "tolerance": tolerance,
                        "agree": agree, "note": "agree" if agree else f"differ by {abs(client - engine):g}"})
    return out


# each latency measure as the clients saw it and as the engine's own histogram saw it
_BESIDE = (("TTFT", "ttft", "service_ttft"), ("TPOT", "tpot", "service_tpot"), ("ITL", "itl", "service_itl"),
           ("e2e latency", "latency", "service_latency"), ("queue time", None, "service_queue_time"))


def client_beside_engine(kpis: list[KPI], services: list[str]) -> list[dict]:
    """Rows {measure, quantile, client, engine, engine_source} where the engine has a histogram of its own:
    the same measure from the two sides of the wire, each labelled with where it came from (pure)."""
    by = {k.kpi: k for k in kpis}
    rows = []
    multi = len(services) > 1
    for name in services:
        p = f"{name}." if multi else ""
        for label, mine, theirs in _BESIDE:
            for q in ("p50", "p99"):
                engine = by.get(f"{p}{theirs}_{q}")
                if engine is None or engine.value is None:
                    continue
                client = by.get(f"{mine}_{q}") if mine else None
                rows.append({"service": name, "measure": label, "quantile": q,
                             "client": None if client is None else client.value,
                             "client_source": "client records (exact)" if client is not None else
                             "the client cannot see it", "engine": engine.value, "engine_source": engine.note})
    return rows


def jobs_table(services: dict[str, str], clients: list[str], monitor_id: str | None,
               tracked: dict[str, ServiceRecord]) -> list[dict]:
    """The manifest's jobs: each role's service ID with what local state knows of it."""
    roles = {sid: "service" for sid in services.values()}
    roles.update({sid: "client" for sid in clients})
    if monitor_id:
        roles[monitor_id] = "monitor"
    out = []
    for sid, role in roles.items():
        rec = tracked.get(sid) or ServiceRecord(sid)
        out.append({"role": role, "service_id": sid, "job_id": rec.job_id, "nodes": rec.nodelist,
                    "recipe": rec.recipe, "recipe_sha256": rec.recipe_sha256, "auth": rec.auth})
    return out


def open_services(jobs: list[dict]) -> list[str]:
    """Services and the monitor whose recipe chose no lock (``auth: none``): any user of the cluster
    could query them while they ran, and the report says so. (Load clients serve only their own counters.)"""
    return [j["service_id"] for j in jobs if j.get("role") in ("service", "monitor") and j.get("auth") == "none"]


def build_manifest(ctx: ReportContext, window: Window, promql: dict) -> dict:
    return {
        "session": ctx.session_id, "benchmark": ctx.benchmark, "tool_version": __version__, "git_commit": git_commit(),
        **ctx.recipes, "services": ctx.services, "clients": ctx.clients, "monitor_id": ctx.monitor_id,
        "jobs": ctx.jobs, "go_time": ctx.go_time,
        "window": {"start": window.start, "end": window.end, "start_iso": iso(window.start), "end_iso": iso(window.end)},
        "scrape_interval": ctx.scrape_interval, "promql": promql, "interrupted": ctx.interrupted,
        "percentiles": list(ctx.percentiles), "client_slo": ctx.client_slo, "engines": ctx.engines,
        "validity": ctx.validity.to_dict(), **({"cache": ctx.cache} if ctx.cache else {}),
        **({"service_counts": ctx.service_counts} if ctx.service_counts else {}),
        **({"logs": ctx.logs} if ctx.logs else {}),
        **({"load": {"jobs": ctx.load.jobs, "concurrency": ctx.load.concurrency, "rate": ctx.load.rate}}
           if ctx.load else {}),
        **({"runtime": ctx.runtime} if ctx.runtime else {}),
        **({"what_ran": ctx.what_ran} if ctx.what_ran else {}),
    }




# -- a session again, from its files --------------------------------------------------
def context_from_dir(session_dir: Path) -> tuple[ReportContext, dict]:
    manifest_path = session_dir / "MANIFEST.json"
    if not manifest_path.exists():
        raise OrchestratorError(f"{session_dir}: no MANIFEST.json: not a session directory")
    try:
        m = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise OrchestratorError(f"{manifest_path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    recipes = {k: m[k] for k in ("benchmark_recipe", "service_recipes") if k in m}
    ctx = ReportContext(session_id=m["session"], benchmark=m.get("benchmark", m["session"]),
                        out_dir=session_dir, scrape_interval=m["scrape_interval"], services=m.get("services", {}),
                        clients=m.get("clients", []), monitor_id=m.get("monitor_id"), go_time=m.get("go_time"),
                        interrupted=m.get("interrupted", False), recipes=recipes, jobs=m.get("jobs") or [],
                        runtime=m.get("runtime") or {}, percentiles=tuple(m.get("percentiles") or DEFAULT_PERCENTILES),
                        client_slo=m.get("client_slo") or {}, engines=m.get("engines") or {},
                        service_counts=m.get("service_counts") or {},
                        load=Load(**m["load"]) if m.get("load") else None, logs=m.get("logs") or [],
                        validity=validity_from(m.get("validity")), cache=m.get("cache") or {},
                        what_ran=[w for w in m.get("what_ran") or [] if isinstance(w, dict)])
    return ctx, m


def rerender_session(session_dir: Path) -> dict:
    """Recompute client KPIs from requests.jsonl and re-render, without the cluster."""
    ctx, m = context_from_dir(session_dir)
    old = json.loads((session_dir / "report.json").read_text()) if (session_dir / "report.json").exists() else {}
    prom = [KPI(**k) for k in old.get("kpis", []) if k["source"] == "prometheus"]
    ctx.counted_between = {k: tuple(v) for k, v in (old.get("counted_between") or {}).items()}
    ctx.counter_reads = {k: tuple(v) for k, v in (old.get("counter_reads_s") or {}).items()}
    ctx.conversations = old.get("conversations") or {}
    window = Window(m["window"]["start"], m["window"]["end"])
    with RequestTable.from_jsonl(session_dir / "requests.jsonl") as table:
        return write_artifacts(ctx, table, window, offline_kpis=prom)
