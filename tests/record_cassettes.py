"""Record the replay cassettes of tests/scenarios.py against the sandbox (root):

    .venv/bin/python -m tests.record_cassettes [NAME ...]

Re-run after changing what the tool sends (a replay test then says which call differs).
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
from pathlib import Path

from orchestrator import BenchmarkOrchestrator
from orchestrator.cluster.ssh import SSHTransport
from orchestrator.config import load_config
from sandbox import cluster as sandbox
from tests.fakes import RecordingTransport
from tests.scenarios import SCENARIOS


def record(name: str, config_path: Path) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg = dataclasses.replace(load_config(config_path, env={}), state_dir=tmp / "state",
                                  results_dir=tmp / "results")
        rec = RecordingTransport(SSHTransport(cfg.ssh))
        orch = BenchmarkOrchestrator(cfg, transport=rec)
        with rec.drawing_tokens():
            SCENARIOS[name](orch, tmp)
        rec.close()
        meta = {"work_dir": cfg.remote.work_dir, "slurm": dataclasses.asdict(cfg.slurm)}
        return rec.save(name, meta)


def record_probes(config_path: Path, data_dir: Path) -> None:
    """tests/data/probe_running.txt and probe_cancelled.txt: one probe's raw answer (marker "rec"), of a
    python-http service while it runs, and after it was cancelled."""
    from orchestrator.cluster import jobdir
    from orchestrator.cluster.remote import Marker
    with tempfile.TemporaryDirectory() as tmp:
        cfg = dataclasses.replace(load_config(config_path, env={}), state_dir=Path(tmp) / "state")
        orch = BenchmarkOrchestrator(cfg)
        sid = orch.servers.start_service(orch.load_recipe("python-http"), wait=True, timeout=120)
        rec = orch.servers.store.get(sid)

        def raw() -> str:
            script = jobdir.probe_script(cfg.remote.work_dir, Marker("rec"), service_id=sid, job_id=rec["job_id"],
                                         health=True, log_lines=20)
            return orch.transport.run(script, timeout=60).stdout
        (data_dir / "probe_running.txt").write_text(raw())
        orch.servers.stop_service(sid)
        orch.servers.wait_until_ended([sid])
        (data_dir / "probe_cancelled.txt").write_text(raw())
        orch.close()


def main(names: list[str]) -> None:
    path = sandbox.up(nodes=3, progress=lambda m: print(f"[sandbox] {m}", file=sys.stderr))
    if names == ["probes"]:
        record_probes(path, Path(__file__).resolve().parent / "data")
        return
    for name in names or list(SCENARIOS):
        out = record(name, path)
        print(f"{name}: {out} ({out.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main(sys.argv[1:])
