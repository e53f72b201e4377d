"""Shared by the session benchmarks: one `bench run` through the CLI, as a user runs it, timed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_bench(recipe: Path, out: Path, config: str) -> tuple[subprocess.CompletedProcess, float]:
    """(the finished process, its wall seconds); exits with the session's output when it failed."""
    env = dict(os.environ, ORCH_CONFIG=config, ORCH_STATS="1")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "bench", "run", str(recipe), "--out", str(out)],
                          capture_output=True, text=True, env=env, cwd=recipe.parent)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"session failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc, wall
