"""KPIs of a measured window, computed exactly from the clients' raw records (pure).

Percentiles use linear interpolation between closest ranks (numpy's default
"linear" method): p = v[floor(h)] + (h - floor(h)) * (v[ceil(h)] - v[floor(h)])
with h = (n - 1) * q over the sorted values.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class KPI:
    kpi: str
    value: float | None          # None: the source is absent (never reported as zero)
    unit: str
    source: str                  # client | prometheus
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    h = (len(sorted_values) - 1) * q
    lo, hi = math.floor(h), math.ceil(h)
    return sorted_values[lo] + (h - lo) * (sorted_values[hi] - sorted_values[lo])


@dataclass(frozen=True)
class Window:
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return max(self.end - self.start, 1e-9)


def measured(records: list[dict], window: Window) -> list[dict]:
    """Requests of the measured window: not warm-up, started inside it."""
    return [r for r in records if not r.get("warmup") and window.start <= r["start"] <= window.end]


def window_of(records: list[dict], warmup_until: float) -> Window:
    """From the end of the warm-up to the completion of the last measured request."""
    ends = [r["start"] + r["latency_s"] for r in records if not r.get("warmup")]
    return Window(warmup_until, max(ends) if ends else warmup_until)


def _dist(name: str, values: list[float], unit: str, scale: float = 1.0) -> list[KPI]:
    v = sorted(x * scale for x in values)
    note = "" if v else "no samples"
    return [KPI(f"{name}_p50", percentile(v, 0.50), unit, "client", note),
            KPI(f"{name}_p95", percentile(v, 0.95), unit, "client", note),
            KPI(f"{name}_p99", percentile(v, 0.99), unit, "client", note),
            KPI(f"{name}_max", v[-1] if v else None, unit, "client", note),
            KPI(f"{name}_mean", sum(v) / len(v) if v else None, unit, "client", note)]


def client_kpis(records: list[dict], window: Window) -> list[KPI]:
    m = measured(records, window)
    ok = [r for r in m if r["ok"]]
    n = len(m)
    tokens = [r["tokens_out"] for r in ok if r.get("tokens_out") is not None]
    out = [KPI("requests_total", float(n), "requests", "client"),
           KPI("requests_ok", float(len(ok)), "requests", "client"),
           KPI("requests_error", float(n - len(ok)), "requests", "client"),
           KPI("window_seconds", window.seconds, "s", "client"),
           KPI("throughput", len(ok) / window.seconds, "requests/s", "client"),
           KPI("output_tokens_per_second", sum(tokens) / window.seconds if tokens else None, "tokens/s", "client",
               "" if tokens else "the API reported no token counts"),
           KPI("success_rate", len(ok) / n if n else None, "ratio", "client"),
           KPI("error_rate", (n - len(ok)) / n if n else None, "ratio", "client")]
    out += _dist("latency", [r["latency_s"] for r in ok], "s")
    out += _dist("ttft", [r["ttft_s"] for r in ok if r.get("ttft_s") is not None], "s")
    out += _dist("itl", [r["itl_s"] for r in ok if r.get("itl_s") is not None], "s")
    cpu = [r["client_cpu_s"] for r in m if r.get("client_cpu_s") is not None]
    out.append(KPI("client_overhead_cpu_per_request", sum(cpu) / len(cpu) if cpu else None, "s", "client",
                   "the load client's own CPU time per request"))
    return out


def throughput_series(records: list[dict], window: Window, bin_s: float = 1.0) -> list[tuple[float, float]]:
    """Completed OK requests per second, in bins from the window start."""
    nbins = max(1, math.ceil(window.seconds / bin_s))
    counts = [0] * nbins
    for r in measured(records, window):
        if r["ok"]:
            i = int((r["start"] + r["latency_s"] - window.start) / bin_s)
            counts[min(max(i, 0), nbins - 1)] += 1
    return [(window.start + (i + 0.5) * bin_s, c / bin_s) for i, c in enumerate(counts)]


