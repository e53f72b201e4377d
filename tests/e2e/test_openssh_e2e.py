"""The OpenSSH transport (ssh.client: openssh) on the sandbox, as the paramiko one is tested: a service's
whole life through the CLI, a benchmark session, a killed connection mid-session, an unknown host key,
a login node without SFTP, and a tunnel through the master."""

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from sandbox import cluster as sandbox
from tests.e2e.test_chaos_e2e import session_through_a_killed_connection

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def openssh_config(sandbox_config_path, tmp_path):
    """The sandbox's config with ssh.client: openssh and a state dir of this test's own."""
    doc = yaml.safe_load(Path(sandbox_config_path).read_text())
    doc["ssh"]["client"] = "openssh"
    doc["state_dir"] = str(tmp_path / "state")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(doc))
    yield path
    cli(path, "connect", "--stop")


def cli(config, *args, timeout=300):
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True,
                          env=dict(os.environ, ORCH_CONFIG=str(config), ORCH_STATS="1"), timeout=timeout)


def test_a_service_lifecycle_over_one_master(openssh_config):
    up = cli(openssh_config, "--recipe", "python-http", "--wait", "--json")
    assert up.returncode == 0, up.stderr
    sid = json.loads(up.stdout)["service_id"]
    assert "connections=1 " in up.stderr and "transport=openssh" in up.stderr
    try:
        status = cli(openssh_config, "--status")
        assert sid in status.stdout and "connections=0 " in status.stderr   # the master, reused
        ep = json.loads(cli(openssh_config, "--service-endpoint", sid, "--json").stdout)
        assert ep["service_id"] == sid and ep["url"].startswith("http://n")
        logs = cli(openssh_config, "logs", sid, "-n", "5")
        assert f"service {sid} starting" in logs.stdout
    finally:
        stop = cli(openssh_config, "--stop-service", sid)
    assert stop.returncode == 0 and "CANCELLED" in stop.stdout


def test_a_session_survives_its_master_being_killed(openssh_config, tmp_path, ssh):
    session_through_a_killed_connection(openssh_config, tmp_path, ssh)   # a new master is opened


def test_an_unknown_host_key_is_refused_by_openssh(openssh_config, tmp_path):
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    doc = yaml.safe_load(openssh_config.read_text())
    doc["ssh"]["known_hosts"] = str(empty)
    doc["state_dir"] = str(tmp_path / "state2")
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(doc))
    r = cli(other, "--status")
    assert r.returncode == 1 and "host key" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_files_and_a_tunnel_without_sftp(openssh_config, tmp_path):
    doc = yaml.safe_load(openssh_config.read_text())
    doc["ssh"]["port"] = sandbox.NO_SFTP_PORT
    doc["state_dir"] = str(tmp_path / "state3")
    nosftp = tmp_path / "nosftp.yaml"
    nosftp.write_text(yaml.safe_dump(doc))
    from orchestrator import BenchmarkOrchestrator
    from orchestrator.config import load_config
    orch = BenchmarkOrchestrator(load_config(nosftp, env={}))
    try:
        src = tmp_path / "payload.bin"
        src.write_bytes(bytes(range(256)) * 100)
        orch.transport.put(str(src), "~/.orchestrator/openssh-payload.bin")
        orch.transport.get("~/.orchestrator/openssh-payload.bin", str(tmp_path / "back.bin"))
        assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()
        with pytest.raises(Exception, match="download of"):
            orch.transport.get("~/.orchestrator/no-such-file", str(tmp_path / "none.bin"))
        assert not (tmp_path / "none.bin").exists()
        sid = orch.servers.start_service(orch.load_recipe("python-http"), wait=True, timeout=120)
        ep = orch.servers.get_service_endpoint(sid)
        with orch.transport.forward(ep.host, ep.port) as fwd:
            doc = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{fwd.local_port}/endpoint.json",
                                                    timeout=10).read())
        assert doc["node"] == ep.host and orch.transport.stats.forwards == 1
        orch.servers.stop_service(sid)
    finally:
        orch.transport.run("rm -f ~/.orchestrator/openssh-payload.bin")
        orch.transport.stop()
        orch.close()
