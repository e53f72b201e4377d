"""`orch init`: a config from the user's ssh config, that load_config accepts and that resolves the
login node through that ssh config."""

import os

import yaml
from click.testing import CliRunner

from orchestrator.cli.main import cli
from orchestrator.cluster.ssh import resolve_endpoint
from orchestrator.config import load_config, ssh_config_hosts

SSH_CONFIG = """# the user's
Host *
  ServerAliveInterval 30
Host bastion
  HostName bastion.example.org
Host hpc-login  # the cluster
  HostName login.hpc.example.org
  User alice
  Port 2222
  ProxyJump bastion
Host !nope other-*
"""


def test_the_ssh_configs_concrete_hosts_in_order():
    assert ssh_config_hosts(SSH_CONFIG) == ["bastion", "hpc-login"]


def test_init_writes_a_config_that_loads_and_resolves_through_the_ssh_config(tmp_path):
    ssh = tmp_path / "ssh_config"
    ssh.write_text(SSH_CONFIG)
    out = tmp_path / "config.yaml"
    runner = CliRunner()
    r = runner.invoke(cli, ["init", "--host", "hpc-login", "--partition", "gpu", "--ssh-config", str(ssh),
                            "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert f"wrote {out} (login node hpc-login); next: orch doctor --config {out}" in r.output
    assert oct(os.stat(out).st_mode & 0o777) == "0o600"
    cfg = load_config(out, env={})
    assert cfg.ssh.host == "hpc-login" and cfg.slurm.partition == "gpu" and cfg.slurm.account is None
    ep = resolve_endpoint(cfg.ssh.host, cfg.ssh.ssh_config)
    assert (ep.hostname, ep.port, ep.user, ep.proxy_jump) == ("login.hpc.example.org", 2222, "alice", ("bastion",))
    # an existing config is never overwritten without --force
    again = runner.invoke(cli, ["init", "--host", "bastion", "--ssh-config", str(ssh), "--out", str(out)])
    assert "already exists; --force replaces it" in str(again.exception)
    assert yaml.safe_load(out.read_text())["ssh"]["host"] == "hpc-login"


def test_init_without_a_host_among_several_names_them(tmp_path):
    ssh = tmp_path / "ssh_config"
    ssh.write_text(SSH_CONFIG)
    r = CliRunner().invoke(cli, ["init", "--ssh-config", str(ssh), "--out", str(tmp_path / "c.yaml")])
    assert "has 2 hosts (bastion, hpc-login): name the login node with --host" in str(r.exception)
    assert not (tmp_path / "c.yaml").exists()
    one = tmp_path / "one"
    one.write_text("Host login\n  HostName 10.0.0.1\n")
    r = CliRunner().invoke(cli, ["init", "--ssh-config", str(one), "--out", str(tmp_path / "c.yaml")])
    assert r.exit_code == 0 and yaml.safe_load((tmp_path / "c.yaml").read_text())["ssh"]["host"] == "login"
