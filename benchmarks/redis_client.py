#!/usr/bin/env python3
"""How many operations/s the Redis load client drives per core of its own CPU, against a real
redis-server on loopback (Debian's; setup installs it), GET/SET 90/10 with 1 KiB values.

    python benchmarks/redis_client.py [--seconds 5] [--concurrency 1 8 32] [--pipeline 1 16]

The client's CPU is its process's user + system time (the kernel's share of its socket calls
included); its per-operation figure is what every record carries as client_cpu_s. Bounded in
time; traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLIENT = ROOT / "orchestrator" / "oncluster" / "redisload.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--pipeline", type=int, nargs="+", default=[1, 16])
    args = ap.parse_args()
    binary = shutil.which("redis-server")
    if not binary:
        sys.exit("redis-server not found: scripts/setup.sh installs it")
    port = free_port()
    with tempfile.TemporaryDirectory() as d:
        server = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                                   "no", "--dir", d], stdout=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            print(f"{'conns':>5} {'pipeline':>8} {'ops/s':>9} {'client CPU/op us':>17} {'ops/s per client core':>22} "
                  f"{'p50 ms':>7} {'p99 ms':>7}")
            for pipeline in args.pipeline:
                for c in args.concurrency:
                    out = Path(d) / f"ops-{c}-{pipeline}.jsonl"
                    before = resource.getrusage(resource.RUSAGE_CHILDREN)
                    t0 = time.perf_counter()
                    subprocess.run([sys.executable, str(CLIENT), "--address", f"127.0.0.1:{port}", "--concurrency",
                                    str(c), "--pipeline", str(pipeline), "--duration", str(args.seconds), "--keys",
                                    "10000", "--out", str(out)], check=True, cwd=d, capture_output=True)
                    wall = time.perf_counter() - t0
                    after = resource.getrusage(resource.RUSAGE_CHILDREN)
                    recs = [json.loads(line) for line in open(out)]
                    lat = sorted(r["latency_s"] for r in recs)
                    # the load's own window: its first start to its last completion (not the preload)
                    span = max(r["start"] + r["latency_s"] for r in recs) - min(r["start"] for r in recs)
                    cpu_op = sum(r["client_cpu_s"] for r in recs) / len(recs)
                    print(f"{c:>5} {pipeline:>8} {len(recs) / span:>9,.0f} {cpu_op * 1e6:>17.1f} {1 / cpu_op:>22,.0f} "
                          f"{lat[len(lat) // 2] * 1e3:>7.3f} {lat[int(len(lat) * 0.99)] * 1e3:>7.3f}", flush=True)
                    process_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
                    print(f"{'':>5} {'':>8} (whole process: {process_cpu:.2f} s CPU in {wall:.1f} s wall, preload and "
                          "start-up included)")
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
