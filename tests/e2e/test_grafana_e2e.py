"""Grafana cannot run here; its dashboards' queries can: every panel's PromQL runs on a sandbox
Prometheus that scraped a session of the stand-in (vLLM's metric names), Redis and PostgreSQL with
their exporters, node exporters and the load clients. GPU and llama.cpp panels are parsed by
Prometheus but have no series here (no GPU; no llama-server in this session)."""

import time

import pytest

from orchestrator import BenchmarkOrchestrator
from orchestrator.bench.recipe import load_benchmark_text
from orchestrator.monitoring.grafana import queries

pytestmark = pytest.mark.e2e

BENCH = """benchmark:
  name: e2e-grafana
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
NO_SERIES_HERE = {"gpu", "llamacpp"}


def test_every_dashboard_query_parses_and_returns_series(sandbox_config, tmp_path):
    orch = BenchmarkOrchestrator(sandbox_config)
    recipe = load_benchmark_text(BENCH, str(tmp_path / "e2e-grafana.yaml"))
    result = orch.start_benchmark_session(recipe, out_dir=tmp_path / "out", keep=True)
    try:
        mid = result["manifest"]["monitor_id"]
        end = time.time()
        qs = queries()
        results = orch.monitors.query_range_many(mid, [e.replace("$__rate_interval", "10s") for _, _, e in qs],
                                                 end - 120, end, 2)
        empty = [(d, p) for (d, p, _), r in zip(qs, results) if d not in NO_SERIES_HERE and not r.series]
        assert not empty, f"panels with no series: {empty}"
    finally:
        orch.servers.cancel_many([j["service_id"] for j in result["manifest"]["jobs"]])
        orch.close()
