"""Client kinds (bench/kinds/): each kind's options, argv and checks in its own module; the reference
clients' results (recorded from vllm bench serve and aiperf against the sandbox's vLLM) become records."""

import json
from pathlib import Path

import pytest

from orchestrator.bench.kinds import KINDS, LLM_KINDS
from orchestrator.bench.recipe import load_benchmark_text
from orchestrator.bench.clients import client_recipe
from orchestrator.oncluster.loadgen import build_request, payload_problems
from orchestrator.oncluster.refclient import aiperf_records, read_result, vllm_bench_records
from orchestrator.errors import RecipeError

DATA = Path(__file__).resolve().parents[1] / "data" / "reference"
REF = """benchmark:
  name: x
  services: [{recipe: vllm}]
  clients:
    - kind: %s
      target: vllm
      concurrency: 4
      requests: 200
      dataset: {kind: synthetic, input_tokens: 64, output_tokens: 32, seed: 3}
      payload: {model: test-model, ignore_eos: true}
      tokenizer: /var/cache/orch-vllm/test-model
%s"""


def test_every_kind_is_one_module_with_its_program_shipped():
    assert {"openai-chat", "redis", "pgbench", "vector", "s3", "vllm-bench", "aiperf"} <= set(KINDS)
    assert {"vllm-bench", "aiperf", "openai-chat"} <= set(LLM_KINDS) and "redis" not in LLM_KINDS
    for k in KINDS.values():
        assert (Path(__file__).resolve().parents[2] / "orchestrator/oncluster" / k.program).is_file(), k.name


def test_vllm_bench_runs_the_tool_with_per_request_results_after_the_job_options():
    spec = load_benchmark_text(REF % ("vllm-bench", ""), "b.yaml").clients[0]
    command = client_recipe(spec, "http://n1:8000").command
    own, tool = command.split(" -- ", 1)
    assert own.startswith("python3 refclient.py --tool vllm-bench --concurrency 4") and "--requests 200" in own
    assert "--metrics-port {{ port }}" in own
    for part in ("vllm bench serve", "--base-url http://n1:8000", "--endpoint /v1/chat/completions",
                 "--random-input-len 64 --random-output-len 32 --random-range-ratio 0", "--num-prompts 200",
                 "--max-concurrency 4", "--request-rate inf", "--seed 3", "--save-detailed", "--ignore-eos",
                 "--tokenizer /var/cache/orch-vllm/test-model", "--model test-model"):
        assert part in tool, part


def test_aiperf_runs_profile_with_the_same_workload():
    spec = load_benchmark_text(REF % ("aiperf", "      rate: 5\n      arrival: gamma\n      burstiness: 0.5\n"),
                               "b.yaml").clients[0]
    tool = client_recipe(spec, "http://n1:8000").command.split(" -- ", 1)[1]
    for part in ("aiperf profile", "--url http://n1:8000", "--endpoint-type chat --streaming", "--isl 64",
                 "--osl 32", "--concurrency 4", "--request-count 200", "--request-rate 5.0 --arrival-pattern gamma",
                 "--arrival-smoothness 0.5", "--extra-inputs ignore_eos:true", "--use-server-token-count",
                 "env -u HF_HUB_OFFLINE"):
        assert part in tool, part


@pytest.mark.parametrize("kind,extra,message", [
    ("vllm-bench", "      args: [--num-prompts=5]\n", "args[0]: --num-prompts is set by this tool"),
    ("vllm-bench", "      duration: 10s\n", "clients[0].duration: vllm bench serve is bounded by a request count"),
    ("vllm-bench", "      rate: 4\n", "clients[0].arrival: vllm bench serve draws Poisson or gamma arrivals"),
    ("aiperf", "      args: ['--url=http://elsewhere']\n", "args[0]: --url is set by this tool"),
    ("aiperf", "      ramp_up: {from: 1, to: 2, over: 5s}\n", "ramp_up: unknown key"),
])
def test_reference_kinds_refuse_what_they_would_not_do(kind, extra, message):
    with pytest.raises(RecipeError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_benchmark_text(REF % (kind, extra), "b.yaml")


def test_reference_kinds_need_a_tokenizer_and_fixed_lengths_for_vllm_bench():
    text = (REF % ("vllm-bench", "")).replace("      tokenizer: /var/cache/orch-vllm/test-model\n", "")
    with pytest.raises(RecipeError, match="tokenizer: required"):
        load_benchmark_text(text, "b.yaml")
    varied = (REF % ("vllm-bench", "")).replace("input_tokens: 64", "input_tokens: {mean: 64, stddev: 8}")
    with pytest.raises(RecipeError, match="stddev must be 0"):
        load_benchmark_text(varied, "b.yaml")
    assert load_benchmark_text((REF % ("aiperf", "")).replace("input_tokens: 64", "input_tokens: {mean: 64, stddev: 8}"),
                               "b.yaml").clients[0].kind == "aiperf"   # aiperf draws normal lengths


def test_a_wrapped_tool_is_checked_on_the_login_node_and_its_flags_only_when_given():
    spec = load_benchmark_text(REF % ("vllm-bench", ""), "b.yaml").clients[0]
    checks = KINDS["vllm-bench"].preflight(spec)
    assert len(checks) == 1 and checks[0].command.startswith("command -v vllm ")
    spec = load_benchmark_text(REF % ("vllm-bench", "      args: [--temperature, '0.5']\n"), "b.yaml").clients[0]
    flags = KINDS["vllm-bench"].preflight(spec)[1].command
    assert "http://127.0.0.1:9" in flags and "--temperature 0.5" in flags and "--num-prompts 1" in flags


def test_vllm_bench_results_become_records_in_wall_time():
    doc = json.loads((DATA / "vllm-bench-detailed.json").read_text())
    offset = 1_796_177_000.0
    recs = vllm_bench_records(doc, offset)
    assert len(recs) == doc["num_prompts"] == 6 and all(r["ok"] for r in recs)
    assert [r["start"] for r in recs] == [round(s + offset, 6) for s in doc["start_times"]]
    assert [r["tokens_out"] for r in recs] == doc["output_lens"] and [r["tokens_in"] for r in recs] == doc["input_lens"]
    # TPOT by vLLM's own definition, per request; its median is the tool's median_tpot_ms
    tpots = sorted(r["tpot_s"] for r in recs)
    assert abs((tpots[2] + tpots[3]) / 2 * 1000 - doc["median_tpot_ms"]) < 1e-3  # (records keep microseconds)
    assert recs[0]["itl_s"] == [round(g, 6) for g in doc["itls"][0]]
    # a failed request stays a record, as an error
    doc["errors"][1] = "Traceback ...\naiohttp.ClientConnectionResetError: Cannot write to closing transport\n"
    failed = vllm_bench_records(doc, offset)[1]
    assert failed["ok"] is False and failed["error"] == "aiohttp.ClientConnectionResetError: Cannot write to closing transport"
    assert failed["tokens_out"] is None and failed["ttft_s"] is None


def test_aiperf_export_becomes_records():
    lines = (DATA / "aiperf-profile_export.jsonl").read_text().splitlines()
    recs = aiperf_records(lines)
    first = json.loads(lines[0])
    assert len(recs) == 6 and all(r["ok"] for r in recs)
    assert recs[0]["start"] == round(first["metadata"]["request_start_ns"] / 1e9, 6)
    assert recs[0]["ttft_s"] == round(first["metrics"]["time_to_first_token"]["value"] / 1000, 6)
    assert recs[0]["tokens_out"] == first["metrics"]["usage_completion_tokens"]["value"]
    assert read_result(DATA / "aiperf-profile_export.jsonl") == recs


def test_report_compare_takes_a_tool_result_as_either_side(tmp_path):
    from orchestrator.analysis.compare import compare_sessions
    rows, _, refused = compare_sessions(DATA / "vllm-bench-detailed.json", DATA / "aiperf-profile_export.jsonl")
    assert refused == []     # a reference tool's result has no validity to refuse
    by = {r.kpi: r for r in rows}
    assert by["throughput"].a == pytest.approx(6 / (max(s + l for s, l in zip(
        json.loads((DATA / "vllm-bench-detailed.json").read_text())["start_times"],
        json.loads((DATA / "vllm-bench-detailed.json").read_text())["latencies"])) - min(
        json.loads((DATA / "vllm-bench-detailed.json").read_text())["start_times"])), rel=1e-6)
    assert by["ttft_p50"].a is not None and by["ttft_p50"].b is not None
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(Exception, match="not a session, a `vllm bench serve` result or an aiperf export"):
        compare_sessions(tmp_path / "x.json", DATA / "aiperf-profile_export.jsonl")


def test_the_chat_body_is_the_users_payload_with_only_the_workload_fields_set():
    payload = {"model": "m", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
               "top_p": 0.9, "stop": ["\n"], "response_format": {"type": "json_object"}, "logprobs": True,
               "stream_options": {"continuous_usage_stats": False}}
    _, path, body, stream = build_request("openai-chat", payload)
    assert path == "/v1/chat/completions" and stream
    assert body["messages"] == payload["messages"] and body["top_p"] == 0.9 and body["stop"] == ["\n"]
    assert body["response_format"] == {"type": "json_object"} and body["logprobs"] is True
    assert body["stream_options"] == {"continuous_usage_stats": False, "include_usage": True}
    # a dataset row sets the prompt (as the user message) and max_tokens, nothing else
    _, _, body, _ = build_request("openai-chat", payload, {"row": 1, "prompt": "a b", "max_tokens": 5})
    assert body["messages"] == [{"role": "user", "content": "a b"}] and body["max_tokens"] == 5
    assert body["top_p"] == 0.9


@pytest.mark.parametrize("kind,payload,problem", [
    ("openai-chat", {"n": 2}, "n: the client measures one completion per request"),
    ("openai-chat", {"prompt": "a", "messages": [{"role": "user", "content": "b"}]}, "prompt and messages: give one"),
    ("openai-completions", {"messages": []}, "messages: a completions request has a prompt"),
])
def test_payload_fields_a_kind_cannot_honour_are_refused(kind, payload, problem):
    assert any(p.startswith(problem) for p in payload_problems(kind, payload))
    text = ("benchmark: {name: x, services: [{recipe: a}], clients: [{kind: %s, target: a, requests: 1, payload: %s}]}"
            % (kind, json.dumps(payload)))
    with pytest.raises(RecipeError, match=r"benchmark.clients\[0\].payload"):
        load_benchmark_text(text, "b.yaml")
