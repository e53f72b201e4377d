"""`bench run --dry-run`, `orch validate` and `orch recipes list`: recipes checked and jobs rendered
without the cluster (the config names a login node that does not exist, and no call may reach it)."""

import json
import os
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.bench.plan import reference_command
from orchestrator.bench.recipe import load_benchmark, load_benchmark_text
from orchestrator.cli.main import cli


@pytest.fixture
def run(tmp_path, monkeypatch):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"ssh: {{host: login.invalid}}\nstate_dir: {tmp_path / 'state'}\nslurm: {{partition: gpu}}\n")
    os.chmod(cfg, 0o600)

    class NoCluster:
        """A transport every call of which fails the test (a dry run makes none)."""
        kind = "none"

        def __getattr__(self, name):
            if name in ("close",):
                return lambda *a, **k: None
            raise AssertionError(f"a dry run called the transport's {name}")
    monkeypatch.setattr("orchestrator.api.open_transport", lambda config: NoCluster())
    return lambda *args: CliRunner().invoke(cli, ["--config", str(cfg), *args])


def test_dry_run_prints_the_plan_and_submits_nothing(run, tmp_path):
    r = run("bench", "run", "--dry-run", "vllm-chat", "--scripts", str(tmp_path / "scripts"))
    assert r.exit_code == 0, r.output
    assert "nothing submitted, no connection opened" in r.output
    jobs = [line.split()[0] for line in r.output.split("jobs it would submit:")[1].split("clients:")[0].splitlines()
            if line.strip()]
    assert jobs == ["service", "monitor", "client"]
    assert "partition gpu" in r.output and "mem 5G" in r.output
    scripts = sorted(p.name for p in (tmp_path / "scripts").iterdir())
    assert scripts == ["00-vllm.sbatch", "01-prometheus.sbatch", "02-client-0-openai-chat-job-1-1.sbatch"]
    assert "#SBATCH --partition=gpu" in (tmp_path / "scripts" / "00-vllm.sbatch").read_text()
    doc = json.loads(run("bench", "run", "--dry-run", "vllm-chat", "--json").output)
    assert [j["role"] for j in doc["jobs"]] == ["service", "monitor", "client"]
    argv = shlex.split(doc["clients"][0]["reference_command"])
    flags = {a: argv[i + 1] for i, a in enumerate(argv[:-1]) if a.startswith("--")}
    # 20 requests/s for 15 s: the count vllm bench serve needs; the Poisson rate as its request rate
    assert (flags["--num-prompts"], flags["--request-rate"], flags["--max-concurrency"]) == ("300", "20", "8")
    assert flags["--backend"] == "openai-chat" and flags["--endpoint"] == "/v1/chat/completions"
    assert flags["--random-input-len"] == "64" and flags["--random-output-len"] == "32"
    assert any("stddev" in n for n in doc["notes"])


def test_the_reference_command_follows_the_load(tmp_path):
    text = """benchmark:
  name: b
  services: [{recipe: vllm}]
  clients:
    - {kind: openai-completions, target: vllm, concurrency: 4, requests: 50, rate: 2.5, arrival: gamma,
       burstiness: 0.5, payload: {model: m, max_tokens: 16}}
    - {kind: openai-completions, target: vllm, concurrency: 3, duration: 10s, payload: {model: m, max_tokens: 16}}
    - {kind: http, target: vllm, concurrency: 1, requests: 5, payload: {method: GET, path: /health}}
"""
    b = load_benchmark_text(text, str(tmp_path / "b.yaml"))
    open_loop, closed, plain = (reference_command(c) for c in b.clients)
    assert "--num-prompts 50 --max-concurrency 4 --request-rate 2.5 --burstiness 0.5" in open_loop
    assert "--endpoint /v1/completions" in open_loop and "--random-output-len 16" in open_loop
    # closed loop for a time: as fast as answers come, a count that is not known before
    assert "--num-prompts N --max-concurrency 3 --request-rate inf" in closed and "--burstiness" not in closed
    assert plain is None


def test_dry_run_refuses_a_bad_recipe_with_its_field(run, tmp_path):
    bad = tmp_path / "b.yaml"
    bad.write_text("benchmark:\n  name: b\n  services: [{recipe: vllm}]\n  clients:\n"
                   "    - {kind: openai-chat, target: vllm, duration: 10s, dataset: {kind: sharegpt, path: none.json}}\n")
    r = run("bench", "run", "--dry-run", str(bad))
    assert r.exit_code == 1 and "none.json" in str(r.exception), r.output
    r = run("bench", "run", "--dry-run", "vllm-chatt")
    assert "no benchmark named 'vllm-chatt'; did you mean 'vllm-chat'?" in str(r.exception)


def test_validate_takes_either_kind_of_recipe(run):
    r = run("validate", "vllm")
    assert r.exit_code == 0 and "valid service recipe vllm; its sbatch script renders" in r.output, r.output
    r = run("validate", "standin-smoke")
    assert r.exit_code == 0 and "benchmark standin-smoke" in r.output and "jobs it would submit:" in r.output


def test_recipes_list_names_every_packaged_recipe_by_kind(run):
    rows = json.loads(run("recipes", "list", "--json").output)
    kinds = {r["name"]: r["kind"] for r in rows}
    assert kinds["vllm"] == "service" and kinds["prometheus"] == "monitor" and kinds["vllm-chat"] == "benchmark"
    assert all(not r["description"].startswith("INVALID") for r in rows)
    shipped = Path(load_benchmark("vllm-chat").source).parent
    assert {r["name"] for r in rows if r["kind"] == "benchmark"} == {p.stem for p in shipped.glob("*.yaml")}


def test_a_benchmark_sets_a_services_environment_and_resources(run, tmp_path):
    """Another model or more memory without copying the recipe: the services entry overrides its fields,
    validated as the recipe's own."""
    b = tmp_path / "b.yaml"
    b.write_text("benchmark:\n  name: b\n  services:\n    - recipe: vllm\n      environment: {VLLM_MAX_MODEL_LEN: 8192}\n"
                 "      resources: {mem: 64G, gpus: 1}\n  clients:\n"
                 "    - {kind: openai-chat, target: vllm, duration: 10s, payload: {model: test-model}}\n")
    r = run("bench", "run", "--dry-run", str(b), "--scripts", str(tmp_path / "s"))
    assert r.exit_code == 0, r.output
    script = (tmp_path / "s" / "00-vllm.sbatch").read_text()
    assert "#SBATCH --mem=64G" in script and 'export VLLM_MAX_MODEL_LEN="8192"' in script
    assert "1 GPU(s) per node" in r.output
    b.write_text(b.read_text().replace("mem: 64G", "mem: 64"))
    r = run("bench", "run", "--dry-run", str(b))
    assert f"{b}: benchmark.services[0] sets a field of" in str(r.exception)
    assert "service.resources.mem: expected a size with its unit, like 64G or 64M" in str(r.exception)
    b.write_text(b.read_text().replace("- recipe: vllm", "- service_id: vllm_0123abcd"))
    r = run("bench", "run", "--dry-run", str(b))
    assert "benchmark.services[0].environment: a reused service runs as it was started" in str(r.exception)


def test_the_load_of_every_kind_of_bound_is_said(tmp_path):
    """A load bounded by a request count, a time, a trace's own times, or the kind's own counts (vectors)."""
    from orchestrator.bench.plan import load_text
    from orchestrator.bench.recipe import ClientSpec
    from orchestrator.bench.datasets import DatasetSpec
    assert "50 requests" in load_text(ClientSpec("openai-chat", "v", requests=50))
    assert "20s" in load_text(ClientSpec("openai-chat", "v", duration=20.0, rate=4.0))
    trace = DatasetSpec(kind="trace", path="t.jsonl")
    assert trace.timed and "the trace's requests at their own times" in load_text(
        ClientSpec("openai-chat", "v", dataset=trace))
    assert "bounded by its own counts" in load_text(ClientSpec("vector", "chroma"))
