"""Job directories on the cluster: their layout, and the shell that reads and writes them.

Every job this tool starts has ``<remote.work_dir>/services/<service ID>/``,
its submit directory, holding:

- ``job.sbatch``: the script as submitted;
- ``slurm-<job ID>.out``: the job's output;
- ``endpoint.json``: where the service listens (node, ports, metrics, exporters),
  written with a JSON encoder by the job before the service starts;
- ``runtime.txt``: binary and version, or image facts (what makes reruns comparable);
- for load clients: ``go`` (the start signal), ``progress.json``, ``done.json``,
  ``requests.jsonl``.

This module is the only place that knows those names; the rest of the code asks it.
"""

from __future__ import annotations

from orchestrator.cluster.remote import Marker
from orchestrator.cluster.shell import path as remote_path
from orchestrator.cluster.shell import quote
from orchestrator.cluster.slurm import JOB_STATE_FUNCTION

SERVICES = "services"
JOB_SCRIPT = "job.sbatch"
ENDPOINT = "endpoint.json"
RUNTIME = "runtime.txt"
GO = "go"
PROGRESS = "progress.json"
DONE = "done.json"
REQUESTS = "requests.jsonl"
RESERVED = (JOB_SCRIPT, ENDPOINT)      # names a recipe's shipped files may not take


def services_root(work_dir: str) -> str:
    return f"{work_dir.rstrip('/')}/{SERVICES}"


def job_dir(work_dir: str, service_id: str) -> str:
    return f"{services_root(work_dir)}/{service_id}"


def log_name(job_id: str) -> str:
    return f"slurm-{job_id}.out"


def file(work_dir: str, service_id: str, name: str) -> str:
    return f"{job_dir(work_dir, service_id)}/{name}"


# -- scripts -----------------------------------------------------------------------------
def probe_script(work_dir: str, mark: Marker, *, service_id: str | None, job_id: str | None, health: bool = False,
                 log_lines: int = 0, health_timeout: int = 5, then: str = "", cancel: bool = False) -> str:
    """One round trip about one service: job ID <-> service ID, job state, endpoint, health, log tail.

    ``then`` is a shell snippet run once the service's endpoint is known, with $BASE
    (http://node:port), $node, $port, $ports and $D (its job dir) set. ``cancel`` runs scancel,
    only if the job's name is a service ID of this tool (checked on the login node, first).
    """
    from orchestrator.templating import render  # (Jinja2 costs 25 ms of start-up: only commands that probe pay it)
    return render("probe.sh.j2", services=remote_path(services_root(work_dir)), mark=mark, service_id=service_id,
                  job_id=job_id, health=health, log_lines=log_lines, health_timeout=health_timeout, then=then,
                  cancel=cancel,
                  job_state_function=JOB_STATE_FUNCTION, endpoint_file=ENDPOINT, log_file="slurm-$J.out")


def write_go_script(work_dir: str, service_ids: list[str]) -> str:
    """The start signal for load clients: the time, written atomically, in each job dir."""
    parts = []
    for sid in service_ids:
        d = remote_path(job_dir(work_dir, sid))
        parts.append(f"date +%s.%N > {d}/{GO}.tmp && mv {d}/{GO}.tmp {d}/{GO}")
    return " && ".join(parts)


def bundle_script(work_dir: str, service_ids: list[str], names: list[str]) -> str:
    """Those of the named files that exist, of every job dir, in one gzipped tar under the work dir
    (``<service ID>/<name>`` inside); prints its path. One transfer brings all, compressed."""
    root = remote_path(services_root(work_dir))
    wanted = " ".join(quote(f"{sid}/{name}") for sid in service_ids for name in names)
    return (f"cd {root} && f=$(mktemp ../.collect.XXXXXX) && set -- && "
            f"for p in {wanted}; do [ -f \"$p\" ] && set -- \"$@\" \"$p\"; done; "
            f"tar czf \"$f\" -- \"$@\" && readlink -f \"$f\"")


def log_bundle_script(work_dir: str, service_ids: list[str], max_bytes: int) -> str:
    """The last ``max_bytes`` of each job's SLURM output (``<service ID>.log`` inside), gzipped in
    one tar under the work dir; prints its path."""
    root = remote_path(services_root(work_dir))
    sids = " ".join(quote(sid) for sid in service_ids)
    return (f"cd {root} && t=$(mktemp -d ../.logs.XXXXXX) && "
            f"for s in {sids}; do for f in \"$s\"/slurm-*.out; do [ -f \"$f\" ] && "
            f"tail -c {int(max_bytes)} \"$f\" > \"$t/$s.log\"; done; done; "
            f"tar czf \"$t.tar.gz\" -C \"$t\" . && rm -rf \"$t\" && readlink -f \"$t.tar.gz\"")


def progress_script(work_dir: str, jobs: dict[str, str], mark: Marker) -> str:
    """For each ``{service ID: job ID}`` of a load client: its progress.json, whether it is done,
    and its job's state (a client whose node failed never writes done.json)."""
    parts = [JOB_STATE_FUNCTION]
    for sid, job_id in jobs.items():
        d = remote_path(job_dir(work_dir, sid))
        parts.append(f"{mark.echo('client', quote(sid))}; cat {d}/{PROGRESS} 2>/dev/null; echo; "
                     f"test -f {d}/{DONE} && {mark.echo('done', quote(sid))}; "
                     f"{mark.echo('job', quote(sid))}; orch_job_state {quote(job_id)}")
    return "\n".join(parts) + "\ntrue"


def runtime_script(work_dir: str, service_ids: list[str], mark: Marker) -> str:
    """runtime.txt and the #SBATCH lines of each job."""
    parts = []
    for sid in service_ids:
        d = remote_path(job_dir(work_dir, sid))
        parts.append(f"{mark.echo('service', quote(sid))}; cat {d}/{RUNTIME} 2>/dev/null; "
                     f"{mark.echo('sbatch', quote(sid))}; grep '^#SBATCH' {d}/{JOB_SCRIPT} 2>/dev/null")
    return "; ".join(parts) + "; true"


def log_tails_script(paths: dict[str, str], lines: int, mark: Marker) -> str:
    """``{key: quoted remote path}`` -> the last lines of each file."""
    return "; ".join(f"{mark.echo('log', quote(key))}; tail -n {int(lines)} {p} 2>&1"
                     for key, p in paths.items()) + "; true"


def follow_script(work_dir: str, service_id: str, job_id: str, offset: int, mark: Marker) -> str:
    """The log's size in bytes, the log from byte ``offset`` up to that size (the echo ends a last line
    that has no newline; the parser's join drops it again), then the job's state. The caller moves
    its offset to the size it was told: bytes, whatever the text decodes to."""
    log = remote_path(f"{job_dir(work_dir, service_id)}/{log_name(job_id)}")
    o = int(offset)
    size_word = '"$size"'
    return (f"{JOB_STATE_FUNCTION}\nsize=$(( $(wc -c < {log} 2>/dev/null || echo {o}) )); "
            f"{mark.echo('log', size_word)}; "
            f"[ \"$size\" -gt {o} ] && tail -c +{o + 1} {log} 2>/dev/null | head -c $((size - {o})); "
            f"echo; {mark.echo('job')}; orch_job_state {quote(job_id)}; true")


def cancel_script(jobs: dict[str, str], mark: Marker, unnumbered: list[str] = ()) -> str:
    """scancel, in one command, each ``{job ID: service ID}`` whose job still carries that service ID as its
    name (so a job ID reused by someone else's job is never cancelled), and each service of ``unnumbered``
    (sbatch gave no answer, so no job ID is known) by its name among the user's jobs; prints what it did."""
    parts = []
    for job_id, sid in jobs.items():
        j, n = quote(job_id), quote(sid)
        parts.append(f"{mark.echo('job', j)}; name=$(squeue -h -j {j} -o %j 2>/dev/null); "
                     f"if [ -z \"$name\" ]; then echo gone; elif [ \"$name\" = {n} ]; then "
                     f"scancel {j} 2>&1 && echo cancelled; else echo \"refused: $name\"; fi")
    for sid in unnumbered:
        n = quote(sid)
        parts.append(f"{mark.echo('job', n)}; ids=$(squeue -h --me --name={n} -o %i 2>/dev/null); "
                     f"if [ -z \"$ids\" ]; then echo gone; else scancel $ids 2>&1 && echo cancelled; fi")
    return "; ".join(parts) + "; true"
