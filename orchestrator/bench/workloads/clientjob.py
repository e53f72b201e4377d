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


def serve_metrics(port: int, render: Callable[[], str]) -> None:
    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            body = render().encode() if self.path.startswith("/metrics") else b"ok\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass
    ThreadingHTTPServer.request_queue_size = 128  # scrapes and probes, never a flood: above the default 5
    srv = ThreadingHTTPServer(("0.0.0.0", port), H)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()


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
        load(begin, end, warmup_until)
        finished = time.time()
        self.running = False
        c = counts()
        write_json("done.json", {"begin": begin, "warmup_until": warmup_until, "end": finished, "ok": c["ok"],
                                 "errors": c["errors"], "interrupted": self.stop.is_set(), **(extra() if extra else {})})
        print(f"done: {c['ok']} ok, {c['errors']} errors in {finished - begin:.1f}s", flush=True)
        if a.linger and not self.stop.is_set():
            self.stop.wait(a.linger)
