import pytest

from orchestrator.analysis.records import RequestTable
from orchestrator.analysis.experiments import (
    PointResult,
    compare,
    interval_noise,
    knee,
    parse_thresholds,
    saturation,
    slo_limit,
)
from orchestrator.bench.recipe import load_benchmark_text
from orchestrator.analysis.sweep import Point, grid, parse_slo
from orchestrator.bench.points import apply_to_client, service_changes
from orchestrator.errors import RecipeError

BASE = ("benchmark: {name: x, services: [{recipe: standin-llm}], clients: [{kind: openai-completions, "
        "target: standin-llm, duration: 5s, payload: {max_tokens: 8}}], %s}")


def test_several_swept_fields_make_a_grid():
    pts = grid({"concurrency": [1, 2], "payload.max_tokens": [16, 64]})
    assert [p.label for p in pts] == ["concurrency=1,payload.max_tokens=16", "concurrency=1,payload.max_tokens=64",
                                      "concurrency=2,payload.max_tokens=16", "concurrency=2,payload.max_tokens=64"]
    spec = load_benchmark_text(BASE % "sweep: {concurrency: [1]}", "b.yaml").clients[0]
    changed = apply_to_client(spec, pts[3])
    assert changed.concurrency == 2 and changed.payload == {"max_tokens": 64} and spec.payload == {"max_tokens": 8}


def test_service_fields_are_routed_to_their_service():
    p = Point(0, {"services.standin-llm.resources.cpus_per_task": 2, "concurrency": 4})
    assert service_changes(p, "standin-llm") == {"resources.cpus_per_task": 2}


@pytest.mark.parametrize("sweep,message", [
    ("{concurency: [1, 2]}", "benchmark.sweep.concurency: expected a client field"),
    ("{concurrency: []}", "benchmark.sweep.concurrency: expected a non-empty list"),
    ("{concurrency: [1, two]}", "benchmark.sweep.concurrency[1]: expected a positive int"),
    ("{services.other.command: [a]}", "benchmark.sweep.services.other.command: expected services.<name>.<field>"),
])
def test_bad_sweeps_are_refused(sweep, message):
    with pytest.raises(RecipeError, match=message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        load_benchmark_text(BASE % f"sweep: {sweep}", "b.yaml")


def test_slo_values():
    assert parse_slo({"p99_latency": "2s", "ttft_p99": "500ms", "error_rate": 0.01}) == {
        "p99_latency": 2.0, "ttft_p99": 0.5, "error_rate": 0.01}
    with pytest.raises(RecipeError, match="benchmark.slo.p99: expected one of"):
        parse_slo({"p99": "2s"})


CURVE = [PointResult("c=1", 1, 2.6, 0.37, 0.376, 0.05, 0.0), PointResult("c=2", 2, 5.2, 0.37, 0.379, 0.05, 0.0),
         PointResult("c=4", 4, 10.2, 0.38, 0.382, 0.05, 0.0), PointResult("c=8", 8, 9.8, 0.75, 1.132, 0.8, 0.0)]


def test_saturation_knee_and_slo_on_a_saturating_curve():
    best, text = saturation(CURVE)
    assert best.label == "c=4" and "10.20 requests/s at c=4" in text
    k, text = knee(CURVE)
    assert k.label == "c=4" and "p99 latency grew 196%" in text and "throughput grew -4%" in text
    s, text = slo_limit(CURVE, {"p99_latency": 0.5})
    assert s.label == "c=4" and "(p99_latency 382 ms)" in text
    s, text = slo_limit(CURVE, {"p99_latency": 0.1})
    assert s is None and "No point meets the SLO" in text


def test_a_data_services_sub_millisecond_latencies_are_shown_not_rounded_to_zero():
    redis = [PointResult("c=1", 1, 8406.4, 0.0002, 0.00033, None, 0.0),
             PointResult("c=4", 4, 13956.0, 0.0004, 0.000998, None, 0.0)]
    k, text = knee(redis)
    assert k.label == "c=1" and "(0.33 to 1.00 ms)" in text, text
    s, text = slo_limit(redis, {"p99_latency": 0.0005})
    assert s.label == "c=1" and "p99_latency <= 0.50 ms" in text and "(p99_latency 0.33 ms)" in text, text


def test_linear_curve_has_no_knee():
    lin = [PointResult(f"c={c}", c, c * 2.5, 0.4, 0.4 * (1 + 0.05 * c), 0.05, 0.0) for c in (1, 2, 4, 8)]
    k, text = knee(lin)
    assert k is None and text.startswith("No knee")


def test_thresholds():
    assert parse_thresholds(["p99=10%", "throughput=5%"]) == {"latency_p99": 0.10, "throughput": 0.05}
    with pytest.raises(ValueError, match="expected NAME=PCT%"):
        parse_thresholds(["p99=10"])


def test_regression_needs_the_threshold_and_to_exceed_the_noise():
    a = {"latency_p99": 1.0, "throughput": 10.0}
    thr = {"latency_p99": 0.10, "throughput": 0.10}
    quiet = {"latency_p99": 0.01, "throughput": 0.01}
    rows = {r.kpi: r.verdict for r in compare(a, {"latency_p99": 1.5, "throughput": 9.95}, quiet, quiet, thr)}
    assert rows == {"latency_p99": "REGRESSION", "throughput": "not significant"}
    noisy = {"latency_p99": 0.3, "throughput": 0.3}
    rows = {r.kpi: r.verdict for r in compare(a, {"latency_p99": 1.5, "throughput": 8.0}, noisy, noisy, thr)}
    assert rows == {"latency_p99": "not significant", "throughput": "not significant"}


def test_interval_noise_is_small_for_steady_load_and_large_for_bursty():
    steady = RequestTable.from_records({"start": i * 0.1, "latency_s": 0.05, "ok": True} for i in range(600))
    assert interval_noise(steady, 0.0, 60.0, "throughput") < 0.01
    bursty = RequestTable.from_records({"start": t, "latency_s": 0.05, "ok": True}
                                       for k in range(6) for t in [k * 10.0] * (5 if k % 2 else 50))
    assert interval_noise(bursty, 0.0, 60.0, "throughput") > 0.2


def test_noise_of_itl_uses_every_gap_and_any_percentile():
    records = RequestTable.from_records({"start": 10.0 + i * 0.1, "latency_s": 0.05, "ok": True,
                                         "tpot_s": 0.01 + (i % 3) * 0.001, "itl_s": [0.01 + (i % 5) * 0.001, 0.02]}
                                        for i in range(60))
    assert interval_noise(records, 10.0, 16.0, "itl_p90") == 0.0  # every interval's p90 is the 0.02 s gap
    assert interval_noise(records, 10.0, 16.0, "itl_p50") is not None
    assert interval_noise(records, 10.0, 16.0, "tpot_p50") is not None


def test_a_tail_percentile_of_few_samples_is_as_noisy_as_its_last_values():
    from orchestrator.analysis.experiments import quantile_noise
    # 80 requests at 290 ms and one at 324 ms: p99 is nearly the maximum, its noise the gap up to it
    recs = [{"start": 10.0 + i * 0.07, "latency_s": 0.290 + (i % 5) * 0.0005, "ok": True} for i in range(80)]
    recs.append({"start": 15.0, "latency_s": 0.324, "ok": True})
    with RequestTable.from_records(recs) as t:
        n99 = quantile_noise(t, 10.0, 16.0, "latency_p99")
        n50 = quantile_noise(t, 10.0, 16.0, "latency_p50")
    assert n99 > 0.05 and n50 < 0.01  # a 10% change of p99 here is not significant; of p50 it would be
    assert quantile_noise(t, 10.0, 16.0, "throughput") is None
