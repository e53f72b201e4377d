#!/usr/bin/env python3
"""Command-line entry point: `python main.py --help`."""

from orchestrator.cli.entry import main

if __name__ == "__main__":
    main()
