"""The seed documents' walkthroughs, typed as they show them, on the sandbox.

Seed 001 (`../shared/seeds/001_*.txt`): its CLI quick start step by step and its Python API
snippets. Only what must change is changed: the service to monitor is the stand-in LLM (Ollama
cannot run here), so its ID and port replace `ollama_abc123` and 11434, and the config is the
sandbox's. One deviation is the lock: every monitor asks for basic auth (issue #21), so the seed's
bare `curl` is refused (asserted), and the same curl with `-K <the monitor's curl.conf>` answers.
Seed 000's `monitor status --id` / `monitor stop --id`, and examples/monitor_example.py, too.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from orchestrator import BenchmarkOrchestrator
from orchestrator.config import load_config
from tests.e2e.conftest import config_with_state
from tests.e2e.test_monitoring_e2e import stop_everything

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def laptop(sandbox_config_path, tmp_path):
    """A checkout's working directory (recipes/ as in the repository) and a state dir of its own."""
    cfg = load_config(sandbox_config_path, env={})
    import dataclasses
    cfg = dataclasses.replace(cfg, state_dir=tmp_path / "state")
    work = tmp_path / "checkout"
    work.mkdir()
    (work / "recipes").symlink_to(ROOT / "recipes")
    config_path = config_with_state(cfg, tmp_path / "config.yaml")

    def run(*args, check=True):
        proc = subprocess.run([sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True,
                              cwd=work, timeout=300, env=dict(os.environ, ORCH_CONFIG=str(config_path)))
        if check and proc.returncode != 0:
            raise AssertionError(f"main.py {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc
    yield run, work, cfg, config_path
    stop_everything(BenchmarkOrchestrator(cfg))   # nothing outlives a failed test


def eventually(fn, timeout=60, interval=1.0):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def test_seed_001_cli_quick_start(laptop):
    run, work, cfg, _ = laptop
    # 1. start a service to monitor (the stand-in in place of recipes/services/ollama.yaml)
    sid = run("--recipe", "recipes/services/standin-llm.yaml").stdout.strip()
    assert re.fullmatch(r"standin-llm_[0-9a-f]{8}", sid)
    assert eventually(lambda: f"| {sid} | RUNNING |" in run("--status").stdout)
    endpoint = eventually(lambda: run("--service-endpoint", sid, "--json", check=False).stdout)
    port = json.loads(endpoint)["port"]
    # 2. configure Prometheus: the packaged example, copied and edited as the seed says
    text = (work / "recipes/services/prometheus_with_ollama.yaml").read_text()
    (work / "my_prometheus.yaml").write_text(text.replace('"ollama_abc123"', f'"{sid}"')
                                             .replace("port: 11434", f"port: {port}"))
    # 3. start Prometheus: a monitor whose prometheus.yml scrapes that service
    mid = run("--recipe", "my_prometheus.yaml").stdout.strip()
    assert re.fullmatch(r"prometheus_[0-9a-f]{8}", mid)
    short = mid.split("_")[1]
    # 4. check what's running
    assert eventually(lambda: f"| {mid} | RUNNING |" in run("--status").stdout)
    # 5. the endpoint, by the 8 hex alone
    ep = run("--service-endpoint", short).stdout
    host = re.search(r"host:\s+(\S+)", ep).group(1)
    assert f"url:      http://{host}:9090" in ep and f"ui:       http://{host}:9090/graph" in ep
    # 6. query: Prometheus itself and the service, then one job by its name (single quotes in PromQL)
    def up_rows():
        proc = run("--query-service-metrics", short, "up", check=False)
        # (exactly: the service's node exporter is job ollama-service-node, scraped on its own)
        return proc.returncode == 0 and 'job="ollama-service"' in proc.stdout and 'job="prometheus"' in proc.stdout \
            and proc.stdout
    rows = eventually(up_rows, timeout=90)
    assert rows, run("--query-service-metrics", short, "up", check=False)
    one = run("--query-service-metrics", short, "up{job='ollama-service'}", "--json").stdout
    result = json.loads(one)["result"]
    assert [r["metric"]["job"] for r in result] == ["ollama-service"] and result[0]["value"][1] == "1"
    # 7. stop Prometheus (as a monitor: monitors.json says so), then the service
    assert run("--stop-service", short).stdout.startswith("stopped: ") and "CANCELLED" in run("--status", "--all").stdout
    orch = BenchmarkOrchestrator(cfg)
    assert orch.monitors.store.get(mid)["stopped_at"] and orch.monitors.live_monitors() == []
    run("--stop-service", sid)
    assert orch.servers.registry.record(sid).state == "CANCELLED"
    orch.close()


def test_seed_001_python_api_snippets(laptop, monkeypatch, tmp_path):
    run, work, cfg, config_path = laptop
    monkeypatch.chdir(work)
    orchestrator = BenchmarkOrchestrator(str(config_path))
    try:
        # a service to monitor, and the seed's prometheus recipe with it as the target
        service_recipe = orchestrator.load_recipe("recipes/services/standin-llm.yaml")
        target = orchestrator.servers.start_service(service_recipe, wait=True)
        port = orchestrator.servers.get_service_endpoint(target).port
        text = (work / "recipes/services/prometheus_with_ollama.yaml").read_text()
        (work / "my_prometheus.yaml").write_text(text.replace('"ollama_abc123"', f'"{target}"')
                                                 .replace("port: 11434", f"port: {port}"))

        # "Using as a Service"
        recipe = orchestrator.load_recipe("my_prometheus.yaml")
        session_id = orchestrator.start_benchmark_session(recipe)
        services = orchestrator.servers.list_running_services()
        service_id = next(s.service_id for s in services if s.service_id == session_id)
        assert service_id.startswith("prometheus_")
        host = orchestrator.servers.get_service_host(service_id)
        print(f"Prometheus on: {host}")
        assert host in ("n1", "n2", "n3")

        # "Query via SSH": the 8 hex alone; the bare curl meets the lock, the curl with its config answers
        service_id = service_id.split("_")[1]
        host = orchestrator.servers.get_service_host(service_id)
        assert host
        endpoint = f"http://{host}:9090"
        query = "up"
        monitor_id = session_id
        curl_cmd = f"curl -s '{endpoint}/api/v1/query?query={query}'"
        exit_code, stdout, stderr = orchestrator.ssh_client.execute_command(curl_cmd)
        assert exit_code == 0 and stdout.strip() == "Unauthorized"
        curl_cmd = f"curl -s -K {orchestrator.servers.curl_config(service_id)} '{endpoint}/api/v1/query?query={query}'"
        exit_code, stdout, stderr = orchestrator.ssh_client.execute_command(curl_cmd)
        if exit_code == 0:
            result = json.loads(stdout)
            print(result)
        assert exit_code == 0 and result["status"] == "success"

        # MonitorsModule as documented
        status = orchestrator.monitors.check_monitor_status(monitor_id)
        assert status["status"] == "running" and status["job_id"] and status["nodes"] == [host]
        assert isinstance(status["submitted_at"], float) and abs(status["submitted_at"] - time.time()) < 600
        assert json.loads(json.dumps(orchestrator.monitors.query_metrics(monitor_id, "up")))["status"] == "success"
        assert orchestrator.monitors.get_monitor_endpoint(monitor_id) == endpoint
        assert eventually(lambda: len(orchestrator.monitors.query_metrics(monitor_id, "up")["data"]["result"]) >= 3)
        metrics = orchestrator.monitors.query_metrics(monitor_id, "rate(process_cpu_seconds_total[5m])")
        assert metrics["status"] == "success"
        shown = orchestrator.monitors.show_metrics(monitor_id)
        assert {r["metric"]["job"] for r in shown["data"]["result"]} >= {"prometheus", "ollama-service"}
        timestamp = int(time.time())
        assert orchestrator.monitors.collect_metrics_to_file(monitor_id, "up", f"metrics_{timestamp}.json") is True
        saved = json.loads((work / "metrics" / f"metrics_{timestamp}.json").read_text())
        assert saved["status"] == "success" and saved["data"]["result"]
        assert orchestrator.monitors.construct_report(monitor_id, f"session_{session_id}_report.json") is True
        report = json.loads((work / f"session_{session_id}_report.json").read_text())
        assert report["status"] == "running" and report["metrics"]["up"]["series"]
        assert monitor_id in orchestrator.monitors.list_running_monitors()
        assert "prometheus" in orchestrator.monitors.list_available_monitors()
        assert [m["monitor_id"] for m in orchestrator.show_monitors_status()] == [monitor_id]
        assert monitor_id in [m["service_id"] for m in orchestrator.get_system_status()["monitors"]]
        assert orchestrator.monitors.stop_monitor(monitor_id) is True
        assert orchestrator.monitors.stop_monitor("prometheus_0badc0de") is False
        # start_monitor(recipe: dict), as the seed types it: the recipe's mapping, read from its YAML
        recipe = yaml.safe_load((work / "recipes/services/prometheus.yaml").read_text())
        from_dict = orchestrator.monitors.start_monitor(recipe)
        assert from_dict.startswith("prometheus_") and orchestrator.monitors.check_monitor_status(from_dict)["status"] == "running"
        assert orchestrator.monitors.stop_monitor(from_dict) is True
        assert orchestrator.servers.get_service_host("prometheus_0badc0de") is None
        assert monitor_id not in orchestrator.monitors.list_running_monitors()
        orchestrator.servers.stop_service(target)
    finally:
        orchestrator.close()


def test_seed_000_monitor_cli_with_id(laptop):
    run, work, cfg, _ = laptop
    sid = run("--recipe", "node-exporter", "--wait").stdout.split()[0]
    mid = run("monitor", "start", "--recipe", "prometheus", "--targets", sid).stdout.split()[0]
    listed = run("monitor", "list").stdout
    assert mid in listed
    status = run("monitor", "status", "--id", mid).stdout
    assert status.startswith(f"monitor {mid}: running (job ")
    assert "stopped: " in run("monitor", "stop", "--id", mid).stdout
    assert mid not in run("monitor", "list").stdout
    run("--stop-service", sid)


def test_the_monitor_example_runs(laptop):
    run, work, cfg, config_path = laptop
    shutil.copy(ROOT / "examples" / "monitor_example.py", work / "monitor_example.py")
    proc = subprocess.run([sys.executable, "monitor_example.py"], capture_output=True, text=True, cwd=work,
                          timeout=300, env=dict(os.environ, ORCH_CONFIG=str(config_path),
                                                PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Prometheus at: http://n" in proc.stdout and "monitor stopped" in proc.stdout
    files = sorted((work / "metrics").glob("metrics_*.json"))
    assert len(files) == 3 and all(json.loads(f.read_text())["status"] == "success" for f in files)
    assert json.loads((work / "monitor_report.json").read_text())["metrics"]["up"]["series"]
    orch = BenchmarkOrchestrator(cfg)
    assert orch.monitors.live_monitors() == [] and all(
        r.state == "CANCELLED" for r in orch.servers.registry.records().values())
    orch.close()
