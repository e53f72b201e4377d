"""KPIs of a measured window, computed exactly from the clients' raw records (pure).

Percentiles use linear interpolation between closest ranks (numpy's default
"linear" method): p = v[floor(h)] + (h - floor(h)) * (v[ceil(h)] - v[floor(h)])
with h = (n - 1) * q over the sorted values.

Definitions follow vLLM's benchmark (``vllm bench serve``): TTFT, time to the
first streamed chunk; TPOT per request, (latency - TTFT) / (output tokens - 1);
ITL, every gap between streamed chunks; goodput, requests/s of the window that
met every per-request SLO given (ttft, tpot, e2e).
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


DEFAULT_PERCENTILES = (50, 90, 95, 99)
DEFINITIONS = {
    "ttft": "time to first token: from sending the request to the first streamed chunk",
    "tpot": "time per output token, per request: (latency - TTFT) / (output tokens - 1)",
    "itl": "inter-token latency: every gap between two streamed chunks",
    "goodput": "requests/s of the window that met every per-request SLO",
}


def _label(p: float) -> str:
    return f"p{p:g}".replace(".", "_")


def _dist(name: str, values: list[float], unit: str, percentiles=DEFAULT_PERCENTILES) -> list[KPI]:
    v = sorted(values)
    note = "" if v else "no samples"
    out = [KPI(f"{name}_{_label(p)}", percentile(v, p / 100), unit, "client", note) for p in percentiles]
    return out + [KPI(f"{name}_max", v[-1] if v else None, unit, "client", note),
                  KPI(f"{name}_mean", sum(v) / len(v) if v else None, unit, "client", note)]


def gaps(r: dict) -> list[float]:
    """The gaps between streamed chunks of a request (ITL samples)."""
    itl = r.get("itl_s")
    if itl is None:
        return []
    return itl if isinstance(itl, list) else [itl]  # sessions before 0.2 stored one mean per request


def meets_slo(r: dict, slo: dict) -> bool:
    """Every per-request SLO met (seconds: ttft, tpot, e2e); a request with no streamed chunks has no TTFT."""
    if "ttft" in slo and (r.get("ttft_s") is None or r["ttft_s"] > slo["ttft"]):
        return False
    if "tpot" in slo and r.get("tpot_s") is not None and r["tpot_s"] > slo["tpot"]:
        return False
    return not ("e2e" in slo and r["latency_s"] > slo["e2e"])


def client_kpis(records: list[dict], window: Window, percentiles=DEFAULT_PERCENTILES,
                slo: dict | None = None) -> list[KPI]:
    m = measured(records, window)
    ok = [r for r in m if r["ok"]]
    n = len(m)
    tokens = [r["tokens_out"] for r in ok if r.get("tokens_out") is not None]
    tokens_in = [r["tokens_in"] for r in ok if r.get("tokens_in") is not None]
    out = [KPI("requests_total", float(n), "requests", "client"),
           KPI("requests_ok", float(len(ok)), "requests", "client"),
           KPI("requests_error", float(n - len(ok)), "requests", "client"),
           KPI("window_seconds", window.seconds, "s", "client"),
           KPI("throughput", len(ok) / window.seconds, "requests/s", "client"),
           KPI("output_tokens_per_second", sum(tokens) / window.seconds if tokens else None, "tokens/s", "client",
               "" if tokens else "the API reported no token counts"),
           KPI("input_tokens_per_second", sum(tokens_in) / window.seconds if tokens_in else None, "tokens/s", "client",
               "" if tokens_in else "the API reported no prompt token counts"),
           KPI("success_rate", len(ok) / n if n else None, "ratio", "client"),
           KPI("error_rate", (n - len(ok)) / n if n else None, "ratio", "client")]
    if slo:
        good = sum(1 for r in ok if meets_slo(r, slo))
        out.append(KPI("goodput", good / window.seconds, "requests/s", "client",
                       "requests meeting " + ", ".join(f"{k} <= {v * 1000:g} ms" for k, v in slo.items())))
    out += _dist("latency", [r["latency_s"] for r in ok], "s", percentiles)
    out += _dist("ttft", [r["ttft_s"] for r in ok if r.get("ttft_s") is not None], "s", percentiles)
    out += _dist("tpot", [r["tpot_s"] for r in ok if r.get("tpot_s") is not None], "s", percentiles)
    out += _dist("itl", [g for r in ok for g in gaps(r)], "s", percentiles)
    retried = sum(1 for r in m if r.get("retried"))
    out.append(KPI("requests_retried", float(retried), "requests", "client",
                   "sent again once on a new connection: the server had closed the kept-alive one"))
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


