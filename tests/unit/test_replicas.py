"""Replicas, the pure parts: the load split, the recipe fields, the cross-check's totals, the scaling
table (the sessions themselves run in tests/e2e/test_replicas_e2e.py)."""

import pytest

from orchestrator.analysis.experiments import PointResult, scaling
from orchestrator.bench.clients import split_load
from orchestrator.bench.recipe import ClientSpec
from orchestrator.schema import SchemaViolation
from orchestrator.reports.artifacts import with_replica_totals
from orchestrator.services.recipes import parse_recipe


def test_a_clients_load_is_split_over_the_replicas_with_the_remainder_first():
    spec = ClientSpec(kind="openai-completions", target="llm", concurrency=5, requests=11, rate=3.0)
    parts = [split_load(spec, i, 3) for i in range(3)]
    assert [p.concurrency for p in parts] == [2, 2, 1] and [p.requests for p in parts] == [4, 4, 3]
    assert [p.rate for p in parts] == [1.0, 1.0, 1.0]
    assert sum(p.concurrency for p in parts) == 5 and sum(p.requests for p in parts) == 11
    assert split_load(spec, 0, 1) is spec
    timed = split_load(ClientSpec(kind="openai-completions", target="llm", concurrency=2, duration=5.0), 1, 2)
    assert timed.requests is None and timed.rate is None and timed.duration == 5.0


def test_replica_fields_are_validated():
    r = parse_recipe({"service": {"name": "x", "command": "true", "replicas": 3, "replica_not_ready": "measure_others"}})
    assert (r.replicas, r.replica_not_ready) == (3, "measure_others")
    assert parse_recipe({"service": {"name": "x", "command": "true"}}).replicas == 1
    with pytest.raises(SchemaViolation, match="service.replicas: expected an integer between 1 and 64, got 0"):
        parse_recipe({"service": {"name": "x", "command": "true", "replicas": 0}})
    with pytest.raises(SchemaViolation, match="service.replica_not_ready: expected stop or measure_others"):
        parse_recipe({"service": {"name": "x", "command": "true", "replica_not_ready": "ignore"}})


def row(service, client, engine, tolerance=2.0, what="output tokens"):
    return {"service": service, "engine": "llama.cpp", "what": what, "metric": "llamacpp:tokens_predicted_total",
            "client": client, "engine_count": engine, "tolerance": tolerance, "span": "s", "agree": True}


def test_the_cross_check_adds_the_replicas_counters_together():
    rows = [row("llm-r1", 100.0, 99.0), row("llm-r2", 50.0, 52.0), row("other", 7.0, 7.0)]
    out = with_replica_totals(rows, {"llm": ["llm-r1", "llm-r2"]})
    total = out[-1]
    assert out[:3] == rows and total["service"] == "llm (2 replicas)"
    assert (total["client"], total["engine_count"], total["tolerance"], total["agree"]) == (150.0, 151.0, 4.0, True)
    # a replica without the counter: no total is claimed
    assert with_replica_totals([row("llm-r1", 1.0, 1.0), row("llm-r2", 1.0, None)], {"llm": ["llm-r1", "llm-r2"]}) \
        == [row("llm-r1", 1.0, 1.0), row("llm-r2", 1.0, None)]
    far = with_replica_totals([row("llm-r1", 100.0, 90.0, 1.0), row("llm-r2", 10.0, 10.0, 1.0)],
                              {"llm": ["llm-r1", "llm-r2"]})[-1]
    assert far["agree"] is False and far["note"] == "differ by 10"


def test_the_scaling_table_compares_each_point_with_n_times_one_replica():
    results = [PointResult("replicas=1", 1.0, 10.0, 0.1, 0.2, None, 0.0),
               PointResult("replicas=2", 2.0, 18.0, 0.1, 0.3, None, 0.0),
               PointResult("replicas=3", 3.0, 21.0, 0.1, 0.5, None, 0.0)]
    kpis = {"replicas=1": {"output_tokens_per_second": 100.0}, "replicas=2": {"output_tokens_per_second": 190.0},
            "replicas=3": {"output_tokens_per_second": 240.0}}
    rows = scaling({"services.llm.replicas": [1, 2, 3]}, results, kpis)
    assert [(r["replicas"], r["ideal"], r["efficiency"]) for r in rows] == [(1, 10.0, 1.0), (2, 20.0, 0.9), (3, 30.0, 0.7)]
    assert [round(r["token_efficiency"], 3) for r in rows] == [1.0, 0.95, 0.8]
    assert scaling({"concurrency": [1, 2]}, results, kpis) == []
    assert scaling({"services.llm.replicas": [2, 3]}, results[1:], kpis) == []   # no point at one replica
