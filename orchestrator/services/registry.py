"""The services this tool tracks (state_dir/services.json), typed, and what names one: a service ID, its
8 hex digits alone, or a SLURM job ID. What SLURM says of them is written back here in one transaction."""

from __future__ import annotations

from orchestrator.cluster.slurm import TERMINAL_STATES, Job
from orchestrator.cluster.transport import Transport
from orchestrator.errors import OrchestratorError
from orchestrator.services.probe import JOB_ID_RE, SERVICE_ID_RE, SHORT_ID_RE
from orchestrator.state import ServiceRecord, StateStore
from orchestrator.times import now_iso


class ServiceRegistry:
    def __init__(self, store: StateStore, transport: Transport):
        self.store = store
        self.transport = transport   # (one squeue: a short ID of a service not tracked here)

    def records(self) -> dict[str, ServiceRecord]:
        """Every service this tool tracks, typed (one read of services.json)."""
        return {sid: ServiceRecord.from_dict(sid, rec) for sid, rec in self.store.load().items()}

    def record(self, service_id: str) -> ServiceRecord | None:
        rec = self.store.get(service_id)
        return ServiceRecord.from_dict(service_id, rec) if rec is not None else None

    def remember(self, service_id: str, job_id: str) -> None:
        """Track a job of this tool's recorded elsewhere (a session's LEFT_RUNNING.json) by its job ID,
        unless it is tracked with one already; cancel_many then checks and cancels it as any other."""
        rec = self.record(service_id)
        if job_id and not (rec and rec.job_id):
            self.store.update(service_id, service_id=service_id, job_id=job_id, state="UNKNOWN")

    def prune(self, before: float) -> list[str]:
        """Forget the services whose job ended (as last seen) and that were submitted before ``before``
        (unix seconds): one transaction. A record still queued or running, or of unknown state, is kept."""
        from orchestrator.times import parse_time
        gone = []
        with self.store.transaction() as data:
            for sid, rec in list(data.items()):
                if not isinstance(rec, dict) or rec.get("state") not in TERMINAL_STATES:
                    continue
                try:
                    submitted = parse_time(rec.get("submitted_at") or "")
                except ValueError:
                    continue
                if submitted < before:
                    del data[sid]
                    gone.append(sid)
        return gone

    def record_verdict(self, service_id: str, verdict: str, evidence: list[str], *, state: str | None = None,
                       nodelist: str | None = None, elapsed: str | None = None) -> None:
        """Why the service's job ended (or is unhealthy), as the watcher found it, with the job's last facts."""
        facts = {k: v for k, v in (("state", state), ("nodelist", nodelist), ("elapsed", elapsed)) if v is not None}
        self.store.update(service_id, verdict=verdict, evidence=list(evidence), **facts)

    def ids(self, ident: str) -> tuple[str | None, str | None]:
        """(service_id, job_id) for a service ID, its 8-hex part alone, or a SLURM job ID; local state
        fills gaps."""
        ident = ident.strip()
        tracked = self.store.load()   # (read once: every branch below looks at it)
        by_job: dict[str, str] = {}
        for sid, rec in tracked.items():   # the first record of a job ID, as before (IDs may be reused)
            if rec.get("job_id"):
                by_job.setdefault(rec["job_id"], sid)
        if SHORT_ID_RE.match(ident) and not (JOB_ID_RE.match(ident) and ident in by_job):
            sid = self._resolve_short(ident, tracked)
            if sid is not None:
                return sid, (tracked.get(sid) or {}).get("job_id")
        if JOB_ID_RE.match(ident):
            return by_job.get(ident), ident
        if SERVICE_ID_RE.match(ident):
            return ident, (tracked.get(ident) or {}).get("job_id")
        raise OrchestratorError(f"'{ident}' is neither a service ID (<name>_<8 hex>, or its 8 hex alone) nor a "
                                "SLURM job ID")

    def _resolve_short(self, short: str, tracked: dict) -> str | None:
        """The service whose ID ends in ``_<short>`` (as the seed documents show them: `6355d49f`): among
        the tracked ones, else among the user's jobs in the queue (one remote command). None when there
        is none (an all-digit one is then a job ID); an error naming each when there are several."""
        found = sorted(sid for sid in tracked if sid.endswith("_" + short))
        if not found and not JOB_ID_RE.match(short):   # (all digits: a job ID, unless tracked as a service)
            names = self.transport.run("squeue --me -h -o %j 2>/dev/null", timeout=60).stdout.split()
            found = sorted({n for n in names if SERVICE_ID_RE.match(n) and n.endswith("_" + short)})
        if len(found) > 1:
            raise OrchestratorError(f"'{short}' names {len(found)} services: {', '.join(found)}; give the whole ID")
        if not found and not JOB_ID_RE.match(short):
            raise OrchestratorError(f"no service with ID '<name>_{short}' is tracked here or in your queue")
        return found[0] if found else None

    def remember_jobs(self, jobs: dict[str, Job], tracked: dict | None = None) -> None:
        """Record what SLURM says of tracked services (untracked ones stay untracked): compared with
        ``tracked`` (a snapshot of the store, read once) and written in one transaction, so a queue of
        thousands of jobs costs one read and at most one write."""
        tracked = self.store.load() if tracked is None else tracked
        changed = {}
        for sid, job in jobs.items():
            rec = tracked.get(sid)
            if rec is not None and (rec.get("state") != job.state or rec.get("nodelist") != job.nodelist
                                    or not rec.get("job_id") or (job.exit_code and rec.get("exit_code") != job.exit_code)):
                # job_id too: a record left SUBMITTING (the process died right after sbatch) is completed from squeue
                changed[sid] = {"state": job.state, "nodelist": job.nodelist, "elapsed": job.elapsed,
                                "job_id": job.job_id, **({"exit_code": job.exit_code} if job.exit_code else {}),
                                **({"finished_at": now_iso()} if job.state in TERMINAL_STATES else {})}
        if changed:
            with self.store.transaction() as data:
                for sid, fields in changed.items():
                    if isinstance(data.get(sid), dict):  # removed meanwhile: stays removed
                        data[sid].update(fields)
