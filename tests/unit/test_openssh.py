"""The OpenSSH transport's pure parts: the options of every call, and which exits are ssh's own."""

import os
import shutil
from pathlib import Path

from orchestrator.cluster.openssh import classify, ssh_options
from orchestrator.config import SSHConfig
from orchestrator.errors import HostKeyError, TransportError


def test_every_call_is_strict_batch_and_through_the_master(tmp_path):
    cfg = SSHConfig(host="login", port=2222, user="alice", key_file="~/.ssh/id_x", known_hosts=str(tmp_path / "kh"),
                    ssh_config=str(tmp_path / "missing"), connect_timeout=7, keepalive=30)
    opts = ssh_options(cfg, "/state/ssh/%C")
    pairs = {opts[i + 1] for i, o in enumerate(opts) if o == "-o"}
    assert {"BatchMode=yes", "StrictHostKeyChecking=yes", f"UserKnownHostsFile={tmp_path / 'kh'}",
            "ControlPath=/state/ssh/%C", "ConnectTimeout=7", "ServerAliveInterval=30", "IdentitiesOnly=yes"} <= pairs
    assert opts[opts.index("-p") + 1] == "2222" and opts[opts.index("-l") + 1] == "alice"
    assert "-F" not in opts   # no ~/.ssh/config file: ssh's own defaults
    (tmp_path / "cfg").write_text("Host login\n  ProxyJump bastion\n")
    assert ssh_options(SSHConfig(host="login", ssh_config=str(tmp_path / "cfg")), "/c")[-2:] == ["-F", str(tmp_path / "cfg")]


def test_only_ssh_messages_make_an_exit_255_a_transport_failure():
    assert classify(0, "") is None and classify(1, "ssh: oops") is None
    assert classify(255, "Host key verification failed.\n") is HostKeyError
    assert classify(255, "@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n") is HostKeyError
    assert classify(255, "ssh: connect to host 10.0.0.1 port 22: Connection refused\n") is TransportError
    assert classify(255, "Connection to 10.78.0.2 closed by remote host.\n") is TransportError
    assert classify(255, "client_loop: send disconnect: Broken pipe\n") is TransportError
    assert classify(255, "alice@login: Permission denied (publickey).\n") is TransportError
    assert classify(255, "my program failed with its own 255\n") is None   # the remote command's own exit


def test_the_control_socket_is_private_and_short_enough(tmp_path):
    import stat
    from orchestrator.cluster.openssh import SOCKET_MAX, control_path
    cfg = SSHConfig(host="login")
    short = control_path(cfg, tmp_path, env={})
    assert short.startswith(str(tmp_path / "ssh")) and stat.S_IMODE((tmp_path / "ssh").stat().st_mode) == 0o700
    deep = tmp_path / ("d" * 120)
    run = Path("/tmp") / f"orch-test-run-{os.getpid()}"
    try:
        long = control_path(cfg, deep, env={"XDG_RUNTIME_DIR": str(run)})
        assert long.startswith(str(run / "orch-ssh")) and len(long) + 17 < SOCKET_MAX
    finally:
        shutil.rmtree(run, ignore_errors=True)
    assert control_path(SSHConfig(host="other"), tmp_path, env={}) != short   # one per target
