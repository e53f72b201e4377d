"""The optional agent against the sandbox: commands through it answer as without it, over no
connection of their own; a host key it cannot trust is refused as always."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def test_status_through_the_agent_is_the_same_over_no_new_connection(run_cli, sandbox_config_path, tmp_path):
    direct = run_cli("--status")
    started = run_cli("connect")
    assert "agent connected to" in started.stdout
    try:
        via = run_cli("--status", env={"ORCH_AGENT": "1"})
        assert _stable(via.stdout) == _stable(direct.stdout)
        assert "orch-stats: connections=0 commands=1 " in via.stderr
        assert "orch-stats: connections=1 commands=1 " in direct.stderr
    finally:
        assert "agent stopped" in run_cli("connect", "--stop").stdout


def test_an_untrusted_host_key_is_refused_through_the_agent_too(run_cli, sandbox_config_path, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    cfg = tmp_path / "cfg.yaml"
    text = sandbox_config_path.read_text().replace("known_hosts: /var/lib/orch-sandbox/known_hosts",
                                                   f"known_hosts: {empty}")
    cfg.write_text(text.replace("state_dir: /var/lib/orch-sandbox/laptop-state", f"state_dir: {tmp_path / 'state'}"))
    proc = run_cli("--status", "--config", str(cfg), env={"ORCH_AGENT": "1"}, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "host key" in proc.stderr.lower()
    run_cli("connect", "--stop", "--config", str(cfg), check=False)


def _stable(listing: str) -> str:
    """A listing without the elapsed times of running jobs (a second may pass between two runs)."""
    return re.sub(r'(\| |"elapsed": ")\d[\d:-]*', r"\1ELAPSED", listing)


@pytest.fixture
def agent(run_cli):
    assert "agent connected to" in run_cli("connect").stdout
    yield
    run_cli("connect", "--stop", check=False)


def _cmd_socket(sandbox_config_path):
    from orchestrator.cli.handoff import command_socket
    return Path(command_socket(os.path.realpath(sandbox_config_path), os.environ))


def _agent_pid(sandbox_config_path) -> int:
    import socket

    from orchestrator.cluster.agent import socket_path
    from orchestrator.cluster.frames import recv_frame, send_frame
    from orchestrator.config import load_config
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(socket_path(load_config(sandbox_config_path, env={}))))
        send_frame(s, {"op": "ping"})
        return recv_frame(s)["pid"]


def test_whole_commands_run_in_the_agent_with_the_same_output_and_exit_codes(run_cli, agent):
    for args in (["--status"], ["--status", "--json"], ["monitor", "list"]):
        direct, via = run_cli(*args), run_cli(*args, env={"ORCH_AGENT": "1"})
        assert _stable(via.stdout) == _stable(direct.stdout)
        assert "ran_in=agent" in via.stderr and "connections=0 " in via.stderr
        assert "ran_in=here" in direct.stderr
    direct = run_cli("--service-endpoint", "nope_00000000", check=False)
    via = run_cli("--service-endpoint", "nope_00000000", env={"ORCH_AGENT": "1"}, check=False)
    assert via.returncode == direct.returncode == 1
    error = [line for line in direct.stderr.splitlines() if line.startswith("error:")]
    assert error and error == [line for line in via.stderr.splitlines() if line.startswith("error:")]
    assert "Traceback" not in via.stderr


def _start_waiting(sandbox_config_path, tmp_path):
    """`--recipe python-http --wait` through the agent, returned once its job is submitted."""
    env = dict(os.environ, ORCH_CONFIG=str(sandbox_config_path), ORCH_AGENT="1")
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "--recipe", "python-http", "--wait",
                             "--timeout", "120"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=tmp_path)
    for line in proc.stderr:
        m = re.search(r"submitted (\S+) as job", line)
        if m:
            return proc, m.group(1)
    raise AssertionError(f"never submitted: exit {proc.wait()}")


def _state(run_cli, sid):
    rows = json.loads(run_cli("--status", "--json", env={"ORCH_AGENT": "0"}).stdout)
    return next(r["state"] for r in rows if r["service_id"] == sid)


def _cancelled(run_cli, sid, timeout: float = 30) -> bool:
    """The job reaches CANCELLED (through COMPLETING, for a moment after its scancel)."""
    deadline = time.monotonic() + timeout
    while _state(run_cli, sid) != "CANCELLED":
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def test_ctrl_c_reaches_the_command_in_the_agent_which_cancels_its_job(run_cli, agent, sandbox_config_path, tmp_path):
    proc, sid = _start_waiting(sandbox_config_path, tmp_path)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 130
    assert "interrupted" in proc.stderr.read()
    assert _cancelled(run_cli, sid)


def test_a_killed_client_hangs_up_its_command_which_cancels_its_job(run_cli, agent, sandbox_config_path, tmp_path):
    proc, sid = _start_waiting(sandbox_config_path, tmp_path)
    proc.kill()  # SIGKILL: nothing of the client runs; the command in the agent sees its socket close
    proc.wait(10)
    assert _cancelled(run_cli, sid)


def test_once_the_code_changed_the_agent_makes_way_for_one_on_the_new_code(run_cli, agent, sandbox_config_path):
    assert "ran_in=agent" in run_cli("--status", env={"ORCH_AGENT": "1"}).stderr
    old_agent = _agent_pid(sandbox_config_path)
    touched = ROOT / "orchestrator" / "cli" / "common.py"
    st = touched.stat()
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    try:
        via = run_cli("--status", env={"ORCH_AGENT": "1"})
        assert "ran_in=here" in via.stderr and "connections=0 " in via.stderr  # refused, then an agent's connection
        assert _agent_pid(sandbox_config_path) != old_agent  # the old agent stopped; a new one runs
        assert "ran_in=agent" in run_cli("--status", env={"ORCH_AGENT": "1"}).stderr
    finally:
        os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns))
