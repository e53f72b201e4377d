"""The optional local agent: one held connection served over a Unix socket only its user can use."""

import socket
import stat
import threading
import time
from pathlib import Path

import pytest

from orchestrator.cluster.agent import AgentTransport, serve, socket_path, stop_agent
from orchestrator.cluster.connect import agent_wanted
from orchestrator.config import Config, RemoteConfig, SlurmConfig, SSHConfig
from orchestrator.errors import CommandTimeout


@pytest.fixture
def agent(tmp_path):
    cfg = Config(ssh=SSHConfig(host="login", local=True), slurm=SlurmConfig(), remote=RemoteConfig(),
                 state_dir=tmp_path / "state", results_dir=tmp_path / "results")
    t = threading.Thread(target=serve, args=(cfg,), kwargs={"idle": 30}, daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # bound and listening (the file exists from bind, before listen)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(str(socket_path(cfg)))
            break
        except OSError:
            time.sleep(0.02)
        finally:
            s.close()
    yield cfg, t
    stop_agent(cfg)
    t.join(5)


def test_commands_and_files_go_through_the_agent(agent, tmp_path):
    cfg, _ = agent
    client = AgentTransport(cfg)
    try:
        r = client.run("echo 'a  b'; echo oops >&2; exit 3", check=False)
        assert (r.exit_code, r.stdout, r.stderr) == (3, "a  b\n", "oops\n")
        src = tmp_path / "src.txt"
        src.write_text("payload\n")
        client.put(str(src), str(tmp_path / "remote.txt"))
        client.get(str(tmp_path / "remote.txt"), str(tmp_path / "back.txt"))
        assert (tmp_path / "back.txt").read_text() == "payload\n"
        assert client.stats.commands == 1 and client.stats.transfers == 2 and client.stats.connections == 0
        with pytest.raises(CommandTimeout):  # the agent's exception, raised here as what it was
            client.run("sleep 5", timeout=0.5)
    finally:
        client.close()


def test_the_socket_is_its_users_alone(agent):
    cfg, _ = agent
    path = socket_path(cfg)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.parent == Path(cfg.state_dir) / "agent"


def test_stop_ends_the_agent_and_removes_its_socket(agent):
    cfg, t = agent
    assert stop_agent(cfg) is True
    t.join(5)
    assert not t.is_alive() and not socket_path(cfg).exists()
    assert stop_agent(cfg) is False


def test_off_unless_asked_and_never_for_the_agent_itself():
    cfg = Config(ssh=SSHConfig(host="login"), slurm=SlurmConfig(), remote=RemoteConfig(), state_dir=Path("/s"),
                 results_dir=Path("/r"))
    assert not agent_wanted(cfg, {}) and agent_wanted(cfg, {"ORCH_AGENT": "1"})
    on = Config(ssh=SSHConfig(host="login", agent=True), slurm=SlurmConfig(), remote=RemoteConfig(),
                state_dir=Path("/s"), results_dir=Path("/r"))
    assert agent_wanted(on, {}) and not agent_wanted(on, {"ORCH_AGENT": "0"})


def _flaky_agent(cfg, answers: list):
    """An agent socket whose first connection closes unanswered (an agent stopping as a command
    reaches it), then answers each request with the next of ``answers``."""
    import socket

    from orchestrator.cluster.frames import recv_frame, send_frame
    path = socket_path(cfg)
    path.parent.mkdir(parents=True, mode=0o700)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(4)

    def run():
        first, _ = srv.accept()
        recv_frame(first)
        first.close()
        conn, _ = srv.accept()
        with conn:
            for answer in answers:
                if recv_frame(conn) is None:
                    return
                send_frame(conn, answer)
    threading.Thread(target=run, daemon=True).start()
    return srv


def _remote_config(tmp_path) -> Config:
    return Config(ssh=SSHConfig(host="login"), slurm=SlurmConfig(), remote=RemoteConfig(),
                  state_dir=tmp_path / "state", results_dir=tmp_path / "results")


def test_a_safe_request_is_sent_again_when_the_agent_went_away_without_answering(tmp_path):
    cfg = _remote_config(tmp_path)
    srv = _flaky_agent(cfg, [{"exit_code": 0, "stdout": "ok\n", "stderr": ""}])
    client = AgentTransport(cfg)
    try:
        assert client.run("squeue", check=True).stdout == "ok\n"
    finally:
        client.close()
        srv.close()


def test_a_request_not_safe_to_repeat_is_not_sent_twice(tmp_path):
    from orchestrator.errors import OutcomeUnknown
    cfg = _remote_config(tmp_path)
    srv = _flaky_agent(cfg, [{"exit_code": 0, "stdout": "", "stderr": ""}])
    client = AgentTransport(cfg)
    try:
        with pytest.raises(OutcomeUnknown, match="may or may not have run: sbatch job.sbatch"):
            client.run("sbatch job.sbatch", idempotent=False)
    finally:
        client.close()
        srv.close()
