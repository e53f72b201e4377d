"""Faults injected for real on the sandbox: whatever ends or disturbs a command, nothing of it is left
in squeue, nothing collected is lost locally, and the message says what happened.

Each test starts what it needs and checks the queue afterwards; the loads are small and bounded.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import paramiko
import pytest

from sandbox import cluster as sandbox
from tests.e2e.conftest import config_with_state, live_job_names

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]

BENCH = """benchmark:
  name: chaos
  services: [{{recipe: {service}}}]
  monitor: {{recipe: {monitor}, scrape_interval: 1s}}
  clients:
    - kind: {kind}
      target: {target}
      concurrency: 4
      duration: {duration}
      warmup: 1s
      payload: {payload}
{resources}"""
STANDIN_PAYLOAD = '{model: standin, prompt: "hi", stream: true, max_tokens: 8}'


def bench_text(duration="20s", service="standin-llm", monitor="prometheus", kind="openai-completions",
               target="standin-llm", payload=STANDIN_PAYLOAD, client_nodelist=None):
    resources = f"      resources: {{nodelist: {client_nodelist}}}\n" if client_nodelist else ""
    return BENCH.format(duration=duration, service=service, monitor=monitor, kind=kind, target=target,
                        payload=payload, resources=resources)


def session_ids(out: Path) -> set[str]:
    return {j["service_id"] for j in json.loads((out / "MANIFEST.json").read_text())["jobs"]}


class Bench:
    """`main.py bench run` in the background, its progress lines read as they come."""

    def __init__(self, config: Path, recipe_text: str, tmp: Path, env: dict | None = None):
        self.recipe = tmp / "chaos.yaml"
        self.recipe.write_text(recipe_text)
        self.out = tmp / "out"
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "main.py"), "--stats", "bench", "run", str(self.recipe), "--out", str(self.out)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp,
            env=dict(os.environ, ORCH_CONFIG=str(config), **(env or {})))
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line)

    def wait_for_load(self, timeout=180):
        """Until the load runs and requests completed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(" load: " in line and not line.split(" load: ")[1].startswith("0 ok") for line in self.lines):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError("the load never ran:\n" + "".join(self.lines))

    def finish(self, timeout=300) -> int:
        self.proc.wait(timeout=timeout)
        self.reader.join(10)
        self.stdout = self.proc.stdout.read()
        return self.proc.returncode

    @property
    def text(self) -> str:
        return "".join(self.lines)


def report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def kpis(out: Path) -> dict:
    return {k["kpi"]: k for k in report(out)["kpis"]}


def test_sigterm_mid_load_exits_143_cancels_every_job_and_keeps_what_was_collected(sandbox_config_path, tmp_path, ssh):
    b = Bench(sandbox_config_path, bench_text(duration="60s"), tmp_path)
    b.wait_for_load()
    b.proc.send_signal(signal.SIGTERM)
    assert b.finish() == 143, b.text
    assert "terminated by SIGTERM" in b.text
    ids = session_ids(b.out)
    assert len(ids) == 3 and not ids & live_job_names(ssh)
    assert json.loads((b.out / "MANIFEST.json").read_text())["interrupted"] is True
    assert (b.out / "requests.jsonl").read_text().strip(), "records collected before the signal are kept"


def session_through_a_killed_connection(config: Path, tmp_path: Path, ssh) -> None:
    """A session whose SSH connection (each sshd session process of the sandbox user) is killed
    mid-load reconnects and completes, its KPIs whole and nothing left in the queue (either transport)."""
    b = Bench(config, bench_text(duration="15s"), tmp_path)
    b.wait_for_load()
    killed = subprocess.run(["pkill", "-KILL", "-u", sandbox.USER, "-x", "sshd"], capture_output=True)
    assert killed.returncode == 0, "no sshd session process of the sandbox user to kill"
    assert b.finish() == 0, b.text
    assert "connections=2" in b.text or "connections=3" in b.text, b.text  # it did reconnect
    assert kpis(b.out)["latency_p50"]["value"] is not None
    assert not session_ids(b.out) & live_job_names(ssh)


def test_a_killed_ssh_connection_is_reopened_and_the_session_completes(sandbox_config_path, tmp_path, ssh):
    session_through_a_killed_connection(sandbox_config_path, tmp_path, ssh)


def test_slurmctld_down_for_20_seconds_mid_session_is_ridden_out(sandbox_config_path, tmp_path, ssh):
    b = Bench(sandbox_config_path, bench_text(duration="30s"), tmp_path)
    b.wait_for_load()
    pid = int((sandbox.SANDBOX_DIR / "slurmctld.pid").read_text())
    os.kill(pid, signal.SIGTERM)
    try:
        time.sleep(20)
    finally:
        sandbox.up(install=False, progress=lambda m: None)  # slurmctld back, with its saved state
    assert b.finish() == 0, b.text
    assert kpis(b.out)["requests_ok"]["value"] > 0
    assert not session_ids(b.out) & live_job_names(ssh)


def test_a_node_failure_keeps_the_lost_clients_records_and_says_why(sandbox_config_path, tmp_path, ssh):
    # service and monitor on n1, the client alone on n2, whose slurmd and jobs are then killed
    service = (ROOT / "recipes/services/standin-llm.yaml").read_text().replace(
        "resources: {nodes: 1,", "resources: {nodelist: n1, nodes: 1,")
    (tmp_path / "standin-n1.yaml").write_text(service)
    monitor = (ROOT / "recipes/services/prometheus.yaml").read_text().replace(
        "resources: {nodes: 1,", "resources: {nodelist: n1, nodes: 1,")
    (tmp_path / "prom-n1.yaml").write_text(monitor)
    text = bench_text(duration="40s", service=str(tmp_path / "standin-n1.yaml"), monitor=str(tmp_path / "prom-n1.yaml"),
                      target="standin-n1", client_nodelist="n2")
    b = Bench(sandbox_config_path, text, tmp_path)
    b.wait_for_load()
    try:
        pids = subprocess.run(["ip", "netns", "pids", "n2"], capture_output=True, text=True).stdout.split()
        for pid in pids:  # slurmd, slurmstepd and the client: the node is gone
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        # the session ends with its report, invalid: a client it asked for was lost mid-load
        assert b.finish(timeout=400) == 3, b.text
    finally:
        sandbox.up(install=False, progress=lambda m: None)  # n2's slurmd back; ReturnToService=2 returns it
    rep = report(b.out)
    assert rep["valid"] is False and any("load not delivered" in r and "NODE_FAIL" in r for r in rep["invalid_reasons"])
    lost = [e for e in rep["errors"] if "before it finished" in e]
    assert lost and "NODE_FAIL" in lost[0] and "node failure" in lost[0], rep["errors"]
    assert rep["records"]["total"] > 0, "the lost client's records up to the failure are kept"
    assert "node failure" in (b.out / "report.html").read_text()
    assert not session_ids(b.out) & live_job_names(ssh)


def test_cancelled_prometheus_leaves_its_kpis_absent_and_the_clients_intact(sandbox_config_path, tmp_path, ssh):
    b = Bench(sandbox_config_path, bench_text(duration="15s"), tmp_path)
    b.wait_for_load()
    monitor = next(n for n in live_job_names(ssh) if n.startswith("prometheus_"))
    ssh.run(f"scancel --name={monitor}", check=True)
    assert b.finish() == 0, b.text
    k = kpis(b.out)
    prom = [v for v in k.values() if v["source"] == "prometheus"]
    assert prom and all(v["value"] is None and v["note"].startswith("absent") for v in prom)
    assert k["latency_p50"]["value"] is not None and k["throughput"]["value"] > 0
    assert not session_ids(b.out) & live_job_names(ssh)


def test_state_survives_kill_9_mid_write_and_eight_concurrent_commands(sandbox_config, run_cli, tmp_path, ssh):
    state = tmp_path / "state"
    writer = ("import sys; from orchestrator.state import StateStore\n"
              "s = StateStore(sys.argv[1], 'services')\n"
              "i = 0\n"
              "while True:\n"
              "    s.update(f'k{i % 50}', n=i, pad='x' * 20000); i += 1\n")
    for _ in range(5):
        p = subprocess.Popen([sys.executable, "-c", writer, str(state)], cwd=ROOT)
        time.sleep(0.4)
        p.kill()
        p.wait()
        json.loads((state / "services.json").read_text())  # never half-written
    cfg = config_with_state(sandbox_config, tmp_path / "cfg.yaml")
    from orchestrator.state import StateStore
    StateStore(state, "services").update("probe", n=0)  # the next writer cleans what a killed one left
    assert not list(state.glob(".services.json.*.tmp"))
    # eight commands at once, each submitting a service and recording it
    env = dict(os.environ, ORCH_CONFIG=str(cfg))
    procs = [subprocess.Popen([sys.executable, str(ROOT / "main.py"), "--recipe", "python-http"], cwd=tmp_path,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(8)]
    sids = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        sids.append(out.split()[0])
    tracked = json.loads((state / "services.json").read_text())
    try:
        assert set(sids) <= set(tracked) and all(tracked[s]["job_id"] for s in sids)
    finally:
        for sid in sids:
            run_cli("--config", str(cfg), "--stop-service", sid)
    assert not set(sids) & live_job_names(ssh)


def test_a_login_node_without_sftp_transfers_over_the_shell(sandbox_config, tmp_path, ssh):
    cfg_path = config_with_state(sandbox_config, tmp_path / "cfg.yaml")
    cfg_path.write_text(cfg_path.read_text().replace("port: 22", f"port: {sandbox.NO_SFTP_PORT}"))
    # the fault is real: this sshd refuses the SFTP subsystem
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect(sandbox.LOGIN_SSH_ADDR, port=sandbox.NO_SFTP_PORT, username=sandbox.USER,
                   key_filename=str(sandbox.SANDBOX_DIR / "id_ed25519"), look_for_keys=False, allow_agent=False)
    with pytest.raises(paramiko.SSHException):
        client.open_sftp()
    client.close()
    b = Bench(cfg_path, bench_text(duration="5s"), tmp_path)
    assert b.finish() == 0, b.text
    assert kpis(b.out)["latency_p50"]["value"] is not None
    assert (b.out / "requests.jsonl").read_text().count("\n") == report(b.out)["records"]["total"]
    assert not session_ids(b.out) & live_job_names(ssh)


def test_template_code_in_a_recipe_is_refused_and_nothing_runs_here(run_cli, tmp_path):
    marker = tmp_path / "pwned"
    recipe = tmp_path / "evil.yaml"
    recipe.write_text("service:\n  name: evil\n  command: \"echo {{ lipsum.__globals__['os'].popen('touch %s')"
                      ".read() }}\"\n" % marker)
    proc = run_cli("--recipe", str(recipe), "--dry-run", check=False)
    assert proc.returncode == 1 and "service.command" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists()


def test_stop_service_on_another_jobs_id_is_refused_and_that_job_keeps_running(run_cli, ssh):
    job = ssh.run("sbatch --parsable -J someone-elses --mem=64M --wrap 'sleep 120'", check=True).stdout.strip()
    try:
        proc = run_cli("--stop-service", job, check=False)
        assert proc.returncode == 1 and "not a service started by this tool" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert ssh.run(f"squeue -h -j {job} -o %T", check=True).stdout.strip() in ("RUNNING", "PENDING")
    finally:
        ssh.run(f"scancel {job}")


def test_a_service_without_metrics_is_benchmarked_with_its_kpis_absent(sandbox_config_path, tmp_path, ssh):
    text = bench_text(duration="5s", service="python-http", target="python-http", kind="http",
                      payload="{path: /endpoint.json}")
    b = Bench(sandbox_config_path, text, tmp_path)
    assert b.finish() == 0, b.text
    k = kpis(b.out)
    assert k["latency_p50"]["value"] is not None and k["success_rate"]["value"] == 1.0
    assert k["service_requests_counted"]["value"] is None and k["service_requests_counted"]["note"].startswith("absent")
    assert not session_ids(b.out) & live_job_names(ssh)
