import random
import statistics

import pytest

from orchestrator.bench.kpi import (
    Window,
    client_kpis,
    measured,
    percentile,
    throughput_series,
    window_of,
)


def test_percentiles_match_an_independent_implementation():
    rng = random.Random(7)
    values = sorted(rng.lognormvariate(0, 0.6) for _ in range(1001))
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    for q, cut in ((0.50, cuts[49]), (0.95, cuts[94]), (0.99, cuts[98])):
        assert percentile(values, q) == pytest.approx(cut, rel=1e-12)
    assert percentile([], 0.5) is None and percentile([3.0], 0.99) == 3.0


def rec(start, latency, ok=True, warmup=False, tokens=10, ttft=0.1):
    return {"start": start, "latency_s": latency, "ok": ok, "warmup": warmup, "tokens_out": tokens if ok else None,
            "ttft_s": ttft if ok else None, "itl_s": 0.01 if ok else None, "client_cpu_s": 0.001,
            "status": 200 if ok else 503, "error": None if ok else "HTTP 503"}


def test_warmup_is_excluded_and_window_ends_at_the_last_completion():
    records = [rec(100.0, 1.0, warmup=True), rec(101.0, 0.5), rec(102.0, 2.0), rec(103.0, 1.0, ok=False)]
    w = window_of(records, warmup_until=100.5)
    assert (w.start, w.end) == (100.5, 104.0)
    assert [r["start"] for r in measured(records, w)] == [101.0, 102.0, 103.0]
    k = {x.kpi: x.value for x in client_kpis(records, w)}
    assert k["requests_total"] == 3 and k["requests_ok"] == 2 and k["requests_error"] == 1
    assert k["throughput"] == pytest.approx(2 / 3.5) and k["error_rate"] == pytest.approx(1 / 3)
    assert k["output_tokens_per_second"] == pytest.approx(20 / 3.5)
    assert k["latency_p50"] == pytest.approx(1.25) and k["latency_max"] == 2.0


def test_absent_token_counts_are_absent_not_zero():
    records = [rec(1.0, 0.5, tokens=None), rec(2.0, 0.5, tokens=None)]
    k = {x.kpi: x for x in client_kpis(records, Window(0.0, 3.0))}
    assert k["output_tokens_per_second"].value is None and "no token counts" in k["output_tokens_per_second"].note


def test_throughput_series_bins_completions():
    records = [rec(10.0 + i * 0.25, 0.1) for i in range(8)]  # 8 completions over 2 s
    series = throughput_series(records, Window(10.0, 12.0))
    assert [v for _, v in series] == [4.0, 4.0]
