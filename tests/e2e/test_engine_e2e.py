"""A real inference engine in the sandbox: llama.cpp's llama-server (built by scripts/build-llama-server.sh)
serving the TEST MODEL (a real tokenizer with random weights), benchmarked as users benchmark vLLM."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import completed_between

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]

CHAT = """benchmark:
  name: llamacpp-chat
  services: [{recipe: llamacpp}]
  monitor: {recipe: prometheus, scrape_interval: 1s}
  clients:
    - kind: openai-chat
      target: llamacpp
      rate: 6
      arrival: poisson
      concurrency: 16
      requests: 60
      warmup: 0s
      dataset: {kind: synthetic, input_tokens: {mean: 48, stddev: 12}, output_tokens: {mean: 24, stddev: 6}, seed: 1}
      payload: {model: test-model, stream: true, ignore_eos: true}
      percentiles: [50, 90, 99]
      slo: {ttft: 2s, tpot: 200ms, e2e: 10s}
"""

SWEEP = """benchmark:
  name: llamacpp-sweep
  services: [{recipe: %s}]
  monitor: {recipe: prometheus, scrape_interval: 1s}
  clients:
    - kind: openai-completions
      target: llamacpp
      concurrency: 1
      duration: 6s
      warmup: 1s
      payload: {model: test-model, prompt: "the quick brown fox", max_tokens: 48, stream: true, ignore_eos: true}
  sweep: {concurrency: [1, 2, 4, 8]}
"""


@pytest.fixture(scope="module")
def engine_ready(sandbox_config_path):
    if not shutil.which("llama-server"):
        pytest.fail("llama-server is built by scripts/setup.sh (scripts/build-llama-server.sh)")
    return sandbox_config_path


def run_bench(config, text, tmp_path, name):
    recipe = tmp_path / f"{name}.yaml"
    recipe.write_text(text)
    out = tmp_path / name
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "bench", "run", str(recipe), "--out", str(out)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600,
                          env={**__import__("os").environ, "ORCH_CONFIG": str(config)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, json.loads((out / "report.json").read_text())


def test_streaming_chat_on_llamacpp_matches_the_engines_own_token_count(engine_ready, tmp_path):
    out, report = run_bench(engine_ready, CHAT, tmp_path, "chat")
    k = {x["kpi"]: x for x in report["kpis"]}
    records = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    assert len(records) == 60 and all(r["ok"] for r in records), [r["error"] for r in records if not r["ok"]][:3]
    assert k["requests_error"]["value"] == 0
    # the engine's usage, not an estimate: every request carries both counts, and its dataset row
    assert all(r["tokens_in"] and r["tokens_out"] for r in records)
    assert sorted(r["row"] for r in records) == list(range(60))
    rows = {c["what"]: c for c in report["cross_check"]}
    assert rows["output tokens"]["metric"] == "llamacpp:tokens_predicted_total"
    assert rows["input tokens"]["agree"] is True  # processed + cached prompt tokens = the requests' usage
    # llama.cpp counts a request's tokens when it ends: between the counter's scrapes that bound the window,
    # exactly the tokens of the requests that completed between them
    inside = completed_between(records, report["counted_between"]["llamacpp"], "tokens_out")
    assert rows["output tokens"]["client"] == inside > 0
    assert abs(rows["output tokens"]["engine_count"] - inside) <= rows["output tokens"]["tolerance"]
    assert rows["requests"]["agree"] is None and "no requests counter" in rows["requests"]["note"]
    for name in ("ttft_p90", "tpot_p50", "itl_p99", "goodput", "input_tokens_per_second"):
        assert k[name]["value"] is not None, name
    assert "llama.cpp server" in (out / "report.html").read_text()
    # Poisson arrivals: the scheduled gaps are not constant
    sched = sorted(r["scheduled"] for r in records)
    gaps = [b - a for a, b in zip(sched, sched[1:])]
    assert max(gaps) > 3 * min(gaps)


def test_a_concurrency_sweep_on_two_slots_finds_saturation(engine_ready, tmp_path):
    two_slots = tmp_path / "llamacpp.yaml"  # the shipped recipe, with --parallel 2
    two_slots.write_text((ROOT / "recipes/services/llamacpp.yaml").read_text().replace(
        'LLAMA_PARALLEL: "4"', 'LLAMA_PARALLEL: "2"'))
    out, report = run_bench(engine_ready, SWEEP % two_slots, tmp_path, "sweep")
    points = {p["label"]: p for p in report["points"]}
    assert set(points) == {"concurrency=1", "concurrency=2", "concurrency=4", "concurrency=8"}
    t = {c: points[f"concurrency={c}"]["throughput"] for c in (1, 2, 4, 8)}
    p99 = {c: points[f"concurrency={c}"]["latency_p99"] for c in (1, 2, 4, 8)}
    # two slots on one CPU thread: a second request in flight fills the second slot (one batched decode
    # step serves both), past two they only queue. Four times the requests in flight buy no throughput
    # (on this shared 2-core machine it may even drop) while p99 latency climbs with every doubling
    assert t[4] < 1.3 * t[2] and t[8] < 1.3 * t[2] and t[2] > 0.9 * t[1], t
    assert p99[8] > 1.3 * p99[4] and p99[4] > 1.2 * p99[2] and p99[8] > 3 * p99[1]
    sat = next(v for v in report["verdicts"] if v["kind"] == "saturation")
    assert points[sat["label"]]["throughput"] == max(t.values())
    assert f"{max(t.values()):.2f} requests/s" in sat["text"]


WORKLOADS = """benchmark:
  name: llamacpp-workloads
  services: [{recipe: llamacpp}]
  monitor: {recipe: prometheus, scrape_interval: 1s}
  clients:
    - kind: %s
      target: llamacpp
      concurrency: 1
      requests: %d
      dataset: %s
      payload: {model: test-model, stream: true, ignore_eos: true}
"""


@pytest.mark.parametrize("prefixes", [2, 16])
def test_a_prefix_session_on_llamacpp_reads_its_hit_rate_from_the_engine(engine_ready, tmp_path, prefixes):
    dataset = f"{{kind: prefix, prefixes: {prefixes}, prefix_tokens: 200, suffix_tokens: 8, output_tokens: 8}}"
    out, report = run_bench(engine_ready, WORKLOADS % ("openai-completions", 16, dataset), tmp_path, "prefix")
    k = {x["kpi"]: x for x in report["kpis"]}
    hits, queries = (k[f"service_prefix_cache_{w}_counted"]["value"] for w in ("hits", "queries"))
    assert k["prefix_cache_hit_rate"]["value"] == pytest.approx(hits / queries)
    assert "llamacpp:prompt_tokens_cached_total" in k["prefix_cache_hit_rate"]["note"]
    # llama.cpp reuses a slot's cached prompt: 14 of the 16 requests find their 200-token prefix there
    assert (k["prefix_cache_hit_rate"]["value"] > 0.5) if prefixes == 2 else (k["prefix_cache_hit_rate"]["value"] < 0.1)
    rows = {c["what"]: c for c in report["cross_check"]}
    assert rows["prefix cache hits"]["agree"] is True and rows["input tokens"]["agree"] is True, rows
    assert report["valid"], report["invalid_reasons"]


def test_a_multiturn_session_on_llamacpp_carries_the_history(engine_ready, tmp_path):
    dataset = "{kind: multiturn, turns: 3, input_tokens: 20, output_tokens: 6}"
    out, report = run_bench(engine_ready, WORKLOADS % ("openai-chat", 9, dataset), tmp_path, "multiturn")
    records = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    assert sorted((r["conversation"], r["turn"]) for r in records) == [(c, t) for c in range(3) for t in (1, 2, 3)]
    for c in range(3):
        ins = [r["tokens_in"] for r in sorted((r for r in records if r["conversation"] == c), key=lambda r: r["turn"])]
        assert ins[0] < ins[1] < ins[2]
    # the history is in llama.cpp's cache: the later turns' prompts are mostly served from it
    later = [r for r in records if r["turn"] > 1]
    assert sum(r["cached_tokens"] for r in later) > 0.5 * sum(r["tokens_in"] for r in later)
    assert [r["turn"] for r in report["by_turn"]] == [1, 2, 3]


def test_a_cold_cache_on_llamacpp_restarts_it_before_each_later_point(engine_ready, tmp_path):
    """llama.cpp has no route that empties its prompt cache: cache: cold starts each point on a new service."""
    dataset = "{kind: prefix, prefixes: 2, prefix_tokens: 200, suffix_tokens: 8, output_tokens: 8}"
    text = (WORKLOADS % ("openai-completions", 12, dataset)).replace("      concurrency: 1\n", "      concurrency: 1\n"
                                                                      "      cache: cold\n")
    out, report = run_bench(engine_ready, text + "  sweep: {requests: [12, 13]}\n", tmp_path, "cold")
    points = [json.loads((out / p["dir"] / "report.json").read_text())
              for p in report["manifest"]["points"]]
    assert [p["cache"]["llamacpp"] for p in points] == ["cold: a new service, started for this session",
                                                        "cold: the service was restarted before this point"]
    # two llama.cpp jobs, one per point; each point's cache began empty, so both miss the same first prompts
    services = [j for j in report["manifest"]["jobs"] if j["role"] == "service"]
    assert len({j["job_id"] for j in services}) == 2
    first = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    for label in {r["point"] for r in first}:
        mine = sorted((r for r in first if r["point"] == label), key=lambda r: r["start"])
        assert mine[0]["cached_tokens"] == 0
