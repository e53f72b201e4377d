"""The agent's process (``python -m orchestrator.cli.agentd CONFIG``, started detached by the first
command that wants it, or by `connect`): the zygote that runs whole commands (cli/handoff.py) is
forked first, while the process is single-threaded, then the held SSH connection is served
(cluster/agent.py) until idle."""

from __future__ import annotations

import os
import sys

from orchestrator.cli.handoff import start_zygote
from orchestrator.cluster.agent import IDLE, serve, socket_path
from orchestrator.config import load_config


def main(argv: list[str]) -> None:
    config = load_config(argv[1])
    serve(config, idle=float(os.environ.get("ORCH_AGENT_IDLE", IDLE)),
          fork_first=lambda: start_zygote(str(config.source), str(socket_path(config))))


if __name__ == "__main__":
    main(sys.argv)
