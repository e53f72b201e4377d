import pytest

from orchestrator.analysis.kpi import (
    Window,
    client_kpis,
    count_in_window,
    throughput_series,
    window_of,
)
from orchestrator.analysis.records import RequestTable


def table(records):
    return RequestTable.from_records(records)


def rec(start, latency, ok=True, warmup=False, tokens=10, ttft=0.1):
    return {"start": start, "latency_s": latency, "ok": ok, "warmup": warmup, "tokens_out": tokens if ok else None,
            "ttft_s": ttft if ok else None, "itl_s": 0.01 if ok else None, "client_cpu_s": 0.001,
            "status": 200 if ok else 503, "error": None if ok else "HTTP 503"}


def test_warmup_is_excluded_and_window_ends_at_the_last_completion():
    records = [rec(100.0, 1.0, warmup=True), rec(101.0, 0.5), rec(102.0, 2.0), rec(103.0, 1.0, ok=False)]
    t = table(records)
    w = window_of(t, warmup_until=100.5)
    assert (w.start, w.end) == (100.5, 104.0)
    assert count_in_window(t, w) == 3
    k = {x.kpi: x.value for x in client_kpis(t, w)}
    assert k["requests_total"] == 3 and k["requests_ok"] == 2 and k["requests_error"] == 1
    assert k["throughput"] == pytest.approx(2 / 3.5) and k["error_rate"] == pytest.approx(1 / 3)
    assert k["output_tokens_per_second"] == pytest.approx(20 / 3.5)
    assert k["latency_p50"] == pytest.approx(1.25) and k["latency_max"] == 2.0


def test_absent_token_counts_are_absent_not_zero():
    records = [rec(1.0, 0.5, tokens=None), rec(2.0, 0.5, tokens=None)]
    k = {x.kpi: x for x in client_kpis(table(records), Window(0.0, 3.0))}
    assert k["output_tokens_per_second"].value is None and "no token counts" in k["output_tokens_per_second"].note


def test_throughput_series_bins_completions():
    records = [rec(10.0 + i * 0.25, 0.1) for i in range(8)]  # 8 completions over 2 s
    series = throughput_series(table(records), Window(10.0, 12.0))
    assert [v for _, v in series] == [4.0, 4.0]


def test_every_percentile_of_every_distribution_matches_numpy_on_many_chunks(monkeypatch):
    """Chunks of 7 rows: every KPI pass crosses chunk boundaries, ITL gaps included."""
    import numpy as np

    import orchestrator.analysis.records as records_mod
    rng = np.random.default_rng(3)
    recs = []
    for i in range(200):
        gaps = rng.exponential(0.02, size=int(rng.integers(0, 6))).round(6).tolist()
        recs.append({"start": 10.0 + i * 0.1, "latency_s": float(rng.lognormal(-1, 0.5)), "ok": i % 13 != 0,
                     "ttft_s": float(rng.random()), "tpot_s": None if i % 3 == 0 else float(rng.random() / 10),
                     "itl_s": gaps, "tokens_out": 5})
    monkeypatch.setattr(records_mod, "CHUNK", 7)
    with table(recs) as t:
        chunks = list(t.chunks(["start", "gaps"]))
        assert len(chunks) == 29 and sum(c["gaps"].size for c in chunks) == sum(len(r["itl_s"]) for r in recs)
        k = {x.kpi: x.value for x in client_kpis(t, Window(10.0, 40.0), (50, 99))}
    ok = [r for r in recs if r["ok"]]
    for name, values in (("latency", [r["latency_s"] for r in ok]), ("ttft", [r["ttft_s"] for r in ok]),
                         ("tpot", [r["tpot_s"] for r in ok if r["tpot_s"] is not None]),
                         ("itl", np.array([g for r in ok for g in r["itl_s"]], dtype="f4"))):
        for p in (50, 99):
            assert k[f"{name}_p{p}"] == pytest.approx(float(np.percentile(np.asarray(values, "f8"), p)), rel=1e-12)
        assert k[f"{name}_max"] == pytest.approx(float(max(values)))


def test_a_data_service_gets_kpis_per_operation_and_no_token_kpis():
    recs = [{"start": 1.0 + i * 0.01, "latency_s": (0.001 if i % 4 else 0.004), "ok": i != 7,
             "op": "set" if i % 4 == 0 else "get", "bytes": 100, "error": None if i != 7 else "redis: OOM"}
            for i in range(400)]
    with table(recs) as t:
        assert t.ops == ["set", "get"]
        k = {x.kpi: x for x in client_kpis(t, Window(1.0, 5.0), (50,))}
    assert k["get_operations_per_second"].value == 299 / 4.0 and k["get_errors"].value == 1
    assert k["set_operations_per_second"].value == 100 / 4.0
    assert k["set_latency_p50"].value == 0.004 and k["get_latency_p50"].value == 0.001
    assert k["bytes_per_second"].value == 399 * 100 / 4.0
    assert not {"ttft_p50", "itl_p50", "output_tokens_per_second"} & set(k)
