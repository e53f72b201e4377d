#!/usr/bin/env python3
"""Cost of each CLI command against the sandbox: SSH connections, remote
commands and wall time, beside the OpenSSH floor measured in the same run.

    python benchmarks/cli_round_trips.py [--repeat 5]

Counts come from the tool's own instrumentation (`--stats` / ORCH_STATS=1),
which counts every connection and every remote command the transport makes, and
names the transport (paramiko, or OpenSSH over its master). Each
run is paired with an `ssh login squeue` run right before it; the ratio is the
median of the pairs' ratios, so a slower minute of a shared VM slows both.
"""

from __future__ import annotations

import argparse
import json
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

# Read-only commands (run repeatedly); {sid} is a service and {mid} a monitor started for the run.
COMMANDS = [
    ["--status"],
    ["--service-endpoint", "{sid}"],
    ["logs", "{sid}", "-n", "20"],
    ["--query-service-metrics", "{mid}", 'up{job=~".+"}'],
    ["doctor"],
    ["health"],
    ["monitor", "list"],
    ["watch", "--once"],
]
GOALS = 4  # the first four: at most 1.5x `ssh login squeue` over paramiko, 1.0x over OpenSSH's warm master
# (ssh.client: openssh); both #22


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
    # as an installed package is (pip compiles it): the tool's bytecode cached, even where
    # PYTHONDONTWRITEBYTECODE would have every command compile its modules from source
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "orchestrator")], check=True,
                   stdout=subprocess.DEVNULL)
    # as users run the tool: Python keeps each module's bytecode (__pycache__). A shell that sets
    # PYTHONDONTWRITEBYTECODE (this workplace's machines do) makes every command compile the whole
    # package from source first, about 60 ms more per command than a user pays.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(ORCH_CONFIG=args.config, ORCH_STATS="1")
    if "PYTHONDONTWRITEBYTECODE" in os.environ:
        print("PYTHONDONTWRITEBYTECODE is set here: unset for the commands measured (bytecode cached, as users run)")
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
    wall, out, err = timed([sys.executable, str(ROOT / "main.py"), "monitor", "start", sid, "--json"], env)
    mid = json.loads(out)["monitor_id"]
    print(f"started monitor {mid} scraping it in {wall * 1000:.0f} ms")
    ratios: dict[str, list[float]] = {}
    squeue = ssh + ["squeue >/dev/null"]
    import tempfile

    import yaml
    tmp = tempfile.mkdtemp(prefix="orch-bench-")
    doc = yaml.safe_load(Path(args.config).read_text())
    doc["ssh"]["client"] = "openssh"
    doc["state_dir"] = doc.get("state_dir") or f"{tmp}/state"
    openssh_config = Path(tmp) / "openssh.yaml"
    openssh_config.write_text(yaml.safe_dump(doc))
    openssh_env = dict(env, ORCH_CONFIG=str(openssh_config))
    for label, run_env in (("ssh.client: paramiko (each command its own connection)", env),
                           ("ssh.client: openssh over its warm master (`connect`)", openssh_env)):
        if run_env is not env:
            timed([sys.executable, str(ROOT / "main.py"), "connect"], run_env)
        print(f"\n{label}")
        print(f"{'command':<28} {'conns':>5} {'cmds':>5} {'wall ms':>8} {'ssh squeue ms':>13} {'ratio':>6}  transport")
        for template in COMMANDS:
            extra = [a.replace("{sid}", sid).replace("{mid}", mid) for a in template]
            walls, floor, pairs, stats = [], [], [], None
            for _ in range(args.repeat):
                # the OpenSSH floor right before each run: the ratio of a pair does not drift with the VM
                floor.append(timed(squeue, env)[0])
                wall, _, err = timed([sys.executable, str(ROOT / "main.py"), *extra], run_env)
                walls.append(wall)
                pairs.append(wall / floor[-1])
                m = re.search(r"connections=(\d+) commands=(\d+) .* transport=(\w+)", err)
                stats = (int(m.group(1)), int(m.group(2)), m.group(3)) if m else ("?", "?", "?")
            ratio = statistics.median(pairs)
            print(f"{' '.join(template)[:28]:<28} {stats[0]:>5} {stats[1]:>5} {statistics.median(walls) * 1000:>8.0f} "
                  f"{statistics.median(floor) * 1000:>13.0f} {ratio:>5.2f}x  {stats[2]}")
            if template in COMMANDS[:GOALS]:
                ratios.setdefault(label, []).append(ratio)
    timed([sys.executable, str(ROOT / "main.py"), "connect", "--stop"], openssh_env)
    print()
    for (label, got), goal in zip(ratios.items(), (1.5, 1.0)):
        print(f"goal, {label}: --status, --service-endpoint, logs, --query-service-metrics at most "
              f"{goal}x ssh squeue: worst {max(got):.2f}x -> {'met' if max(got) <= goal else 'NOT met'}")
    timed([sys.executable, str(ROOT / "main.py"), "monitor", "stop", mid], env)

    timed([sys.executable, str(ROOT / "main.py"), "--stop-service", sid], env)


if __name__ == "__main__":
    main()
