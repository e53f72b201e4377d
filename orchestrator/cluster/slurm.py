"""SLURM: every squeue/scontrol/sacct/sbatch/sinfo line we send, the pure parsers
for what comes back, the one ``Job`` record, and the one poller.

Output formats are fixed ``--format`` strings with a unit-separator between
fields (it cannot occur in job names or reasons), which is stable from SLURM
20.11 to 24.x, unlike ``--json`` whose schema changes between releases.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from orchestrator.cluster.shell import command, quote
from orchestrator.errors import SlurmError

SEP = "\x1f"
# job id, name, state, elapsed, node list, reason, partition, user, time limit, submit, start, end
SQUEUE_FIELDS = ["%i", "%j", "%T", "%M", "%N", "%r", "%P", "%u", "%l", "%V", "%S", "%e"]
SQUEUE_FORMAT = SEP.join(SQUEUE_FIELDS)

# what a terminal state alone says of why a job ended (the watcher and a session's errors both say it)
STATE_CAUSES = {"TIMEOUT": "time limit", "OUT_OF_MEMORY": "out of memory (host)", "NODE_FAIL": "node failure",
                "BOOT_FAIL": "node failure", "DEADLINE": "time limit", "PREEMPTED": "preempted"}
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
    end_time: str = ""                   # (squeue: of an ended job, in the cluster's local time)
    exit_code: str = ""
    stdout: str = ""                     # the job's output file (scontrol only)
    array_job_id: str = ""               # for an array task: the array's ID; its own is job_id
    array_task_id: str = ""
    het_job_id: str = ""
    het_offset: str = ""

    @property
    def key(self) -> str:
        """The ID users see and track: ``123_4`` for an array task, else the job ID."""
        if self.array_job_id and self.array_task_id not in ("", "N/A"):
            return f"{self.array_job_id}_{self.array_task_id}"
        return self.job_id

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


# -- parsers ------------------------------------------------------------------
def parse_squeue(text: str) -> list[Job]:
    """Jobs of ``squeue --format=SQUEUE_FORMAT``; lines that are not whole records are skipped."""
    jobs = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split(SEP)
        if len(parts) == len(SQUEUE_FIELDS) - 1:
            parts.append("N/A")   # (recorded before the end time was asked for)
        if len(parts) != len(SQUEUE_FIELDS):
            # a job name with a newline or control character (anyone's job) must not break every poll
            continue
        job_id, name, state, elapsed, nodelist, reason, partition, user, limit, submit, start, end = parts
        jobs.append(Job(job_id=job_id, name=name, state=state, elapsed=elapsed,
                        nodelist="" if nodelist == "(null)" else nodelist,
                        reason="" if reason == "None" else reason, partition=partition, user=user,
                        time_limit=limit, submit_time=submit,
                        start_time="" if start == "N/A" else start,
                        end_time="" if end in ("N/A", "NONE", "Unknown") else end))
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
    """``Key=Value Key2=Value two`` (scontrol --oneliner) into a dict. scontrol prints a job's own text
    (its name, its output path) raw, so a value may hold ` Key=...` of its own making: the first of each
    key is scontrol's (its keys come in a fixed order), a later one is the job's text, never taken."""
    out: dict[str, str] = {}
    for m in _KV.finditer(line.strip()):
        out.setdefault(m.group(1), m.group(2).strip())
    return out


def _scontrol_job(rec: dict[str, str]) -> Job:
    def known(key: str) -> str:
        v = rec.get(key, "")
        return "" if v in ("(null)", "N/A") else v
    return Job(job_id=rec.get("JobId", ""), name=rec.get("JobName", ""), state=rec.get("JobState", "UNKNOWN"),
               elapsed=rec.get("RunTime", ""), nodelist=known("NodeList"),
               reason="" if rec.get("Reason") == "None" else rec.get("Reason", ""),
               partition=rec.get("Partition", ""), user=rec.get("UserId", "").split("(")[0],
               time_limit=rec.get("TimeLimit", ""), submit_time=rec.get("SubmitTime", ""),
               start_time=rec.get("StartTime", ""), exit_code=rec.get("ExitCode", ""), stdout=known("StdOut"),
               array_job_id=known("ArrayJobId"), array_task_id=known("ArrayTaskId"),
               het_job_id=known("HetJobId"), het_offset=known("HetJobOffset"))


def parse_sacct_line(line: str) -> Job:
    """A ``SACCT|`` line of ``JOB_STATE_FUNCTION`` (sacct -P -o SACCT_FIELDS)."""
    _, job_id, name, state, elapsed, nodelist, exit_code = (line.split("|") + [""] * 7)[:7]
    return Job(job_id=job_id, name=name, state=state.split()[0] if state else "UNKNOWN", elapsed=elapsed,
               nodelist="" if nodelist in ("None assigned", "(null)") else nodelist, exit_code=exit_code)


def parse_job_records(text: str) -> list[Job]:
    """What ``orch_job_state`` printed: scontrol one-liners, or sacct lines once the job left slurmctld."""
    jobs = []
    for line in text.splitlines():
        if line.startswith("JobId="):
            jobs.append(_scontrol_job(parse_scontrol_record(line)))
        elif line.startswith("SACCT|"):
            jobs.append(parse_sacct_line(line))
    return jobs


def parse_scontrol_jobs(text: str) -> list[Job]:
    jobs = []
    for line in text.splitlines():
        if not line.startswith("JobId="):
            continue
        jobs.append(_scontrol_job(parse_scontrol_record(line)))
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


# -- the poller -----------------------------------------------------------------------
SACCT_FIELDS = "JobID,JobName,State,Elapsed,NodeList,ExitCode"
# Defined at the top of every script that asks for a job's state: scontrol while
# slurmctld remembers the job (MinJobAge), then sacct where accounting runs.
JOB_STATE_FUNCTION = (
    'orch_job_state() { scontrol show job --oneliner "$1" 2>/dev/null || '
    f'sacct -n -P -X -j "$1" -o {SACCT_FIELDS} 2>/dev/null | sed \'s/^/SACCT|/\'; }}')


def queue_command(*, user: str | None = None, partitions: list[str] | None = None, mine: bool = True,
                  all_states: bool = False) -> str:
    """squeue of the watched jobs; ``all_states``: also those that ended within SLURM's MinJobAge (a
    job that started and ended between two polls is still listed)."""
    args = ["squeue", "--noheader", f"--format={SQUEUE_FORMAT}"] + (["--states=all"] if all_states else [])
    if user:
        args.append(f"--user={user}")
    elif mine:
        args.append("--me")
    if partitions:
        args.append("--partition=" + ",".join(partitions))
    return command(*args)


def poll_script(open_ids: list[str], mark, *, user: str | None = None, partitions: list[str] | None = None,
                mine: bool = True, all_states: bool = False, lookback: float = 0.0) -> str:
    """The queue (squeue must succeed: a failing controller is an error to retry, not "every job
    gone"), then the final record of each ``open_ids`` job that is no longer in it."""
    gone = "".join(f"printf '%s\\n' \"$q\" | grep -q {quote('^' + re.escape(j) + SEP)} || "
                   f"orch_job_state {quote(j)}; " for j in open_ids)
    return (f"{JOB_STATE_FUNCTION}\nq=$({queue_command(user=user, partitions=partitions, mine=mine, all_states=all_states)})"
            f" || exit 3\n{mark.echo('queue')}; printf '%s\\n' \"$q\"; {mark.echo('gone')}; {gone}"
            # the cluster's own clock, in squeue's format: now, and ``lookback`` seconds ago
            f"{mark.echo('clock')}; date +%Y-%m-%dT%H:%M:%S; date -d '-{int(lookback)} seconds' +%Y-%m-%dT%H:%M:%S; true")


@dataclass(frozen=True)
class Poll:
    queued: list[Job]                    # what squeue lists now
    ended: dict[str, Job]                # open jobs that left the queue, by key (their final record)
    now: str = ""                        # the cluster's clock at the poll (squeue's time format)
    since: str = ""                      # ... and the poll's lookback before it

    def state_of(self, job_id: str) -> Job | None:
        for j in self.queued:
            if j.job_id == job_id:
                return j
        return self.ended.get(job_id)


def parse_poll(text: str, mark) -> Poll:
    secs = {s.name: s.text for s in mark.parse(text)}
    clock = (secs.get("clock", "").split() + ["", ""])[:2]
    return Poll(parse_squeue(secs.get("queue", "")), {j.key: j for j in parse_job_records(secs.get("gone", ""))},
                now=clock[0], since=clock[1])


class JobPoller:
    """States of many jobs in one remote command: the queue plus the final record of those that left it."""

    def __init__(self, transport):
        self.transport = transport

    def final_records(self, job_ids: list[str]) -> dict[str, Job]:
        """Each job's final record (scontrol, or sacct once it left slurmctld), in one command."""
        from orchestrator.cluster.remote import Marker
        mark = Marker()
        script = f"{JOB_STATE_FUNCTION}\n{mark.echo('gone')}; " + "".join(f"orch_job_state {quote(j)}; " for j in job_ids)
        out = self.transport.run(script + "true", timeout=120).stdout
        return parse_poll(out, mark).ended

    def poll(self, open_ids: list[str], **filters) -> Poll:
        from orchestrator.cluster.remote import Marker
        mark = Marker()
        result = self.transport.run(poll_script(open_ids, mark, **filters), timeout=120)
        if result.exit_code != 0:
            msg = (result.stderr.strip() or result.stdout.strip() or f"exit {result.exit_code}").splitlines()[-1]
            raise SlurmError(f"squeue failed: {msg}")
        return parse_poll(result.stdout, mark)
