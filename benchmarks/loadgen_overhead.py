#!/usr/bin/env python3
"""How much load one load client can generate, and its own CPU per request, on loopback:
the stand-in server with many slots and no token delay, the client in closed loop for a few seconds.

    python benchmarks/loadgen_overhead.py [--seconds 5] [--concurrency 1 8 32]

Bounded in time; traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator.oncluster.standin_llm import Engine, make_handler  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    args = ap.parse_args()
    engine = Engine(slots=256, tokens_per_second=1e6, ttft=0.0, prefill_per_token=0.0, max_queue=1024, model="standin")
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(engine))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    print(f"{'concurrency':>11} {'streamed req/s':>14} {'p50 ms':>8} {'client CPU/req ms (mean':>24} {'p99)':>6}")
    for c in args.concurrency:
        with tempfile.TemporaryDirectory() as d:
            subprocess.run([sys.executable, str(ROOT / "orchestrator" / "oncluster" / "loadgen.py"), "--url", url,
                            "--concurrency", str(c), "--duration", str(args.seconds), "--max-seconds",
                            str(args.seconds + 30), "--payload", json.dumps({"max_tokens": 8, "stream": True}), "--out",
                            str(Path(d) / "r.jsonl")], cwd=d, check=True, capture_output=True, timeout=args.seconds + 60)
            recs = [json.loads(l) for l in (Path(d) / "r.jsonl").read_text().splitlines()]
        ok = [r for r in recs if r["ok"]]
        span = max(r["start"] + r["latency_s"] for r in recs) - min(r["start"] for r in recs)
        cpu = sorted(r["client_cpu_s"] for r in recs)
        print(f"{c:>11} {len(ok) / span:>14.0f} {statistics.median(r['latency_s'] for r in ok) * 1000:>8.2f} "
              f"{statistics.mean(cpu) * 1000:>24.3f} {cpu[int(0.99 * (len(cpu) - 1))] * 1000:>6.3f}")
    server.shutdown()
    print("(server and client share this machine's cores: the rates are a floor for the client alone)")


if __name__ == "__main__":
    main()
