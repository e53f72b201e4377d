#!/usr/bin/env python3
"""What a sweep adds per point beyond its load window, on the sandbox: an 8-point concurrency sweep
of the stand-in (the service and the monitor deployed once, reused by every point).

    python benchmarks/sweep_overhead.py [--points 8] [--duration 3] [--warmup 1]

Per point: the time from the point's start line to the next point's (or the end), less its warm-up
and load; read from the session's own timestamped progress lines. Bounded in time.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from session_run import run_bench  # noqa: E402

BENCH = """benchmark:
  name: sweep-overhead
  services:
    - recipe: standin-llm
  monitor: {{recipe: prometheus, scrape_interval: 1s}}
  clients:
    - kind: openai-completions
      target: standin-llm
      concurrency: 1
      duration: {duration}s
      warmup: {warmup}s
      payload: {{model: standin, prompt: "hello", stream: true, max_tokens: 8}}
  sweep:
    concurrency: [{points}]
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=os.environ.get("ORCH_CONFIG", "/var/lib/orch-sandbox/config.yaml"))
    ap.add_argument("--points", type=int, default=8)
    ap.add_argument("--duration", type=float, default=3)
    ap.add_argument("--warmup", type=float, default=1)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        recipe = Path(d) / "sweep.yaml"
        recipe.write_text(BENCH.format(duration=a.duration, warmup=a.warmup,
                                       points=", ".join(str(i + 1) for i in range(a.points))))
        proc, wall = run_bench(recipe, Path(d) / "out", a.config)
    log = proc.stdout + proc.stderr
    starts = [datetime.strptime(m.group(1), "%H:%M:%S") for m in
              re.finditer(r"^\[(\d\d:\d\d:\d\d)\] point \d+/\d+:", log, re.M)]
    end = re.findall(r"^\[(\d\d:\d\d:\d\d)\] report: .*/report.html", log, re.M)
    marks = starts + [datetime.strptime(end[-1], "%H:%M:%S")]
    per_point = [(b - a_).total_seconds() for a_, b in zip(marks, marks[1:])]
    load = a.warmup + a.duration
    print(f"{a.points} points, {load:g} s of load each (warm-up included); session wall {wall:.1f} s")
    print("per point, start to next start: " + ", ".join(f"{s:.0f}" for s in per_point) + " s")
    over = [s - load for s in per_point]
    print(f"overhead per point beyond its load: mean {sum(over) / len(over):.1f} s, max {max(over):.1f} s "
          "(1 s resolution: the progress lines' clock)")
    print(f"first point's start at {(starts[0] - datetime.strptime(log.split('[', 1)[1][:8], '%H:%M:%S')).total_seconds():.0f} s "
          "(deploy, readiness, monitor)")
    stats = re.search(r"orch-stats: (.*)", proc.stderr)
    print(f"transport: {stats.group(1) if stats else '(no counters printed)'}")


if __name__ == "__main__":
    main()
