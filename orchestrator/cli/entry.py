"""The `orch` / `python main.py` entry point: the command runs in the local agent when one serves
this config (cli/handoff.py), else here; the CLI's modules are imported only in the second case."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from orchestrator.cli.handoff import run_in_agent
        code = run_in_agent(sys.argv[1:])
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    if code is not None:
        sys.exit(code)
    from orchestrator.cli.main import main as run_here
    run_here()
