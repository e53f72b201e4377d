"""The pgbench client: pgbench's per-transaction log as records (lines as PostgreSQL 15's pgbench
writes them with -l), and the checks a pgbench client's recipe gets."""

import pytest

from orchestrator.bench.kinds.pgbench import pgbench_bytes
from orchestrator.bench.recipe import load_benchmark_text
from orchestrator.oncluster.pgbenchload import PROGRESS, Stats, log_records

LOG = """0 1 2985 0 1795689357 619298
1 1 3991 0 1795689357 620342
2 7 failed 0 1795689358 100000
"""


def test_each_logged_transaction_is_a_record_timed_from_its_start():
    recs = list(log_records(LOG.splitlines(), "tpcb-like", warmup_until=1795689357.61633, client_id="c", cpu_each=1e-4))
    assert [r["latency_s"] for r in recs] == [0.002985, 0.003991, 0.0]
    assert recs[0]["start"] == round(1795689357.619298 - 0.002985, 6) and recs[0]["warmup"] is True
    assert recs[1]["warmup"] is False and recs[1]["op"] == "tpcb-like" and recs[1]["client_cpu_s"] == 1e-4
    assert recs[2]["ok"] is False and recs[2]["error"] == "pgbench: transaction failed"


def test_progress_lines_give_live_counts():
    s = Stats()
    for line in ("progress: 1.0 s, 2000.0 tps, lat 1.990 ms stddev 0.845, 0 failed",
                 "progress: 2.0 s, 1000.0 tps, lat 3.5 ms stddev 1.0, 2 failed"):
        assert PROGRESS.search(line)
        s.progress(line)
    assert s.counts() == {"ok": 3000, "errors": 2, "in_flight": 0} and "orch_client_tps 1000.0" in s.metrics()


def bench(client: str) -> str:
    return ("benchmark:\n  name: p\n  services: [{recipe: postgres}]\n  clients:\n"
            f"    - {{kind: pgbench, target: postgres, duration: 5s, {client}}}\n")


@pytest.mark.parametrize("client, error", [
    ("builtin: tpcc", r"clients\[0\]\.builtin: expected one of tpcb-like, simple-update, select-only, got 'tpcc'"),
    ("clients: 4, concurrency: 4", r"clients\[0\]\.clients: expected clients or concurrency"),
    ("builtin: select-only, script: x.sql", r"clients\[0\]: expected builtin or script"),
    ("ratio: {get: 1}", r"clients\[0\]\.ratio: unknown key"),
])
def test_a_pgbench_client_refuses_what_it_cannot_do_naming_the_field(client, error):
    with pytest.raises(Exception, match=error):
        load_benchmark_text(bench(client), "bench.yaml")


def test_clients_is_pgbench_word_for_concurrency_and_the_scale_has_a_size():
    spec = load_benchmark_text(bench("clients: 16, threads: 2, scale: 10"), "b.yaml").clients[0]
    assert spec.concurrency == 16 and spec.options == {"scale": 10, "threads": 2, "builtin": "tpcb-like",
                                                       "script": None}
    assert 150 * 2**20 < pgbench_bytes(10) < 170 * 2**20
    from orchestrator.bench.clients import client_recipe
    r = client_recipe(spec, "http://n2:5555")
    assert r.command.startswith("python3 pgbenchload.py --address n2:5555 --scale 10 --threads 2 --builtin tpcb-like "
                                "--concurrency 16")
