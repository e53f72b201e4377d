"""Handing a whole command to the agent (cli/handoff.py): which commands go, and what comes back."""

import os
import stat

import pytest

from orchestrator.cli import handoff


def test_the_config_a_command_names_is_the_last_one_given_as_click_reads_it():
    assert handoff.config_argument(["--status"]) is None
    assert handoff.config_argument(["--config", "a.yaml", "logs", "--config=b.yaml", "x"]) == "b.yaml"
    assert handoff.config_argument(["--config=a.yaml", "monitor", "list", "--config", "c.yaml"]) == "c.yaml"
    assert handoff.config_argument(["logs", "--config"]) is None  # no value: click reports it, in-process


def test_exit_codes_are_what_the_interpreter_would_give(capsys):
    assert handoff._exit_code(None) == 0
    assert handoff._exit_code(3) == 3
    assert handoff._exit_code(130) == 130
    assert handoff._exit_code(256 + 2) == 2
    assert handoff._exit_code("usage: bad") == 1
    assert capsys.readouterr().err == "usage: bad\n"


def test_the_code_fingerprint_changes_with_any_source_file_and_ignores_bytecode(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    (tmp_path / "b.py").write_text("y = 2\n")
    before = handoff.code_fingerprint(str(tmp_path))
    assert [row[0] for row in before] == ["b.py", "pkg/a.py"]
    (tmp_path / "pkg" / "__pycache__").mkdir()
    (tmp_path / "pkg" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")
    assert handoff.code_fingerprint(str(tmp_path)) == before
    (tmp_path / "pkg" / "a.py").write_text("x = 10\n")  # another size
    assert handoff.code_fingerprint(str(tmp_path)) != before
    changed = handoff.code_fingerprint(str(tmp_path))
    st = os.stat(tmp_path / "b.py")
    os.utime(tmp_path / "b.py", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # same size, touched
    assert handoff.code_fingerprint(str(tmp_path)) != changed


def test_only_a_directory_closed_to_others_receives_a_command(tmp_path):
    d = tmp_path / "agent"
    d.mkdir()
    sock = str(d / "x.cmd.sock")
    os.chmod(d, 0o700)
    assert handoff._private_dir(sock)
    os.chmod(d, 0o755)
    assert not handoff._private_dir(sock)
    os.chmod(d, 0o700)
    link = tmp_path / "link"
    link.symlink_to(d)
    assert not handoff._private_dir(str(link / "x.cmd.sock"))  # a link is not the directory we checked


def _config(tmp_path, agent: bool):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"ssh:\n  host: login.example.org\n  user: alice\n  agent: {'true' if agent else 'false'}\n"
                   f"state_dir: {tmp_path / 'state'}\n")
    return str(cfg)


def test_the_command_socket_is_found_from_the_config_path_alone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {"XDG_RUNTIME_DIR": str(tmp_path / "run")}
    here = handoff.config_path([], env)
    assert here == str(tmp_path / "config.yaml")
    assert handoff.config_path([], {"ORCH_CONFIG": "other.yaml"}) == str(tmp_path / "other.yaml")
    assert handoff.config_path(["--config", "x.yaml"], {"ORCH_CONFIG": "other.yaml"}) == str(tmp_path / "x.yaml")
    sock = handoff.command_socket(here, env)
    assert os.path.dirname(sock) == str(tmp_path / "run" / "orch")
    assert sock != handoff.command_socket(str(tmp_path / "x.yaml"), env)
    assert os.path.dirname(handoff.command_socket(here, {})) == f"/tmp/orch-{os.getuid()}"


class FakeAgent:
    """A command socket that records each request and declines it, as an agent not wanted does."""

    def __init__(self, path):
        import socket
        import threading
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        self.requests, self.fds = [], []
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        self.srv.listen(4)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        import socket

        from orchestrator.cluster.frames import frame, recv_frame
        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            with conn:
                data, fds, _, _ = socket.recv_fds(conn, 65536, 3)
                self.requests.append(recv_frame(conn, data))
                self.fds.append(len(fds))
                for fd in fds:
                    os.close(fd)
                conn.sendall(frame({"declined": "not wanted"}))


@pytest.fixture
def fake_agent(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {"XDG_RUNTIME_DIR": str(tmp_path / "run"), "ORCH_CONFIG": _config(tmp_path, agent=False)}
    agent = FakeAgent(handoff.command_socket(handoff.config_path([], env), env))
    yield agent, env
    agent.srv.close()


@pytest.mark.parametrize("argv, extra", [
    (["--status"], {"ORCH_AGENT": "0"}),      # the agent is off for this command
    (["connect", "--stop"], {}),              # manages the agent itself
    (["sandbox", "status"], {}),              # root's business, on this machine
    (["--status", "--config", "elsewhere.yaml"], {}),  # another config file: another agent's socket
])
def test_some_commands_never_go_to_the_agent(fake_agent, argv, extra):
    agent, env = fake_agent
    assert handoff.run_in_agent(argv, {**env, **extra}) is None
    assert agent.requests == []


def test_a_declined_command_runs_here_after_handing_over_everything_it_would_need(fake_agent, tmp_path):
    agent, env = fake_agent
    assert handoff.run_in_agent(["--status", "--json"], env) is None  # declined: in-process
    [req] = agent.requests
    assert agent.fds == [3]  # stdin, stdout, stderr
    assert req["argv"] == ["--status", "--json"] and req["env"] == env and req["cwd"] == str(tmp_path)
    assert req["config"] == env["ORCH_CONFIG"] and req["package"] == handoff.PACKAGE
    assert len(req["stdio"]) == 3


def test_the_agent_declines_what_it_should_not_run(tmp_path):
    import sys
    off = _config(tmp_path, agent=False)
    base = {"config": off, "python": sys.executable, "package": handoff.PACKAGE, "env": {}}
    assert handoff._declined(base, off) == "the config does not ask for the agent"
    assert handoff._declined({**base, "env": {"ORCH_AGENT": "1"}}, off) is None
    assert handoff._declined({**base, "env": {"ORCH_AGENT": "1"}}, str(tmp_path / "other.yaml")) == "another config file"
    assert handoff._declined({**base, "python": "/usr/bin/python9"}, off) == "another Python or checkout"
    (tmp_path / "config.yaml").write_text("ssh: [not, a, mapping]\n")
    assert "does not load" in handoff._declined({**base, "env": {"ORCH_AGENT": "1"}}, off)


def test_a_socket_in_a_directory_others_may_enter_is_not_used(fake_agent):
    agent, env = fake_agent
    directory = os.path.dirname(handoff.command_socket(handoff.config_path([], env), env))
    os.chmod(directory, 0o755)
    assert handoff.run_in_agent(["--status"], env) is None
    assert agent.requests == []  # it did not even connect
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o755
