"""The optional agent against the sandbox: commands through it answer as without it, over no
connection of their own; a host key it cannot trust is refused as always."""

import pytest

pytestmark = pytest.mark.e2e


def test_status_through_the_agent_is_the_same_over_no_new_connection(run_cli, sandbox_config_path, tmp_path):
    direct = run_cli("--status")
    started = run_cli("connect")
    assert "agent connected to" in started.stdout
    try:
        via = run_cli("--status", env={"ORCH_AGENT": "1"})
        assert via.stdout == direct.stdout
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
