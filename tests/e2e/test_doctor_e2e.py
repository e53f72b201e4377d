import json

import pytest

pytestmark = pytest.mark.e2e


def wait_idle(ssh, timeout=90):
    """Jobs of earlier tests leave their nodes COMPLETING for a while after they are cancelled."""
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = ssh.run("sinfo -h -N -p cpu -o %t", check=True).stdout.split()
        if states and all(s == "idle" for s in states):
            return
        time.sleep(1)
    raise AssertionError(f"the sandbox's nodes did not become idle: {states}")


def test_doctor_shows_two_idle_nodes_with_one_connection_and_one_command(run_cli, ssh):
    wait_idle(ssh)
    proc = run_cli("doctor")
    assert "3 idle node(s)" in proc.stdout
    assert "orch-stats: connections=1 commands=1 " in proc.stderr
    checks = {c["name"]: c for c in json.loads(run_cli("doctor", "--json").stdout)}
    assert checks["ssh"]["ok"] and checks["remote work dir"]["ok"] and checks["curl"]["ok"]


def test_doctor_fails_with_a_fix_when_the_work_dir_is_not_writable(run_cli, sandbox_config_path, tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(sandbox_config_path.read_text().replace("~/.orchestrator", "/proc/not-writable"))
    proc = run_cli("doctor", "--config", str(cfg), check=False)
    assert proc.returncode == 1
    line = next(l for l in proc.stdout.splitlines() if l.startswith("remote work dir"))
    assert "FAIL" in line and "set remote.work_dir" in line


def test_unknown_config_key_is_one_line_error(run_cli, tmp_path):
    cfg = tmp_path / "typo.yaml"
    cfg.write_text("ssh: {host: x, prot: 22}\n")
    proc = run_cli("doctor", "--config", str(cfg), check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: {cfg}: ssh.prot: unknown key; did you mean 'port'?"
