#!/usr/bin/env python3
"""How much load one load client can generate, and its own CPU per streamed request, on loopback:
the stand-in server with many slots and no token delay (and llama.cpp's server with the sandbox's
test model, where it is built), the client in closed loop for a few seconds at each concurrency.

    python benchmarks/loadgen_overhead.py [--seconds 5] [--concurrency 1 8 64] [--tokens 32]

Each row also prints the floor: the CPU a bare socket spends reading the same streamed answer (one
recv per arriving chunk, no parsing), so what the client adds above the kernel's cost is visible.
Bounded in time; traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator.oncluster.standin_llm import Engine, make_handler  # noqa: E402

LLAMA_MODEL = Path(os.environ.get("ORCH_LLAMA_CACHE", "/var/cache/orch-llama")) / "test-model.gguf"


def bare_floor(port: int, path: str, body: dict, n: int = 200) -> float:
    """CPU ms per request of a bare socket reading the whole streamed answer (the kernel's share). A
    server that closes after each answer (llama.cpp's) gets a new connection before the clock starts,
    as the client does."""
    data = json.dumps(body).encode()
    req = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(data)}\r\n\r\n").encode() + data
    conn: list[socket.socket | None] = [None]
    fresh = [False]   # the server closes after each answer: a new connection before each clock

    def one() -> float | None:
        """CPU of one answer read whole, or None when a kept-alive connection turned out closed."""
        if conn[0] is None or fresh[0]:
            if conn[0] is not None:
                conn[0].close()
            conn[0] = socket.create_connection(("127.0.0.1", port))
        s = conn[0]
        c0 = time.thread_time()
        try:
            s.sendall(req)
            seen = s.recv(65536)
        except (BrokenPipeError, ConnectionResetError):
            seen = b""
        if not seen:   # no answer at all: the server had closed this connection (no request measured)
            s.close()
            conn[0], fresh[0] = None, True
            return None
        while not (seen.endswith(b"\r\n0\r\n\r\n") and seen.find(b"\r\n\r\n") < len(seen) - 7):
            chunk = s.recv(65536)   # the body's last chunk: after the headers, a zero size and an empty line
            if not chunk:
                s.close()
                conn[0] = None
                break
            seen += chunk
        return time.thread_time() - c0

    for _ in range(10):
        one()
    spent = [x for x in (one() for _ in range(n)) if x is not None]
    if conn[0] is not None:
        conn[0].close()
    return sum(spent) / len(spent) * 1000


def start_llama(port: int) -> subprocess.Popen | None:
    exe = shutil.which("llama-server")
    if not exe or not LLAMA_MODEL.exists():
        return None
    proc = subprocess.Popen([exe, "-m", str(LLAMA_MODEL), "--host", "127.0.0.1", "--port", str(port), "-np", "64",
                             "-c", "16384", "--threads", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    return None


def measure(name: str, url: str, port: int, kind: str, path: str, payload: dict, args) -> None:
    floor = bare_floor(port, path, {**payload, "prompt": "hi", "messages": [{"role": "user", "content": "hi"}]})
    for c in args.concurrency:
        with tempfile.TemporaryDirectory() as d:
            subprocess.run([sys.executable, str(ROOT / "orchestrator" / "oncluster" / "loadgen.py"), "--url", url,
                            "--kind", kind, "--concurrency", str(c), "--duration", str(args.seconds), "--max-seconds",
                            str(args.seconds + 30), "--payload", json.dumps(payload), "--out",
                            str(Path(d) / "r.jsonl")], cwd=d, check=True, capture_output=True, timeout=args.seconds + 60)
            recs = [json.loads(line) for line in (Path(d) / "r.jsonl").read_text().splitlines()]
        ok = [r for r in recs if r["ok"]]
        span = max(r["start"] + r["latency_s"] for r in recs) - min(r["start"] for r in recs)
        cpu = sorted(r["client_cpu_s"] for r in recs)
        tokens = statistics.mean(r["tokens_out"] or 0 for r in ok) if ok else 0
        print(f"{name:>9} {c:>11} {len(ok) / span:>10.0f} {tokens:>7.1f} {statistics.median(r['latency_s'] for r in ok) * 1000:>8.2f} "
              f"{statistics.mean(cpu) * 1000:>12.3f} {cpu[int(0.99 * (len(cpu) - 1))] * 1000:>8.3f} {floor:>10.3f} "
              f"{statistics.mean(cpu) * 1000 - floor:>12.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    ap.add_argument("--tokens", type=int, default=32, help="tokens (chunks) per streamed answer")
    args = ap.parse_args()
    payload = {"max_tokens": args.tokens, "stream": True, "ignore_eos": True}
    print(f"{'server':>9} {'concurrency':>11} {'req/s':>10} {'tokens':>7} {'p50 ms':>8} {'CPU/req ms':>12} "
          f"{'p99 ms':>8} {'floor ms':>10} {'client ms':>12}")
    engine = Engine(slots=256, tokens_per_second=1e6, ttft=0.0, prefill_per_token=0.0, max_queue=1024, model="standin")
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(engine))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    measure("stand-in", f"http://127.0.0.1:{port}", port, "openai-completions", "/v1/completions", payload, args)
    server.shutdown()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        lport = s.getsockname()[1]
    llama = start_llama(lport)
    if llama is None:
        print("llama.cpp: not measured (no llama-server or test model here: scripts/build-llama-server.sh builds them)")
    else:
        try:
            measure("llama.cpp", f"http://127.0.0.1:{lport}", lport, "openai-chat", "/v1/chat/completions",
                    {**payload, "model": "test-model"}, args)
        finally:
            llama.terminate()
            llama.wait(timeout=30)
    print("(CPU/req: the client's own thread CPU per request, as the report's client_overhead_cpu_per_request; "
          "floor: a bare socket reading the same answer, no parsing; client: CPU/req less the floor, what the "
          "client's own code adds above the kernel's cost; server and client share this machine's cores)")


if __name__ == "__main__":
    main()
