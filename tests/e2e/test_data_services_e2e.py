"""Data services for real on the sandbox: Redis (redis-server and its exporter) under the
project's own RESP client, every operation recorded and counted against the server's count."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from orchestrator.analysis.experiments import KNEE_P99_GROWTH, KNEE_RATIO
from tests.e2e.conftest import completed_between

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]

REDIS = """benchmark:
  name: e2e-redis
  services:
    - recipe: redis
  monitor: {recipe: prometheus, scrape_interval: 1s}
  clients:
    - kind: redis
      target: redis
      concurrency: 8
      duration: 5s
      warmup: 1s
      ratio: {get: 0.8, set: 0.2}
      keys: 5000
      value_bytes: 512
      percentiles: [50, 99]
"""


def run_session(sandbox_config_path, tmp, recipe_text: str, name: str, timeout: int = 400):
    recipe = tmp / f"{name}.yaml"
    recipe.write_text(recipe_text)
    env = dict(os.environ, ORCH_CONFIG=str(sandbox_config_path), ORCH_STATS="1")
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "--recipe", str(recipe)], capture_output=True,
                          text=True, env=env, cwd=tmp, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    dirs = list((tmp / "results").iterdir())
    assert len(dirs) == 1, dirs
    return dirs[0]


@pytest.fixture(scope="module")
def redis_session(sandbox_config_path, tmp_path_factory):
    return run_session(sandbox_config_path, tmp_path_factory.mktemp("redis"), REDIS, "e2e-redis")


def records(d):
    return [json.loads(line) for line in open(d / "requests.jsonl")]


def test_every_operation_the_client_recorded_is_one_the_server_counted(redis_session):
    d = redis_session
    report = json.loads((d / "report.json").read_text())
    recs = records(d)
    assert all(r["op"] in ("get", "set") for r in recs)
    # Redis's count between its scrapes that bound the window, and the operations completed between them
    ok = completed_between(recs, report["counted_between"]["redis"])
    assert ok > 5000
    row = report["cross_check"][0]
    assert row["metric"] == 'redis_commands_total{cmd=~"get|set"}'
    assert row["client"] == ok and abs(row["engine_count"] - ok) <= row["tolerance"] and row["agree"] is True
    assert [r["what"] for r in report["cross_check"]] == ["requests"]  # no token rows for a key-value store


def test_per_operation_kpis_equal_an_independent_computation(redis_session):
    d = redis_session
    report = json.loads((d / "report.json").read_text())
    k = {x["kpi"]: x["value"] for x in report["kpis"]}
    w = report["window"]
    measured = [r for r in records(d) if r["ok"] and not r["warmup"] and w["start"] <= r["start"] <= w["end"]]
    for op in ("get", "set"):
        lat = np.array([r["latency_s"] for r in measured if r["op"] == op])
        assert k[f"{op}_operations_per_second"] == pytest.approx(lat.size / w["seconds"])
        assert k[f"{op}_latency_p50"] == pytest.approx(float(np.percentile(lat, 50)), rel=1e-12)
        assert k[f"{op}_latency_p99"] == pytest.approx(float(np.percentile(lat, 99)), rel=1e-12)
    gets = sum(r["op"] == "get" for r in measured)
    assert 0.75 < gets / len(measured) < 0.85  # the 80/20 mix asked for
    assert k["bytes_per_second"] == pytest.approx(sum(r["bytes"] for r in measured) / w["seconds"])
    assert all(r["bytes"] == 512 for r in measured)  # every GET found its preloaded key
    assert "ttft_p50" not in k and "output_tokens_per_second" not in k
    assert k["cpu_utilisation"] is not None and k["service_requests_running_max"] >= 8


def test_html_report_names_each_operation(redis_session):
    html = (redis_session / "report.html").read_text()
    assert "get_latency_p99" in html and "set_operations_per_second" in html and "redis_commands_total" in html


def test_a_connection_sweep_on_redis_finds_where_more_connections_only_add_latency(sandbox_config_path, tmp_path):
    text = (ROOT / "recipes" / "benchmarks" / "redis-sweep.yaml").read_text().replace("duration: 4s", "duration: 3s")
    d = run_session(sandbox_config_path, tmp_path, text, "e2e-redis-sweep")
    report = json.loads((d / "report.json").read_text())
    pts = {p["label"]: p for p in report["points"]}
    tput = {c: pts[f"concurrency={c}"]["throughput"] for c in (1, 4, 16, 64)}
    p99 = {c: pts[f"concurrency={c}"]["latency_p99"] for c in (1, 4, 16, 64)}
    # one connection waits a round trip per operation; four keep the server (or the client's core) busy
    # (measured on this shared 2-core machine: 1.9x to 4.6x)
    assert tput[4] > 1.6 * tput[1], tput
    # beyond that, 16x the connections buy little throughput and cost latency: the knee is at 4 or 16
    assert tput[64] < 2 * tput[4] and p99[64] > 3 * p99[4], (tput, p99)
    # The knee is where the documented rule (analysis/experiments.py: p99 grows by more than 20% and more
    # than 3x the throughput's growth) puts it on the measured points, applied here again. Where it falls
    # depends on the machine: on a busy 2-core one, four connections bought 66% more throughput for 3x
    # the p99, so the knee was at one connection.
    steps = [(a, b) for a, b in zip((1, 4, 16), (4, 16, 64))
             if p99[b] / p99[a] - 1 > KNEE_P99_GROWTH
             and p99[b] / p99[a] - 1 > KNEE_RATIO * max(tput[b] / tput[a] - 1, 0)]
    assert steps, (tput, p99)   # past four connections, latency grows for little throughput: some step is a knee
    knee = next(v for v in report["verdicts"] if v["kind"] == "knee")
    assert knee["label"] == f"concurrency={steps[0][0]}", (knee, tput, p99)
    sat = next(v for v in report["verdicts"] if v["kind"] == "saturation")
    assert sat["label"] in ("concurrency=16", "concurrency=64"), sat
    for p in report["manifest"]["points"]:  # every point's count checked against the server's own
        rows = json.loads((d / p["dir"] / "report.json").read_text())["cross_check"]
        assert [r["agree"] for r in rows] == [True], rows


PGBENCH = """benchmark:
  name: e2e-pgbench
  services:
    - recipe: postgres
  monitor: {recipe: prometheus, scrape_interval: 1s}
  clients:
    - kind: pgbench
      target: postgres
      clients: 4
      threads: 2
      scale: 2
      duration: 5s
      warmup: 1s
      percentiles: [50, 99]
"""


def test_pgbench_transactions_are_the_records_and_the_server_counted_each(sandbox_config_path, tmp_path):
    d = run_session(sandbox_config_path, tmp_path, PGBENCH, "e2e-pgbench")
    report = json.loads((d / "report.json").read_text())
    recs = records(d)
    assert len(recs) > 500 and {r["op"] for r in recs} == {"tpcb-like"} and all(r["ok"] for r in recs)
    row = report["cross_check"][0]
    assert row["metric"] == 'pg_stat_database_tup_inserted{datname="bench"}'
    assert row["client"] == len(recs) == row["engine_count"] and row["agree"] is True
    k = {x["kpi"]: x["value"] for x in report["kpis"]}
    w = report["window"]
    lat = np.array([r["latency_s"] for r in recs if not r["warmup"] and w["start"] <= r["start"] <= w["end"]])
    assert k["tpcb-like_latency_p99"] == pytest.approx(float(np.percentile(lat, 99)), rel=1e-12)
    assert k["tpcb-like_operations_per_second"] == pytest.approx(lat.size / w["seconds"])
    assert k["client_overhead_cpu_per_request"] > 0


def test_a_scale_too_big_for_the_jobs_memory_is_refused_before_anything_is_submitted(sandbox_config_path, tmp_path,
                                                                                    ssh):
    recipe = tmp_path / "big.yaml"
    recipe.write_text(PGBENCH.replace("scale: 2", "scale: 500"))
    env = dict(os.environ, ORCH_CONFIG=str(sandbox_config_path))
    before = ssh.run("squeue -h -o %j", check=True).stdout.split()
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "--recipe", str(recipe)], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "benchmark.clients[0].scale: pgbench at scale 500 needs about 7.4 GiB" in proc.stderr
    assert "more than the postgres job's memory (1G)" in proc.stderr
    # nothing was submitted: no job that was not queued before (an earlier test's job may have left since)
    assert set(ssh.run("squeue -h -o %j", check=True).stdout.split()) <= set(before)
    assert not (tmp_path / "results").exists()  # and nothing half-written


CHROMA = """benchmark:
  name: e2e-chroma
  services:
    - recipe: chroma
  monitor: {recipe: prometheus, scrape_interval: 1s}
  clients:
    - kind: vector
      target: chroma
      dim: 32
      vectors: 3000
      batch: 200
      queries: 300
      top_k: 5
      concurrency: 2
"""


def test_chroma_inserts_then_queries_in_two_phases_and_holds_every_vector(sandbox_config_path, tmp_path):
    d = run_session(sandbox_config_path, tmp_path, CHROMA, "e2e-chroma")
    report = json.loads((d / "report.json").read_text())
    assert report["cross_check"] == [{
        "service": "chroma", "engine": "Chroma (no Prometheus metrics)", "what": "items stored",
        "metric": "the collection's count, asked after the load", "client": 3000.0, "engine_count": 3000.0,
        "agree": True, "note": "agree"}]
    insert, query = report["phases"]
    assert (insert["name"], query["name"]) == ("upsert", "query") and insert["end"] <= query["start"]
    k = {x["kpi"]: x["value"] for x in report["kpis"]}
    recs = records(d)
    recalls = [r["recall"] for r in recs if r["op"] == "query"]
    assert len(recalls) == 300 and k["query_recall_mean"] == pytest.approx(sum(recalls) / 300)
    assert k["upsert_items_per_second"] == pytest.approx(3000 / insert["seconds"])
    assert k["query_operations_per_second"] == pytest.approx(300 / query["seconds"])
    assert "Phases" in (d / "report.html").read_text()
