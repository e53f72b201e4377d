"""SLURM: command lines we send and pure parsers for what comes back.

Output formats are fixed ``--format`` strings with a unit-separator between
fields (it cannot occur in job names or reasons), which is stable from SLURM
20.11 to 24.x, unlike ``--json`` whose schema changes between releases.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from orchestrator.errors import SlurmError
from orchestrator.cluster.shell import command

SEP = "\x1f"
# job id, name, state, elapsed, node list, reason, partition, user, time limit, submit, start
SQUEUE_FIELDS = ["%i", "%j", "%T", "%M", "%N", "%r", "%P", "%u", "%l", "%V", "%S"]
SQUEUE_FORMAT = SEP.join(SQUEUE_FIELDS)

TERMINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
                   "PREEMPTED", "BOOT_FAIL", "DEADLINE", "SPECIAL_EXIT", "REVOKED"}


@dataclass(frozen=True)
class Job:
    job_id: str
    name: str
    state: str
    elapsed: str = ""
    nodelist: str = ""
    reason: str = ""
    partition: str = ""
    user: str = ""
    time_limit: str = ""
    submit_time: str = ""
    start_time: str = ""
    exit_code: str = ""

    @property
    def nodes(self) -> list[str]:
        return expand_nodelist(self.nodelist)

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES


# -- commands -----------------------------------------------------------------
def squeue_command(user: str | None = None, names: list[str] | None = None,
                   job_ids: list[str] | None = None) -> str:
    args = ["squeue", "--noheader", f"--format={SQUEUE_FORMAT}"]
    if user:
        args.append(f"--user={user}")
    if names:
        args.append("--name=" + ",".join(names))
    if job_ids:
        args.append("--jobs=" + ",".join(job_ids))
    return command(*args)


def scontrol_jobs_command(job_ids: list[str]) -> str:
    """One remote command for the final state of several jobs that left the queue."""
    return "; ".join(command("scontrol", "show", "job", "--oneliner", j) + " 2>/dev/null"
                     for j in job_ids) + "; true"


# -- parsers ------------------------------------------------------------------
def parse_squeue(text: str) -> list[Job]:
    jobs = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split(SEP)
        if len(parts) != len(SQUEUE_FIELDS):
            raise SlurmError(f"unexpected squeue line ({len(parts)} fields, expected "
                             f"{len(SQUEUE_FIELDS)}): {line!r}")
        job_id, name, state, elapsed, nodelist, reason, partition, user, limit, submit, start = parts
        jobs.append(Job(job_id=job_id, name=name, state=state, elapsed=elapsed,
                        nodelist="" if nodelist == "(null)" else nodelist,
                        reason="" if reason == "None" else reason, partition=partition, user=user,
                        time_limit=limit, submit_time=submit,
                        start_time="" if start == "N/A" else start))
    return jobs


def parse_sbatch(text: str) -> str:
    """Job ID from `sbatch --parsable` (``123`` or ``123;cluster``) or the long form."""
    for line in text.strip().splitlines():
        line = line.strip()
        m = re.fullmatch(r"(\d+)(;\S+)?", line) or re.search(r"Submitted batch job (\d+)", line)
        if m:
            return m.group(1)
    raise SlurmError(f"could not read a job ID from sbatch's answer: {text.strip()!r}")


_KV = re.compile(r"(\S+?)=(.*?)(?=\s+\S+?=|$)")


def parse_scontrol_record(line: str) -> dict[str, str]:
    """``Key=Value Key2=Value two`` (scontrol --oneliner) into a dict."""
    return {m.group(1): m.group(2).strip() for m in _KV.finditer(line.strip())}


def parse_scontrol_jobs(text: str) -> list[Job]:
    jobs = []
    for line in text.splitlines():
        if not line.startswith("JobId="):
            continue
        rec = parse_scontrol_record(line)
        jobs.append(Job(job_id=rec.get("JobId", ""), name=rec.get("JobName", ""),
                        state=rec.get("JobState", "UNKNOWN"), elapsed=rec.get("RunTime", ""),
                        nodelist="" if rec.get("NodeList") in (None, "(null)") else rec["NodeList"],
                        reason="" if rec.get("Reason") == "None" else rec.get("Reason", ""),
                        partition=rec.get("Partition", ""), user=rec.get("UserId", "").split("(")[0],
                        time_limit=rec.get("TimeLimit", ""), submit_time=rec.get("SubmitTime", ""),
                        start_time=rec.get("StartTime", ""), exit_code=rec.get("ExitCode", "")))
    return jobs


def expand_nodelist(nodelist: str) -> list[str]:
    """``n[1-3,7],gpu01,a[08-09]`` -> every host name, zero padding kept."""
    names: list[str] = []
    for item in re.findall(r"[^,\[]+(?:\[[^\]]*\])?[^,]*", nodelist or ""):
        m = re.fullmatch(r"(.*?)\[([^\]]+)\](.*)", item)
        if not m:
            names.append(item)
            continue
        prefix, ranges, suffix = m.groups()
        for part in ranges.split(","):
            if "-" in part:
                lo, hi = part.split("-", 1)
                width = len(lo)
                names += [f"{prefix}{i:0{width}d}{suffix}" for i in range(int(lo), int(hi) + 1)]
            else:
                names.append(f"{prefix}{part}{suffix}")
    return names


@dataclass(frozen=True)
class SinfoNode:
    name: str
    partition: str
    state: str
    cpus: str
    memory_mb: str


def parse_sinfo_nodes(text: str) -> list[SinfoNode]:
    """`sinfo -h -N -o '%N|%P|%T|%c|%m'`: one line per (node, partition)."""
    out = []
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 5:
            out.append(SinfoNode(parts[0], parts[1].rstrip("*"), parts[2], parts[3], parts[4]))
    return out


SINFO_NODES_COMMAND = command("sinfo", "-h", "-N", "-o", "%N|%P|%T|%c|%m")


@dataclass(frozen=True)
class JobId:
    """One trackable job: ``12345``, array task ``12345_7`` or het component ``12345+0``."""
    base: str
    array_task: str | None = None
    het_component: str | None = None

    def __str__(self) -> str:
        if self.array_task is not None:
            return f"{self.base}_{self.array_task}"
        if self.het_component is not None:
            return f"{self.base}+{self.het_component}"
        return self.base


_JOB_ID = re.compile(r"^(\d+)(?:_(\d+|\[[^\]]+\])|\+(\d+))?$")


def parse_job_ids(text: str) -> list[JobId]:
    """Every SLURM form; a pending array summary ``12345_[0-3,7%2]`` expands to its tasks."""
    m = _JOB_ID.match(text.strip())
    if not m:
        raise SlurmError(f"not a SLURM job ID: {text!r}")
    base, task, het = m.groups()
    if het is not None:
        return [JobId(base, het_component=het)]
    if task is None:
        return [JobId(base)]
    if not task.startswith("["):
        return [JobId(base, array_task=task)]
    spec = task[1:-1].split("%")[0]  # drop the throttle
    tasks: list[str] = []
    for part in spec.split(","):
        if "-" in part:
            lo, hi = part.split("-", 1)
            step = 1
            if ":" in hi:
                hi, s = hi.split(":")
                step = int(s)
            tasks += [str(i) for i in range(int(lo), int(hi) + 1, step)]
        elif part:
            tasks.append(part)
    return [JobId(base, array_task=t) for t in tasks]
