"""The README's quick start, as a new user runs it against their own cluster (here the sandbox, reached
through an entry of their ~/.ssh/config): install the built wheel into a fresh venv, `orch init`,
`orch doctor`, `orch bench run --dry-run`, then `orch bench run`."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
SANDBOX = Path("/var/lib/orch-sandbox")


@pytest.fixture(scope="module")
def orch_bin(tmp_path_factory):
    """`orch` from the wheel, installed in a venv outside the checkout."""
    work = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "--no-deps",
                    "-w", str(work / "dist"), str(ROOT)], check=True, capture_output=True)
    subprocess.run(["python3", "-m", "venv", str(work / "venv")], check=True)
    wheel = next((work / "dist").glob("*.whl"))
    subprocess.run([str(work / "venv/bin/pip"), "install", "-q", "--disable-pip-version-check", str(wheel)],
                   check=True, capture_output=True)
    return work / "venv/bin/orch"


def test_the_quick_start_on_a_cluster_named_in_the_users_ssh_config(sandbox_config_path, orch_bin, tmp_path):
    home, work = tmp_path / "home", tmp_path / "work"
    (home / ".ssh").mkdir(parents=True)
    work.mkdir()
    login = yaml.safe_load(Path(sandbox_config_path).read_text())["ssh"]
    (home / ".ssh" / "config").write_text(f"Host *\n  ServerAliveInterval 30\nHost hpc\n  HostName {login['host']}\n"
                                          f"  User {login['user']}\n  IdentityFile {login['key_file']}\n")
    shutil.copy(login["known_hosts"], home / ".ssh" / "known_hosts")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env.update(HOME=str(home), ORCH_STATS="1")

    def orch(*args, timeout=600):
        p = subprocess.run([str(orch_bin), *args], cwd=work, env=env, capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
        return p

    missing = orch("--status")
    assert missing.returncode == 1 and "config file not found" in missing.stderr and "orch init" in missing.stderr
    init = orch("init", "--partition", "cpu")
    assert init.returncode == 0 and "login node hpc" in init.stdout, init.stderr
    assert yaml.safe_load((work / "config.yaml").read_text())["ssh"]["host"] == "hpc"
    doctor = orch("doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    plan = orch("bench", "run", "--dry-run", "standin-smoke")
    assert plan.returncode == 0 and "jobs it would submit:" in plan.stdout, plan.stderr
    assert "connections=0" in plan.stderr and not (home / ".orchestrator" / "services.json").exists()
    run = orch("bench", "run", "standin-smoke", "--out", str(work / "session"))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert (work / "session" / "report.html").exists() and "throughput" in run.stdout
    # nothing of it left queued: the session cancelled what it started
    import json
    ours = [j["service_id"] for j in json.loads((work / "session" / "MANIFEST.json").read_text())["jobs"]]
    status = orch("--status").stdout
    assert ours and not [sid for sid in ours if sid in status], status
