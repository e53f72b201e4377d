"""Prometheus as a SLURM job on the sandbox, queried from the laptop through the login node."""

import dataclasses
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from orchestrator import BenchmarkOrchestrator
from orchestrator.config import load_config
from orchestrator.errors import OrchestratorError
from orchestrator.monitoring.promql import PrometheusError
from orchestrator.services.recipes import TargetSpec
from tests.e2e.conftest import config_with_state

pytestmark = pytest.mark.e2e


def pinned(orch, name, node):
    r = orch.load_recipe(name)
    return dataclasses.replace(r, resources=dataclasses.replace(r.resources, nodelist=node))


def eventually(fn, timeout=40, interval=1.0):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


@pytest.fixture(scope="module")
def env(sandbox_config_path, tmp_path_factory):
    """A service on n1 and Prometheus on n2, for the whole module."""
    cfg = load_config(sandbox_config_path, env={})
    cfg = dataclasses.replace(cfg, state_dir=tmp_path_factory.mktemp("monstate"))
    orch = BenchmarkOrchestrator(cfg)
    svc = orch.servers.start_service(pinned(orch, "node-exporter", "n1"), wait=True, timeout=60)
    mid = orch.monitors.start_monitor(pinned(orch, "prometheus", "n2"),
                                      [TargetSpec(service_id=svc, job_name="svc-one")], scrape_interval="1s")
    yield orch, svc, mid, cfg
    stop_everything(orch)


def stop_everything(orch) -> None:
    """Cancel every job ``orch`` started that has not ended (a failed test leaves none behind)."""
    for sid, rec in orch.servers.store.load().items():
        if rec.get("state") not in ("CANCELLED", "COMPLETED", "FAILED"):
            try:
                orch.servers.stop_service(sid)
            except OrchestratorError:
                pass
    orch.close()


def up_of(orch, mid, job):
    r = orch.monitors.query_result(mid, f'up{{job="{job}"}}')
    return [s.values[0][1] for s in r.series]


def test_service_and_monitor_run_on_different_nodes(env):
    orch, svc, mid, _ = env
    assert orch.servers.get_service_host(svc) == "n1" and orch.servers.get_service_host(mid) == "n2"


def test_query_service_metrics_shows_the_service_up_from_the_laptop(env, run_cli, tmp_path):
    orch, svc, mid, cfg = env
    assert eventually(lambda: up_of(orch, mid, "svc-one") == [1.0])
    path = config_with_state(cfg, tmp_path / "c.yaml")  # the CLI with the module's state dir
    proc = run_cli("--config", str(path), "--query-service-metrics", mid, 'up{job="svc-one"}')
    line = next(l for l in proc.stdout.splitlines() if l.startswith("up{"))
    assert 'job="svc-one"' in line and line.split()[-1] == "1"
    assert "connections=1 commands=1 " in proc.stderr
    # the service ID works too: the monitor scraping it answers
    by_service = json.loads(run_cli("--config", str(path), "--json", "--query-service-metrics", svc, "up").stdout)
    assert {r["metric"]["job"] for r in by_service["result"]} >= {"svc-one", "prometheus"}


def test_added_target_appears_after_hot_reload_without_restart(env):
    orch, svc, mid, _ = env
    started = eventually(lambda: orch.monitors.query_result(mid, 'process_start_time_seconds{job="prometheus"}').series)
    before = started[0].values[0][1]
    second = orch.servers.start_service(pinned(orch, "python-http", "n1"), wait=True, timeout=60)
    orch.monitors.add_targets(mid, [TargetSpec(service_id=second, job_name="svc-two", metrics_path="/endpoint.json")])
    # python-http serves no Prometheus text: the target exists, scraped and reported down (not missing)
    assert eventually(lambda: up_of(orch, mid, "svc-two") == [0.0])
    after = orch.monitors.query_result(mid, 'process_start_time_seconds{job="prometheus"}').series[0].values[0][1]
    assert after == before, "Prometheus restarted instead of reloading"
    orch.monitors.remove_targets(mid, [second])
    status = orch.monitors.check_monitor_status(mid)
    assert "svc-two" not in {t["job"] for t in status["targets"]}
    orch.servers.stop_service(second)


def test_range_longer_than_11000_steps_returns_every_point(env):
    orch, svc, mid, _ = env
    end = time.time()
    start = end - 120.0
    r = orch.monitors.query_range(mid, "vector(1)", start, end, 0.01)  # 12,001 steps: two chunks
    values = r.series[0].values
    assert len(values) == 12_001
    assert all(abs((b[0] - a[0]) - 0.01) < 1e-6 for a, b in zip(values, values[1:]))


def test_bad_promql_gives_prometheus_error_text(env):
    orch, svc, mid, _ = env
    with pytest.raises(PrometheusError, match=r"bad_data: .*parse error"):
        orch.monitors.query_result(mid, 'up{job="x"')


def test_gpu_and_node_exporters_of_a_service_become_targets(env, tmp_path):
    orch, svc, mid, _ = env
    recipe_path = tmp_path / "exp.yaml"
    recipe_path.write_text("service:\n  name: exp-svc\n  command: python3 -m http.server {{ port }}\n"
                           "  resources: {nodelist: n1, mem: 256M}\n  ports: [auto]\n"
                           "  health: {path: /}\n  exporters: [node, gpu]\n")
    sid = orch.servers.start_service(orch.load_recipe(str(recipe_path)), wait=True, timeout=60)
    added = orch.monitors.add_targets(mid, [sid])
    assert sorted(t.kind for t in added) == ["gpu", "node"]
    assert eventually(lambda: up_of(orch, mid, f"{sid}-node") == [1.0])
    assert eventually(lambda: up_of(orch, mid, f"{sid}-gpu") == [1.0])
    # no nvidia-smi in the sandbox: the exporter says so, and no GPU figure is invented
    assert orch.monitors.query_result(mid, f'orch_nvidia_smi_up{{job="{sid}-gpu"}}').series[0].values[0][1] == 0
    assert orch.monitors.query_result(mid, "DCGM_FI_DEV_GPU_UTIL").series == []
    orch.monitors.remove_targets(mid, [sid])
    orch.servers.stop_service(sid)


def test_tunnel_opens_the_prometheus_ui_on_localhost(env):
    """Through the tunnel the UI asks for its login (basic auth, user orch, the job's secret)."""
    import base64
    import pwd
    orch, svc, mid, _ = env
    ep = orch.servers.get_service_endpoint(mid)
    secret = (Path(pwd.getpwnam("orch").pw_dir) / ".orchestrator" / "services" / mid / "secret").read_text()
    with orch.transport.forward(ep.host, ep.port) as fwd:
        url = f"http://127.0.0.1:{fwd.local_port}/-/ready"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=10)
        login = base64.b64encode(f"orch:{secret}".encode()).decode()
        body = urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": f"Basic {login}"}),
                                      timeout=10).read()
    assert refused.value.code == 401 and ep.auth == "basic" and b"Ready" in body


def test_unknown_target_is_an_error_that_names_it(env):
    orch, svc, mid, _ = env
    with pytest.raises(OrchestratorError, match="no service or job 'ghost_0123abcd' found"):
        orch.monitors.add_targets(mid, ["ghost_0123abcd"])


def test_report_and_collect_cover_the_window(env, tmp_path):
    orch, svc, mid, _ = env
    assert eventually(lambda: up_of(orch, mid, "svc-one") == [1.0])
    rep = orch.monitors.report(mid)
    assert {s["labels"]["job"] for s in rep["metrics"]["up"]["series"]} >= {"svc-one", "prometheus"}
    assert rep["metrics"]["gpu_utilisation_percent"]["series"] == []  # absent, not zero
    time.sleep(5)  # at 1s scrapes, the last 10s then hold at least 5 samples
    end = time.time()
    path = orch.monitors.collect(mid, ['up{job="svc-one"}'], end - 10, end, 1, tmp_path / "m.csv")
    rows = path.read_text().splitlines()
    assert rows[0] == "query,labels,timestamp,value" and len(rows) >= 5


def test_report_on_a_monitor_over_a_time_window(env, tmp_path):
    from orchestrator.bench.collect import monitor_window_report
    orch, svc, mid, _ = env
    assert eventually(lambda: up_of(orch, mid, "svc-one") == [1.0])
    time.sleep(3)  # rate() over the window needs at least two scrapes
    end = time.time()
    rep = monitor_window_report(orch, mid, end - 20, end, tmp_path / "r")
    k = {x["kpi"]: x for x in rep["kpis"]}
    assert k["cpu_utilisation"]["value"] is not None and k["cpu_utilisation"]["source"] == "prometheus"
    assert k["gpu_utilisation"]["value"] is None  # absent, never zero
    assert (tmp_path / "r" / "report.html").exists() and (tmp_path / "r" / "timeseries" / "cpu_utilisation.csv").exists()


def test_stopped_target_turns_to_up_zero(env):
    orch, _, mid, _ = env
    own = orch.servers.start_service(pinned(orch, "node-exporter", "n1"), wait=True, timeout=60)  # not the shared one
    orch.monitors.add_targets(mid, [TargetSpec(service_id=own, job_name="svc-stopped")])
    assert eventually(lambda: up_of(orch, mid, "svc-stopped") == [1.0])
    orch.servers.stop_service(own)
    assert eventually(lambda: up_of(orch, mid, "svc-stopped") == [0.0])
    orch.monitors.remove_targets(mid, [own])


def test_the_python_api_example_runs(sandbox_config_path, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, str(root / "examples" / "python_api.py")], capture_output=True, text=True,
                          env=dict(os.environ, ORCH_CONFIG=str(sandbox_config_path)), cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "= 1" in proc.stdout and "requests running on the service: 0" in proc.stdout
    assert "stopped service standin-llm_" in proc.stdout and "stopped monitor prometheus_" in proc.stdout
    mid = proc.stdout.split("stopped monitor ")[1].split()[0]
    # stopped as a monitor: monitors.json says so
    assert BenchmarkOrchestrator(sandbox_config_path).monitors.store.get(mid)["stopped_at"]


def test_node_exporters_on_the_monitor_run_on_the_service_nodes(sandbox_config, tmp_path):
    orch = BenchmarkOrchestrator(sandbox_config)
    try:
        svc = orch.servers.start_service(pinned(orch, "python-http", "n2"), wait=True, timeout=60)
        mon = dataclasses.replace(pinned(orch, "prometheus", "n1"), exporters=("node",))
        mid = orch.monitors.start_monitor(mon, [TargetSpec(service_id=svc, metrics_path="/endpoint.json")],
                                          scrape_interval="1s")
        exporters = orch.monitors.store.get(mid)["exporter_jobs"]
        assert len(exporters) == 1 and orch.servers.get_service_host(exporters[0]) == "n2"
        assert eventually(lambda: up_of(orch, mid, "node-n2") == [1.0])
        util = orch.monitors.query_result(mid, 'node_load1{job="node-n2"}')
        assert util.series and util.series[0].labels["exporter"] == "node"
        orch.monitors.stop(mid)
        # scancel'd with the monitor; COMPLETING for a moment before CANCELLED
        assert eventually(lambda: orch.servers.probe(exporters[0]).job.state == "CANCELLED", timeout=20)
        with pytest.raises(OrchestratorError, match=r"exporters: \[gpu\] on the monitor is not possible"):
            orch.monitors.start_monitor(dataclasses.replace(mon, exporters=("gpu",)), [svc])
        orch.servers.stop_service(svc)
    finally:
        stop_everything(orch)


def test_service_endpoint_of_a_monitor_prints_api_and_ui_urls(env, run_cli):
    orch, svc, mid, cfg = env
    out = run_cli("--service-endpoint", mid).stdout  # no local state needed: found from squeue
    host, port = orch.servers.get_service_host(mid), orch.servers.get_service_endpoint(mid).port
    assert f"api:      http://{host}:{port}/api/v1" in out and f"ui:       http://{host}:{port}/graph" in out

