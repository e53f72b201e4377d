"""Targets to addresses, and those the tool did not start: a user's own SLURM jobs (scraped at their node) and fixed
addresses, with the bearer tokens some of them want.

A job of another user is a target only when the user says so (``allow_other_users``), and only
ever read: the tool asks SLURM where it runs (scontrol, read-only) and Prometheus scrapes it; it is
never cancelled, tailed or written into.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from pathlib import Path

from orchestrator import waiting
from orchestrator.cluster import streaming
from orchestrator.cluster.remote import Marker
from orchestrator.cluster.slurm import JOB_STATE_FUNCTION, TERMINAL_STATES, expand_nodelist, parse_job_records
from orchestrator.errors import OrchestratorError
from orchestrator.monitoring.targets import ResolvedTarget, host_target, job_targets, targets_from_probe
from orchestrator.services.recipes import TargetSpec

JOB_ID_RE = re.compile(r"^\d+(_\d+)?$")


def jobs_script(job_ids: list[str], mark: Marker) -> str:
    """Who runs this command, then each job's record (scontrol, or sacct once it left slurmctld)."""
    for j in job_ids:
        if not JOB_ID_RE.match(j):
            raise OrchestratorError(f"{j!r} is not a SLURM job ID")
    return (f"{JOB_STATE_FUNCTION}\n{mark.echo('me')} \"$(id -un)\"\n"
            f"for j in {' '.join(job_ids)}; do {mark.echo('job')} \"$j\"; orch_job_state \"$j\"; done")


def job_nodes(transport, job_ids: list[str], *, allow_other_users: bool, timeout: float,
              progress=None) -> dict[str, str]:
    """{job ID: its first node}, once every job runs: one remote command for the whole wait. A job
    that is not there, ends first, or belongs to another user (unless allowed) ends the wait."""
    if not job_ids:
        return {}
    mark = Marker()
    found: dict[str, str] = {}
    rounds = streaming.repeated(transport, jobs_script(job_ids, mark), interval=2.0, timeout=timeout)

    def step(out: str) -> tuple[bool, str]:
        sections = mark.parse(out)
        me = next((s.args[0] for s in sections if s.name == "me" and s.args), "")
        waiting_for = []
        for sec in (s for s in sections if s.name == "job" and s.args):
            jid = sec.args[0]
            records = parse_job_records(sec.text)
            if not records:
                raise OrchestratorError(f"job {jid}: SLURM knows no such job (ended long ago, or a wrong ID)")
            job = records[0]
            if job.user and me and job.user != me and not allow_other_users:
                raise OrchestratorError(f"job {jid} belongs to {job.user}, not to you ({me}): it is a target only "
                                        "with --allow-other-users (it is then only scraped, never touched)")
            if job.state in TERMINAL_STATES:
                raise OrchestratorError(f"job {jid} ended {job.state}" + (f" ({job.reason})" if job.reason else "")
                                        + " before it could be monitored")
            if job.state == "RUNNING" and job.nodelist:
                found[jid] = expand_nodelist(job.nodelist)[0]
            else:
                waiting_for.append(f"{jid} {job.state}" + (f" ({job.reason})" if job.reason else ""))
        return not waiting_for, ("waiting for jobs: " + ", ".join(waiting_for)) if waiting_for else ""

    def late() -> OrchestratorError:
        left = [j for j in job_ids if j not in found]
        return OrchestratorError(f"jobs not running after {timeout:.0f}s: {', '.join(left)}")

    waiting.follow(rounds, step, timeout=timeout, say=progress, on_timeout=late)
    return found


def token_files(specs: list[TargetSpec]) -> dict[str, str]:
    """{local token file: its name in the monitor's job dir}: each file read here, shipped privately
    beside prometheus.yml, never on a command line."""
    out = {}
    for s in specs:
        if s.credentials_file and s.credentials_file not in out:
            out[s.credentials_file] = f"target-{hashlib.sha256(s.credentials_file.encode()).hexdigest()[:12]}.token"
    return out


def read_tokens(names: dict[str, str]) -> dict[str, str]:
    """{name in the job dir: the token}, from the local files; a missing or empty one is refused."""
    out = {}
    for local, name in names.items():
        try:
            token = Path(local).expanduser().read_text().strip()
        except OSError as exc:
            raise OrchestratorError(f"--bearer-file {local}: cannot read it ({exc.strerror})") from None
        if not token or "\n" in token:
            raise OrchestratorError(f"--bearer-file {local}: expected one line holding the token")
        out[name] = token + "\n"
    return out


def resolve_targets(servers, specs: list[TargetSpec], timeout: float = 600, progress=None,
                    allow_other_users: bool = False) -> list[ResolvedTarget]:
    """Targets to node:port: services from their endpoint files, jobs the tool did not start from
    SLURM (read-only), addresses as given; services and jobs not yet running are waited for."""
    tokens = token_files(specs)
    out = [host_target(s, tokens.get(s.credentials_file or "", "")) for s in specs if s.host]
    tracked_jobs = {r.job_id for r in servers.registry.records().values() if r.job_id}
    for s in specs:
        if s.service_id and s.service_id.isdigit() and s.service_id not in tracked_jobs:
            raise OrchestratorError(f"job {s.service_id} was not started by this tool: name the port to scrape "
                                    f"({s.service_id}:PORT), or start a monitor recipe that names it "
                                    f"(--recipe vllm-monitor; `monitor list --available`)")
    jobs = [s for s in specs if s.job_id]
    nodes = job_nodes(servers.transport, sorted({s.job_id for s in jobs}), timeout=timeout, progress=progress,
                      allow_other_users=allow_other_users)
    out += [job_targets(s, nodes[s.job_id], tokens.get(s.credentials_file or "", "")) for s in jobs]
    pending = []
    for s in specs:
        ready = servers.recently_ready(s.service_id) if s.service_id else None
        if ready is not None:   # a wait just found it running: its endpoint is known
            out.extend(targets_from_probe(s, ready))
        elif s.service_id:
            pending.append(s)

    def step() -> tuple[bool, str]:
        if not pending:
            return True, ""
        waiting_for = []
        for spec, p in zip(list(pending), servers.probe_many([s.service_id for s in pending])):
            state = p.job.state if p.job else "UNKNOWN"
            if state in TERMINAL_STATES:
                raise OrchestratorError(f"target {spec.service_id} ({p.service_id}) is {state}: cannot monitor it")
            if p.endpoint and state == "RUNNING":
                out.extend(targets_from_probe(replace(spec, service_id=p.service_id), p))
            else:
                waiting_for.append((spec, p))
        pending[:] = [spec for spec, _ in waiting_for]
        return not pending, ("waiting for targets: " + ", ".join(
            f"{p.service_id} {p.job.state if p.job else '?'}" + (f" ({p.job.reason})" if p.job and p.job.reason else "")
            for _, p in waiting_for)) if waiting_for else ""

    waiting.poll_until(step, timeout=timeout, interval=1, say=progress, on_timeout=lambda: OrchestratorError(
        f"targets not running after {timeout:.0f}s: " + ", ".join(s.service_id for s in pending)))
    return out
