"""Watching a run: the live dashboard in headless Chromium, and Grafana's dashboard queries.

One kept session feeds both: the stand-in (vLLM's metric names), Redis and PostgreSQL with their
exporters, node exporters and three load clients, on one monitor. Grafana cannot run here; its
dashboards' queries run on the sandbox Prometheus (GPU and llama.cpp panels are parsed by
Prometheus but have no series here: no GPU, no llama-server in this session)."""

import json
import shutil
import subprocess
import time
import urllib.request

import pytest

from orchestrator import BenchmarkOrchestrator
from orchestrator.bench.recipe import load_benchmark_text
from orchestrator.monitoring.dashboard import CHARTS, Dashboard, serve
from orchestrator.monitoring.grafana import queries

pytestmark = pytest.mark.e2e

BENCH = """benchmark:
  name: e2e-observe
  services:
    - recipe: standin-llm
    - recipe: redis
    - recipe: postgres
  monitor: {recipe: prometheus, scrape_interval: 1s}
  clients:
    - {kind: openai-completions, target: standin-llm, concurrency: 2, duration: 6s,
       payload: {model: standin, prompt: hi, stream: true, max_tokens: 8}}
    - {kind: redis, target: redis, concurrency: 2, duration: 6s, keys: 100, value_bytes: 64}
    - {kind: pgbench, target: postgres, clients: 2, duration: 6s, scale: 1}
"""
# no GPU and no llama-server in this session; the vLLM dashboard is checked against the real vLLM
# (test_vllm_e2e.py): the stand-in serves only some of vLLM's metric names
NO_SERIES_HERE = {"gpu", "llamacpp", "vllm"}


@pytest.fixture(scope="module")
def kept(sandbox_config_path, tmp_path_factory):
    import dataclasses

    from orchestrator.config import load_config
    tmp = tmp_path_factory.mktemp("observe")
    cfg = dataclasses.replace(load_config(sandbox_config_path, env={}), state_dir=tmp / "state",
                              results_dir=tmp / "results")
    orch = BenchmarkOrchestrator(cfg)
    result = orch.start_benchmark_session(load_benchmark_text(BENCH, str(tmp / "e2e-observe.yaml")),
                                          out_dir=tmp / "out", keep=True)
    try:
        yield orch, result, tmp
    finally:
        orch.servers.cancel_many([j["service_id"] for j in result["manifest"]["jobs"]])
        orch.close()


def test_every_grafana_dashboard_query_parses_and_returns_series(kept):
    orch, result, _ = kept
    end = time.time()
    qs = queries()
    results = orch.monitors.query_range_many(result["manifest"]["monitor_id"],
                                             [e.replace("$__rate_interval", "10s") for _, _, e in qs], end - 120, end, 2)
    empty = [(d, p) for (d, p, _), r in zip(qs, results) if d not in NO_SERIES_HERE and not r.series]
    assert not empty, f"panels with no series: {empty}"


def test_the_dashboard_page_draws_charts_with_data_in_headless_chromium(kept):
    orch, result, tmp = kept
    dash = Dashboard(orch.monitors, result["manifest"]["monitor_id"], "e2e", interval=1.0)
    srv = serve(dash)
    url = f"http://127.0.0.1:{srv.server_address[1]}/"
    try:
        doc = json.loads(urllib.request.urlopen(url + "charts", timeout=60).read())
        assert len(doc["charts"]) == len(CHARTS) and doc["points"] > 50 and not doc["error"]
        titles_with_data = [t for (t, _, _), svg in zip(CHARTS, doc["charts"]) if "no series" not in svg]
        assert {"Throughput (load clients)", "Latency p99 (load clients)", "Requests running (engines)",
                "CPU utilisation"} <= set(titles_with_data)
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        assert chromium, "chromium is installed by scripts/setup.sh"
        dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                              "--disable-background-networking", f"--user-data-dir={tmp / 'profile'}",
                              "--virtual-time-budget=5000", "--dump-dom", url],
                             capture_output=True, text=True, timeout=120, check=True).stdout
        points = int(dom.split('data-points="', 1)[1].split('"', 1)[0])
        assert points > 50 and dom.count("<svg") >= len(CHARTS)  # the script fetched and drew them
    finally:
        srv.shutdown()
