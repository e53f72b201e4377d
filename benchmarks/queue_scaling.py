#!/usr/bin/env python3
"""`--status` and `watch` over a big queue: parsing, and each command's whole local work per poll.

    python benchmarks/queue_scaling.py [--jobs 1000 10000] [--tracked 200]

The queue is real squeue output recorded on the sandbox (tests/data/cassettes/services.json),
multiplied by this script: every line a job with its own ID, half of them services of this
tool (names <recipe>_<8 hex>), half other jobs, RUNNING and PENDING. A replay transport answers
the one remote command each poll sends; the state stores are real files in a temporary dir.
Runs locally, no cluster.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator.cluster.slurm import SEP, parse_squeue  # noqa: E402


def recorded_line() -> list[str]:
    calls = json.loads((ROOT / "tests" / "data" / "cassettes" / "services.json").read_text())["calls"]
    for c in calls:
        for line in (c.get("stdout") or "").splitlines():
            if line.count(SEP) == 10:
                return line.split(SEP)
    raise SystemExit("no squeue line in the services cassette")


def queue(n: int) -> str:
    base = recorded_line()
    lines = []
    for i in range(n):
        f = list(base)
        f[0] = str(100000 + i)
        f[1] = f"svc-{i % 97}_{i:08x}" if i % 2 == 0 else f"user-job-{i}"
        f[2] = "RUNNING" if i % 3 else "PENDING"
        f[4] = f"n{i % 512}" if f[2] == "RUNNING" else ""
        f[5] = "None" if f[2] == "RUNNING" else "Resources"
        lines.append(SEP.join(f))
    return "\n".join(lines) + "\n"


@dataclass
class Result:
    stdout: str
    stderr: str = ""
    exit_code: int = 0


class Replay:
    """Answers every command with the poll's output, markers in place (the token is read from the script)."""
    description = "replay"

    def __init__(self, text: str):
        self.text = text

    def run(self, script: str, timeout=None, **kw):
        import re
        token = re.search(r"@@([0-9a-f]+) queue", script).group(1)
        return Result(f"@@{token} queue\n{self.text}@@{token} gone\n")


def timed(fn, repeat: int = 5):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, best, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--tracked", type=int, default=200, help="services this laptop tracks, among the queue's")
    args = ap.parse_args()
    from orchestrator.config import Config, RemoteConfig, SlurmConfig, SSHConfig
    from orchestrator.services.servers import ServersModule
    from orchestrator.watch.watcher import Watcher, WatchOptions
    print(f"{'jobs':>7} {'parse ms':>9} {'parse peak MiB':>15} {'--status ms':>12} {'watch poll ms':>14} "
          f"{'watch peak MiB':>15}")
    for n in args.jobs:
        text = queue(n)
        jobs, t_parse, m_parse = timed(lambda: parse_squeue(text))
        assert len(jobs) == n
        with tempfile.TemporaryDirectory() as d:
            cfg = Config(ssh=SSHConfig(host="login"), slurm=SlurmConfig(), remote=RemoteConfig(),
                         state_dir=Path(d), results_dir=Path(d) / "results", recipe_dirs=())
            transport = Replay(text)
            servers = ServersModule(cfg, transport)
            with servers.store.transaction() as data:  # tracked services, some state changes to record
                for j in jobs[: 2 * args.tracked: 2]:
                    data[j.name] = {"job_id": j.job_id, "state": "PENDING", "nodelist": ""}
            _, t_status, _ = timed(lambda: servers.list_running_services(), repeat=3)
            watcher = Watcher(cfg, transport, servers, WatchOptions(partitions=["cpu"]), log=None)
            _, t_watch, m_watch = timed(lambda: watcher.poll(), repeat=3)
        print(f"{n:>7,} {t_parse * 1e3:>9.1f} {m_parse / 2**20:>15.1f} {t_status * 1e3:>12.1f} {t_watch * 1e3:>14.1f} "
              f"{m_watch / 2**20:>15.1f}", flush=True)


if __name__ == "__main__":
    main()
