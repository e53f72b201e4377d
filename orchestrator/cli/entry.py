"""The `orch` / `python main.py` entry point."""

from __future__ import annotations


def main() -> None:
    from orchestrator.cli.main import main as run
    run()
