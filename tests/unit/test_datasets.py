import json
import statistics

import pytest

from orchestrator.bench.datasets import DatasetSpec, build_rows
from orchestrator.errors import RecipeError


def test_synthetic_rows_follow_the_distributions_and_the_seed():
    spec = DatasetSpec(input_tokens=(64, 16), output_tokens=(32, 8), seed=1)
    rows = build_rows(spec, 2000)
    assert [r["row"] for r in rows] == list(range(2000))
    words = [len(r["prompt"].split()) for r in rows]
    outs = [r["max_tokens"] for r in rows]
    assert abs(statistics.mean(words) - 64) < 2 and abs(statistics.stdev(words) - 16) < 2
    assert abs(statistics.mean(outs) - 32) < 1 and abs(statistics.stdev(outs) - 8) < 1
    assert rows == build_rows(spec, 2000)                       # reproducible
    assert rows != build_rows(DatasetSpec(input_tokens=(64, 16), output_tokens=(32, 8), seed=2), 2000)


def test_sharegpt_rows_take_the_first_human_turn_and_its_answer_length(tmp_path):
    data = [{"conversations": [{"from": "human", "value": "what is slurm"},
                               {"from": "gpt", "value": "a workload manager for clusters"}]},
            {"conversations": [{"from": "gpt", "value": "no human first"}]},
            {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello there"}]}]
    path = tmp_path / "sharegpt.json"
    path.write_text(json.dumps(data))
    rows = build_rows(DatasetSpec(kind="sharegpt", path=str(path), seed=3), 10)
    assert sorted((r["prompt"], r["max_tokens"]) for r in rows) == [("hi", 2), ("what is slurm", 5)]


def test_a_file_that_is_not_sharegpt_is_a_clear_error(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"not": "a list"}))
    with pytest.raises(RecipeError, match="no conversation with a human turn"):
        build_rows(DatasetSpec(kind="sharegpt", path=str(path)), 5)


def test_goodput_counts_requests_meeting_every_slo():
    from orchestrator.analysis.kpi import Window, client_kpis
    recs = [{"start": 1.0 + i, "latency_s": 0.5 if i % 2 else 3.0, "ttft_s": 0.1, "tpot_s": 0.01, "ok": True,
             "tokens_out": 10, "tokens_in": 5, "itl_s": [0.01, 0.02], "client_cpu_s": 0.001} for i in range(10)]
    from orchestrator.analysis.records import RequestTable
    with RequestTable.from_records(recs) as t:
        k = {x.kpi: x for x in client_kpis(t, Window(1.0, 11.0), (50, 90), {"ttft": 0.2, "e2e": 1.0})}
    assert k["goodput"].value == 5 / 10.0
    assert k["input_tokens_per_second"].value == 50 / 10.0
    assert k["itl_p50"].value == pytest.approx(0.015) and "tpot_p90" in k and "latency_p95" not in k
