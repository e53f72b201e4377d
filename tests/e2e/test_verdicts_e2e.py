"""The bottleneck verdict on sessions built to hit each case: a stand-in whose slots are full, a
client with too little concurrency, and llama.cpp bound by the CPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]

STANDIN = """benchmark:
  name: e2e-verdict
  services:
    - recipe: standin-llm
  monitor: {{recipe: prometheus, scrape_interval: 1s}}
  clients:
    - kind: openai-completions
      target: standin-llm
      concurrency: {concurrency}
      duration: 6s
      warmup: 1s
      payload: {{model: standin, prompt: "hello", stream: true, max_tokens: 32}}
"""

LLAMA = """benchmark:
  name: e2e-verdict-llama
  services:
    - recipe: {recipe}
  monitor: {{recipe: prometheus, scrape_interval: 1s}}
  clients:
    - kind: openai-chat
      target: llamacpp
      concurrency: 8
      duration: 8s
      warmup: 2s
      dataset: {{kind: synthetic, input_tokens: {{mean: 64}}, output_tokens: {{mean: 64}}, seed: 1}}
      payload: {{model: test-model, stream: true, ignore_eos: true}}
"""


def verdict_of(sandbox_config_path, tmp_path, text):
    recipe = tmp_path / "bench.yaml"
    recipe.write_text(text)
    env = dict(os.environ, ORCH_CONFIG=str(sandbox_config_path))
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "bench", "run", str(recipe), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert (tmp_path / "out" / "logs").is_dir() and report["logs"]  # each job's log is kept with the session
    return report["bottleneck"]


def test_full_slots_with_cpu_to_spare_are_the_engines_limit(sandbox_config_path, tmp_path):
    v = verdict_of(sandbox_config_path, tmp_path, STANDIN.format(concurrency=12))  # 4 slots, 12 in flight
    assert v["kind"] == "slots", v
    assert v["evidence"]["service_requests_waiting_max"] >= 4 and v["evidence"]["cpu_utilisation"] < 80


def test_one_request_at_a_time_is_the_clients_limit(sandbox_config_path, tmp_path):
    v = verdict_of(sandbox_config_path, tmp_path, STANDIN.format(concurrency=1))
    assert v["kind"] == "client", v
    assert "Raise the clients' concurrency" in v["next"] and v["evidence"]["in_flight"] == 1


def test_llama_cpp_on_every_core_is_compute_bound(sandbox_config_path, tmp_path):
    text = (ROOT / "recipes" / "services" / "llamacpp.yaml").read_text()
    text = text.replace('LLAMA_THREADS: "1"', 'LLAMA_THREADS: "2"').replace('LLAMA_PARALLEL: "4"', 'LLAMA_PARALLEL: "8"')
    service = tmp_path / "llamacpp.yaml"
    service.write_text(text)
    v = verdict_of(sandbox_config_path, tmp_path, LLAMA.format(recipe=service))
    assert v["kind"] == "compute", v
    assert v["evidence"]["cpu_utilisation"] >= 90
