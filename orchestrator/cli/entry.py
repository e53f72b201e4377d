"""The `orch` / `python main.py` entry point. The command runs in the local agent when one serves
its config (cli/handoff.py); else here, and a command that will talk to the cluster has its SSH
connection opening (cluster/early.py) while the CLI's modules import."""

from __future__ import annotations

import os
import sys

# the root group's options that take values (tests/unit/test_entry.py checks them against click's)
GROUP_VALUES = {"--config": 1, "--log-format": 1, "--recipe": 1, "--timeout": 1, "--service-endpoint": 1,
                "--stop-service": 1, "--query-service-metrics": 2}
REMOTE_FLAGS = {"--status", "--service-endpoint", "--stop-service", "--query-service-metrics"}
REMOTE_COMMANDS = {"logs", "doctor", "health", "watch", "monitor", "query-range"}
LOCAL_ANYWAY = {"-h", "--help", "--version", "--dry-run", "--available"}


def talks_to_cluster(argv: list[str]) -> bool:
    """Whether the command surely opens a connection, from argv alone (no click, no import)."""
    if LOCAL_ANYWAY.intersection(argv):
        return False
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.split("=", 1)[0] in REMOTE_FLAGS:
            return True
        if arg.startswith("-"):
            i += 1 + GROUP_VALUES.get(arg, 0)  # "--opt=value" carries its value
            continue
        return arg in REMOTE_COMMANDS  # the subcommand
    return False


def _connect_early(argv: list[str]) -> None:
    from orchestrator.cli.handoff import config_argument
    from orchestrator.cluster import early
    from orchestrator.cluster.connect import agent_wanted
    from orchestrator.config import load_config
    try:
        config = load_config(config_argument(argv))
        if not config.ssh.local and not agent_wanted(config) and config.ssh.client == "paramiko":
            early.start(config.ssh)
    except Exception:  # a bad config or ~/.ssh/config: the command reports it, in its own words
        return


def main() -> None:
    argv = sys.argv[1:]
    try:
        from orchestrator.cli.handoff import run_in_agent
        code = run_in_agent(argv)
        if code is None and talks_to_cluster(argv) and os.environ.get("ORCH_EARLY") != "0":
            _connect_early(argv)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    if code is not None:
        sys.exit(code)
    from orchestrator.cli.main import main as run_here
    run_here()
