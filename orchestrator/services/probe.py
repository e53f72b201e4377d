"""One-round-trip probes of a service: what SLURM, the job dir and curl say (parsing is pure)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from orchestrator.cluster.remote import Section, by_name
from orchestrator.cluster.slurm import Job, expand_nodelist, parse_job_records

SERVICE_ID_RE = re.compile(r"^[a-z][a-z0-9-]*_[0-9a-f]{8}$")
JOB_ID_RE = re.compile(r"^\d+$")
SHORT_ID_RE = re.compile(r"^[0-9a-f]{8}$")   # a service ID's hex part alone, as the seed documents show it


@dataclass(frozen=True)
class Probe:
    job_id: str
    service_id: str
    job: Job | None
    endpoint: dict | None
    health_code: str | None = None
    health_url: str | None = None
    log: str = ""
    then_output: str | None = None     # what the `then` snippet printed; None: it did not run
    responses: list[str] = field(default_factory=list)   # answers the `then` snippet marked as responses
    cancel_output: str | None = None   # "rc=N" after scancel, or "refused" (not a service of this tool)
    ours: bool = True                  # the cluster says: our user's job, named as the service ID
    owner: str = ""                    # the job's user, as SLURM gave it

    @property
    def healthy(self) -> bool:
        return bool(self.health_code) and (self.health_code[0] in "23" or self.health_code == "open")


def parse_probe(sections: list[Section]) -> Probe:
    """A probe's sections (``cluster.jobdir.probe_script``) into a record."""
    secs = by_name(sections)
    # ids: job ID, "1" (ours) or "foreign", the job's user, its name (anyone's text: last, whole)
    ids = secs["ids"].args if "ids" in secs else []
    s = {name: sec.lines for name, sec in secs.items()}
    job_id = ids[0] if len(ids) > 0 else ""
    service_id = " ".join(ids[3:])
    jobs = parse_job_records("\n".join(s.get("job", [])))
    endpoint = None
    raw = "\n".join(s.get("endpoint", [])).strip()
    if raw:
        try:
            endpoint = json.loads(raw)
        except json.JSONDecodeError:
            endpoint = None  # being written right now: the next probe sees it whole
        if not _valid_endpoint(endpoint):
            endpoint = None  # values from the cluster are data: a malformed one is no endpoint
    code = url = None
    health = [line for line in s.get("health", []) if line.strip()]
    if health:
        code, _, url = health[0].partition(" ")
    then = "\n".join(s["then"]) + "\n" if "then" in s else None   # absent: the service had no endpoint
    responses = [sec.text.strip() for sec in sections if sec.name == "response"]
    return Probe(job_id=job_id, service_id=service_id, job=jobs[0] if jobs else None,
                 ours=len(ids) > 1 and ids[1] == "1", owner=ids[2] if len(ids) > 2 and ids[2] != "-" else "",
                 endpoint=endpoint, health_code=code, health_url=url or None,
                 log="\n".join(s.get("log", [])), then_output=then, responses=responses,
                 cancel_output="\n".join(s["cancel"]) if "cancel" in s else None)


HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")


def _valid_endpoint(e) -> bool:
    if not isinstance(e, dict) or not isinstance(e.get("node"), str) or not HOST_RE.match(e["node"]):
        return False
    ports = e.get("ports", [])
    return isinstance(ports, list) and all(isinstance(p, int) and 0 < p < 65536 for p in ports)


def endpoint_hosts(endpoint: dict) -> list[str]:
    return expand_nodelist(endpoint.get("nodes", "")) or [endpoint.get("node", "")]
