"""What the seed documents show a user typing: recipes, MonitorsModule's documented return types, the
Python API's ssh_client, `monitor status --id`, and the watcher's attribution-service options.

The remote side of each is run for real on the sandbox (tests/e2e/test_seeds_e2e.py); here the
modules' own logic runs against stand-ins for the cluster calls they wrap.
"""

import http.server
import json
import threading
from pathlib import Path

import pytest

from orchestrator.api import BenchmarkOrchestrator
from orchestrator.api.seeds import SeedMonitors
from orchestrator.config import load_config
from orchestrator.errors import OrchestratorError
from orchestrator.monitoring.monitors import MonitorsModule
from orchestrator.monitoring.promql import parse_response
from orchestrator.services.recipes import load_recipe
from orchestrator.services.servers import ServiceStatus
from orchestrator.watch.attrsvc import AttrsvcClient, check_url, verdict_body
from orchestrator.watch.watcher import WatchOptions

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parents[1] / "data"

SEED_MULTI = """
service:
  name: prometheus

  monitoring_targets:
    - service_id: "ollama_abc123"
      job_name: "ollama-1"
      port: 11434

    - service_id: "ollama_xyz789"
      job_name: "ollama-2"
      port: 11434

    # Can also monitor by direct host if you know it
    - host: "mel2073"
      job_name: "specific-node"
      port: 9100  # e.g., node_exporter

  container:
    docker_source: docker://prom/prometheus:latest
    image_path: $HOME/containers/prometheus.sif

  resources:
    mem: 4G
    cpus_per_task: 2
    time: "02:00:00"

  ports:
    - 9090
"""

CONFIG = """
ssh: {host: login.example.org, user: alice}
slurm: {account: p0, partition: cpu}
remote: {work_dir: ~/.orchestrator}
state_dir: %s
"""


def test_seed_monitor_recipes_without_a_command_are_the_packaged_prometheus_with_their_fields(tmp_path):
    p = tmp_path / "my_prometheus.yaml"
    p.write_text(SEED_MULTI)
    r = load_recipe(str(p))
    packaged = load_recipe("prometheus")
    assert r.is_monitor and packaged.is_monitor and not load_recipe("llamacpp").is_monitor
    assert r.command == packaged.command and r.auth == "basic" and r.health == packaged.health
    assert r.ports == (9090,) and r.resources.mem == "4G" and r.resources.cpus_per_task == 2
    assert r.container is not None and r.container.docker_source == "docker://prom/prometheus:latest"
    assert [(t.service_id, t.host, t.job_name, t.port) for t in r.monitoring_targets] == [
        ("ollama_abc123", None, "ollama-1", 11434), ("ollama_xyz789", None, "ollama-2", 11434),
        (None, "mel2073", "specific-node", 9100)]
    example = load_recipe(str(ROOT / "recipes/services/prometheus_with_ollama.yaml"))
    assert example.is_monitor and example.name == "prometheus" and example.ports == (9090,)
    assert example.environment == {"PROMETHEUS_RETENTION_TIME": "15d"}
    # the retention variable the seed sets is the one the command reads
    assert "${PROMETHEUS_RETENTION_TIME:-" in example.command


def test_a_recipe_without_command_that_is_no_monitor_still_names_the_missing_field(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("service:\n  name: thing\n  ports: [80]\n")
    with pytest.raises(OrchestratorError, match=r"x.yaml: service.command"):
        load_recipe(str(p))


class StubServers:
    """The ServersModule calls the seed forms reach, answering from what the sandbox answered."""

    def __init__(self):
        self.stopped = []
        self.tracked = {}
        self.registry = self   # (records: services/registry.py)

    def stop_service(self, ident):
        if ident.startswith("ghost"):
            raise OrchestratorError(f"no service or job '{ident}' found")
        self.stopped.append(ident)
        return ServiceStatus("42", ident, "CANCELLED", "0:10", "n1")

    def list_running_services(self):
        return [ServiceStatus("41", "prometheus_6355d49f", "RUNNING", "4:35", "n2"),
                ServiceStatus("40", "ollama_abc12345", "RUNNING", "5:23", "n1"),
                ServiceStatus("39", "prometheus_0badc0de", "CANCELLED", "1:00", "n2")]

    def records(self):
        return dict(self.tracked)

    def record(self, sid):
        return self.tracked.get(sid)

    def load_recipe(self, ref):
        return load_recipe(ref)


@pytest.fixture
def monitors(tmp_path):
    cfg = load_config(_write(tmp_path / "config.yaml", CONFIG % (tmp_path / "state")), env={})
    m = SeedMonitors(MonitorsModule(cfg, StubServers()))
    m.store.update("prometheus_6355d49f", monitor_id="prometheus_6355d49f", job_id="41", targets=[],
                   scrape_interval="15s", submitted_at="2026-12-02T12:00:00+00:00")
    return m


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def recorded_up():
    """A real `up` answer of a sandbox monitor (tests/data)."""
    return parse_response((DATA / "prom_vector.json").read_text(), "up")


def test_seed_return_types_of_the_monitors_module(monitors, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    m = monitors
    assert m.list_running_monitors() == ["prometheus_6355d49f"]   # strings; the cancelled one is not running
    assert "prometheus" in m.list_available_monitors() and all(isinstance(x, str) for x in m.list_available_monitors())
    # endpoint: a URL string, or None when there is none
    monkeypatch.setattr(m, "endpoint", lambda mid: {"url": "http://n2:9090", "api_url": "http://n2:9090/api/v1"})
    assert m.get_monitor_endpoint("6355d49f") == "http://n2:9090"

    def no_endpoint(mid):
        raise OrchestratorError("monitor prometheus_6355d49f is PENDING")
    monkeypatch.setattr(m, "endpoint", no_endpoint)
    assert m.get_monitor_endpoint("6355d49f") is None
    # collect: a bare file name lands in metrics/; the file holds Prometheus' API answer
    monkeypatch.setattr(m.module, "query_metrics", lambda mid, q, at=None: recorded_up())
    # query_metrics: Prometheus' API answer as a plain dict (json.dumps takes it); query_result: the series
    answer = m.query_metrics("6355d49f", "up")
    assert type(answer) is dict and json.loads(json.dumps(answer)) == answer
    assert answer["data"]["result"][0]["metric"] == m.query_result("6355d49f", "up").series[0].labels
    assert m.collect_metrics_to_file("6355d49f", "up", "metrics_1.json") is True
    doc = json.loads((tmp_path / "metrics" / "metrics_1.json").read_text())
    assert doc["status"] == "success" and doc["data"]["resultType"] == "vector"
    assert doc["data"]["result"] == recorded_up().to_dict()["result"]
    # show_metrics: shows a table (the API facade prints it), returns the same dict
    from orchestrator.api import result_text
    tables = []
    m.show = lambda r: tables.append(result_text(r))
    shown = m.show_metrics("6355d49f")
    assert shown == doc and len(tables) == 1 and "series" in tables[0]
    # report to a file
    monkeypatch.setattr(m, "report", lambda mid: {"monitor_id": "prometheus_6355d49f", "status": "running"})
    assert m.construct_report("6355d49f", tmp_path / "out" / "r.json") is True
    assert json.loads((tmp_path / "out" / "r.json").read_text())["status"] == "running"

    def failing(mid):
        raise OrchestratorError("monitor prometheus_6355d49f is CANCELLED: it has no endpoint to query")
    monkeypatch.setattr(m, "report", failing)
    assert m.construct_report("6355d49f", tmp_path / "r2.json") is False and not (tmp_path / "r2.json").exists()


def test_stop_monitor_is_a_bool_and_marks_the_record(monitors):
    m = monitors
    assert m.stop_monitor("6355d49f") is True
    assert m.servers.stopped == ["prometheus_6355d49f"] and m.store.get("prometheus_6355d49f")["stopped_at"]
    assert m.stop_monitor("ghost_0123abcd") is False
    # squeue may still show it (RUNNING here, COMPLETING on a cluster): stopped here, it is not running
    assert m.list_running_monitors() == []


def test_a_monitor_stopped_as_a_plain_service_is_no_longer_live(monitors):
    from orchestrator.state import ServiceRecord
    m = monitors
    assert m.live_monitors() == ["prometheus_6355d49f"]
    m.servers.tracked["prometheus_6355d49f"] = ServiceRecord.from_dict("prometheus_6355d49f",
                                                                       {"job_id": "41", "state": "CANCELLED"})
    assert m.live_monitors() == []
    assert m.tracked("6355d49f") == m.tracked("41") == "prometheus_6355d49f" and m.tracked("deadbeef") is None


def test_query_results_read_like_the_http_api():
    r = recorded_up()
    assert r["status"] == "success" and r["data"]["result"][0]["metric"] == r.series[0].labels


def test_ssh_client_execute_command_gives_exit_stdout_stderr():
    from orchestrator.cluster.local import LocalTransport
    orch = BenchmarkOrchestrator.__new__(BenchmarkOrchestrator)
    orch._transport = LocalTransport()
    code, out, err = orch.ssh_client.execute_command("echo out; echo err >&2; exit 3")
    assert (code, out, err) == (3, "out\n", "err\n")


def test_monitor_status_and_stop_take_id_as_seed_000_writes_it():
    from click.testing import CliRunner

    from orchestrator.cli.main import cli
    runner = CliRunner()
    both = runner.invoke(cli, ["monitor", "status", "a_0123abcd", "--id", "b_0123abcd"])
    assert both.exit_code == 2 and "two monitors given" in both.output
    none = runner.invoke(cli, ["monitor", "stop"])
    assert none.exit_code == 2 and "name the monitor: ID or --id ID" in none.output


# -- the watcher's attribution service (a server on loopback that answers as told) --------------------
class Attrsvc(http.server.BaseHTTPRequestHandler):
    answers: list = []
    bodies: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).bodies.append((self.path, body))
        code, headers = type(self).answers.pop(0) if type(self).answers else (200, {})
        self.send_response(code)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps({"detail": "bad path"} if code == 400 else {"ok": True}).encode())

    def log_message(self, *a):
        pass


@pytest.fixture
def attrsvc():
    Attrsvc.answers, Attrsvc.bodies = [], []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Attrsvc)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", Attrsvc
    server.shutdown()


def test_attrsvc_retries_server_errors_and_honours_retry_after(attrsvc):
    url, svc = attrsvc
    waits = []
    svc.answers = [(503, {}), (429, {"Retry-After": "2"}), (200, {})]
    client = AttrsvcClient(url, timeout=5, attempts=3, retry_delay=0.5, sleep=waits.append)
    body = verdict_body({"job_id": "42", "user": "alice", "name": "bad-exit_0123abcd", "state": "FAILED",
                         "verdict": "non-zero exit: exit code 3", "evidence": ["ERROR: weights"]}, "/h/a/log", "tail")
    res = client.post(body)
    assert res.ok and waits == [0.5, 2.0]
    assert [p for p, _ in svc.bodies] == ["/logs"] * 3
    assert svc.bodies[0][1] == {**body} and body["log_path"] == "/h/a/log" and body["cause"].startswith("non-zero")


def test_attrsvc_client_errors_are_final_and_unreachable_is_retried(attrsvc):
    url, svc = attrsvc
    svc.answers = [(400, {})]
    res = AttrsvcClient(url, attempts=3, sleep=lambda s: None).post({"job_id": "1"})
    assert not res.ok and res.final and res.detail.startswith("HTTP 400") and len(svc.bodies) == 1
    import socket
    with socket.socket() as s:   # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    res = AttrsvcClient(f"http://127.0.0.1:{dead}", attempts=2, sleep=lambda s: None).post({"job_id": "1"})
    assert not res.ok and not res.final and "after 2 attempts" in res.detail


def test_watch_options_from_seed_variables_and_flags():
    o = WatchOptions.from_env({"NVRX_ATTRSVC_URL": "http://localhost:8000/", "NVRX_SMONSVC_TIMEOUT": "7"})
    assert o.attrsvc_url == "http://localhost:8000" and o.timeout == 7.0
    o = WatchOptions.from_env({"NVRX_ATTRSVC_URL": "http://localhost:8000"}, attrsvc_url="http://127.0.0.1:9",
                              timeout=3.0)
    assert o.attrsvc_url == "http://127.0.0.1:9" and o.timeout == 3.0
    with pytest.raises(OrchestratorError, match="--attrsvc-url: expected http://host:port"):
        WatchOptions.from_env({}, attrsvc_url="ftp://x")
    with pytest.raises(OrchestratorError, match="--timeout"):
        WatchOptions.from_env({}, timeout=-1.0)
    with pytest.raises(ValueError):
        check_url("localhost:8000")
    o = WatchOptions.from_env({"NVRX_SMONSVC_PARTITIONS": "batch batch_long", "NVRX_SMONSVC_INTERVAL": "180",
                               "NVRX_SMONSVC_USER": "alice", "ORCH_WATCH_JOB_PATTERN": "training_.*"})
    assert (o.partitions, o.interval, o.user, o.job_pattern) == (["batch", "batch_long"], 180.0, "alice", "training_.*")
    with pytest.raises(OrchestratorError, match=r"\$ORCH_WATCH_INTERVAL: expected seconds"):
        WatchOptions.from_env({"ORCH_WATCH_INTERVAL": "often"})


def test_log_level_from_the_environment():
    import logging

    from orchestrator.logs import level_from_env
    assert level_from_env({}) == logging.INFO and level_from_env({"LOG_LEVEL": "debug"}) == logging.DEBUG
    with pytest.raises(OrchestratorError, match=r"\$LOG_LEVEL: expected one of DEBUG, INFO, WARNING, ERROR"):
        level_from_env({"LOG_LEVEL": "loud"})



def test_the_seed_forms_are_one_facade_over_modules_that_raise(tmp_path):
    """get_service_host answers None for an ID it cannot place (the seed tests ``if host:``); the
    module under it raises with the reason. Every other attribute is the module's own."""
    from orchestrator.api.seeds import SeedServers
    from orchestrator.services.servers import ServersModule

    class Module:
        config = "the module's"

        def get_service_endpoint(self, ident):
            if ident == "vllm_0123abcd":
                return type("Endpoint", (), {"host": "n2"})()
            raise OrchestratorError(f"unknown service {ident}")
    servers = SeedServers(Module())
    assert servers.get_service_host("vllm_0123abcd") == "n2"
    assert servers.get_service_host("nope_00000000") is None
    assert servers.config == "the module's"
    for module, forms in ((ServersModule, ["get_service_host"]),
                          (MonitorsModule, ["show_metrics", "construct_report", "list_running_monitors",
                                            "list_available_monitors", "get_monitor_endpoint",
                                            "collect_metrics_to_file"])):
        assert not [f for f in forms if hasattr(module, f)], module


def test_seed_status_times_are_epoch_floats(monitors, monkeypatch):
    from datetime import datetime, timezone
    monkeypatch.setattr(monitors.module, "check_monitor_status", lambda mid: {
        "monitor_id": "prometheus_6355d49f", "status": "running", "job_id": "12",
        "submitted_at": "2026-12-04T10:00:00Z", "started_at": None})
    st = monitors.check_monitor_status("6355d49f")
    assert st["submitted_at"] == datetime(2026, 12, 4, 10, 0, tzinfo=timezone.utc).timestamp()
    assert isinstance(st["submitted_at"], float) and st["started_at"] is None
    assert st["status"] == "running" and st["job_id"] == "12"


def test_attrsvc_result_is_fetched_once_there_and_pending_until_then():
    import http.server
    import threading
    answers = [404, 202, 200]

    class Svc(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            code = answers.pop(0)
            self.send_response(code)
            self.end_headers()
            if code == 200:
                self.wfile.write(json.dumps({"result": "oom in rank 3", "path": self.path}).encode())

        def log_message(self, *a):
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Svc)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = AttrsvcClient(f"http://127.0.0.1:{server.server_address[1]}", timeout=5)
        assert client.fetch_result("/logs/slurm-7.out", "7")[0] == "pending"   # not analysed yet
        assert client.fetch_result("/logs/slurm-7.out", "7")[0] == "pending"   # accepted, working
        state, doc, _ = client.fetch_result("/logs/slurm-7.out", "7")
        assert state == "done" and doc["result"] == "oom in rank 3"
        assert doc["path"] == "/logs/result?log_path=%2Flogs%2Fslurm-7.out&job_id=7"
    finally:
        server.shutdown()
    gone = AttrsvcClient("http://127.0.0.1:9", timeout=2)
    assert gone.fetch_result("/x", "1")[0] == "pending"   # unreachable: asked again at the next poll
