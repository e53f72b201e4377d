"""Sweeps: the grid of points and the benchmark's SLO (pure). How a point edits a recipe (its client
fields, its services' fields) is the benchmark's: bench/points.py."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from orchestrator.errors import RecipeError
from orchestrator.times import parse_duration

CLIENT_FIELDS = {"concurrency": int, "rate": float, "duration": "duration", "requests": int, "warmup": "duration",
                 "nodes": int}


@dataclass(frozen=True)
class Point:
    index: int
    values: dict                     # swept field -> value

    @property
    def label(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.values.items()) or "run"

    @property
    def dirname(self) -> str:
        return f"{self.index:02d}-" + re.sub(r"[^A-Za-z0-9_.=,-]+", "_", self.label)[:80]


def grid(sweep: dict) -> list[Point]:
    if not sweep:
        return [Point(0, {})]
    keys = list(sweep)
    return [Point(i, dict(zip(keys, combo))) for i, combo in enumerate(itertools.product(*(sweep[k] for k in keys)))]


SLO_KPIS = {"p99_latency": "p99", "ttft_p99": "ttft_p99", "p50_latency": "p50", "error_rate": "error_rate"}


def parse_slo(slo: dict) -> dict[str, float]:
    """``{p99_latency: 2s, ttft_p99: 500ms, error_rate: 0.01}`` -> seconds / ratio."""
    out = {}
    for key, value in slo.items():
        if key not in SLO_KPIS:
            raise RecipeError(f"benchmark.slo.{key}: expected one of {', '.join(SLO_KPIS)}")
        try:
            out[key] = float(value) if key == "error_rate" else parse_duration(value)
        except (TypeError, ValueError):
            raise RecipeError(f"benchmark.slo.{key}: expected {'a ratio like 0.01' if key == 'error_rate' else 'a duration like 2s or 500ms'}, got {value!r}") from None
    return out
