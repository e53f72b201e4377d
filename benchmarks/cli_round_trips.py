#!/usr/bin/env python3
"""Cost of each CLI command against the sandbox: SSH connections, remote
commands and wall time, beside the OpenSSH floor measured in the same run.

    python benchmarks/cli_round_trips.py [--repeat 5]

Counts come from the tool's own instrumentation (`--stats` / ORCH_STATS=1),
which counts every connection and every remote command the transport makes.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator.config import load_config  # noqa: E402

# Read-only commands (run repeatedly); {sid} is a service started for the run.
COMMANDS = [
    ["doctor"],
    ["--status"],
    ["--service-endpoint", "{sid}"],
    ["logs", "{sid}", "-n", "20"],
    ["health"],
    ["monitor", "list"],
    ["watch", "--once"],
]


def timed(argv: list[str], env: dict) -> tuple[float, str, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return elapsed, proc.stdout, proc.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default=os.environ.get("ORCH_CONFIG", "/var/lib/orch-sandbox/config.yaml"))
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    cfg = load_config(args.config)
    env = dict(os.environ, ORCH_CONFIG=args.config, ORCH_STATS="1")
    ssh = ["ssh", "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={cfg.ssh.known_hosts}",
           "-i", cfg.ssh.key_file, "-p", str(cfg.ssh.port or 22), f"{cfg.ssh.user}@{cfg.ssh.host}"]
    floors = {}
    for name, remote in [("ssh true", "true"), ("ssh squeue", "squeue >/dev/null")]:
        floors[name] = statistics.median(timed(ssh + [remote], env)[0] for _ in range(args.repeat))
    print(f"OpenSSH floor (median of {args.repeat}): "
          + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in floors.items()))
    imp = statistics.median(timed([sys.executable, "-c", "import paramiko"], env)[0] for _ in range(args.repeat))
    print(f"of each command's wall time, Python start + `import paramiko` alone: {imp * 1000:.0f} ms")
    start = [sys.executable, str(ROOT / "main.py"), "--recipe", "python-http", "--wait"]
    wall, out, err = timed(start, env)
    sid = out.split()[0]
    m = re.search(r"connections=(\d+) commands=(\d+)", err)
    print(f"started {sid} with --wait in {wall * 1000:.0f} ms "
          f"({m.group(1)} connection, {m.group(2)} commands: submit + one per readiness poll)")
    timed([sys.executable, str(ROOT / "main.py"), "connect"], env)  # the optional agent, for the second table
    for label, run_env in (("each command its own connection", env),
                           ("through the local agent (ORCH_AGENT=1)", dict(env, ORCH_AGENT="1"))):
        print(f"\n{label}")
        print(f"{'command':<28} {'conns':>5} {'cmds':>5} {'wall ms':>8} {'vs ssh true':>11} {'vs ssh squeue':>13}")
        for template in COMMANDS:
            extra = [a.format(sid=sid) for a in template]
            walls, stats = [], None
            for _ in range(args.repeat):
                wall, _, err = timed([sys.executable, str(ROOT / "main.py"), *extra], run_env)
                walls.append(wall)
                m = re.search(r"connections=(\d+) commands=(\d+)", err)
                stats = (int(m.group(1)), int(m.group(2))) if m else ("?", "?")
            med = statistics.median(walls)
            print(f"{' '.join(template):<28} {stats[0]:>5} {stats[1]:>5} {med * 1000:>8.0f} "
                  f"{med / floors['ssh true']:>10.2f}x {med / floors['ssh squeue']:>12.2f}x")
    timed([sys.executable, str(ROOT / "main.py"), "connect", "--stop"], env)

    timed([sys.executable, str(ROOT / "main.py"), "--stop-service", sid], env)


if __name__ == "__main__":
    main()
