"""One-round-trip probes of a service: what SLURM, the job dir and curl say (parsing is pure)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from orchestrator.templating import render
from orchestrator.cluster.remote import by_name, parse_sections
from orchestrator.cluster.shell import path as remote_path
from orchestrator.cluster.slurm import Job, expand_nodelist, parse_scontrol_jobs

SERVICE_ID_RE = re.compile(r"^[a-z][a-z0-9-]*_[0-9a-f]{8}$")
JOB_ID_RE = re.compile(r"^\d+$")


@dataclass(frozen=True)
class Probe:
    job_id: str
    service_id: str
    job: Job | None
    endpoint: dict | None
    health_code: str | None = None
    health_url: str | None = None
    log: str = ""
    cancel_output: str | None = None
    then_output: str | None = None     # what the `then` snippet printed; None: it did not run

    @property
    def healthy(self) -> bool:
        return bool(self.health_code) and self.health_code[0] in "23"


def probe_script(work_dir: str, *, service_id: str | None, job_id: str | None, health: bool = False,
                 log_lines: int = 0, cancel: bool = False, health_timeout: int = 5, then: str = "") -> str:
    """The probe; ``then`` is a shell snippet run once the service's endpoint is known,
    with $BASE (http://node:port), $node, $port, $ports and $D (its job dir) set."""
    return render("probe.sh.j2", work_dir=remote_path(work_dir), service_id=service_id, job_id=job_id,
                  health=health, log_lines=log_lines, cancel=cancel, health_timeout=health_timeout,
                  then=then)


def parse_sacct_line(line: str) -> Job:
    _, job_id, name, state, elapsed, nodelist, exit_code = (line.split("|") + [""] * 7)[:7]
    return Job(job_id=job_id, name=name, state=state.split()[0] if state else "UNKNOWN",
               elapsed=elapsed, nodelist=nodelist if nodelist != "None assigned" else "",
               exit_code=exit_code)


def parse_probe(text: str) -> Probe:
    secs = by_name(parse_sections(text))
    ids = secs["ids"].args if "ids" in secs else []
    s = {name: sec.lines for name, sec in secs.items()}
    job_id = ids[0] if len(ids) > 0 else ""
    service_id = ids[1] if len(ids) > 1 else ""
    job_lines = s.get("job", [])
    jobs = parse_scontrol_jobs("\n".join(job_lines))
    if not jobs:
        jobs = [parse_sacct_line(l) for l in job_lines if l.startswith("SACCT|")]
    endpoint = None
    raw = "\n".join(s.get("endpoint", [])).strip()
    if raw:
        try:
            endpoint = json.loads(raw)
        except json.JSONDecodeError:
            endpoint = None  # being written right now: the next probe sees it whole
    code = url = None
    health = [l for l in s.get("health", []) if l.strip()]
    if health:
        code, _, url = health[0].partition(" ")
    cancel = "\n".join(s["cancel"]) if "cancel" in s else None
    then = "\n".join(s["then"]) + "\n" if s.get("then") else None
    return Probe(job_id=job_id, service_id=service_id, job=jobs[0] if jobs else None,
                 endpoint=endpoint, health_code=code, health_url=url or None,
                 log="\n".join(s.get("log", [])), cancel_output=cancel, then_output=then)


def endpoint_hosts(endpoint: dict) -> list[str]:
    return expand_nodelist(endpoint.get("nodes", "")) or [endpoint.get("node", "")]
