"""`doctor`: is this cluster usable by the tool? One SSH connection, one command.

The remote side is one shell script whose sections are delimited by markers (``cluster.remote``)
``parse_report`` (pure) turns them into checks, each with a fix.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.cluster.remote import Marker, by_name
from orchestrator.cluster.shell import path as remote_path
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


def doctor_script(work_dir: str, mark: Marker) -> str:
    wd = remote_path(work_dir)
    tools = " ".join(list(CLUSTER_TOOLS) + ["singularity"])
    return "\n".join([
        mark.echo("slurm"),
        f"for c in {' '.join(SLURM_COMMANDS)}; do command -v $c >/dev/null 2>&1 && echo \"$c ok\" || echo \"$c missing\"; done",
        mark.echo("sinfo"),
        f"{SINFO_NODES_COMMAND} 2>&1; echo \"rc=$?\"",
        mark.echo("workdir"),
        f"mkdir -p {wd} 2>&1 && t=$(mktemp {wd}/.doctor.XXXXXX 2>&1) && rm -f \"$t\" && echo writable; echo {wd}",
        mark.echo("tools"),
        f"for c in {tools}; do p=$(command -v $c 2>/dev/null) && echo \"$c $p\" || echo \"$c -\"; done",
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
    return checks


def run_doctor(transport, work_dir: str) -> list[Check]:
    try:
        mark = Marker()
        result = transport.run(doctor_script(work_dir, mark), timeout=60)
    except TransportError as exc:
        skipped = ["slurm commands", "partitions/nodes", "remote work dir", *CLUSTER_TOOLS]
        return [Check("ssh", False, str(exc), "see the message: fix the SSH settings in config.yaml"),
                *(Check(name, False, "not checked: no SSH connection", required=False) for name in skipped)]
    ssh = Check("ssh", True, f"{transport.description}: connected, host key trusted")
    return [ssh, *parse_report(result.stdout, work_dir, mark)]
