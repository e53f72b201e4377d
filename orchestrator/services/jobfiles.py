"""Files in job dirs, many jobs a command: the start signal, the load clients' progress, downloads of
named files and logs in one compressed transfer, and each job's runtime facts."""

from __future__ import annotations

import base64
import binascii
import io
import json
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

from orchestrator.cluster import jobdir, streaming
from orchestrator.cluster.remote import Marker
from orchestrator.cluster.slurm import parse_job_records
from orchestrator.cluster.transport import Transport
from orchestrator.errors import OrchestratorError
from orchestrator.state import StateStore


class JobFiles:
    def __init__(self, work_dir: str, transport: Transport, store: StateStore):
        self.work_dir = work_dir
        self.transport = transport
        self.store = store   # (read only: the job IDs of the services whose progress is read)

    def signal_go(self, service_ids: list[str]) -> None:
        """Write each job's ``go`` file: the load clients start together."""
        self.transport.run(jobdir.write_go_script(self.work_dir, service_ids), check=True,
                           idempotent=True)

    def read_progress(self, service_ids: list[str]) -> dict[str, dict]:
        """{service ID: {"progress": parsed progress.json or None, "done": bool, "job": Job or None}},
        in one command."""
        mark = Marker()
        return _parse_progress(self.transport.run(self._progress_script(service_ids, mark), timeout=60).stdout,
                               mark, service_ids)

    def progress_rounds(self, service_ids: list[str], *, interval: float, timeout: float,
                        fast_after: float | None = None, fast_interval: float | None = None,
                        jobs: dict[str, str] | None = None) -> Iterator[dict]:
        """``read_progress`` every ``interval`` seconds (``fast_interval`` after ``fast_after``), for a
        wait: one remote command in all. ``jobs``: job IDs of IDs the tool keeps no record of (a
        service it did not start), whose state is read too."""
        mark = Marker()
        for out in streaming.repeated(self.transport, self._progress_script(service_ids, mark, jobs), interval=interval,
                                      timeout=timeout, fast_after=fast_after, fast_interval=fast_interval):
            yield _parse_progress(out, mark, service_ids)

    def _progress_script(self, service_ids: list[str], mark: Marker, known: dict[str, str] | None = None) -> str:
        tracked = self.store.load()
        jobs = {sid: (known or {}).get(sid) or (tracked.get(sid) or {}).get("job_id") or "0"   # ("0": none known)
                for sid in service_ids}
        return jobdir.progress_script(self.work_dir, jobs, mark)


    def fetch_file(self, service_id: str, name: str, local: Path) -> bool:
        """Download a file of a job dir; False (and no local file) when it could not be fetched."""
        try:
            self.transport.get(jobdir.file(self.work_dir, service_id, name), str(local))
            return True
        except (OSError, OrchestratorError):
            local.unlink(missing_ok=True)
            return False

    def fetch_files(self, service_ids: list[str], names: list[str], dest) -> set[tuple[str, str]]:
        """The named files of many job dirs in one compressed transfer (one command makes a tar.gz of
        those that exist, one download brings it, one command removes it). ``dest(sid, name)`` is
        where each goes locally; returns the (sid, name) written."""
        if not service_ids:
            return set()
        wanted = {f"{sid}/{name}": (sid, name) for sid in service_ids for name in names}
        script = jobdir.bundle_script(self.work_dir, service_ids, names)
        return self._unbundle(script, wanted, lambda key: dest(*key))

    def fetch_logs(self, service_ids: list[str], dest_dir: Path, max_bytes: int = 256 << 10) -> dict[str, Path]:
        """The last ``max_bytes`` of each job's SLURM output, in one compressed transfer, as
        ``dest_dir/<service ID>.log``."""
        if not service_ids:
            return {}
        wanted = {f"./{sid}.log": sid for sid in service_ids}
        script = jobdir.log_bundle_script(self.work_dir, service_ids, max_bytes)
        got = self._unbundle(script, wanted, lambda sid: dest_dir / f"{sid}.log")
        return {sid: dest_dir / f"{sid}.log" for sid in got}

    def _unbundle(self, script: str, wanted: dict, dest) -> set:
        """Run ``script`` (it prints a tar.gz, base64, and removes it) and write the members named in
        ``wanted`` to ``dest(wanted[name])``. Only those members are read (never extracted by the
        archive's own paths)."""
        try:
            data = base64.b64decode(self.transport.run(script, timeout=300).check().stdout, validate=False)
        except binascii.Error as exc:
            raise OrchestratorError(f"the archive of the jobs' files came back damaged: {exc}") from None
        got = set()
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar:
                key = wanted.get(member.name)
                if key is None or not member.isfile():
                    continue
                out = dest(key)
                out.parent.mkdir(parents=True, exist_ok=True)
                with open(out, "wb") as f:
                    shutil.copyfileobj(tar.extractfile(member), f)
                got.add(key)
        return got

    def runtime_facts(self, service_ids: list[str]) -> dict[str, dict]:
        """runtime.txt and the sbatch options of each job, in one command."""
        mark = Marker()
        out = self.transport.run(jobdir.runtime_script(self.work_dir, service_ids, mark),
                                 timeout=60).stdout
        facts: dict[str, dict] = {}
        for sec in mark.parse(out):
            if not sec.args:
                continue
            entry = facts.setdefault(sec.args[0], {"runtime": [], "sbatch": []})
            if sec.name == "service":
                entry["runtime"] = [line for line in sec.lines if line]
            elif sec.name == "sbatch":
                entry["sbatch"] = [line[len("#SBATCH "):] for line in sec.lines if line.startswith("#SBATCH")]
        return facts


def _parse_progress(out: str, mark: Marker, service_ids: list[str]) -> dict[str, dict]:
    found: dict[str, dict] = {sid: {"progress": None, "done": False, "job": None} for sid in service_ids}
    for sec in mark.parse(out):
        sid = sec.args[0] if sec.args else ""
        if sid not in found:
            continue
        if sec.name == "done":
            found[sid]["done"] = True
        elif sec.name == "job":
            records = parse_job_records(sec.text)
            found[sid]["job"] = records[0] if records else None
        elif sec.name == "client":
            for line in sec.lines:
                if line.startswith("{"):
                    try:
                        found[sid]["progress"] = json.loads(line)
                    except json.JSONDecodeError:
                        pass  # being rewritten: the next poll reads it whole
    return found
