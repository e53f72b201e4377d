#!/usr/bin/env python3
"""Benchmark load client, run as a SLURM job next to the service.

Standard library only (the cluster's python3, nothing installed). Waits for
its go file, runs the warm-up then the measured load (closed loop with
`--concurrency` workers, or open loop at `--rate` requests/s with at most
`--concurrency` in flight), and records every request as one JSON line:
start, latency_s, ttft_s, itl_s, status, ok, tokens_out, error, warmup,
client_cpu_s (this client's own CPU time for the request: its overhead).
Live counters and latency histograms are served on /metrics.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LAT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.ok = 0
        self.errors = 0
        self.in_flight = 0
        self.tokens_out = 0
        self.cpu_sum = 0.0
        self.lat = [0] * len(LAT_BUCKETS)
        self.lat_sum = 0.0
        self.ttft = [0] * len(LAT_BUCKETS)
        self.ttft_sum = 0.0
        self.ttft_count = 0
        self.phase = "waiting"

    def record(self, rec: dict) -> None:
        with self.lock:
            if rec["ok"]:
                self.ok += 1
            else:
                self.errors += 1
            self.tokens_out += rec["tokens_out"] or 0
            self.cpu_sum += rec["client_cpu_s"]
            self.lat_sum += rec["latency_s"]
            for i, b in enumerate(LAT_BUCKETS):
                if rec["latency_s"] <= b:
                    self.lat[i] += 1
            if rec["ttft_s"] is not None:
                self.ttft_count += 1
                self.ttft_sum += rec["ttft_s"]
                for i, b in enumerate(LAT_BUCKETS):
                    if rec["ttft_s"] <= b:
                        self.ttft[i] += 1

    def metrics(self) -> str:
        with self.lock:
            n = self.ok + self.errors
            out = ["# TYPE orch_client_requests_total counter",
                   f'orch_client_requests_total{{outcome="ok"}} {self.ok}',
                   f'orch_client_requests_total{{outcome="error"}} {self.errors}',
                   "# TYPE orch_client_in_flight gauge", f"orch_client_in_flight {self.in_flight}",
                   "# TYPE orch_client_tokens_out_total counter", f"orch_client_tokens_out_total {self.tokens_out}",
                   "# TYPE orch_client_overhead_seconds counter",
                   f"orch_client_overhead_seconds_sum {self.cpu_sum}", f"orch_client_overhead_seconds_count {n}",
                   "# TYPE orch_client_latency_seconds histogram"]
            out += [f'orch_client_latency_seconds_bucket{{le="{b}"}} {c}' for b, c in zip(LAT_BUCKETS, self.lat)]
            out += [f'orch_client_latency_seconds_bucket{{le="+Inf"}} {n}',
                    f"orch_client_latency_seconds_sum {self.lat_sum}", f"orch_client_latency_seconds_count {n}",
                    "# TYPE orch_client_ttft_seconds histogram"]
            out += [f'orch_client_ttft_seconds_bucket{{le="{b}"}} {c}' for b, c in zip(LAT_BUCKETS, self.ttft)]
            out += [f'orch_client_ttft_seconds_bucket{{le="+Inf"}} {self.ttft_count}',
                    f"orch_client_ttft_seconds_sum {self.ttft_sum}", f"orch_client_ttft_seconds_count {self.ttft_count}"]
        return "\n".join(out) + "\n"


def build_request(kind: str, payload: dict) -> tuple[str, str, dict | None, bool]:
    """(method, path, body, streaming) for one request of this kind."""
    p = dict(payload)
    stream = bool(p.get("stream", True))
    model = p.get("model", "standin")
    max_tokens = p.get("max_tokens", 16)
    prompt = p.get("prompt", "Hello")
    if kind == "openai-completions":
        body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "stream": stream}
        if stream:
            body["stream_options"] = {"include_usage": True}
        return "POST", "/v1/completions", body, stream
    if kind == "openai-chat":
        body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
                "stream": stream}
        if stream:
            body["stream_options"] = {"include_usage": True}
        return "POST", "/v1/chat/completions", body, stream
    if kind == "ollama-generate":
        return "POST", "/api/generate", {"model": model, "prompt": prompt, "stream": stream,
                                         "options": {"num_predict": max_tokens}}, stream
    if kind == "http":
        return p.get("method", "GET"), p.get("path", "/"), p.get("body"), False
    raise SystemExit(f"unknown client kind {kind!r}")


def _tokens_in_line(kind: str, line: bytes) -> tuple[int, int | None]:
    """(content pieces in this streamed line, usage-reported total or None)."""
    line = line.strip()
    if not line:
        return 0, None
    if kind == "ollama-generate":
        doc = json.loads(line)
        if doc.get("done"):
            return 0, doc.get("eval_count")
        return (1 if doc.get("response") else 0), None
    if not line.startswith(b"data:"):
        return 0, None
    data = line[5:].strip()
    if data == b"[DONE]":
        return 0, None
    doc = json.loads(data)
    usage = doc.get("usage")
    pieces = 0
    for ch in doc.get("choices") or []:
        if ch.get("text") or (ch.get("delta") or {}).get("content"):
            pieces += 1
    return pieces, (usage or {}).get("completion_tokens")


def one_request(conn_box: list, url: urllib.parse.SplitResult, kind: str, payload: dict, timeout: float) -> dict:
    method, path, body, stream = build_request(kind, payload)
    cpu0 = time.thread_time()
    start = time.time()
    t0 = time.perf_counter()
    ttft = None
    pieces = 0
    usage_tokens = None
    status = 0
    error = None
    try:
        if conn_box[0] is None:
            conn_box[0] = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=timeout)
        conn = conn_box[0]
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
        resp = conn.getresponse()
        status = resp.status
        if stream and status == 200:
            while True:
                line = resp.readline()
                if not line:
                    break
                n, usage = _tokens_in_line(kind, line)
                if n and ttft is None:
                    ttft = time.perf_counter() - t0
                pieces += n
                usage_tokens = usage if usage is not None else usage_tokens
        else:
            raw = resp.read()
            if status == 200 and kind != "http":
                doc = json.loads(raw)
                usage_tokens = (doc.get("usage") or {}).get("completion_tokens") or doc.get("eval_count")
            elif status != 200:
                error = f"HTTP {status}: {raw[:200].decode(errors='replace')}"
    except Exception as exc:  # a failed request is data, not a crash
        error = f"{type(exc).__name__}: {exc}"
        if conn_box[0] is not None:
            conn_box[0].close()
        conn_box[0] = None
    latency = time.perf_counter() - t0
    tokens = usage_tokens if usage_tokens is not None else (pieces or None)
    itl = (latency - ttft) / (tokens - 1) if ttft is not None and tokens and tokens > 1 else None
    ok = error is None and 200 <= status < 300
    if not ok and error is None:
        error = f"HTTP {status}"
    return {"start": round(start, 6), "latency_s": round(latency, 6), "ttft_s": None if ttft is None else round(ttft, 6),
            "itl_s": None if itl is None else round(itl, 6), "status": status, "ok": ok, "tokens_out": tokens,
            "error": error, "client_cpu_s": round(time.thread_time() - cpu0, 6)}


class Run:
    def __init__(self, args, stats: Stats):
        self.args = args
        self.stats = stats
        self.url = urllib.parse.urlsplit(args.url)
        self.payload = json.loads(args.payload)
        self.out = open(args.out, "a", buffering=1)
        self.out_lock = threading.Lock()
        self.stop = threading.Event()
        self.sent = 0
        self.sent_lock = threading.Lock()

    def take_ticket(self) -> bool:
        with self.sent_lock:
            if self.args.requests and self.sent >= self.args.requests:
                return False
            self.sent += 1
            return True

    def execute(self, conn_box: list, warmup_until: float, scheduled: float | None = None) -> None:
        with self.stats.lock:
            self.stats.in_flight += 1
        rec = one_request(conn_box, self.url, self.args.kind, self.payload, self.args.request_timeout)
        with self.stats.lock:
            self.stats.in_flight -= 1
        rec["warmup"] = rec["start"] < warmup_until
        rec["client"] = self.args.client_id
        if scheduled is not None:
            rec["scheduled"] = round(scheduled, 6)
        self.stats.record(rec)
        with self.out_lock:
            self.out.write(json.dumps(rec) + "\n")

    def closed_loop(self, end: float, warmup_until: float) -> None:
        def worker():
            box = [None]
            while not self.stop.is_set() and time.time() < end and self.take_ticket():
                self.execute(box, warmup_until)
        threads = [threading.Thread(target=worker, daemon=True) for _ in range(self.args.concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def open_loop(self, begin: float, end: float, warmup_until: float) -> None:
        slots = threading.Semaphore(self.args.concurrency)
        boxes = [[None] for _ in range(self.args.concurrency)]
        free = list(range(self.args.concurrency))
        free_lock = threading.Lock()
        threads = []

        def fire(scheduled):
            with free_lock:
                i = free.pop()
            try:
                self.execute(boxes[i], warmup_until, scheduled)
            finally:
                with free_lock:
                    free.append(i)
                slots.release()

        i = 0
        while not self.stop.is_set():
            scheduled = begin + i / self.args.rate
            if scheduled >= end or not self.take_ticket():
                break
            delay = scheduled - time.time()
            if delay > 0:
                self.stop.wait(delay)
            slots.acquire()  # at most `concurrency` in flight: beyond it the client queues (recorded via `scheduled`)
            t = threading.Thread(target=fire, args=(scheduled,), daemon=True)
            t.start()
            threads.append(t)
            i += 1
        for t in threads:
            t.join()


def write_json(path: str, doc: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f)
    os.replace(tmp, path)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True, help="base URL of the service, e.g. http://n1:8000")
    ap.add_argument("--kind", default="openai-completions",
                    choices=["openai-completions", "openai-chat", "ollama-generate", "http"])
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--rate", type=float, default=None, help="requests/s (open loop); omit for closed loop")
    ap.add_argument("--duration", type=float, default=None, help="seconds of measured load after the warm-up")
    ap.add_argument("--requests", type=int, default=None, help="stop after this many requests (warm-up included)")
    ap.add_argument("--warmup", type=float, default=0.0)
    ap.add_argument("--payload", default="{}")
    ap.add_argument("--payload-file", default=None, help="read the payload JSON from this file")
    ap.add_argument("--out", default="requests.jsonl")
    ap.add_argument("--metrics-port", type=int, default=0)
    ap.add_argument("--go-file", default=None, help="wait until this file exists (holds the start time)")
    ap.add_argument("--go-timeout", type=float, default=900)
    ap.add_argument("--max-seconds", type=float, default=3600, help="hard cap on the whole run")
    ap.add_argument("--request-timeout", type=float, default=120)
    ap.add_argument("--linger", type=float, default=0, help="keep /metrics up this long after the load")
    ap.add_argument("--client-id", default=os.environ.get("ORCH_SERVICE_ID", "client"))
    args = ap.parse_args(argv)
    if not args.duration and not args.requests:
        ap.error("one of --duration or --requests is required")
    if args.payload_file:
        with open(args.payload_file) as f:
            args.payload = f.read()
    stats = Stats()
    if args.metrics_port:
        # (a tiny handler of its own: this file is shipped to the cluster alone, it imports nothing of ours)
        class H(BaseHTTPRequestHandler):
            def do_GET(self):
                body = stats.metrics().encode() if self.path.startswith("/metrics") else b"ok\n"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass
        srv = ThreadingHTTPServer(("0.0.0.0", args.metrics_port), H)
        srv.daemon_threads = True
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    run = Run(args, stats)
    signal.signal(signal.SIGTERM, lambda *a: run.stop.set())  # scancel: stop, keep what was recorded
    if args.go_file:
        waited = time.time()
        while not os.path.exists(args.go_file):
            if run.stop.wait(0.05) or time.time() - waited > args.go_timeout:
                print("no go signal; exiting", file=sys.stderr)
                sys.exit(2)
    begin = time.time()
    warmup_until = begin + args.warmup
    end = min(begin + args.max_seconds, begin + args.warmup + args.duration if args.duration else float("inf"))
    stats.phase = "running"
    print(f"load: {args.kind} -> {args.url}, concurrency {args.concurrency}, "
          f"{'rate %g/s' % args.rate if args.rate else 'closed loop'}, warm-up {args.warmup}s", flush=True)

    def progress():
        while stats.phase == "running":
            with stats.lock:
                doc = {"ok": stats.ok, "errors": stats.errors, "in_flight": stats.in_flight, "t": time.time(),
                       "begin": begin, "warmup_until": warmup_until, "end": end}
            write_json("progress.json", doc)
            run.stop.wait(1.0)
    threading.Thread(target=progress, daemon=True).start()
    if args.rate:
        run.open_loop(begin, end, warmup_until)
    else:
        run.closed_loop(end, warmup_until)
    finished = time.time()
    stats.phase = "done"
    run.out.close()
    write_json("done.json", {"begin": begin, "warmup_until": warmup_until, "end": finished, "ok": stats.ok,
                             "errors": stats.errors, "interrupted": run.stop.is_set()})
    print(f"done: {stats.ok} ok, {stats.errors} errors in {finished - begin:.1f}s", flush=True)
    if args.linger and not run.stop.is_set():
        run.stop.wait(args.linger)


if __name__ == "__main__":
    main()
