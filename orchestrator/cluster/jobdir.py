"""Job directories on the cluster: their layout, and the shell that reads and writes them.

Every job this tool starts has ``<remote.work_dir>/services/<service ID>/``,
its submit directory, holding:

- ``job.sbatch``: the script as submitted;
- ``slurm-<job ID>.out``: the job's output;
- ``endpoint.json``: where the service listens (node, ports, metrics, exporters),
  written with a JSON encoder by the job before the service starts;
- ``runtime.txt``: binary and version, or image facts (what makes reruns comparable);
- ``secret`` (mode 600): the job's random secret, which locks the service (recipe field ``auth``);
  ``curl.conf``: how curl on the login node shows it (a header or a user), read with ``curl -K``;
  ``web.yml``: Prometheus's basic-auth users (a bcrypt hash of the secret);
  ``exporter_secret`` (mode 600): the Redis exporter's own ACL password; ``gate.py``: the bearer gate
  in front of a gated service and of the redis and postgres exporters;
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
SECRET = "secret"
CURL_CONFIG = "curl.conf"
WEB_CONFIG = "web.yml"
EXPORTER_SECRET = "exporter_secret"   # the Redis exporter's own password (its ACL user's), made on the node
GATE = "gate.py"   # the bearer proxy in front of a gated service (service.gate) and the service exporters
RESERVED = (JOB_SCRIPT, ENDPOINT, SECRET, CURL_CONFIG, WEB_CONFIG, EXPORTER_SECRET, GATE)   # names a recipe's shipped files may not take


def services_root(work_dir: str) -> str:
    return f"{work_dir.rstrip('/')}/{SERVICES}"


def job_dir(work_dir: str, service_id: str) -> str:
    return f"{services_root(work_dir)}/{service_id}"


def log_name(job_id: str) -> str:
    return f"slurm-{job_id}.out"


def file(work_dir: str, service_id: str, name: str) -> str:
    return f"{job_dir(work_dir, service_id)}/{name}"


# -- scripts -----------------------------------------------------------------------------
# The endpoint file is read by a JSON parser on the login node; what it prints are shell-quoted
# assignments. (A python3 start, 20-40 ms: only for a probe that uses them there.)
_ENDPOINT_VARS = """  # endpoint.json is read by a JSON parser; what it prints are shell-quoted assignments (a python3
  # start, 20-40 ms: only for a probe that uses them here)
  eval "$(python3 -c 'import json, shlex, sys
try:
    e = json.load(open(sys.argv[1]))
    ports = [int(p) for p in e.get("ports") or []]
    s = e.get("static") or {}
    hi = s.get("health_port_index") or 0
    v = {"node": str(e["node"]), "ports": ",".join(map(str, ports)), "port": str(ports[0]) if ports else "",
         "hp": str(s.get("health_path") or ""), "hport": str(ports[hi]) if ports and hi < len(ports) else "",
         "htcp": "1" if s.get("health_tcp") else ""}
    print("; ".join(k + "=" + shlex.quote(x) for k, x in v.items()))
except Exception:
    pass' "$E" 2>/dev/null)"
  [ -n "$port" ] && BASE="http://$node:$port"
"""

_HEALTH = """if [ -n "$htcp" ] && [ -n "$hport" ]; then
  # a service without HTTP (Redis, PostgreSQL): ready when its port accepts a connection
  if timeout {timeout} bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$node" "$hport" 2>/dev/null; then
    echo "open tcp://$node:$hport"
  else
    echo "closed tcp://$node:$hport"
  fi
elif [ -n "$hp" ] && [ -n "$hport" ]; then
  code=$(curl -s -o /dev/null -w '%{{http_code}}' --max-time {timeout} "http://$node:$hport$hp")
  echo "$code http://$node:$hport$hp"
fi
"""

_CANCEL = """# scancel only a job of ours (its user is us, its name the service ID) and, where the record knows it,
# the submission it describes ($W: a job of that name submitted again is not it): checked here, before it runs
if [ -n "$ours" ] && { [ -z "$W" ] || [ "$submit" = "$W" ]; }; then
  scancel "$J" 2>&1; echo "rc=$?"
elif [ -n "$ours" ]; then
  echo "resubmitted"
else
  echo "refused"
fi
"""


# A job is ours only when the cluster says so, in the command that acts on it: its user is us and its
# name is the service ID (a job ID is reused after slurmctld's state is reset or MaxJobId wraps, and any
# user may name a job like one of ours). Its job dir, endpoint, log and scancel are reached only then.
# The user and the submit time come before the name, each ended by '|' (neither can hold one): the name,
# anyone's text, is the rest of the line, so it cannot forge them (scontrol's one-line record prints a job's
# name and output path raw, where ` UserId=...` could be written).
_OWNER = """R=$(squeue -h -t all -j "$J" -O 'UserName:|,SubmitTime:|,Name:|' 2>/dev/null | head -n1)
if [ -n "$R" ]; then
  IFS='|' read -r owner submit jname <<< "$R"; jname=${jname%|}
else
  IFS='|' read -r owner submit jname <<< "$(sacct -n -P -X -j "$J" -o User,Submit,JobName 2>/dev/null | head -n1)"
fi
[ -n "$N" ] || N="$jname"
ours=""
if [ -n "$J" ] && [ "$owner" = "$me" ] && [ "$jname" = "$N" ] \\
   && printf '%s\\n' "$N" | grep -Eq '^[a-z][a-z0-9-]*_[0-9a-f]{8}$'; then ours=1; fi
"""

# curl of the login node shows the job's secret from its curl.conf (``-K``: never in argv), when it has one
_CURL = ('curl() { if [ -n "$ours" ] && [ -s "$D/%s" ]; then command curl -K "$D/%s" "$@"; '
         'else command curl "$@"; fi; }' % (CURL_CONFIG, CURL_CONFIG))


def probe_script(work_dir: str, mark: Marker, *, service_id: str | None, job_id: str | None, health: bool = False,
                 log_lines: int = 0, health_timeout: int = 5, then: str = "", cancel: bool = False,
                 submitted: str = "") -> str:
    """One round trip about one service: job ID <-> service ID, job state, endpoint, health, log tail.

    ``then`` is a shell snippet run once the service's endpoint is known, with $BASE
    (http://node:port), $node, $port, $ports and $D (its job dir) set, and ``curl`` showing the
    job's secret. Nothing but the job's state is looked at unless the job is ours (``_OWNER``);
    ``cancel`` runs scancel only then, and only on the submission of ``submitted`` (SLURM's submit time
    as recorded) when it is given.
    Built here rather than from a template: the fast commands (--service-endpoint, logs) would
    otherwise import Jinja2 for it.
    """
    # (``me``: who we are on the login node, asked once, for every lookup and ownership test below)
    out = [JOB_STATE_FUNCTION, f"S={remote_path(services_root(work_dir))}", 'N=""', 'J=""', "me=$(id -un)",
           f"W={quote(submitted)}"]
    if job_id:
        out.append(f"J={quote(job_id)}")
    else:
        name = quote(service_id)
        out += [f"J=$(squeue -h -o %i --name={name} --user=\"$me\" 2>/dev/null | head -n1)",
                f"[ -n \"$J\" ] || J=$(scontrol show job --oneliner 2>/dev/null | grep -F \"JobName=\"{name}\" \" "
                f"| grep -F \" UserId=$me(\" | tail -n1 | sed 's/^JobId=\\([0-9]*\\) .*/\\1/')",
                f"[ -n \"$J\" ] || J=$(sacct -n -P -X -u \"$me\" --name={name} -o JobID 2>/dev/null | tail -n1)"]
    if service_id:
        out.append(f"N={quote(service_id)}")
    out += [_OWNER, mark.echo("ids", '"$J"', '"${ours:-foreign}"', '"${owner:--}"', '"$N"'), mark.echo("job"),
            '[ -n "$J" ] && orch_job_state "$J"',
            'D=""; [ -n "$ours" ] && D="$S/$N"', f'E="$D/{ENDPOINT}"', _CURL,
            'node=""; ports=""; port=""; BASE=""; hp=""; hport=""; htcp=""',
            mark.echo("endpoint"), 'if [ -n "$ours" ] && [ -f "$E" ]; then', '  cat "$E"; echo']
    text = "\n".join(out) + "\n" + (_ENDPOINT_VARS if health or then else "") + "fi\n"
    if health:
        text += mark.echo("health") + "\n" + _HEALTH.format(timeout=int(health_timeout))
    if then:
        text += f'if [ -n "$BASE" ]; then\n{mark.echo("then")}\n{then}\nfi\n'
    if log_lines:
        text += (f"{mark.echo('log')}\n"
                 f'[ -n "$ours" ] && tail -n {int(log_lines)} "$D/{log_name("$J")}" 2>/dev/null\n')
    if cancel:
        text += mark.echo("cancel") + "\n" + _CANCEL
    return text + "true\n"


def submit_script(d: str, precheck: str = "") -> str:
    """Unpack a job bundle (stdin) into the job dir ``d`` (a shell word) and sbatch its script there;
    ``precheck`` runs in the job dir first. Either failing removes the job dir: nothing half-written."""
    check = f"{{ {precheck}; }} && " if precheck else ""
    # the job's files travel on stdin as one compressed archive (a command line has a size limit;
    # a dataset may be megabytes); sbatch runs only when every file was unpacked whole
    # umask 077: the job dir (and any parent made here) is 700, and sbatch passes the umask to the job
    return (f"umask 077; d={d}; mkdir -p \"$d\" && chmod 700 \"$d\" && cd \"$d\" && base64 -d | tar -xzf - "
            f"|| {{ rc=$?; cd / && rm -rf \"$d\"; echo \"writing the job files failed\" >&2; exit $rc; }}\n"
            f"{{ out=$({{ {check}sbatch --parsable {JOB_SCRIPT}; }} 2>&1); rc=$?; "
            f"if [ $rc -ne 0 ]; then cd / && rm -rf \"$d\"; echo \"$out\" >&2; exit $rc; fi; echo \"$out\"; }}")


def write_go_script(work_dir: str, service_ids: list[str]) -> str:
    """The start signal for load clients: the time, written atomically, in each job dir."""
    parts = []
    for sid in service_ids:
        d = remote_path(job_dir(work_dir, sid))
        parts.append(f"date +%s.%N > {d}/{GO}.tmp && mv {d}/{GO}.tmp {d}/{GO}")
    return " && ".join(parts)


# an archive comes back as the command's own output, base64: one round trip, no download and no
# second command to remove it (it is removed whatever happened)
_SEND_ARCHIVE = 'base64 "$a"; rc=$?; rm -rf "$a" "$t"; [ $rc -eq 0 ]'


def bundle_script(work_dir: str, service_ids: list[str], names: list[str]) -> str:
    """Those of the named files that exist, of every job dir, as one gzipped tar (``<service ID>/<name>``
    inside), printed base64. One command brings all, compressed."""
    root = remote_path(services_root(work_dir))
    wanted = " ".join(quote(f"{sid}/{name}") for sid in service_ids for name in names)
    return (f"t=; cd {root} && a=$(mktemp ../.collect.XXXXXX) && set -- && "
            f"for p in {wanted}; do [ -f \"$p\" ] && set -- \"$@\" \"$p\"; done; "
            f"tar czf \"$a\" -- \"$@\" && {_SEND_ARCHIVE}")


def log_bundle_script(work_dir: str, service_ids: list[str], max_bytes: int) -> str:
    """The last ``max_bytes`` of each job's SLURM output (``<service ID>.log`` inside) as one gzipped
    tar, printed base64."""
    root = remote_path(services_root(work_dir))
    sids = " ".join(quote(sid) for sid in service_ids)
    return (f"cd {root} && t=$(mktemp -d ../.logs.XXXXXX) && a=\"$t.tar.gz\" && "
            f"for s in {sids}; do for f in \"$s\"/slurm-*.out; do [ -f \"$f\" ] && "
            f"tail -c {int(max_bytes)} \"$f\" > \"$t/$s.log\"; done; done; "
            f"tar czf \"$a\" -C \"$t\" . && {_SEND_ARCHIVE}")


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


# Another user's job's output, read on the login node: its owner comes from squeue's `UserName` field
# (a user name has no '|': nothing in the job's own text can forge it, as a crafted --output could forge
# `UserId=` in scontrol's one-line record), and the file is opened once, without following a last link and
# without blocking on a FIFO; the open file's owner is checked (fstat: no gap between a check and the read).
# So a job can make us read only a plain file its own user owns, never ours (a job dir's secret).
_FOREIGN_TAIL = r"""import os, pwd, stat, sys
path, owner, lines = sys.argv[1], sys.argv[2].split("|")[0].strip(), int(sys.argv[3])
refused = "(log not read: not a plain file of the job's user)"
try:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
except OSError:
    sys.exit(print(refused))
st = os.fstat(fd)
try:
    name = pwd.getpwuid(st.st_uid).pw_name
except KeyError:
    name = ""
if not owner or name != owner or not stat.S_ISREG(st.st_mode):
    sys.exit(print(refused))
os.lseek(fd, max(0, st.st_size - 262144), os.SEEK_SET)
text = os.read(fd, 262144).decode("utf-8", "replace")
print("\n".join(text.splitlines()[-lines:]))
"""


def log_tails_script(paths: dict[str, str], lines: int, mark: Marker, foreign: dict[str, str] | None = None) -> str:
    """``{key: quoted remote path}`` -> the last lines of each file. A key in ``foreign`` (key -> job ID)
    is another user's job, whose output path that user chose: read only when it is a plain file of that
    job's user, opened as _FOREIGN_TAIL says, so a job cannot make us read our own files into a verdict."""
    parts = []
    for key, p in paths.items():
        tail = f"tail -n {int(lines)} {p} 2>&1"
        if foreign and key in foreign:
            j = quote(foreign[key])
            tail = (f"owner=$(squeue -h -t all -j {j} -O 'UserName:|' 2>/dev/null | head -n1); "
                    f"python3 -c {quote(_FOREIGN_TAIL)} {p} \"$owner\" {int(lines)} 2>&1")
        parts.append(f"{mark.echo('log', quote(key))}; {tail}")
    return "; ".join(parts) + "; true"


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
    (sbatch gave no answer, so no job ID is known) by its name among the user's jobs; prints what it did.
    A job is cancelled only when its user is us too: another user's job of the same name is never touched."""
    parts = ["me=$(id -un)"]
    for job_id, sid in jobs.items():
        j, n = quote(job_id), quote(sid)
        parts.append(f"{mark.echo('job', j)}; name=$(squeue -h -j {j} -o '%j|%u' 2>/dev/null); "
                     f"if [ -z \"$name\" ]; then echo gone; elif [ \"$name\" = {n}\"|$me\" ]; then "
                     f"scancel {j} 2>&1 && echo cancelled; else echo \"refused: $name\"; fi")
    for sid in unnumbered:
        n = quote(sid)
        parts.append(f"{mark.echo('job', n)}; ids=$(squeue -h --me --name={n} -o %i 2>/dev/null); "
                     f"if [ -z \"$ids\" ]; then echo gone; else scancel $ids 2>&1 && echo cancelled; fi")
    return "; ".join(parts) + "; true"
