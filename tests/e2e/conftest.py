"""The sandbox cluster, once per test run.

If it was already up when the run started (a developer's machine), it is left
up; otherwise it is brought down at the end, so CI leaves nothing behind.
"""

import dataclasses
import os
import sys
from pathlib import Path

import pytest

from orchestrator.config import load_config
from sandbox import cluster as sandbox

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def sandbox_config_path():
    if os.geteuid() != 0:
        pytest.skip("end-to-end tests need root to build the sandbox cluster (network namespaces); "
                    "the unit lane (tests/unit) runs as any user")
    was_up = sandbox.status().get("up", False)
    path = sandbox.up(nodes=3, progress=lambda m: print(f"[sandbox] {m}", file=sys.stderr))
    yield path
    if not was_up and os.environ.get("ORCH_KEEP_SANDBOX") != "1":
        sandbox.down(progress=lambda m: None)


@pytest.fixture
def sandbox_config(sandbox_config_path, tmp_path):
    """The sandbox's config with a fresh laptop state dir for each test."""
    cfg = load_config(sandbox_config_path, env={})
    return dataclasses.replace(cfg, state_dir=tmp_path / "state", results_dir=tmp_path / "results")


@pytest.fixture
def ssh(sandbox_config):
    from orchestrator.cluster.ssh import SSHTransport
    t = SSHTransport(sandbox_config.ssh)
    yield t
    t.close()


@pytest.fixture
def run_cli(sandbox_config_path, tmp_path):
    """Run `python main.py ...` as a user would, against the sandbox."""
    import subprocess

    def run(*args, env=None, check=True):
        e = dict(os.environ, ORCH_CONFIG=str(sandbox_config_path), ORCH_STATS="1", **(env or {}))
        proc = subprocess.run([sys.executable, str(ROOT / "main.py"), *args], capture_output=True,
                              text=True, env=e, cwd=tmp_path, timeout=300)
        if check and proc.returncode != 0:
            raise AssertionError(f"main.py {' '.join(args)} exited {proc.returncode}:\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc
    return run


def config_with_state(config, dest):
    """A copy of ``config``'s file whose state_dir is ``config.state_dir``, for running the CLI as a
    test's own laptop (the file itself names the sandbox's shared state dir)."""
    from pathlib import Path
    source = Path(config.source)
    shared = load_config(source, env={}).state_dir
    dest.write_text(source.read_text().replace(str(shared), str(config.state_dir)))
    return dest


def completed_between(records: list[dict], between, field: str | None = None) -> int:
    """The client's OK requests (or their ``field`` summed) that completed between the engine counter's
    two scrapes, as the report's cross-check counts them (an independent count, from requests.jsonl)."""
    a, b = between
    done = [r for r in records if r["ok"] and a < r["start"] + r["latency_s"] <= b]
    return len(done) if field is None else sum(r[field] or 0 for r in done)


def live_job_names(transport) -> set[str]:
    """The names of this user's jobs still pending or running. A job in COMPLETING has been cancelled
    (or has ended) and SLURM is only reaping its processes: a session that has just cancelled its jobs
    may return while they are in it, and they are not left running."""
    out = transport.run("squeue --me -h -o '%j|%t'", check=True).stdout
    return {name for name, _, state in (line.rpartition("|") for line in out.splitlines() if line.strip())
            if state != "CG"}
