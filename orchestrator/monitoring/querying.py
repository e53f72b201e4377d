"""PromQL over a monitor, from the laptop: which monitor an ID names, and instant and range queries
(every chunk of every query in one remote command: curl on the login node, inside a probe of the
monitor), stitched, and written to JSON or CSV."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from orchestrator.cluster.remote import Marker
from orchestrator.cluster.slurm import TERMINAL_STATES
from orchestrator.config import Config
from orchestrator.errors import OrchestratorError
from orchestrator.fileio import atomic_open
from orchestrator.monitoring.promql import (
    QueryResult,
    checked_range,
    curl_query,
    curl_range,
    joined,
    parse_response,
    stitch,
)
from orchestrator.services.probe import SHORT_ID_RE
from orchestrator.services.servers import ServersModule
from orchestrator.state import StateStore


class MonitorQueries:
    def __init__(self, config: Config, servers: ServersModule, store: StateStore):
        self.config = config
        self.servers = servers
        self.store = store   # the monitors tracked here (monitors.json), read only

    def tracked(self, ident: str) -> str | None:
        """The monitor tracked here that ``ident`` names (its ID, its 8 hex alone, or its SLURM job ID),
        from local state alone; None when it names none."""
        ident = ident.strip()
        monitors = self.store.load()
        if ident in monitors:
            return ident
        found = [m for m, rec in monitors.items()
                 if (SHORT_ID_RE.match(ident) and m.endswith("_" + ident)) or rec.get("job_id") == ident]
        return found[0] if len(found) == 1 else None

    def _live(self, monitors: dict) -> list[str]:
        """Those of ``monitors`` not stopped: neither by stop_monitor nor as a plain service
        (servers.stop_service, scancel seen by --status), whose state lands in the service's record
        (services.json read once for all of them)."""
        services = self.servers.registry.records()
        return [mid for mid, rec in monitors.items() if not rec.get("stopped_at")
                and (mid not in services or services[mid].state not in TERMINAL_STATES)]

    def monitor_for(self, ident: str) -> str:
        """A monitor ID, or the live monitor that scrapes the service ``ident``."""
        mid = self.tracked(ident)
        if mid is not None:
            return mid
        monitors = self.store.load()
        if SHORT_ID_RE.match(ident):   # a service's 8 hex alone
            ident = next((t["service_id"] for rec in monitors.values() for t in rec["targets"]
                          if (t.get("service_id") or "").endswith("_" + ident)), ident)
        live = set(self._live(monitors))
        for mid, rec in sorted(monitors.items(), key=lambda kv: kv[1].get("submitted_at", ""), reverse=True):
            if mid not in live:
                continue
            if any(ident in (t.get("service_id"), t.get("labels", {}).get("slurm_job_id")) for t in rec["targets"]):
                return mid
        return ident  # maybe a monitor started elsewhere: the probe finds it from squeue

    def live_monitors(self) -> list[str]:
        """Monitors tracked here and not stopped (local state; no remote command)."""
        return self._live(self.store.load())

    def _run_queries(self, monitor_id: str, curls: list[str], timeout: float = 90) -> list[str]:
        mark = Marker()
        p = self.servers.probe(self.monitor_for(monitor_id), then=joined(curls, mark), mark=mark, timeout=timeout)
        if p.then_output is None:
            state = p.job.state if p.job else "UNKNOWN"
            raise OrchestratorError(f"monitor {p.service_id} is {state}: it has no endpoint to query")
        if len(p.responses) != len(curls):
            raise OrchestratorError(f"monitor {p.service_id}: {len(p.responses)} of {len(curls)} answers came back")
        return p.responses

    def query_many(self, monitor_id: str, queries: list[str], at: float | None = None) -> list[QueryResult]:
        answers = self._run_queries(monitor_id, [curl_query(q, at) for q in queries])
        return [parse_response(a, q) for a, q in zip(answers, queries)]

    def query_many_at(self, monitor_id: str, queries: list[tuple[str, float | None]]) -> list[QueryResult]:
        """Instant queries, each at its own time, in one remote command."""
        answers = self._run_queries(monitor_id, [curl_query(q, at) for q, at in queries])
        return [parse_response(a, q) for a, (q, _) in zip(answers, queries)]

    def query_at_and_range(self, monitor_id: str, instant: list[tuple[str, float | None]], ranges: list[str],
                           start: float, end: float, step: float | str = 15
                           ) -> tuple[list[QueryResult], list[QueryResult]]:
        """``query_many_at(instant)`` and ``query_range_many(ranges, ...)`` in ONE remote command (a
        report's KPIs and its time series)."""
        chunks, step_s = checked_range(start, end, step, self.config.limits.range_points)
        curls = [curl_query(q, at) for q, at in instant] + [curl_range(q, s, e, step_s) for q in ranges for s, e in chunks]
        answers = self._run_queries(monitor_id, curls, timeout=60 + 10 * len(curls))
        first = [parse_response(a, q) for a, (q, _) in zip(answers, instant)]
        rest = answers[len(instant):]
        return first, [stitch([parse_response(a, q) for a in rest[i * len(chunks):(i + 1) * len(chunks)]])
                       for i, q in enumerate(ranges)]

    def query_metrics(self, monitor_id: str, promql: str, at: float | None = None) -> QueryResult:
        return self.query_many(monitor_id, [promql], at)[0]

    def query_range(self, monitor_id: str, promql: str, start: float, end: float,
                    step: float | str = 15) -> QueryResult:
        """A range query of any length: split at 11,000 points, one remote command, stitched."""
        return self.query_range_many(monitor_id, [promql], start, end, step)[0]

    def query_range_many(self, monitor_id: str, queries: list[str], start: float, end: float,
                         step: float | str = 15) -> list[QueryResult]:
        """Several range queries over one window; every chunk of every query in one remote command."""
        return self.query_at_and_range(monitor_id, [], queries, start, end, step)[1]

    def collect(self, monitor_id: str, queries: list[str], start: float, end: float,
                step: float | str, path: str | Path, fmt: str | None = None) -> Path:
        """Range queries over a window to a JSON (Prometheus' own shape per query) or CSV file."""
        path = Path(path)
        fmt = fmt or ("csv" if path.suffix == ".csv" else "json")
        results = self.query_range_many(monitor_id, queries, start, end, step)
        with atomic_open(path, "w", newline="") as f:
            if fmt == "json":
                json.dump({"monitor": monitor_id, "start": start, "end": end, "step": checked_range(
                           start, end, step, self.config.limits.range_points)[1],
                           "results": [r.to_dict() for r in results]}, f, indent=1)
            else:
                w = csv.writer(f)
                w.writerow(["query", "labels", "timestamp", "value"])
                for r in results:
                    for s in r.series:
                        lab = json.dumps(s.labels, sort_keys=True)
                        w.writerows([r.query, lab, f"{t:.3f}", "" if math.isnan(v) else repr(v)] for t, v in s.values)
        return path
