"""ServersModule: services as SLURM jobs: submit, discover, probe, stop.

Every service has an ID ``<recipe>_<8 hex>`` that is also its SLURM job name,
so it can be found from squeue by any laptop, with or without local state.
Each public call is one remote round trip, except waiting, which is one per poll.
"""

from __future__ import annotations

import base64
import io
import re
import secrets
import tarfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Callable

from orchestrator import waiting
from orchestrator.cluster import jobdir, streaming
from orchestrator.cluster.remote import Marker
from orchestrator.services.jobfiles import JobFiles
from orchestrator.services.registry import ServiceRegistry
from orchestrator.cluster.shell import command
from orchestrator.cluster.shell import path as remote_path
from orchestrator.cluster.slurm import (
    TERMINAL_STATES,
    Job,
    JobPoller,
    parse_job_records,
    parse_sbatch,
)
from orchestrator.cluster.transport import Transport
from orchestrator.config import Config
from orchestrator.errors import (
    CommandTimeout,
    OrchestratorError,
    OutcomeUnknown,
    ServiceNotReady,
    SlurmError,
)
from orchestrator.logs import log_context
from orchestrator.services.probe import (
    SERVICE_ID_RE,
    Probe,
    endpoint_hosts,
    parse_probe,
)
from orchestrator.state import StateStore
from orchestrator.times import now_iso

if TYPE_CHECKING:  # recipes (validation, hashing) load only for commands that read one
    from orchestrator.services.recipes import ServiceRecipe

Progress = Callable[[str], None]


def job_bundle(files: dict[str, bytes]) -> str:
    """The job dir's files as a base64 gzip tar (names are plain file names, checked by the recipe), each
    mode 600."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = int(time.time())
            info.mode = 0o600   # the job's files are its user's alone (they hold the job's secret)
            tar.addfile(info, io.BytesIO(data))
    return base64.b64encode(buf.getvalue()).decode() + "\n"


def new_service_id(recipe: ServiceRecipe) -> str:
    """``<recipe>_<8 hex>``: also the SLURM job name, so squeue finds it without local state."""
    return f"{recipe.name}_{secrets.token_hex(4)}"


@dataclass(frozen=True)
class ServiceStatus:
    job_id: str
    service_id: str
    state: str
    elapsed: str
    nodelist: str
    reason: str = ""
    tracked: bool = True

    def line(self) -> str:
        where = self.nodelist or (f"({self.reason})" if self.reason else "-")
        return f"{self.job_id} | {self.service_id} | {self.state} | {self.elapsed or '-'} | {where}"


@dataclass(frozen=True)
class Endpoint:
    service_id: str
    job_id: str
    state: str
    host: str
    hosts: list[str]
    port: int | None
    ports: list[int]
    url: str | None
    health_url: str | None
    metrics_url: str | None
    auth: str = "none"          # how the service is locked (recipe field auth): what a client must show

    def to_dict(self) -> dict:
        return asdict(self)


def endpoint_of(p: Probe) -> Endpoint:
    """Where a probed service listens (from its endpoint.json); ServiceNotReady before the job wrote it."""
    state = p.job.state if p.job else "UNKNOWN"
    if not p.endpoint:
        reason = f" ({p.job.reason})" if p.job and p.job.reason else ""
        raise ServiceNotReady(f"service {p.service_id} (job {p.job_id}) is {state}{reason}: "
                              f"no endpoint yet")
    ep = p.endpoint
    hosts = endpoint_hosts(ep)
    ports = [int(x) for x in ep.get("ports", [])]
    port = ports[0] if ports else None
    metrics = ep.get("metrics")
    return Endpoint(
        service_id=p.service_id, job_id=p.job_id, state=state, host=ep["node"], hosts=hosts,
        port=port, ports=ports, url=f"http://{ep['node']}:{port}" if port else None,
        health_url=p.health_url or (f"http://{ep['node']}:{ports[ep['static'].get('health_port_index') or 0]}"
                                    f"{ep['static']['health_path']}" if ports and ep["static"].get("health_path") else None),
        metrics_url=f"http://{ep['node']}:{metrics['port']}{metrics['path']}" if metrics else None,
        auth=str(ep["static"].get("auth") or "none"))


def refuse_unless_ours(ident: str, p: Probe, tracked: dict) -> None:
    """Raise unless the probe found our job of that service, in the submission recorded (pure)."""
    if not p.job_id or (p.job is None and not p.endpoint):
        raise OrchestratorError(f"no service or job '{ident}' found on the cluster")
    if not p.ours:
        # the cluster's word, from the same command: not our user's job, or not named as the service
        # (a reused job ID, or a job named like ours by someone else); nothing of it was read or touched
        name, user = (p.job.name if p.job else "?"), p.owner or "?"
        if p.service_id in tracked and name != p.service_id:
            raise OrchestratorError(f"job {p.job_id} is no longer service {p.service_id}: SLURM reused the ID "
                                    f"for job '{name}' of user {user}; nothing was done")
        raise OrchestratorError(f"job {p.job_id} ('{name}', user {user}) is not a service started by this tool "
                                "as you: refused, nothing was done")
    rec = tracked.get(p.service_id) or {}
    seen = rec.get("slurm_submit_time")
    if p.job is not None and p.job.submit_time and seen and seen != p.job.submit_time:
        # the same user and name, another submission (the job script run again by hand, a restored
        # controller state): not the job this record describes
        raise OrchestratorError(f"job {p.job_id} ({p.service_id}) was submitted at {p.job.submit_time}, not at "
                                f"{seen} as recorded: another submission of that name; nothing was done")


def status_rows(poll, tracked: dict) -> dict[str, ServiceStatus]:
    """Every service's row of --status: this tool's jobs in the queue, then each tracked service that left
    it, by its final record where SLURM still has one (pure)."""
    rows: dict[str, ServiceStatus] = {}
    for job in poll.queued:
        if SERVICE_ID_RE.match(job.name):
            rows[job.name] = ServiceStatus(job.job_id, job.name, job.state, job.elapsed, job.nodelist,
                                           job.reason, tracked=job.name in tracked)
    left = poll.ended
    for sid, rec in tracked.items():
        if sid in rows:
            continue
        job = left.get(rec.get("job_id", ""))
        if job is not None and job.name != sid:
            job = None   # the ID was reused by another job: its state is not this service's
        if job is not None and job.state in TERMINAL_STATES:
            rows[sid] = ServiceStatus(job.job_id, sid, job.state, job.elapsed, job.nodelist, job.reason)
        elif rec.get("job_id"):
            state = rec.get("state") if rec.get("state") in TERMINAL_STATES else "LEFT_QUEUE"
            rows[sid] = ServiceStatus(rec["job_id"], sid, state, rec.get("elapsed", ""), rec.get("nodelist", ""))
    return rows


READY_FRESH_S = 120   # how long the probe that ended a wait stands for the service's endpoint


class ServersModule:
    def __init__(self, config: Config, transport: Transport):
        self.config = config
        self.transport = transport
        self.store = StateStore(config.state_dir, "services")
        self.attempted: list[str] = []   # every service ID this module tried to submit, in order
        self.registry = ServiceRegistry(self.store, transport)          # records and IDs
        self.files = JobFiles(config.remote.work_dir, transport, self.store)   # files in job dirs
        # the probe that ended each wait for readiness: what a session does next (the monitor's targets,
        # a client's endpoint) reads it instead of asking SLURM again a moment later
        self._ready: dict[str, tuple[float, Probe]] = {}

    # -- records and IDs: services/registry.py; files in job dirs: services/jobfiles.py --------------
    def _ids(self, ident: str) -> tuple[str | None, str | None]:
        return self.registry.ids(ident)

    def _remember(self, jobs: dict[str, Job], tracked: dict | None = None) -> None:
        self.registry.remember_jobs(jobs, tracked)

    def submissions(self) -> int:
        """A mark in this module's submissions: ``submitted_since(mark)`` names those after it."""
        return len(self.attempted)

    def submitted_since(self, mark: int) -> list[str]:
        """Every service ID submitted (or tried: sbatch may not have answered) after ``mark``."""
        return list(self.attempted[mark:])

    # -- recipes and rendering ----------------------------------------------
    def load_recipe(self, name_or_path: str) -> ServiceRecipe:
        from orchestrator.services.recipes import load_recipe
        return load_recipe(name_or_path, self.config.recipe_dirs)

    @staticmethod
    def new_service_id(recipe: ServiceRecipe) -> str:
        return new_service_id(recipe)

    def render(self, recipe: ServiceRecipe, service_id: str | None = None) -> tuple[str, str]:
        sid = service_id or self.new_service_id(recipe)
        from orchestrator.services.jobscript import render_service_script  # (Jinja2: only commands that submit)
        return sid, render_service_script(recipe, self.config.slurm, sid, self.config.remote)

    def job_dir(self, service_id: str) -> str:
        return jobdir.job_dir(self.config.remote.work_dir, service_id)

    def curl_config(self, ident: str) -> str:
        """For a curl of one's own on the login node (``curl -K <this> URL``): the service's curl config
        with its credentials (a header or a user line), as a shell word of the login node's shell. The
        secret itself never comes to the laptop."""
        sid, _ = self._ids(ident)
        if sid is None:
            raise OrchestratorError(f"{ident}: no service of this tool has that job ID here; give its service ID")
        return remote_path(f"{self.job_dir(sid)}/{jobdir.CURL_CONFIG}")

    # -- submit ---------------------------------------------------------------
    def start_service(self, recipe: ServiceRecipe, *, wait: bool = False, timeout: float | None = None,
                      progress: Progress | None = None, service_id: str | None = None,
                      extra_files: dict[str, str] | None = None, precheck: str = "",
                      labels: dict | None = None) -> str:
        """Submit the recipe as a SLURM job; returns the service ID.

        Upload (script and ``extra_files``) and submission are one remote
        command; ``precheck`` runs in the job dir before sbatch. If either
        refuses, the job dir is removed on the cluster and nothing is kept
        locally.
        """
        sid, script = self.render(recipe, service_id)  # recipe errors surface before anything is written
        d = remote_path(self.job_dir(sid))
        self.store.update(sid, service_id=sid, recipe=recipe.name, recipe_source=recipe.source,
                          recipe_sha256=recipe.sha256, job_dir=self.job_dir(sid), state="SUBMITTING",
                          **({"engine": recipe.engine} if recipe.engine else {}), auth=recipe.auth,
                          submitted_at=now_iso(), health_timeout=recipe.health.timeout if recipe.health else None,
                          **(labels or {}))
        from orchestrator.services.jobscript import bundle_files
        shipped = bundle_files(recipe)
        from orchestrator.services.auth import job_files, new_secret
        locks = job_files(recipe.auth, new_secret())
        bundle = job_bundle({jobdir.JOB_SCRIPT: script.encode(), **shipped,
                             **{k: v.encode() for k, v in {**(extra_files or {}), **locks}.items()}})
        remote = jobdir.submit_script(d, precheck)
        self.attempted.append(sid)  # from here the job may exist: whoever cleans up must consider it
        try:
            result = self.transport.run(remote, stdin=bundle, idempotent=False, timeout=120)
            if not result.ok:
                msg = (result.stderr.strip() or result.stdout.strip()).replace("\n", "; ")
                raise SlurmError(f"sbatch rejected service {sid} (recipe {recipe.source or recipe.name}): {msg}")
            job_id = parse_sbatch(result.stdout)
        except (CommandTimeout, OutcomeUnknown) as exc:
            # sbatch may have submitted the job: keep the record SUBMITTING; squeue finds the job by its
            # name (the service ID) and --status completes the record, or shows that there is none
            self.store.update(sid, submit_error=str(exc))
            raise OrchestratorError(f"no answer from sbatch for {sid} ({exc}); the job may have been submitted: "
                                    f"`--status` shows it once SLURM answers, `--stop-service {sid}` cancels it") from None
        except BaseException:
            self.store.remove(sid)  # no half-written state: the job does not exist
            raise
        self.store.update(sid, job_id=job_id, state="PENDING")
        if progress:
            with log_context(service_id=sid, job_id=job_id):
                progress(f"submitted {sid} as job {job_id}")
        if wait:
            self.wait_until_ready(sid, timeout=timeout or (recipe.health.timeout if recipe.health else 300),
                                  progress=progress)
        return sid

    # -- lookups ----------------------------------------------------------------
    def _probe_script(self, ident: str, mark: Marker, **options) -> str:
        sid, job_id = self._ids(ident)
        if options.get("cancel"):   # scancel decides on the login node, with the submission we recorded
            rec = self.store.load().get(sid or "") or {}
            options["submitted"] = rec.get("slurm_submit_time", "") if job_id and rec.get("job_id") == job_id else ""
        return jobdir.probe_script(self.config.remote.work_dir, mark, service_id=sid, job_id=job_id, **options)

    def probe(self, ident: str, *, health: bool = False, log_lines: int = 0, then: str = "", cancel: bool = False,
              mark: Marker | None = None, timeout: float = 60, stdin: str | None = None) -> Probe:
        """Everything about one service in one remote command; ``then`` runs against its endpoint
        (a ``then`` that prints sections uses the ``mark`` it was built with, and may read ``stdin``)."""
        mark = mark or Marker()
        script = self._probe_script(ident, mark, health=health, log_lines=log_lines, then=then, cancel=cancel)
        result = self.transport.run(script, timeout=timeout, idempotent=not cancel, stdin=stdin)
        return self._checked(ident, parse_probe(mark.parse(result.stdout)))

    def probe_rounds(self, ident: str, *, interval: float, timeout: float, **options) -> Iterator[Probe]:
        """The same probe every ``interval`` seconds for a wait, all rounds over one remote command
        (``cluster.streaming``); close it to stop."""
        mark = Marker()
        script = self._probe_script(ident, mark, **options)
        for out in streaming.repeated(self.transport, script, interval=interval, timeout=timeout):
            yield self._checked(ident, parse_probe(mark.parse(out)))

    def probe_many(self, idents: list[str], health: bool = False) -> list[Probe]:
        """Several services in one remote command (each probe in its own subshell)."""
        mark = Marker()
        scripts = ["( " + self._probe_script(ident, mark, health=health) + " )" for ident in idents]
        out = self.transport.run(f"\n{mark.echo('next')}\n".join(scripts), timeout=60).stdout
        groups = mark.split(out, "next")
        if len(groups) != len(idents):
            raise OrchestratorError(f"probe of {len(idents)} services answered {len(groups)} (connection cut?)")
        return [self._checked(i, parse_probe(g)) for i, g in zip(idents, groups)]

    def _checked(self, ident: str, p: Probe) -> Probe:
        tracked = self.store.load()   # (one read for the checks and the record kept of the job)
        refuse_unless_ours(ident, p, tracked)
        rec = tracked.get(p.service_id) or {}
        seen = rec.get("slurm_submit_time")
        if p.job is not None and p.job.submit_time and not seen and rec and rec.get("job_id") == p.job_id:
            self.store.update(p.service_id, slurm_submit_time=p.job.submit_time)
        if p.job is not None:
            self._remember({p.service_id: p.job}, tracked)
        return p

    def list_running_services(self) -> list[ServiceStatus]:
        """All services: one remote command (squeue, plus the final record of tracked jobs that left the queue)."""
        tracked = self.store.load()
        open_jobs = [r["job_id"] for r in tracked.values()
                     if r.get("job_id") and r.get("state") not in TERMINAL_STATES]
        poll = JobPoller(self.transport).poll(open_jobs)
        rows = status_rows(poll, tracked)
        left = poll.ended
        self._remember({sid: Job(row.job_id, sid, row.state, elapsed=row.elapsed, nodelist=row.nodelist,
                                  exit_code=left[row.job_id].exit_code if row.job_id in left else "")
                        for sid, row in rows.items() if row.state != "LEFT_QUEUE"}, tracked)
        return sorted(rows.values(), key=lambda r: int(re.sub(r"\D.*", "", r.job_id) or 0))

    def get_service_endpoint(self, ident: str) -> Endpoint:
        return endpoint_of(self.probe(ident))

    # -- readiness (services/readiness.py) ----------------------------------------------
    def wait_until_ready(self, ident: str, timeout: float = 300, poll: float = 1.0,
                         progress: Progress | None = None) -> Endpoint:
        """Until RUNNING and the health probe answers from the login node; a job that ends first raises
        with the tail of its log, a timeout leaves the job running and says so."""
        from orchestrator.services.readiness import wait_until_ready
        rounds = self.probe_rounds(ident, interval=poll, timeout=timeout, health=True)
        sid, job_id = self._ids(ident)
        with log_context(service_id=sid, job_id=job_id):
            p = wait_until_ready(rounds, ident, timeout, progress, lambda: self.probe(ident, log_lines=20).log.rstrip())
        if p.service_id in self.store.load():
            self.store.update(p.service_id, ready_at=now_iso())
        self._ready[p.service_id] = (time.monotonic(), p)
        return endpoint_of(p)

    def recently_ready(self, service_id: str, within: float = READY_FRESH_S) -> Probe | None:
        """The probe that found the service ready, if that was less than ``within`` seconds ago and it
        was not stopped since: a job that was RUNNING with its endpoint a moment ago still is, or the
        next command against it says otherwise."""
        seen = self._ready.get(service_id)
        return seen[1] if seen and time.monotonic() - seen[0] <= within else None

    def wait_until_ended(self, service_ids: list[str], timeout: float = 30, poll: float = 1.0) -> list[str]:
        """Until every job has left the running states (after a scancel); returns those still running."""
        from orchestrator.services.readiness import wait_until_ended
        return wait_until_ended(self.probe_many, service_ids, timeout, poll)

    # -- stop and logs ------------------------------------------------------------
    def stop_service(self, ident: str) -> ServiceStatus:
        """scancel a service this tool started, in one remote command; anything else is refused on the
        login node before scancel runs."""
        p = self.probe(ident, cancel=True)
        self._ready.pop(p.service_id, None)
        out = (p.cancel_output or "").strip()
        already = p.job is not None and p.job.state in TERMINAL_STATES
        if out == "refused":
            raise OrchestratorError(f"job {p.job_id} ({p.service_id or 'no name'}) is not a service started by "
                                    "this tool: refused, nothing was cancelled")
        if out == "resubmitted":
            raise OrchestratorError(f"job {p.job_id} ({p.service_id}) is another submission of that name than the "
                                    "one recorded: nothing was cancelled")
        if "rc=0" not in out and not already:
            raise SlurmError(f"scancel of job {p.job_id} failed: {out.replace('rc=', 'exit ')}")
        state = p.job.state if already else "CANCELLED"
        if p.service_id in self.store.load():
            self.store.update(p.service_id, state=state, stopped_at=now_iso(), stopped_by_user=not already,
                              **({"elapsed": p.job.elapsed, "nodelist": p.job.nodelist} if p.job else {}))
        return ServiceStatus(p.job_id, p.service_id, state, p.job.elapsed if p.job else "",
                             p.job.nodelist if p.job else "")

    def cancel_many(self, service_ids: list[str]) -> dict[str, str]:
        """Cancel several tracked services in one remote command (ownership checked on the login node);
        returns ``{service ID: cancelled | gone | refused: ... | unknown}`` (a service whose sbatch never
        answered is looked up by its name). Raises TransportError
        when the cluster cannot be reached: the caller decides how to retry."""
        for sid in service_ids:
            self._ready.pop(sid, None)
        tracked = self.store.load()
        jobs = {tracked[sid]["job_id"]: sid for sid in service_ids if tracked.get(sid, {}).get("job_id")}
        # a submission that got no answer has no job ID yet: its job, if any, is found by its name
        unnumbered = [sid for sid in service_ids if sid not in jobs.values() and SERVICE_ID_RE.match(sid)]
        result = {sid: "unknown" for sid in service_ids if sid not in jobs.values() and sid not in unnumbered}
        if not jobs and not unnumbered:
            return result
        mark = Marker()
        out = self.transport.run(jobdir.cancel_script(jobs, mark, unnumbered), timeout=60, idempotent=True).stdout
        by_key = {**jobs, **{sid: sid for sid in unnumbered}}
        for sec in mark.parse(out):
            if sec.name == "job" and sec.args and sec.args[0] in by_key:
                sid = by_key[sec.args[0]]
                result[sid] = (sec.lines[-1].strip() if sec.lines else "unknown") or "unknown"
                if result[sid] == "cancelled" and sid in tracked:
                    self.store.update(sid, state="CANCELLED", stopped_at=now_iso(), stopped_by_user=True)
        return result

    def logs(self, ident: str, lines: int = 50) -> Probe:
        return self.probe(ident, log_lines=lines)

    def follow_logs(self, ident: str, write: Callable[[str], None], poll: float = 1.0,
                    max_seconds: float | None = None) -> Job | None:
        """Print the log as it grows until the job ends (one remote command per poll)."""
        first = self.probe(ident)
        sid, job_id = first.service_id, first.job_id
        offset = 0
        final: list[Job | None] = [first.job]

        def step() -> tuple[bool, str]:
            nonlocal offset
            mark = Marker()
            out = self.transport.run(jobdir.follow_script(self.config.remote.work_dir, sid, job_id, offset, mark),
                                     timeout=60).stdout
            parsed = {s.name: s for s in mark.parse(out)}
            log = parsed.get("log")
            if log is not None and log.args and log.args[0].isdigit() and int(log.args[0]) > offset:
                write(log.text)
                offset = int(log.args[0])
            jobs = parse_job_records(parsed["job"].text if "job" in parsed else "")
            final[0] = jobs[0] if jobs else None
            return final[0] is None or final[0].state in TERMINAL_STATES, ""

        try:
            waiting.poll_until(step, timeout=max_seconds if max_seconds is not None else float("inf"),
                               interval=poll, on_timeout=lambda: TimeoutError())
        except TimeoutError:
            pass
        return final[0]
