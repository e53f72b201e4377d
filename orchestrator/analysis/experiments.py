"""Verdicts over a sweep's points (saturation, knee, SLO) and regression comparison (pure).

Knee: for consecutive points sorted by the swept value, the relative growth of
p99 latency and of throughput are compared; the knee is the last point before
the first step where p99 grows by more than 20% AND more than 3x the relative
throughput growth (i.e. extra load buys mostly queueing, little throughput).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from orchestrator.analysis.sweep import SLO_KPIS, Point  # noqa: F401  (Point: verdicts take points)

KNEE_P99_GROWTH = 0.20
KNEE_RATIO = 3.0


# -- verdicts ------------------------------------------------------------------------
@dataclass(frozen=True)
class PointResult:
    label: str
    x: float                 # the swept value (or the point's index when not numeric)
    throughput: float | None
    p50: float | None
    p99: float | None
    ttft_p99: float | None
    error_rate: float | None


def _ms(seconds: float) -> str:
    """A latency in ms, to the precision it needs: a data service's p99 is a fraction of a millisecond,
    which ``:.0f`` showed as 0."""
    ms = seconds * 1000
    return f"{ms:.0f}" if abs(ms) >= 10 else f"{ms:.2f}"


def _num(v, fallback: float) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return fallback


def point_results(points: list[Point], kpis_by_point: list[dict]) -> list[PointResult]:
    out = []
    for p, k in zip(points, kpis_by_point):
        x = _num(next(iter(p.values.values())), float(p.index)) if len(p.values) == 1 else float(p.index)
        out.append(PointResult(p.label, x, k.get("throughput"), k.get("latency_p50"), k.get("latency_p99"),
                               k.get("ttft_p99"), k.get("error_rate")))
    return sorted(out, key=lambda r: r.x)


def saturation(results: list[PointResult]) -> tuple[PointResult | None, str]:
    ok = [r for r in results if r.throughput is not None]
    if not ok:
        return None, "no point produced successful requests: no saturation throughput"
    best = max(ok, key=lambda r: r.throughput)
    return best, (f"Saturation throughput is {best.throughput:.2f} requests/s at {best.label}: the highest sustained "
                  f"rate of successful requests among the {len(ok)} points.")


def knee(results: list[PointResult]) -> tuple[PointResult | None, str]:
    pts = [r for r in results if r.throughput and r.p99]
    for a, b in zip(pts, pts[1:]):
        g_p99 = b.p99 / a.p99 - 1
        g_tput = b.throughput / a.throughput - 1
        if g_p99 > KNEE_P99_GROWTH and g_p99 > KNEE_RATIO * max(g_tput, 0.0):
            return a, (f"Knee at {a.label}: from there to {b.label}, p99 latency grew {g_p99 * 100:.0f}% "
                       f"({_ms(a.p99)} to {_ms(b.p99)} ms) while throughput grew {g_tput * 100:.0f}% "
                       f"({a.throughput:.2f} to {b.throughput:.2f} requests/s).")
    if len(pts) < 2:
        return None, "Knee: needs at least two points with latency and throughput."
    return None, (f"No knee: between every pair of neighbouring points p99 grew by at most {KNEE_P99_GROWTH * 100:.0f}% "
                  f"or less than {KNEE_RATIO:g}x the throughput growth.")


def slo_limit(results: list[PointResult], slo: dict[str, float]) -> tuple[PointResult | None, str]:
    if not slo:
        return None, ""
    meets = []
    for r in results:
        vals = {k: getattr(r, SLO_KPIS[k]) for k in slo}
        if all(v is not None and v <= slo[k] for k, v in vals.items()):
            meets.append(r)
    what = " and ".join(f"{k} <= {_ms(v)} ms" if k != "error_rate" else f"error rate <= {v:.2%}"
                        for k, v in slo.items())
    if not meets:
        return None, f"No point meets the SLO ({what})."
    best = max(meets, key=lambda r: (r.throughput or 0, r.x))
    shown = ", ".join(f"{k} {_ms(getattr(best, SLO_KPIS[k]))} ms" if k != "error_rate"
                      else f"error rate {best.error_rate:.2%}" for k in slo)
    return best, (f"Highest load meeting the SLO ({what}): {best.label} with {best.throughput:.2f} requests/s "
                  f"({shown}).")


# -- regression compare ------------------------------------------------------------------
HIGHER_IS_WORSE = {"latency_p50", "latency_p95", "latency_p99", "latency_max", "ttft_p50", "ttft_p99", "itl_p50",
                   "itl_p99", "error_rate"}
LOWER_IS_WORSE = {"throughput", "output_tokens_per_second", "success_rate"}
THRESHOLD_ALIASES = {"p50": "latency_p50", "p95": "latency_p95", "p99": "latency_p99", "ttft": "ttft_p99",
                     "throughput": "throughput", "tokens": "output_tokens_per_second", "errors": "error_rate"}


def parse_thresholds(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        m = re.fullmatch(r"([A-Za-z0-9_]+)=(\d+(?:\.\d+)?)%", item.strip())
        if not m:
            raise ValueError(f"threshold {item!r}: expected NAME=PCT%, e.g. p99=10%")
        name = THRESHOLD_ALIASES.get(m.group(1), m.group(1))
        if name not in HIGHER_IS_WORSE | LOWER_IS_WORSE:
            raise ValueError(f"threshold {item!r}: unknown KPI {m.group(1)!r}; use "
                             + ", ".join(sorted(THRESHOLD_ALIASES)) + " or a KPI name")
        out[name] = float(m.group(2)) / 100
    return out


def _ok_started(lo: float, hi: float, closed: bool):
    """Selects OK measured requests that started in [lo, hi] (``closed``) or [lo, hi)."""
    def keep(c):
        end_ok = c["start"] <= hi if closed else c["start"] < hi
        return (c["ok"] == 1) & (c["warmup"] == 0) & (c["start"] >= lo) & end_ok
    return keep


def interval_noise(table, window_start: float, window_end: float, kpi: str, intervals: int = 6) -> float | None:
    """Relative standard error of a KPI from its spread across sub-intervals of the window
    (``table``: a ``RequestTable``)."""
    from orchestrator.analysis.kpi import DIST_COLUMNS, summary_of
    span = (window_end - window_start) / intervals
    if span <= 0:
        return None
    values = []
    for i in range(intervals):
        lo, hi = window_start + i * span, window_start + (i + 1) * span
        if kpi in ("throughput", "output_tokens_per_second"):
            done = tokens = 0
            for c in table.chunks(["start", "latency_s", "ok", "warmup", "tokens_out"]):
                end = c["start"] + c["latency_s"]
                m = (c["ok"] == 1) & (c["warmup"] == 0) & (end >= lo) & (end < hi)
                done += int(m.sum())
                t = c["tokens_out"][m]
                tokens += int(t[t >= 0].sum())
            values.append((done if kpi == "throughput" else tokens) / span)
        elif kpi.split("_", 1)[0] in DIST_COLUMNS:
            base, q = kpi.split("_", 1)
            qv = 1.0 if q == "max" else (float(q[1:].replace("_", ".")) / 100 if q.startswith("p") else None)
            if qv is None:
                continue
            s = summary_of(table, DIST_COLUMNS[base], _ok_started(lo, hi, closed=False), [qv])
            if s.n:
                values.append(s.percentiles[qv])
    values = [v for v in values if v is not None]
    if len(values) < 3:
        return None
    mean = sum(values) / len(values)
    if mean == 0:
        return None
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return sd / mean / math.sqrt(len(values))


def quantile_noise(table, window_start: float, window_end: float, kpi: str) -> float | None:
    """Relative half-width of a percentile's 95% confidence interval from its order statistics: with
    n samples the p-quantile's rank is uncertain by about 2 sqrt(n p (1 - p)), so the values that many
    ranks either side bound it. A tail percentile of few samples (p99 of 80 requests is nearly the
    maximum) is as noisy as the gap between its last values, which spread over intervals misses."""
    from orchestrator.analysis.kpi import DIST_COLUMNS, summary_of
    base, _, q = kpi.partition("_")
    if not q.startswith("p") or base not in DIST_COLUMNS:
        return None
    p = float(q[1:].replace("_", ".")) / 100
    column = DIST_COLUMNS[base]
    keep = _ok_started(window_start, window_end, closed=True)
    n = summary_of(table, column, keep, []).n
    if n < 2:
        return None
    h = (n - 1) * p
    spread = 2 * math.sqrt(n * p * (1 - p)) + 1
    lo, hi = max(0.0, h - spread) / (n - 1), min(n - 1.0, h + spread) / (n - 1)
    s = summary_of(table, column, keep, [lo, p, hi])
    mid = s.percentiles[p]
    return (s.percentiles[hi] - s.percentiles[lo]) / 2 / mid if mid else None


@dataclass(frozen=True)
class Comparison:
    kpi: str
    a: float | None
    b: float | None
    change: float | None         # relative, B vs A
    noise: float | None          # combined relative standard error
    threshold: float | None
    verdict: str                 # ok | better | worse | REGRESSION | not significant | absent


def compare(kpis_a: dict, kpis_b: dict, noise_a: dict, noise_b: dict, thresholds: dict[str, float]) -> list[Comparison]:
    out = []
    for name in sorted(set(kpis_a) | set(kpis_b)):
        if name not in HIGHER_IS_WORSE | LOWER_IS_WORSE and name not in thresholds:
            continue
        a, b = kpis_a.get(name), kpis_b.get(name)
        thr = thresholds.get(name)
        if a is None or b is None:
            out.append(Comparison(name, a, b, None, None, thr, "absent"))
            continue
        change = (b - a) / abs(a) if a else (0.0 if b == a else math.inf)
        na, nb = noise_a.get(name), noise_b.get(name)
        noise = math.sqrt((na or 0) ** 2 + (nb or 0) ** 2) if (na is not None or nb is not None) else None
        worse = change > 0 if name in HIGHER_IS_WORSE else change < 0
        significant = noise is None or abs(change) > 2 * noise
        if abs(change) < 1e-9:
            verdict = "ok"
        elif not significant:
            verdict = "not significant"
        elif thr is not None and worse and abs(change) > thr:
            verdict = "REGRESSION"
        else:
            verdict = "worse" if worse else "better"
        if noise is None and verdict in ("worse", "better", "REGRESSION"):
            verdict += " (no noise estimate)"
        out.append(Comparison(name, a, b, change, noise, thr, verdict))
    return out


def scaling(sweep: dict, results: list[PointResult], kpis_by_label: dict[str, dict]) -> list[dict]:
    """A sweep over a service's ``replicas``: each point's throughput against N times the throughput of
    one replica (scaling efficiency = throughput(N) / (N x throughput(1))), requests and output tokens.
    Empty unless the sweep is that one field and has a point at one replica."""
    keys = list(sweep)
    if len(keys) != 1 or not (keys[0].startswith("services.") and keys[0].endswith(".replicas")):
        return []
    one = next((r for r in results if r.x == 1 and r.throughput), None)
    if one is None:
        return []
    tok1 = (kpis_by_label.get(one.label) or {}).get("output_tokens_per_second")
    rows = []
    for r in results:
        n = int(r.x)
        tok = (kpis_by_label.get(r.label) or {}).get("output_tokens_per_second")
        rows.append({"replicas": n, "label": r.label, "throughput": r.throughput, "ideal": n * one.throughput,
                     "efficiency": None if r.throughput is None else r.throughput / (n * one.throughput),
                     "output_tokens_per_second": tok,
                     "token_efficiency": None if not (tok and tok1) else tok / (n * tok1),
                     "latency_p99": r.p99})
    return rows
