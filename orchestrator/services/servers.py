"""ServersModule: services as SLURM jobs: submit, discover, probe, stop.

Every service has an ID ``<recipe>_<8 hex>`` that is also its SLURM job name,
so it can be found from squeue by any laptop, with or without local state.
Each public call is one remote round trip, except waiting, which is one per poll.
"""

from __future__ import annotations

import base64
import io
import json
import re
import secrets
import shutil
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from orchestrator import waiting
from orchestrator.cluster import jobdir
from orchestrator.cluster.remote import Marker
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
    SlurmError,
)
from orchestrator.logs import log_context
from orchestrator.services.probe import (
    JOB_ID_RE,
    SERVICE_ID_RE,
    SHORT_ID_RE,
    Probe,
    endpoint_hosts,
    parse_probe,
)
from orchestrator.state import ServiceRecord, StateStore
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


class ServiceNotReady(OrchestratorError):
    pass


class ServersModule:
    def __init__(self, config: Config, transport: Transport):
        self.config = config
        self.transport = transport
        self.store = StateStore(config.state_dir, "services")
        self.attempted: list[str] = []   # every service ID this module tried to submit, in order

    # -- records ---------------------------------------------------------------
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

    def record_verdict(self, service_id: str, verdict: str, evidence: list[str], *, state: str | None = None,
                       nodelist: str | None = None, elapsed: str | None = None) -> None:
        """Why the service's job ended (or is unhealthy), as the watcher found it, with the job's last facts."""
        facts = {k: v for k, v in (("state", state), ("nodelist", nodelist), ("elapsed", elapsed)) if v is not None}
        self.store.update(service_id, verdict=verdict, evidence=list(evidence), **facts)

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
        check = f"{{ {precheck}; }} && " if precheck else ""
        # the job's files travel on stdin as one compressed archive (a command line has a size limit;
        # a dataset may be megabytes); sbatch runs only when every file was unpacked whole
        # umask 077: the job dir (and any parent made here) is 700, and sbatch passes the umask to the job
        remote = (f"umask 077; d={d}; mkdir -p \"$d\" && chmod 700 \"$d\" && cd \"$d\" && base64 -d | tar -xzf - "
                  f"|| {{ rc=$?; cd / && rm -rf \"$d\"; echo \"writing the job files failed\" >&2; exit $rc; }}\n"
                  f"{{ out=$({{ {check}sbatch --parsable {jobdir.JOB_SCRIPT}; }} 2>&1); rc=$?; "
                  f"if [ $rc -ne 0 ]; then cd / && rm -rf \"$d\"; echo \"$out\" >&2; exit $rc; fi; echo \"$out\"; }}")
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
    def _ids(self, ident: str) -> tuple[str | None, str | None]:
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

    def _probe_script(self, ident: str, mark: Marker, **options) -> str:
        sid, job_id = self._ids(ident)
        if options.get("cancel"):   # scancel decides on the login node, with the submission we recorded
            rec = self.store.load().get(sid or "") or {}
            options["submitted"] = rec.get("slurm_submit_time", "") if job_id and rec.get("job_id") == job_id else ""
        return jobdir.probe_script(self.config.remote.work_dir, mark, service_id=sid, job_id=job_id, **options)

    def probe(self, ident: str, *, health: bool = False, log_lines: int = 0, then: str = "", cancel: bool = False,
              mark: Marker | None = None, timeout: float = 60) -> Probe:
        """Everything about one service in one remote command; ``then`` runs against its endpoint
        (a ``then`` that prints sections uses the ``mark`` it was built with)."""
        mark = mark or Marker()
        script = self._probe_script(ident, mark, health=health, log_lines=log_lines, then=then, cancel=cancel)
        result = self.transport.run(script, timeout=timeout, idempotent=not cancel)
        return self._checked(ident, parse_probe(mark.parse(result.stdout)))

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
        if p.job is not None and p.job.submit_time and not seen and rec and rec.get("job_id") == p.job_id:
            self.store.update(p.service_id, slurm_submit_time=p.job.submit_time)
        if p.job is not None:
            self._remember({p.service_id: p.job}, tracked)
        return p

    def _remember(self, jobs: dict[str, Job], tracked: dict | None = None) -> None:
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

    def list_running_services(self) -> list[ServiceStatus]:
        """All services: one remote command (squeue, plus the final record of tracked jobs that left the queue)."""
        tracked = self.store.load()
        open_jobs = [r["job_id"] for r in tracked.values()
                     if r.get("job_id") and r.get("state") not in TERMINAL_STATES]
        poll = JobPoller(self.transport).poll(open_jobs)
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
        self._remember({sid: Job(row.job_id, sid, row.state, elapsed=row.elapsed, nodelist=row.nodelist,
                                  exit_code=left[row.job_id].exit_code if row.job_id in left else "")
                        for sid, row in rows.items() if row.state != "LEFT_QUEUE"}, tracked)
        return sorted(rows.values(), key=lambda r: int(re.sub(r"\D.*", "", r.job_id) or 0))

    def _endpoint(self, p: Probe) -> Endpoint:
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

    def get_service_endpoint(self, ident: str) -> Endpoint:
        return self._endpoint(self.probe(ident))

    def get_service_host(self, ident: str) -> str:
        return self.get_service_endpoint(ident).host

    # -- readiness ----------------------------------------------------------------
    def wait_until_ready(self, ident: str, timeout: float = 300, poll: float = 1.0,
                         progress: Progress | None = None) -> Endpoint:
        """Until RUNNING and the health probe answers from the login node.

        A job that ends first raises with the tail of its log; a timeout
        leaves the job running and says so.
        """
        last: list[Probe] = []

        def step() -> tuple[bool, str]:
            p = self.probe(ident, health=True)
            last[:] = [p]
            state = p.job.state if p.job else "UNKNOWN"
            if state in TERMINAL_STATES:
                tail = self.probe(ident, log_lines=20).log.rstrip()
                raise ServiceNotReady(f"service {p.service_id} (job {p.job_id}) ended {state} "
                                      f"before it was ready; last lines of its log:\n{tail}")
            static = p.endpoint["static"] if p.endpoint else {}
            if state == "RUNNING" and p.endpoint and (p.healthy or not (static.get("health_path")
                                                                        or static.get("health_tcp"))):
                return True, f"{p.service_id} ready at {p.health_url or p.endpoint['node']}"
            if state == "PENDING":
                return False, f"{p.service_id}: pending ({p.job.reason or 'queued'})"
            if state == "RUNNING":
                return False, (f"{p.service_id}: starting on {p.job.nodelist}" +
                               (f", health {p.health_url} -> {p.health_code}" if p.health_url else ""))
            return False, f"{p.service_id}: {state}"

        def timed_out() -> ServiceNotReady:
            p = last[0]
            state = p.job.state if p.job else "UNKNOWN"
            return ServiceNotReady(f"service {p.service_id} (job {p.job_id}) not ready after {timeout:.0f}s "
                                   f"({state}); the job was left running: stop it with "
                                   f"--stop-service {p.service_id}")

        sid, job_id = self._ids(ident)
        with log_context(service_id=sid, job_id=job_id):
            waiting.poll_until(step, timeout=timeout, interval=poll, say=progress, on_timeout=timed_out)
        p = last[0]
        if p.service_id in self.store.load():
            self.store.update(p.service_id, ready_at=now_iso())
        return self._endpoint(p)

    def wait_until_ended(self, service_ids: list[str], timeout: float = 30, poll: float = 1.0) -> list[str]:
        """Until every job has left the running states (after a scancel); returns those still running."""
        left = list(service_ids)

        def step() -> tuple[bool, str]:
            left[:] = [p.service_id for p in self.probe_many(left)
                       if p.job is not None and p.job.state not in TERMINAL_STATES] if left else []
            return not left, ""

        try:
            waiting.poll_until(step, timeout=timeout, interval=poll, on_timeout=lambda: TimeoutError())
        except TimeoutError:
            pass
        return left

    # -- stop and logs ------------------------------------------------------------
    def stop_service(self, ident: str) -> ServiceStatus:
        """scancel a service this tool started, in one remote command; anything else is refused on the
        login node before scancel runs."""
        p = self.probe(ident, cancel=True)
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

    # -- files in job dirs (load clients) -------------------------------------------
    def signal_go(self, service_ids: list[str]) -> None:
        """Write each job's ``go`` file: the load clients start together."""
        self.transport.run(jobdir.write_go_script(self.config.remote.work_dir, service_ids), check=True,
                           idempotent=True)

    def read_progress(self, service_ids: list[str]) -> dict[str, dict]:
        """{service ID: {"progress": parsed progress.json or None, "done": bool, "job": Job or None}},
        in one command."""
        tracked = self.store.load()
        jobs = {sid: (tracked.get(sid) or {}).get("job_id") or "0" for sid in service_ids}
        mark = Marker()
        out = self.transport.run(jobdir.progress_script(self.config.remote.work_dir, jobs, mark), timeout=60).stdout
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

    def fetch_file(self, service_id: str, name: str, local: Path) -> bool:
        """Download a file of a job dir; False (and no local file) when it could not be fetched."""
        try:
            self.transport.get(jobdir.file(self.config.remote.work_dir, service_id, name), str(local))
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
        script = jobdir.bundle_script(self.config.remote.work_dir, service_ids, names)
        return self._unbundle(script, wanted, lambda key: dest(*key))

    def fetch_logs(self, service_ids: list[str], dest_dir: Path, max_bytes: int = 256 << 10) -> dict[str, Path]:
        """The last ``max_bytes`` of each job's SLURM output, in one compressed transfer, as
        ``dest_dir/<service ID>.log``."""
        if not service_ids:
            return {}
        wanted = {f"./{sid}.log": sid for sid in service_ids}
        script = jobdir.log_bundle_script(self.config.remote.work_dir, service_ids, max_bytes)
        got = self._unbundle(script, wanted, lambda sid: dest_dir / f"{sid}.log")
        return {sid: dest_dir / f"{sid}.log" for sid in got}

    def _unbundle(self, script: str, wanted: dict, dest) -> set:
        """Run ``script`` (it prints the path of a tar.gz it made), download that archive, remove it
        remotely, and write the members named in ``wanted`` to ``dest(wanted[name])``. Only those
        members are read (never extracted by the archive's own paths)."""
        remote = self.transport.run(script, timeout=300).check().stdout.strip().splitlines()[-1]
        got = set()
        with tempfile.TemporaryDirectory(prefix="orch-collect-") as tmp:
            local = Path(tmp) / "bundle.tar.gz"
            try:
                self.transport.get(remote, str(local))
            finally:
                self.transport.run(command("rm", "-f", remote), timeout=60)
            with tarfile.open(local, "r:gz") as tar:
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
        out = self.transport.run(jobdir.runtime_script(self.config.remote.work_dir, service_ids, mark),
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
