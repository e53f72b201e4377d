#!/usr/bin/env python3
"""A benchmark with many client jobs on a bigger sandbox: 8 client jobs x concurrency 64 against
the stand-in (512 slots), the nodes they landed on, and the session's overhead.

    python main.py sandbox down && python main.py sandbox up --nodes 16
    python benchmarks/many_clients.py [--clients 8] [--concurrency 64] [--duration 20]

The session's overhead is its wall time less the load window (warm-up and measured load): deploy,
readiness, monitor, collection (every client's records in one compressed transfer) and cleanup.
Connections, remote commands and transfers come from the tool's own counters (ORCH_STATS=1).
Bounded in time; traffic stays inside the sandbox's namespaces.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from session_run import run_bench  # noqa: E402

SERVICE = """service:
  name: standin-wide
  description: STAND-IN with {slots} slots and no token delay (a load target, not a model)
  engine: standin
  files:
    standin_llm.py: package:oncluster/standin_llm.py
  command: python3 standin_llm.py --port {{{{ port }}}} --slots {slots} --tokens-per-second 2000 --ttft 0.005
  resources: {{nodes: 1, cpus_per_task: 1, mem: 512M, time: "00:30:00"}}
  ports: [auto]
  health: {{path: /health, timeout: 120}}
  metrics: {{path: /metrics}}
"""

BENCH = """benchmark:
  name: many-clients
  services:
    - recipe: {service}
  monitor: {{recipe: prometheus, scrape_interval: 2s}}
  clients:
    - kind: openai-completions
      target: standin-wide
      nodes: {clients}
      concurrency: {concurrency}
      duration: {duration}s
      warmup: {warmup}s
      payload: {{model: standin, prompt: "hello", stream: true, max_tokens: 16}}
      resources: {{mem: 256M}}
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=os.environ.get("ORCH_CONFIG", "/var/lib/orch-sandbox/config.yaml"))
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--warmup", type=float, default=2)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        service = Path(d) / "standin-wide.yaml"
        service.write_text(SERVICE.format(slots=a.clients * a.concurrency))
        recipe = Path(d) / "many-clients.yaml"
        recipe.write_text(BENCH.format(service=service, clients=a.clients, concurrency=a.concurrency,
                                       duration=a.duration, warmup=a.warmup))
        proc, wall = run_bench(recipe, Path(d) / "out", a.config)
        report = json.loads((Path(d) / "out" / "report.json").read_text())
        k = {x["kpi"]: x["value"] for x in report["kpis"]}
        nodes = {j["nodes"] for j in report["manifest"]["jobs"] if j["role"] == "client"}
        stats = re.search(r"orch-stats: (.*)", proc.stderr)
    print(f"{a.clients} client jobs x concurrency {a.concurrency} against the stand-in "
          f"({a.clients * a.concurrency} slots), {a.warmup:g}s warm-up + {a.duration:g}s load")
    print(f"client nodes: {len(nodes)} distinct ({', '.join(sorted(nodes))})")
    print(f"requests: {k['requests_total']:,.0f} measured, {k['requests_error']:,.0f} errors, "
          f"{k['throughput']:,.0f} requests/s; client CPU per request {k['client_overhead_cpu_per_request'] * 1e3:.2f} ms")
    print(f"session wall {wall:.1f} s; load window {a.warmup + a.duration:.1f} s; overhead {wall - a.warmup - a.duration:.1f} s")
    print(f"transport: {stats.group(1) if stats else '(no counters printed)'}")


if __name__ == "__main__":
    main()
