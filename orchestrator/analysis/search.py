"""The highest load that meets an SLO, found by bisection (pure: the session runs the points).

``search: {rate: [1, 64], slo: {ttft_p99: 500ms, tpot_p99: 50ms}, goodput: 0.95}`` tries the
low end, then the high end, then the geometric middle of the highest load that passed and
the lowest that failed, until the two are within ``tolerance`` of each other (for
concurrency: adjacent integers) or ``max_points`` were run. A point passes when its session
is valid (it delivered its load), every SLO KPI is within its limit, and at least
``goodput`` of its requests met every per-request limit (``ttft``, ``tpot``, ``e2e``: the
SLO's KPIs without their percentile). A grid of the same range and resolution needs
log2(range) times more points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

FIELDS = ("rate", "concurrency")
# an SLO key: a client KPI (seconds, or a ratio for error_rate) and the per-request measure behind it
SLO_KEYS = {"ttft_p50": "ttft", "ttft_p90": "ttft", "ttft_p99": "ttft", "tpot_p50": "tpot", "tpot_p90": "tpot",
            "tpot_p99": "tpot", "itl_p99": None, "latency_p50": "e2e", "latency_p90": "e2e", "latency_p99": "e2e",
            "error_rate": None}


@dataclass(frozen=True)
class Search:
    field: str                      # rate | concurrency
    low: float
    high: float
    slo: dict                       # KPI -> limit (seconds, or a ratio for error_rate)
    goodput: float = 0.0            # share of the requests that must meet every per-request limit
    tolerance: float = 0.1          # stop when the highest pass and lowest fail are this close (relative)
    max_points: int = 8

    @property
    def per_request(self) -> dict:
        """The per-request limits (seconds) the goodput share counts: the tightest of each measure."""
        out: dict = {}
        for key, limit in self.slo.items():
            measure = SLO_KEYS.get(key)
            if measure:
                out[measure] = min(limit, out.get(measure, math.inf))
        return out

    def to_dict(self) -> dict:
        return {"field": self.field, "range": [self.low, self.high], "slo": self.slo, "goodput": self.goodput,
                "tolerance": self.tolerance, "max_points": self.max_points}


def parse_search(raw, path: str = "benchmark.search") -> Search | None:
    from orchestrator.schema import SchemaViolation, check_keys, expect_int, expect_mapping, expect_number
    from orchestrator.times import parse_duration
    if raw is None:
        return None
    raw = expect_mapping(raw, path)
    check_keys(raw, [*FIELDS, "slo", "goodput", "tolerance", "max_points"], path, required=("slo",))
    fields = [f for f in FIELDS if f in raw]
    if len(fields) != 1:
        raise SchemaViolation(path, "expected one of rate: [low, high] or concurrency: [low, high]")
    field = fields[0]
    bounds = raw[field]
    if not isinstance(bounds, list) or len(bounds) != 2:
        raise SchemaViolation(f"{path}.{field}", f"expected [low, high], got {bounds!r}")
    low, high = (expect_number(v, f"{path}.{field}[{i}]", 0.001) for i, v in enumerate(bounds))
    if field == "concurrency" and any(int(v) != v for v in (low, high)):
        raise SchemaViolation(f"{path}.{field}", "expected whole numbers of concurrent requests")
    if not low < high:
        raise SchemaViolation(f"{path}.{field}", f"expected low < high, got {bounds!r}")
    slo_raw = expect_mapping(raw["slo"], f"{path}.slo")
    if not slo_raw:
        raise SchemaViolation(f"{path}.slo", "expected at least one limit, e.g. {ttft_p99: 500ms}")
    slo = {}
    for key, value in slo_raw.items():
        if key not in SLO_KEYS:
            raise SchemaViolation(f"{path}.slo.{key}", f"expected one of {', '.join(SLO_KEYS)}")
        try:
            slo[key] = float(value) if key == "error_rate" else parse_duration(value)
        except (TypeError, ValueError):
            raise SchemaViolation(f"{path}.slo.{key}", f"expected a duration such as 500ms, got {value!r}") from None
    goodput = expect_number(raw.get("goodput", 0.0), f"{path}.goodput", 0)
    if goodput > 1:
        raise SchemaViolation(f"{path}.goodput", f"expected a share of the requests between 0 and 1, got {goodput!r}")
    if goodput and not any(SLO_KEYS[k] for k in slo):
        raise SchemaViolation(f"{path}.goodput", "a goodput share needs a per-request limit in slo (ttft, tpot "
                              "or latency)")
    return Search(field, low, high, slo, goodput,
                  expect_number(raw.get("tolerance", 0.1), f"{path}.tolerance", 0.001),
                  expect_int(raw.get("max_points", 8), f"{path}.max_points", 2, 64))


def judge(search: Search, kpis: dict, valid: bool, reasons: list[str]) -> tuple[bool, str]:
    """Did a point pass, and why (or why not)."""
    if not valid:
        return False, "invalid: " + "; ".join(reasons)
    missed = []
    for key, limit in search.slo.items():
        v = kpis.get(key)
        if v is None:
            missed.append(f"{key} absent")
        elif v > limit:
            missed.append(f"{key} {_fmt(key, v)} > {_fmt(key, limit)}")
    share = kpis.get("slo_attainment")
    if search.goodput:
        if share is None:
            missed.append("no request met the SLO")
        elif share < search.goodput:
            missed.append(f"{share:.1%} of requests met the SLO < {search.goodput:.0%}")
    if missed:
        return False, "; ".join(missed)
    got = ", ".join(f"{k} {_fmt(k, kpis[k])}" for k in search.slo)
    return True, got + (f", {share:.1%} of requests met the SLO" if search.goodput and share is not None else "")


def _fmt(key: str, v: float) -> str:
    return f"{v:.3g}" if key == "error_rate" else f"{v * 1000:.4g} ms"


def next_value(search: Search, tried: list[tuple[float, bool, float | None]]) -> tuple[float | None, str]:
    """The next load to try from the points so far ``(value, passed, throughput)``, and why; None: done.

    Past saturation the throughput stops growing: a failed point whose throughput is no higher than
    the best passing point's says so, and the search goes below it."""
    if not tried:
        return search.low, f"the low end first ({search.low:g})"
    if len(tried) >= search.max_points:
        return None, f"stopped: {search.max_points} points (max_points)"
    passed = [v for v, ok, _ in tried if ok]
    failed = [v for v, ok, _ in tried if not ok]
    if not passed:
        return None, f"stopped: even the low end ({search.low:g}) misses the SLO"
    best = max(passed)
    if best >= search.high:
        return None, f"stopped: the high end ({search.high:g}) meets the SLO: the answer is at least that"
    if not failed:
        return search.high, f"{best:g} passed: the high end next ({search.high:g})"
    worst = min(v for v in failed if v > best) if any(v > best for v in failed) else None
    if worst is None:
        return None, "stopped: no failed point above the best passing one"
    if search.field == "concurrency":
        if worst - best <= 1:
            return None, f"stopped: {best:g} passes and {worst:g} fails"
        mid = float(round(math.sqrt(best * worst)))
        mid = min(max(mid, best + 1), worst - 1)
    else:
        if worst / best <= 1 + search.tolerance:
            return None, f"stopped: {best:g} passes and {worst:g} fails (within {search.tolerance:.0%})"
        mid = math.sqrt(best * worst)
    last_value, last_ok, last_tput = tried[-1]
    best_tput = max((t for v, ok, t in tried if ok and t is not None), default=None)
    if not last_ok and last_tput is not None and best_tput is not None and last_tput <= best_tput * 1.02:
        why = (f"{last_value:g} failed past saturation (throughput {last_tput:.3g}/s, no higher than "
               f"{best_tput:.3g}/s at {best:g}): between {best:g} and {worst:g}")
    else:
        why = f"between {best:g} (passes) and {worst:g} (fails)"
    return round(mid, 6), why + f": {mid:.4g}"


def answer(tried: list[tuple[float, bool, float | None]]) -> float | None:
    """The highest load that passed (None: none did)."""
    return max((v for v, ok, _ in tried if ok), default=None)
