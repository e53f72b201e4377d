"""The SSH boundary against the real sandbox login node."""

import dataclasses
import time
from pathlib import Path

import pytest

from orchestrator.cluster.shell import command
from orchestrator.cluster.slurm import parse_sbatch, parse_squeue, squeue_command
from orchestrator.cluster.ssh import SSHTransport
from orchestrator.errors import HostKeyError, RemoteCommandError
from sandbox.cluster import LOGIN_CLUSTER_ADDR, LOGIN_SSH_ADDR

pytestmark = pytest.mark.e2e


def test_batch_job_runs_on_a_compute_node_and_its_output_is_read(ssh):
    script = "#!/bin/bash\n#SBATCH -J e2e_hello\n#SBATCH -o e2e-%j.out\necho \"hello from $(hostname)\"\nsleep 4\n"
    job_id = parse_sbatch(ssh.run("cat > e2e.sbatch && sbatch --parsable e2e.sbatch", stdin=script, check=True).stdout)
    seen = None
    for _ in range(40):
        jobs = [j for j in parse_squeue(ssh.run(squeue_command(job_ids=[job_id])).stdout) if j.job_id == job_id]
        if jobs and jobs[0].state == "RUNNING":
            seen = jobs[0]
            break
        time.sleep(0.25)
    assert seen is not None, "job never seen RUNNING"
    assert seen.nodes and seen.nodes[0] in ("n1", "n2")
    for _ in range(40):
        out = ssh.run(command("cat", f"e2e-{job_id}.out"))
        if out.ok and "hello" in out.stdout:
            break
        time.sleep(0.25)
    assert out.stdout.strip() == f"hello from {seen.nodes[0]}"
    assert ssh.stats.connections == 1


def test_hostile_argument_is_one_literal_argument_on_the_login_node(ssh):
    hostile = "x'; touch /tmp/pwned_e2e; echo '"
    out = ssh.run(command("printf", "%s\\n", hostile, "$(id)") + "; ls /tmp/pwned_e2e 2>&1", check=False)
    assert out.stdout.splitlines()[:2] == [hostile, "$(id)"]
    assert "No such file" in out.stdout


def test_unknown_host_key_is_refused_with_instructions(sandbox_config, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    t = SSHTransport(dataclasses.replace(sandbox_config.ssh, known_hosts=str(empty)))
    with pytest.raises(HostKeyError) as err:
        t.run("true")
    assert "not in" in str(err.value) and f"ssh-keyscan {LOGIN_SSH_ADDR} >> {empty}" in str(err.value)
    assert t.stats.connections == 0


def test_changed_host_key_is_refused(sandbox_config, tmp_path):
    import paramiko
    other = paramiko.Ed25519Key.from_private_key_file(sandbox_config.ssh.key_file)  # any other ed25519 key
    kh = tmp_path / "known_hosts"
    kh.write_text(f"{LOGIN_SSH_ADDR} ssh-ed25519 {other.get_base64()}\n")
    with pytest.raises(HostKeyError, match="CHANGED"):
        SSHTransport(dataclasses.replace(sandbox_config.ssh, known_hosts=str(kh))).run("true")


def _real_key_line(sandbox_config) -> str:
    return Path(sandbox_config.ssh.known_hosts).read_text().splitlines()[0]


def test_known_hosts_with_cert_authority_lines_still_verifies_plain_keys(sandbox_config, tmp_path):
    kh = tmp_path / "known_hosts"
    kh.write_text("@cert-authority *.example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJunk0000000000000000000000000000000000000000\n"
                  + _real_key_line(sandbox_config) + "\n")
    t = SSHTransport(dataclasses.replace(sandbox_config.ssh, known_hosts=str(kh)))
    assert t.run("echo ok", check=True).stdout == "ok\n"
    t.close()


def test_a_host_known_only_through_a_ca_gets_an_error_naming_it(sandbox_config, tmp_path):
    kh = tmp_path / "known_hosts"
    key = _real_key_line(sandbox_config).split()
    kh.write_text(f"@cert-authority {LOGIN_SSH_ADDR} {key[1]} {key[2]}\n")
    with pytest.raises(HostKeyError, match=f"{LOGIN_SSH_ADDR} is trusted in .* only through a @cert-authority line"):
        SSHTransport(dataclasses.replace(sandbox_config.ssh, known_hosts=str(kh))).run("true")


def test_a_revoked_host_key_is_refused_even_when_also_listed(sandbox_config, tmp_path):
    kh = tmp_path / "known_hosts"
    key = _real_key_line(sandbox_config).split()
    kh.write_text(f"@revoked * {key[1]} {key[2]}\n" + " ".join(key) + "\n")
    with pytest.raises(HostKeyError, match="marked @revoked"):
        SSHTransport(dataclasses.replace(sandbox_config.ssh, known_hosts=str(kh))).run("true")


def test_proxyjump_in_host_port_form_reaches_the_login_node(sandbox_config, tmp_path):
    # the login node jumps to itself on its cluster address: a real hop, written host:port
    cfg = tmp_path / "ssh_config"
    cfg.write_text(f"Host via-jump\n  HostName {LOGIN_CLUSTER_ADDR}\n  ProxyJump {sandbox_config.ssh.user}@{LOGIN_SSH_ADDR}:22\n"
                   f"Host *\n  IdentityFile {sandbox_config.ssh.key_file}\n")
    kh = tmp_path / "known_hosts"
    key = _real_key_line(sandbox_config).split()
    kh.write_text(" ".join(key) + f"\n{LOGIN_CLUSTER_ADDR} {key[1]} {key[2]}\n")
    t = SSHTransport(dataclasses.replace(sandbox_config.ssh, host="via-jump", port=None, ssh_config=str(cfg),
                                         known_hosts=str(kh), key_file=None))
    assert t.run("hostname", check=True).stdout.strip() == "login"
    assert t.stats.connections == 2  # the hop and the target
    t.close()


def test_one_connection_is_reused_and_a_dropped_one_reopened_once(ssh):
    for _ in range(3):
        ssh.run("true", check=True)
    assert ssh.stats.connections == 1
    ssh._client.get_transport().sock.close()  # the network drops the connection
    assert ssh.run("echo back", check=True).stdout == "back\n"
    assert ssh.stats.connections == 2


def test_output_that_arrives_after_the_exit_status_is_kept(ssh):
    # the shell exits first (sshd sends its exit status), a child still writes to the same pipe:
    # what sbatch prints after a precheck reached us cut off this way ("Checking prometheus.yml")
    for _ in range(3):
        result = ssh.run("(sleep 0.3; echo late; echo err-late >&2) & echo early", check=True)
        assert result.stdout == "early\nlate\n"
        assert result.stderr == "err-late\n"


def test_failure_raises_with_exit_code_and_stderr(ssh):
    with pytest.raises(RemoteCommandError, match=r"exit 3\): boom"):
        ssh.run("echo boom >&2; exit 3", check=True)


def test_ssh_config_alias_with_proxyjump_is_honoured(sandbox_config, tmp_path):
    key = sandbox_config.ssh.key_file
    host_key = open(sandbox_config.ssh.known_hosts).read().split()[1:3]
    kh = tmp_path / "known_hosts"
    kh.write_text(f"{LOGIN_SSH_ADDR} {' '.join(host_key)}\n{LOGIN_CLUSTER_ADDR} {' '.join(host_key)}\n")
    cfg = tmp_path / "ssh_config"
    cfg.write_text(f"Host jump\n  HostName {LOGIN_SSH_ADDR}\n  User orch\n  IdentityFile {key}\n"
                   f"Host inner\n  HostName {LOGIN_CLUSTER_ADDR}\n  User orch\n  IdentityFile {key}\n"
                   f"  ProxyJump jump\n")
    ssh_cfg = dataclasses.replace(sandbox_config.ssh, host="inner", port=None, user=None, key_file=None,
                                  known_hosts=str(kh), ssh_config=str(cfg))
    t = SSHTransport(ssh_cfg)
    try:
        assert t.run("hostname", check=True).stdout.strip() == "login"
        assert t.endpoint.hostname == LOGIN_CLUSTER_ADDR and t.endpoint.proxy_jump == ("jump",)
        assert t.stats.connections == 2  # the jump host and the target
    finally:
        t.close()


def test_port_forward_reaches_a_cluster_address_from_localhost(ssh):
    import socket
    with ssh.forward(LOGIN_CLUSTER_ADDR, 22) as fwd:
        with socket.create_connection(("127.0.0.1", fwd.local_port), timeout=5) as s:
            assert s.recv(64).startswith(b"SSH-2.0-")


def test_upload_and_download_round_trip(ssh, tmp_path):
    src = tmp_path / "up.txt"
    src.write_text("payload with 'quotes' and {braces}\n")
    ssh.put(str(src), "~/e2e-upload.txt")
    back = tmp_path / "down.txt"
    ssh.get("~/e2e-upload.txt", str(back))
    assert back.read_text() == src.read_text()
