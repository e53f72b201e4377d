"""A session's last duty when the cluster is gone: retry, then say exactly what is left and how to cancel it."""

import json

from orchestrator import BenchmarkOrchestrator
from orchestrator.config import Config, RemoteConfig, SlurmConfig, SSHConfig


def test_cleanup_retries_an_unreachable_cluster_then_records_the_jobs_and_the_command(tmp_path, monkeypatch):
    from orchestrator import waiting
    from orchestrator.bench.recipe import load_benchmark_text
    from orchestrator.bench.cleanup import LEFT_RUNNING
    from orchestrator.bench.session import BenchmarkSession
    from orchestrator.errors import TransportError
    from tests.scenarios import BENCH

    class Unreachable:
        description = "down"
        stats = None
        calls = 0

        def run(self, *a, **k):
            Unreachable.calls += 1
            raise TransportError("cannot connect to 10.78.0.2:22: [Errno 113] No route to host")

        def close(self):
            pass
    slept = []
    monkeypatch.setattr(waiting, "sleep", slept.append)
    cfg = Config(ssh=SSHConfig(host="x"), slurm=SlurmConfig(), remote=RemoteConfig(), state_dir=tmp_path / "s",
                 results_dir=tmp_path)
    orch = BenchmarkOrchestrator(cfg, transport=Unreachable())
    said = []
    session = BenchmarkSession(orch, load_benchmark_text(BENCH, "b.yaml"), tmp_path / "out", progress=said.append)
    for sid, job in (("standin-llm_0123abcd", "11"), ("prometheus_0123abcd", "12")):
        orch.servers.store.update(sid, service_id=sid, job_id=job, state="RUNNING")
        session.state.started.append(sid)
    session.cleanup.run()
    left = json.loads((tmp_path / "out" / LEFT_RUNNING).read_text())
    assert [j["job_id"] for j in left["jobs"]] == ["11", "12"] and "No route to host" in left["reason"]
    assert Unreachable.calls >= 5 and sum(slept) >= 60  # retried with backoff for about a minute
    assert any(f"orch bench cleanup {tmp_path / 'out'}" in line for line in said)


def test_a_submission_that_got_no_answer_is_cancelled_by_its_name(tmp_path, monkeypatch):
    """sbatch timed out: no job ID was recorded, but the job may exist. The cleanup still finds and cancels
    it, by its name (the service ID) among the user's jobs, through a real shell with squeue/scancel doubles."""
    import os
    from orchestrator.cluster.local import LocalTransport
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "squeue").write_text('#!/bin/sh\ncase "$*" in *"--name=svc_0123abcd"*) echo 77;; esac\n')
    (bindir / "scancel").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "scancelled"}\n')
    for f in bindir.iterdir():
        f.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    cfg = Config(ssh=SSHConfig(host="x", local=True), slurm=SlurmConfig(), remote=RemoteConfig(),
                 state_dir=tmp_path / "s", results_dir=tmp_path)
    orch = BenchmarkOrchestrator(cfg, transport=LocalTransport())
    orch.servers.store.update("svc_0123abcd", service_id="svc_0123abcd", state="SUBMITTING")  # no job_id
    orch.servers.store.update("other_0123abcd", service_id="other_0123abcd", state="SUBMITTING")
    result = orch.servers.cancel_many(["svc_0123abcd", "other_0123abcd"])
    assert result == {"svc_0123abcd": "cancelled", "other_0123abcd": "gone"}
    assert (tmp_path / "scancelled").read_text().split() == ["77"]
    assert orch.servers.store.get("svc_0123abcd")["state"] == "CANCELLED"
