"""`dashboard`: a live page on 127.0.0.1 whose charts follow a session or a monitor.

The data comes as today's reports get it: PromQL range queries run by curl on the login node,
over the command's one SSH connection. No chart library: the charts are the report's own SVG
renderer (``charts.py``), drawn here and swapped into the page by a few lines of script
every scrape interval, so the page needs no network and ships nothing third-party. Queries are
cached for one interval, so several open tabs cost the cluster no more than one.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from orchestrator.errors import OrchestratorError
from orchestrator.engines import ENGINES
from orchestrator.charts import empty_chart, line_chart
from orchestrator.templating import render_html

R = "30s"  # rate window: a few scrapes of the usual 1-5 s interval


def _union(metrics) -> str:
    """A selector of every engine's metric of one meaning (engines name them differently)."""
    return "{__name__=~\"" + "|".join(sorted({m for m in metrics if m and "{" not in m})) + "\"}"


# chart title, unit, PromQL (by service_id)
CHARTS = [
    ("Throughput (load clients)", "requests/s",
     f"sum by (service_id) (rate(orch_client_requests_total{{outcome=\"ok\"}}[{R}]))"),
    ("Errors (load clients)", "requests/s",
     f"sum by (service_id) (rate(orch_client_requests_total{{outcome=\"error\"}}[{R}]))"),
    ("Latency p50 (load clients)", "s",
     f"histogram_quantile(0.5, sum by (le, service_id) (rate(orch_client_latency_seconds_bucket[{R}])))"),
    ("Latency p99 (load clients)", "s",
     f"histogram_quantile(0.99, sum by (le, service_id) (rate(orch_client_latency_seconds_bucket[{R}])))"),
    ("TTFT p99 (load clients)", "s",
     f"histogram_quantile(0.99, sum by (le, service_id) (rate(orch_client_ttft_seconds_bucket[{R}])))"),
    ("Requests running (engines)", "requests", "sum by (service_id) (" + _union(e.running for e in ENGINES.values()) + ")"),
    ("Requests waiting (engines)", "requests", "sum by (service_id) (" + _union(e.waiting for e in ENGINES.values()) + ")"),
    ("CPU utilisation", "%", f"100 * (1 - avg by (service_id) (rate(node_cpu_seconds_total{{mode=\"idle\"}}[{R}])))"),
    ("GPU utilisation", "%", "avg by (service_id) (DCGM_FI_DEV_GPU_UTIL)"),
    ("Memory used", "GiB", "sum by (service_id) (node_memory_MemTotal_bytes - node_memory_MemAvailable_bytes) / 2^30"),
]
PHASE = "sum(orch_client_in_flight)"


@dataclass
class Snapshot:
    charts: list[str] = field(default_factory=list)
    points: int = 0
    phase: str = "waiting for data"
    updated: float = 0.0
    error: str = ""


class Dashboard:
    """The charts of one monitor, refreshed at most once per ``interval`` whatever the viewers."""

    def __init__(self, monitors, monitor_id: str, title: str, interval: float = 5.0, window: float = 600.0):
        self.monitors, self.monitor_id, self.title = monitors, monitor_id, title
        self.interval, self.window = interval, window
        self.lock = threading.Lock()
        self.snapshot = Snapshot()

    def current(self) -> Snapshot:
        with self.lock:  # one query round at a time: viewers wait for it rather than multiply it
            if time.time() - self.snapshot.updated >= self.interval:
                self.snapshot = self._query()
            return self.snapshot

    def _query(self) -> Snapshot:
        end = time.time()
        start = end - self.window
        step = max(1.0, self.interval)
        try:
            results = self.monitors.query_range_many(self.monitor_id, [q for _, _, q in CHARTS] + [PHASE],
                                                     start, end, step)
        except OrchestratorError as exc:
            return Snapshot(charts=self.snapshot.charts, points=self.snapshot.points, phase=self.snapshot.phase,
                            updated=end, error=str(exc))
        charts, points = [], 0
        for (title, unit, _), res in zip(CHARTS, results):
            series = [(s.labels.get("service_id", "all"), [(t - start, v) for t, v in s.values if v == v])
                      for s in res.series]
            series = [(label, pts) for label, pts in series if pts]
            points += sum(len(p) for _, p in series)
            charts.append(line_chart(title, series, "seconds (last 10 minutes)", unit) if series
                          else empty_chart(title, "no series on the monitor yet"))
        phase_series = results[-1].series
        in_flight = phase_series[0].values[-1][1] if phase_series and phase_series[0].values else None
        phase = ("load running" if in_flight else "load clients idle") if in_flight is not None else "no load clients"
        return Snapshot(charts, points, phase, end)

    def page(self) -> str:
        return render_html("dashboard.html.j2", title=self.title, monitor_id=self.monitor_id,
                           interval_ms=int(self.interval * 1000))


def serve(dash: Dashboard, port: int = 0) -> ThreadingHTTPServer:
    """Start the page's server on 127.0.0.1 (never another interface) in a thread; returns it."""

    from orchestrator.localhttp import host_allowed

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if not host_allowed(self.headers.get("Host"), self.server.server_address[1]):
                self.send_error(403, "Host must be 127.0.0.1 or localhost (DNS rebinding)")
                return
            if self.path == "/":
                body, kind = dash.page().encode(), "text/html; charset=utf-8"
            elif self.path.startswith("/charts"):
                s = dash.current()
                body = json.dumps({"charts": s.charts, "points": s.points, "phase": s.phase, "error": s.error,
                                   "updated": time.strftime("%H:%M:%S", time.localtime(s.updated))}).encode()
                kind = "application/json"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv
