"""The workloads users bring from the reference tools: shared prefixes, multi-turn chats, replayed
traces, their own prompts and LoRA mixes; from the recipe's words to the rows a client sends."""

import json
import math
from pathlib import Path

import pytest

from orchestrator.bench.datasets import DatasetSpec, build_rows, read_prompts, read_trace
from orchestrator.bench.recipe import load_benchmark_text
from orchestrator.errors import RecipeError


def bench(client: str, extra: str = "") -> str:
    return ("benchmark:\n  name: b\n  services: [{recipe: vllm}]\n  clients:\n    - kind: openai-completions\n"
            "      target: vllm\n" + "".join(f"      {line}\n" for line in client.strip().splitlines()) + extra)


def test_prefix_rows_share_each_prefix_equally_and_differ_after_it():
    spec = DatasetSpec(kind="prefix", prefixes=4, prefix_tokens=50, suffix_tokens=6, output_tokens=(16, 0), seed=3)
    rows = build_rows(spec, 40)
    assert rows == build_rows(spec, 40)                             # the seed decides
    groups: dict = {}
    for r in rows:
        words = r["prompt"].split()
        assert len(words) == 56 and r["max_tokens"] == 16
        groups.setdefault(r["prefix"], set()).add(" ".join(words[:50]))
    # every group has one prefix of its own, and 10 of the 40 requests
    assert len(groups) == 4 and all(len(p) == 1 for p in groups.values())
    assert len({next(iter(p)) for p in groups.values()}) == 4
    assert sorted(sum(r["prefix"] == g for r in rows) for g in groups) == [10] * 4
    # as many prefixes as requests: none shared
    alone = build_rows(DatasetSpec(kind="prefix", prefixes=40, prefix_tokens=50, suffix_tokens=6, seed=3), 40)
    assert len({" ".join(r["prompt"].split()[:50]) for r in alone}) == 40


def test_multiturn_rows_are_conversations_enough_for_the_requests():
    rows = build_rows(DatasetSpec(kind="multiturn", turns=3, input_tokens=(12, 0), output_tokens=(5, 0)), 10)
    assert len(rows) == math.ceil(10 / 3) and [r["conversation"] for r in rows] == [0, 1, 2, 3]
    assert all(len(r["turns"]) == 3 for r in rows)
    assert all(len(t["prompt"].split()) == 12 and t["max_tokens"] == 5 for r in rows for t in r["turns"])


def test_sharegpt_conversations_give_every_turn_not_only_the_first(tmp_path):
    data = [{"conversations": [{"from": "human", "value": "q one"}, {"from": "gpt", "value": "a b c"},
                               {"from": "human", "value": "q two"}, {"from": "gpt", "value": "d e"},
                               {"from": "human", "value": "dangling"}]},
            {"conversations": [{"from": "gpt", "value": "no human first"}]}]
    path = tmp_path / "chats.json"
    path.write_text(json.dumps(data))
    rows = build_rows(DatasetSpec(kind="multiturn", turns=4, path=str(path)), 8)
    assert [[(t["prompt"], t["max_tokens"]) for t in r["turns"]] for r in rows] == [[("q one", 3), ("q two", 2)]]
    # the single-turn form still takes each conversation's first turn
    assert [r["prompt"] for r in build_rows(DatasetSpec(kind="sharegpt", path=str(path)), 5)] == ["q one"]


def write(path: Path, lines: list) -> Path:
    path.write_text("".join((json.dumps(x) if not isinstance(x, str) else x) + "\n" for x in lines))
    return path


def test_a_trace_is_replayed_at_its_times_and_shared_hash_ids_share_their_block(tmp_path):
    trace = write(tmp_path / "t.jsonl", [
        {"timestamp": 1000, "input_length": 20, "output_length": 4, "hash_ids": [7, 8]},
        {"timestamp": 1500.5, "input_length": 20, "output_length": 6, "hash_ids": [7, 9]},
        {"timestamp": 4000, "input_length": 25, "output_length": 2}])
    rows = build_rows(DatasetSpec(kind="trace", path=str(trace), block_tokens=10), None)
    assert [r["at"] for r in rows] == [0.0, 0.5005, 3.0] and [r["max_tokens"] for r in rows] == [4, 6, 2]
    a, b, c = (r["prompt"].split() for r in rows)
    assert (len(a), len(b), len(c)) == (20, 20, 25)
    assert a[:10] == b[:10] and a[10:] != b[10:]          # block 7 shared, 8 and 9 not
    assert c[:10] != a[:10]


@pytest.mark.parametrize("line, message", [
    ({"input_length": 5, "output_length": 2}, "line 2: timestamp: expected milliseconds"),
    ({"timestamp": 1, "output_length": 2}, "line 2: input_length: expected an integer of at least 1, got nothing"),
    ({"timestamp": 1, "input_length": 5, "output_length": "2"}, "line 2: output_length: expected an integer"),
    ({"timestamp": 1, "input_length": 5, "output_length": 2, "hash_ids": [1, "x"]},
     "line 2: hash_ids: expected a list of integers"),
    ("{not json", "line 2: not JSON"),
    ("[1, 2]", "line 2: expected a JSON object, got list"),
])
def test_a_bad_trace_line_names_its_file_line_and_field(tmp_path, line, message):
    trace = write(tmp_path / "bad.jsonl", [{"timestamp": 0, "input_length": 5, "output_length": 2}, line])
    with pytest.raises(RecipeError) as err:
        read_trace(trace)
    assert str(trace) in str(err.value) and message in str(err.value)


def test_prompts_files_take_prompts_or_chats_and_name_bad_lines(tmp_path):
    good = write(tmp_path / "p.jsonl", [{"prompt": "hello", "output_tokens": 9},
                                        {"messages": [{"role": "user", "content": "hi"}]}])
    assert read_prompts(good) == [{"row": 0, "prompt": "hello", "max_tokens": 9},
                                  {"row": 1, "messages": [{"role": "user", "content": "hi"}]}]
    for bad, message in ((["plain text"], "line 1: not JSON"),
                         ([{"prompt": "a", "messages": []}], "line 1: expected one of prompt"),
                         ([{"prompt": "a"}, {"prompt": "b", "output_tokens": 0}], "line 2: output_tokens"),
                         ([{"messages": [{"role": "user"}]}], "line 1: messages")):
        with pytest.raises(RecipeError, match=message):
            read_prompts(write(tmp_path / "bad.jsonl", bad))


@pytest.mark.parametrize("client, message", [
    ("dataset: {kind: trace, path: t.jsonl}\nrate: 4", "clients[0].rate: a trace is sent at its own times"),
    ("dataset: {kind: trace}", "clients[0].dataset.path: expected the path of a JSONL trace"),
    ("requests: 8\ndataset: {kind: multiturn}\nrate: 2", "clients[0].rate: a multiturn client slot carries one"),
    ("requests: 8\nmodels: {base: 0.5, lora-a: 0}", "clients[0].models.lora-a: expected a positive weight"),
    ("requests: 8\nmodels: {base: -1}", "clients[0].models.base: expected a positive weight"),
    ("requests: 8\nmodels: {base: x}", "clients[0].models.base: expected a positive weight"),
    ("requests: 8\nmodels: [a]\npayload: {model: a}", "expected models (a mix) or payload.model"),
    ("requests: 8\nmodels: [a]\nmodel_selection: sticky", "model_selection: expected random or round-robin"),
    ("requests: 8\ndataset: {kind: prefix, turns: 3}", "clients[0].dataset.turns: unknown key; valid keys: kind, prefixes"),
    ("requests: 8\ncache: lukewarm", "clients[0].cache: expected cold or warm"),
])
def test_refused_workloads_name_the_field(client, message):
    with pytest.raises(RecipeError) as err:
        load_benchmark_text(bench(client), "b.yaml")
    assert str(err.value).startswith("b.yaml: benchmark.") and message in str(err.value)


def test_the_names_of_the_issue_parse_as_written():
    r = load_benchmark_text(bench("""requests: 64
dataset: {kind: prefix, prefixes: 4, prefix_tokens: 256, suffix_tokens: 32, output_tokens: 16, seed: 1}
cache: cold
models: {base: 0.5, adapter-a: 0.3, adapter-b: 0.2}"""), "b.yaml")
    c = r.clients[0]
    assert (c.dataset.kind, c.dataset.prefixes, c.dataset.prefix_tokens, c.dataset.suffix_tokens) == ("prefix", 4, 256, 32)
    assert c.dataset.output_tokens == (16, 0.0) and c.cache == "cold" and c.models["adapter-a"] == 0.3
    mt = load_benchmark_text(bench("requests: 8\ndataset: {kind: multiturn, turns: 4, input_tokens: {mean: 64}, "
                                   "output_tokens: {mean: 32}, think_time: 0s}"), "b.yaml").clients[0].dataset
    assert (mt.turns, mt.input_tokens, mt.output_tokens, mt.think_time) == (4, (64, 0), (32, 0), 0.0)
    tr = load_benchmark_text(bench("dataset: {kind: trace, path: trace.jsonl, speedup: 1.0}"), "b.yaml")
    assert tr.clients[0].dataset.timed and tr.clients[0].requests is None and tr.clients[0].duration is None


def test_validity_and_search_are_parsed_with_their_units():
    r = load_benchmark_text(bench("rate: 2\nrequests: 8", "  validity: {send_lag_p99: 50ms, error_rate: 0.05}\n"
                                  "  search: {rate: [1, 64], slo: {ttft_p99: 500ms, tpot_p99: 50ms}, goodput: 0.95}\n"),
                            "b.yaml")
    assert (r.validity.send_lag_p99, r.validity.error_rate, r.validity.achieved_rate) == (0.05, 0.05, 0.9)
    s = r.search
    assert (s.field, s.low, s.high, s.goodput) == ("rate", 1, 64, 0.95)
    assert s.slo == {"ttft_p99": 0.5, "tpot_p99": 0.05} and s.per_request == {"ttft": 0.5, "tpot": 0.05}
    for extra, message in (("  search: {rate: [8, 2], slo: {ttft_p99: 1s}}\n", "expected low < high"),
                           ("  search: {rate: [1, 8], slo: {ttft_p42: 1s}}\n", "search.slo.ttft_p42"),
                           ("  search: {rate: [1, 8], slo: {error_rate: 0.01}, goodput: 0.9}\n", "needs a per-request"),
                           ("  validity: {error_rate: 2}\n", "validity.error_rate: expected a share"),
                           ("  search: {rate: [1, 8], slo: {ttft_p99: 1s}}\n  sweep: {concurrency: [1, 2]}\n",
                            "a search or a sweep, not both")):
        with pytest.raises(RecipeError, match=message):
            load_benchmark_text(bench("rate: 2\nrequests: 8", extra), "b.yaml")
    with pytest.raises(RecipeError, match="search over rate needs open-loop clients"):
        load_benchmark_text(bench("requests: 8", "  search: {rate: [1, 8], slo: {ttft_p99: 1s}}\n"), "b.yaml")


def test_a_search_with_a_goodput_share_counts_its_limits_per_request():
    r = load_benchmark_text(bench("rate: 2\nrequests: 8\nslo: {e2e: 5s}",
                                  "  search: {rate: [1, 64], slo: {ttft_p99: 500ms, tpot_p99: 50ms}, goodput: 0.95}\n"),
                            "b.yaml")
    assert r.clients[0].slo == {"e2e": 5.0, "ttft": 0.5, "tpot": 0.05}
