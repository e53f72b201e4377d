"""Seed 000's standalone CLI, as it shows it: ``python -m src.monitor start --recipe vllm-monitor
--targets 12345``, ``list``, ``status --id ID``, ``stop --id ID`` are ``orch monitor ...``."""

import sys

from orchestrator.cli.main import main

sys.argv = [sys.argv[0], "monitor", *sys.argv[1:]]
main()
