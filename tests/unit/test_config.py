import pytest

from orchestrator.config import load_config
from orchestrator.errors import ConfigError

GOOD = """
ssh:
  host: login.example.org
  port: 2222
  user: alice
  key_file: ~/.ssh/id_ed25519
  known_hosts: ~/.ssh/known_hosts
slurm:
  account: p000000
  partition: cpu
  qos: default
  time: "02:00:00"
remote:
  work_dir: ~/.orchestrator
state_dir: ~/.orchestrator
"""


def write(tmp_path, text):
    p = tmp_path / "config.yaml"
    p.write_text(text)
    return p


def test_valid_config_loads_into_typed_sections(tmp_path):
    cfg = load_config(write(tmp_path, GOOD), env={})
    assert cfg.ssh.host == "login.example.org" and cfg.ssh.port == 2222 and cfg.ssh.user == "alice"
    assert cfg.slurm.partition == "cpu" and cfg.slurm.time == "02:00:00"
    assert cfg.remote.work_dir == "~/.orchestrator"
    assert not str(cfg.state_dir).startswith("~")


def test_environment_overrides_slurm_settings(tmp_path):
    env = {"SLURM_ACCOUNT": "p999", "SLURM_PARTITION": "gpu", "SLURM_QOS": "high", "SLURM_TIME_LIMIT": "1-00:00:00"}
    cfg = load_config(write(tmp_path, GOOD), env=env)
    assert (cfg.slurm.account, cfg.slurm.partition, cfg.slurm.qos, cfg.slurm.time) == ("p999", "gpu", "high", "1-00:00:00")


def test_orch_config_variable_selects_the_file(tmp_path):
    p = write(tmp_path, GOOD)
    assert load_config(None, env={"ORCH_CONFIG": str(p)}).source == p


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yaml: config file not found \(--config\)\. Make one with `orch init`"):
        load_config(tmp_path / "nope.yaml", env={})


def test_malformed_yaml_names_file_and_line(tmp_path):
    p = write(tmp_path, "ssh:\n  host: [unclosed\n")
    with pytest.raises(ConfigError) as err:
        load_config(p, env={})
    assert str(p) in str(err.value) and "malformed YAML: line" in str(err.value)


def test_unknown_key_is_an_error_with_a_suggestion(tmp_path):
    p = write(tmp_path, GOOD.replace("partition: cpu", "parition: cpu"))
    with pytest.raises(ConfigError, match=r"slurm\.parition: unknown key; did you mean 'partition'\?"):
        load_config(p, env={})


def test_wrong_type_names_key_and_expectation(tmp_path):
    p = write(tmp_path, GOOD.replace("port: 2222", "port: twenty"))
    with pytest.raises(ConfigError, match=r"config\.yaml: ssh\.port: expected an integer, got a string 'twenty'"):
        load_config(p, env={})


def test_bad_time_from_environment_names_the_variable(tmp_path):
    with pytest.raises(ConfigError, match="SLURM_TIME_LIMIT: expected a SLURM time"):
        load_config(write(tmp_path, GOOD), env={"SLURM_TIME_LIMIT": "two hours"})


def test_missing_ssh_host_is_reported(tmp_path):
    with pytest.raises(ConfigError, match=r"ssh\.host: required field is missing"):
        load_config(write(tmp_path, "ssh: {port: 22}\n"), env={})


def test_recipe_dirs_are_a_list_of_paths(tmp_path):
    from orchestrator.config import parse_config
    from orchestrator.errors import ConfigError  # noqa: F401
    from orchestrator.schema import SchemaViolation
    cfg = parse_config({"ssh": {"host": "h"}, "recipe_dirs": ["~/r", "/opt/r"]}, env={})
    assert [str(p) for p in cfg.recipe_dirs][1] == "/opt/r" and not str(cfg.recipe_dirs[0]).startswith("~")
    with pytest.raises(SchemaViolation, match="expected a list of directories"):
        parse_config({"ssh": {"host": "h"}, "recipe_dirs": "/opt/r"}, env={})


def test_the_transport_is_chosen_and_the_retired_agent_says_what_replaced_it(tmp_path):
    from orchestrator.cluster.connect import choose_client
    auto = load_config(write(tmp_path, GOOD), env={}).ssh
    assert auto.client == "auto"   # the default
    # with OpenSSH on PATH: it, and why; without: paramiko, and why
    assert choose_client(auto, which=lambda prog: "/usr/bin/ssh") == (
        "openssh", "ssh.client: auto, and OpenSSH is at /usr/bin/ssh")
    assert choose_client(auto, which=lambda prog: None) == ("paramiko", "ssh.client: auto, and no `ssh` on PATH")
    ossh = load_config(write(tmp_path, GOOD.replace("  port: 2222", "  port: 2222\n  client: openssh")), env={})
    assert ossh.ssh.client == "openssh"
    assert choose_client(ossh.ssh, which=lambda prog: None) == ("openssh", "ssh.client: openssh in the config")
    with pytest.raises(ConfigError, match="ssh.client.*expected one of auto, openssh, paramiko"):
        load_config(write(tmp_path, GOOD.replace("  port: 2222", "  port: 2222\n  client: putty")), env={})
    with pytest.raises(ConfigError, match="ssh.agent.*set ssh.client: openssh"):
        load_config(write(tmp_path, GOOD.replace("  port: 2222", "  port: 2222\n  agent: true")), env={})


def test_auto_opens_the_transport_it_chose_with_and_without_ssh_on_path(tmp_path, monkeypatch):
    """A real PATH each way: one with an `ssh` on it, one without."""
    from orchestrator.cluster.connect import open_transport
    cfg = load_config(write(tmp_path, GOOD), env={})
    bindir = tmp_path / "bin"
    bindir.mkdir()
    monkeypatch.setenv("PATH", str(bindir))
    t = open_transport(cfg)
    assert t.kind == "paramiko" and t.chosen == "ssh.client: auto, and no `ssh` on PATH"
    (bindir / "ssh").write_text("#!/bin/sh\nexit 255\n")
    (bindir / "ssh").chmod(0o755)
    t = open_transport(cfg)
    assert t.kind == "openssh" and t.chosen == f"ssh.client: auto, and OpenSSH is at {bindir / 'ssh'}"
