"""What every load client job does around its load, shipped beside it to the job dir.

Standard library only (the cluster's python3). A client job serves its live
counters on /metrics, waits for the session's go file, runs the warm-up then
the measured load, writes progress.json every second and done.json at the end
(begin, warm-up end, end, counts), and keeps /metrics up a little longer so
the monitor scrapes the final counts. SIGTERM (scancel) stops the load and
keeps what was recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def write_json(path: str, doc: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f)
    os.replace(tmp, path)


def add_job_arguments(ap: argparse.ArgumentParser) -> None:
    """The options every client job takes (the session passes them all alike)."""
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--rate", type=float, default=None, help="operations/s (open loop); omit for closed loop")
    ap.add_argument("--duration", type=float, default=None, help="seconds of measured load after the warm-up")
    ap.add_argument("--requests", type=int, default=None, help="stop after this many operations (warm-up included)")
    ap.add_argument("--warmup", type=float, default=0.0)
    ap.add_argument("--out", default="requests.jsonl")
    ap.add_argument("--metrics-port", type=int, default=0)
    ap.add_argument("--go-file", default=None, help="wait until this file exists")
    ap.add_argument("--go-timeout", type=float, default=900)
    ap.add_argument("--max-seconds", type=float, default=3600, help="hard cap on the whole run")
    ap.add_argument("--linger", type=float, default=0, help="keep /metrics up this long after the load")
    ap.add_argument("--client-id", default=os.environ.get("ORCH_SERVICE_ID", "client"))


def parse_job_arguments(ap: argparse.ArgumentParser, argv=None, bounded: bool = True):
    """The client's own options plus every job option; a load must be bounded by time or count."""
    add_job_arguments(ap)
    args = ap.parse_args(argv)
    if bounded and not args.duration and not args.requests:
        ap.error("one of --duration or --requests is required")
    return args


def target_secret() -> str:
    """The loaded service's secret: its job dir's ``secret`` (a sibling of this job's, the same user's),
    named by ORCH_TARGET_SECRET_FILE; "" when the target is open. Read from the file, so it is never in
    this process's argv."""
    path = os.environ.get("ORCH_TARGET_SECRET_FILE")
    if not path or os.environ.get("ORCH_TARGET_AUTH", "none") == "none":
        return ""
    with open(path) as f:
        return f.read().strip()


_HEADERS: list[dict] = []


def auth_headers() -> dict[str, str]:
    """HTTP headers that show the target's secret (``auth: bearer``), read once."""
    if not _HEADERS:
        secret = target_secret() if os.environ.get("ORCH_TARGET_AUTH") == "bearer" else ""
        _HEADERS.append({"Authorization": f"Bearer {secret}"} if secret else {})
    return _HEADERS[0]


LAT_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 2.5, 10]


class Histogram:
    """A Prometheus histogram: each bucket counts the values at or under its bound."""

    def __init__(self, bounds: list[float]):
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.sum += value
        self.count += 1
        for i, b in enumerate(self.bounds):
            if value <= b:
                self.counts[i] += 1

    def upper_bound(self, q: float) -> float | None:
        """The smallest bound holding the q-quantile (None when empty or above every bound)."""
        return next((b for b, c in zip(self.bounds, self.counts) if c >= q * self.count), None) if self.count else None

    def lines(self, name: str) -> list[str]:
        return ([f"# TYPE {name} histogram"]
                + [f'{name}_bucket{{le="{b}"}} {c}' for b, c in zip(self.bounds, self.counts)]
                + [f'{name}_bucket{{le="+Inf"}} {self.count}', f"{name}_sum {self.sum}", f"{name}_count {self.count}"])


class OpStats:
    """Live counters of a data-service client, per operation (served on /metrics)."""

    def __init__(self, ops: tuple[str, ...]):
        self.lock = threading.Lock()
        self.ok = {op: 0 for op in ops}
        self.errors = {op: 0 for op in ops}
        self.in_flight = 0
        self.bytes = 0
        self.cpu = 0.0
        self.latency = Histogram(LAT_BUCKETS)

    def add(self, op: str, ok: bool, latency: float, nbytes: int = 0, cpu: float = 0.0) -> None:
        """One operation (the caller holds ``lock``)."""
        (self.ok if ok else self.errors)[op] += 1
        self.bytes += nbytes
        self.cpu += cpu
        self.latency.observe(latency)

    def counts(self) -> dict:
        with self.lock:
            return {"ok": sum(self.ok.values()), "errors": sum(self.errors.values()), "in_flight": self.in_flight}

    def metrics(self) -> str:
        with self.lock:
            n = sum(self.ok.values()) + sum(self.errors.values())
            out = ["# TYPE orch_client_requests_total counter",
                   f'orch_client_requests_total{{outcome="ok"}} {sum(self.ok.values())}',
                   f'orch_client_requests_total{{outcome="error"}} {sum(self.errors.values())}',
                   "# TYPE orch_client_operations_total counter"]
            out += [f'orch_client_operations_total{{op="{op}",outcome="ok"}} {v}' for op, v in self.ok.items()]
            out += [f'orch_client_operations_total{{op="{op}",outcome="error"}} {v}' for op, v in self.errors.items()]
            out += ["# TYPE orch_client_bytes_total counter", f"orch_client_bytes_total {self.bytes}",
                    "# TYPE orch_client_in_flight gauge", f"orch_client_in_flight {self.in_flight}",
                    "# TYPE orch_client_overhead_seconds counter",
                    f"orch_client_overhead_seconds_sum {self.cpu}", f"orch_client_overhead_seconds_count {n}"]
            out += self.latency.lines("orch_client_latency_seconds")
        return "\n".join(out) + "\n"


def serve_metrics(port: int, render: Callable[[], str]) -> None:
    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            body = render().encode() if self.path.startswith("/metrics") else b"ok\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def refuse(self):   # its counters are read, never written
            self.send_error(405)

        do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = refuse

        def log_message(self, *a):
            pass
    ThreadingHTTPServer.request_queue_size = 128  # scrapes and probes, never a flood: above the default 5
    srv = ThreadingHTTPServer(("0.0.0.0", port), H)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()


def _cpu_seconds() -> float:
    """CPU time of this process and of the children it waited for (a wrapped tool)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class Job:
    """One client job's life: go, warm-up and load, progress, done."""

    def __init__(self, args) -> None:
        self.args = args
        self.stop = threading.Event()
        self.running = False
        signal.signal(signal.SIGTERM, lambda *a: self.stop.set())  # scancel: stop, keep what was recorded

    def wait_for_go(self) -> None:
        if not self.args.go_file:
            return
        waited = time.time()
        while not os.path.exists(self.args.go_file):
            if self.stop.wait(0.05) or time.time() - waited > self.args.go_timeout:
                print("no go signal; exiting", file=sys.stderr)
                sys.exit(2)

    def run(self, load: Callable[[float, float, float], None], counts: Callable[[], dict], banner: str,
            extra: Callable[[], dict] | None = None) -> None:
        """``load(begin, end, warmup_until)`` runs the load; ``counts()`` gives ok, errors, in_flight;
        ``extra()``, more for done.json (what the client learned from the service after the load)."""
        a = self.args
        self.wait_for_go()
        begin = time.time()
        warmup_until = begin + a.warmup
        end = min(begin + a.max_seconds, begin + a.warmup + a.duration if a.duration else float("inf"))
        self.running = True
        print(f"{banner}, warm-up {a.warmup}s", flush=True)

        def progress():
            while self.running:
                write_json("progress.json", {**counts(), "t": time.time(), "begin": begin,
                                             "warmup_until": warmup_until, "end": end})
                self.stop.wait(1.0)
        threading.Thread(target=progress, daemon=True).start()
        cpu0 = _cpu_seconds()
        load(begin, end, warmup_until)
        finished = time.time()
        cpu = _cpu_seconds() - cpu0
        self.running = False
        c = counts()
        write_json("done.json", {"begin": begin, "warmup_until": warmup_until, "end": finished, "ok": c["ok"],
                                 "errors": c["errors"], "interrupted": self.stop.is_set(),
                                 # the whole job's CPU during the load, a wrapped tool's included: its cost
                                 "cpu_s": round(cpu, 3), **(extra() if extra else {})})
        print(f"done: {c['ok']} ok, {c['errors']} errors in {finished - begin:.1f}s", flush=True)
        if a.linger and not self.stop.is_set():
            self.stop.wait(a.linger)
