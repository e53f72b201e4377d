"""Services on the sandbox cluster, through the CLI a user types and the Python API."""

import dataclasses
import json
import shutil
import time

import pytest

from orchestrator import BenchmarkOrchestrator
from orchestrator.cluster.shell import command
from orchestrator.services.servers import ServiceNotReady

pytestmark = pytest.mark.e2e

PINNED = """service:
  name: pinned-http
  command: python3 -m http.server {{ port }} --bind 0.0.0.0 --directory {{ job_dir }}
  resources: {nodelist: n2, mem: 128M, time: "00:10:00"}
  ports: [auto]
  health: {path: /endpoint.json, timeout: 60}
"""


@pytest.fixture
def orch(sandbox_config):
    o = BenchmarkOrchestrator(sandbox_config)
    yield o
    for sid, rec in o.servers.store.load().items():  # leave no job behind
        if rec.get("job_id") and rec.get("state") not in ("CANCELLED", "COMPLETED", "FAILED", "TIMEOUT"):
            o.transport.run(command("scancel", rec["job_id"]))
    o.close()


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_native_service_lifecycle_through_the_cli(run_cli, sandbox_config_path):
    sid = run_cli("--recipe", "python-http", "--wait").stdout.split()[0]
    status = run_cli("--status").stdout
    line = next(l for l in status.splitlines() if sid in l)
    job_id, _, state, _, node = [f.strip() for f in line.split("|")]
    assert state == "RUNNING" and node in ("n1", "n2")
    ep = json.loads(run_cli("--service-endpoint", sid, "--json").stdout)
    assert ep["host"] == node and ep["job_id"] == job_id and ep["port"] > 0
    stopped = run_cli("--stop-service", job_id)  # the SLURM job ID works as well as the service ID
    assert "CANCELLED" in stopped.stdout and "connections=1 commands=1" in stopped.stderr
    after = next(l for l in run_cli("--status", "--all").stdout.splitlines() if sid in l)
    assert "| CANCELLED |" in after


def test_the_hex_part_alone_names_a_service_as_the_seed_documents_show(run_cli, sandbox_config_path, tmp_path):
    """`--service-endpoint 6355d49f`, `--query-service-metrics 6355d49f "up"`, `--stop-service 6355d49f`,
    with a state dir of its own and without one (found in the queue)."""
    sid = run_cli("--recipe", "python-http", "--wait").stdout.split()[0]
    short = sid.rsplit("_", 1)[1]
    try:
        ep = json.loads(run_cli("--service-endpoint", short, "--json").stdout)
        assert ep["service_id"] == sid
        mid = json.loads(run_cli("monitor", "start", sid, "--json").stdout)["monitor_id"]
        up = run_cli("--query-service-metrics", mid.rsplit("_", 1)[1], "up", "--json")
        assert json.loads(up.stdout)["resultType"] == "vector"
        run_cli("monitor", "stop", mid)
        empty_state = tmp_path / "other-laptop.yaml"
        empty_state.write_text(sandbox_config_path.read_text().replace("laptop-state", "laptop-state-empty"))
        elsewhere = run_cli("--config", str(empty_state), "--service-endpoint", short, "--json")
        assert json.loads(elsewhere.stdout)["service_id"] == sid   # untracked there: found in the queue
    finally:
        stopped = run_cli("--stop-service", short, check=False)
    assert stopped.returncode == 0 and "CANCELLED" in stopped.stdout, stopped.stderr


def test_endpoint_answers_a_curl_on_the_login_node_but_not_from_the_laptop(orch):
    import socket
    sid = orch.servers.start_service(orch.load_recipe("python-http"), wait=True, timeout=60)
    ep = orch.servers.get_service_endpoint(sid)
    body = orch.transport.run(command("curl", "-sf", f"{ep.url}/endpoint.json"), check=True).stdout
    assert json.loads(body)["static"]["service_id"] == sid
    with pytest.raises(OSError):  # compute nodes are not reachable from the laptop
        socket.create_connection((socket.gethostbyname(ep.host), ep.port), timeout=2)
    orch.servers.stop_service(sid)


def test_two_auto_port_copies_on_one_node_both_answer(orch, tmp_path):
    recipe = orch.load_recipe(write(tmp_path, "pinned.yaml", PINNED))
    a = orch.servers.start_service(recipe)
    b = orch.servers.start_service(recipe)
    ea = orch.servers.wait_until_ready(a, timeout=60)
    eb = orch.servers.wait_until_ready(b, timeout=60)
    assert ea.host == eb.host == "n2" and ea.port != eb.port
    for ep, sid in ((ea, a), (eb, b)):
        out = orch.transport.run(command("curl", "-sf", f"{ep.url}/endpoint.json"), check=True).stdout
        assert json.loads(out)["static"]["service_id"] == sid
    for sid in (a, b):
        orch.servers.stop_service(sid)


def test_recipe_error_is_clear_and_leaves_no_state(run_cli, sandbox_config, tmp_path):
    from tests.e2e.conftest import config_with_state
    cfg = config_with_state(sandbox_config, tmp_path / "cfg.yaml")
    bad = write(tmp_path, "bad.yaml", PINNED.replace("ports:", "prots:"))
    proc = run_cli("--config", str(cfg), "--recipe", bad, check=False)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0] == f"error: {bad}: service.prots: unknown key; did you mean 'ports'?"
    assert "connections=" not in proc.stderr  # refused before any connection
    state = sandbox_config.state_dir / "services.json"
    assert not state.exists() or json.loads(state.read_text()) == {}


def test_sbatch_rejection_is_clear_and_leaves_nothing_behind(orch, tmp_path):
    from orchestrator.errors import SlurmError
    recipe = orch.load_recipe(write(tmp_path, "np.yaml", PINNED.replace("nodelist: n2", "partition: nope")))
    with pytest.raises(SlurmError, match="sbatch rejected service pinned-http_[0-9a-f]{8} .*invalid partition") as err:
        orch.servers.start_service(recipe)
    sid = str(err.value).split()[3]
    assert orch.servers.store.load() == {}
    assert orch.transport.run(command("test", "-e", f".orchestrator/services/{sid}")).exit_code == 1
    assert orch.transport.run(command("squeue", "-h", f"--name={sid}")).stdout == ""


def test_service_is_found_from_squeue_without_local_state(orch, run_cli):
    sid = orch.servers.start_service(orch.load_recipe("python-http"), wait=True, timeout=60)
    job_id = orch.servers.store.get(sid)["job_id"]
    shutil.rmtree(orch.config.state_dir)  # another laptop, or deleted state
    fresh = BenchmarkOrchestrator(dataclasses.replace(orch.config), transport=orch.transport)
    rows = {r.service_id: r for r in fresh.servers.list_running_services()}
    assert rows[sid].state == "RUNNING" and rows[sid].job_id == job_id and not rows[sid].tracked
    assert fresh.servers.get_service_endpoint(job_id).service_id == sid
    fresh.servers.stop_service(sid)


def test_job_that_fails_before_ready_reports_its_log(orch, tmp_path):
    recipe = orch.load_recipe(write(tmp_path, "crash.yaml", PINNED.replace(
        "command: python3 -m http.server", "command: echo fatal model-not-found >&2; exit 3; true")))
    sid = orch.servers.start_service(recipe)
    with pytest.raises(ServiceNotReady) as err:
        orch.servers.wait_until_ready(sid, timeout=60)
    assert "ended FAILED before it was ready" in str(err.value) and "fatal model-not-found" in str(err.value)


def test_wait_timeout_leaves_the_job_running_and_says_so(orch, tmp_path):
    recipe = orch.load_recipe(write(tmp_path, "slow.yaml", PINNED.replace(
        "command: python3 -m http.server", "command: sleep 300; python3 -m http.server")))
    sid = orch.servers.start_service(recipe)
    with pytest.raises(ServiceNotReady, match="not ready after 3s .*the job was left running"):
        orch.servers.wait_until_ready(sid, timeout=3)
    assert orch.servers.probe(sid).job.state in ("RUNNING", "PENDING")
    orch.servers.stop_service(sid)


def test_logs_follow_prints_until_the_job_ends(orch, run_cli, tmp_path):
    recipe = orch.load_recipe(write(tmp_path, "talk.yaml", PINNED.replace(
        "command: python3 -m http.server", "command: for i in 1 2 3; do echo tick $i; sleep 1; done; true")))
    sid = orch.servers.start_service(recipe)
    proc = run_cli("logs", sid, "--follow")
    assert [l for l in proc.stdout.splitlines() if l.startswith("tick")] == ["tick 1", "tick 2", "tick 3"]
    assert "COMPLETED" in proc.stderr


def test_a_record_left_submitting_is_completed_from_squeue(orch):
    sid = orch.servers.start_service(orch.load_recipe("python-http"))
    job_id = orch.servers.store.get(sid)["job_id"]
    orch.servers.store.update(sid, state="SUBMITTING", job_id=None)  # as if we died right after sbatch
    row = next(r for r in orch.servers.list_running_services() if r.service_id == sid)
    assert row.job_id == job_id and row.tracked
    assert orch.servers.store.get(sid)["job_id"] == job_id
    orch.servers.stop_service(sid)


def test_dry_run_prints_the_script_and_submits_nothing(run_cli):
    proc = run_cli("--recipe", "python-http", "--dry-run")
    assert proc.stdout.startswith("#!/bin/bash\n#SBATCH --job-name=python-http_")
    assert 'exec python3 -m http.server ${ORCH_PORT} --bind 0.0.0.0 --directory "${ORCH_JOB_DIR}/public"' in proc.stdout
    assert "connections=" not in proc.stderr  # not even a connection was opened


def test_json_log_lines_carry_service_and_job_ids(run_cli):
    proc = run_cli("--log-format", "json", "--recipe", "python-http", "--wait")
    sid = proc.stdout.split()[0]
    lines = [json.loads(l) for l in proc.stderr.splitlines()]
    submitted = next(l for l in lines if l["msg"].startswith("submitted"))
    assert submitted["service_id"] == sid and submitted["job_id"].isdigit() and submitted["level"] == "info"
    assert any(l["msg"] == "orch-stats" and l["connections"] == 1 for l in lines)
    bad = run_cli("--log-format", "json", "--stop-service", "nosuch_0123abcd", check=False)
    err = next(d for d in map(json.loads, bad.stderr.splitlines()) if d["level"] == "error")
    assert bad.returncode == 1 and "nosuch_0123abcd" in err["msg"] and err["service_id"] == "nosuch_0123abcd"
    run_cli("--stop-service", sid)


def test_a_job_that_failed_while_no_watcher_ran_is_explained_on_first_sight(run_cli, sandbox_config, tmp_path):
    from tests.e2e.conftest import config_with_state
    cfg = str(config_with_state(sandbox_config, tmp_path / "cfg.yaml"))
    recipe = write(tmp_path, "crash.yaml", "service:\n  name: crash-later\n  command: 'echo \"fatal: no model\" >&2; "
                                           "exit 3'\n  resources: {mem: 64M}\n")
    sid = run_cli("--config", cfg, "--recipe", recipe).stdout.split()[0]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = {r["service_id"]: r for r in json.loads(run_cli("--config", cfg, "--status", "--all", "--json").stdout)}
        if rows[sid]["state"] == "FAILED":
            break
        time.sleep(1)
    assert rows[sid]["state"] == "FAILED"
    # no watcher ever ran: --status itself read the log once and said why
    rows = {r["service_id"]: r for r in json.loads(run_cli("--config", cfg, "--status", "--all", "--json").stdout)}
    assert rows[sid]["verdict"] == "non-zero exit: exit code 3"
    assert any("fatal: no model" in e for e in rows[sid]["evidence"])
    once = run_cli("--config", cfg, "watch", "--once", "--json")
    assert sid in once.stdout and "no jobs watched" not in once.stdout


def test_the_service_group_does_what_the_seed_flags_do(run_cli, sandbox_config_path):
    """`orch service start|list|endpoint|metrics|stop`, one ID argument each, on a real job."""
    started = json.loads(run_cli("service", "start", "python-http", "--wait", "--json").stdout)
    sid = started["service_id"]
    try:
        listed = json.loads(run_cli("service", "list", "--json").stdout)
        row = next(r for r in listed if r["service_id"] == sid)
        assert row["state"] == "RUNNING"
        ep = json.loads(run_cli("service", "endpoint", sid.split("_")[1], "--json").stdout)
        assert ep["service_id"] == sid and ep["host"] == row["nodelist"]
        assert ep == json.loads(run_cli("--service-endpoint", sid, "--json").stdout)
    finally:
        stopped = run_cli("service", "stop", sid)
    assert "CANCELLED" in stopped.stdout
    assert sid not in run_cli("service", "list").stdout and sid in run_cli("service", "list", "--all").stdout
