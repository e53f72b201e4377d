"""Render a service recipe into an sbatch script (pure).

Values known only on the compute node at start (the node, an ``auto`` port,
the job dir) are written as shell variables that the script sets before the
service starts: ``{{ port }}`` in a recipe becomes ``${ORCH_PORT}``.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import jinja2

from orchestrator.cluster import jobdir
from orchestrator.config import RemoteConfig, SlurmConfig
from orchestrator.errors import RecipeError
from orchestrator.resources import packaged
from orchestrator.services.recipes import AUTO, SERVICE_EXPORTERS, ServiceRecipe
from orchestrator.templating import render, render_string

_MARK = "\x00"
GPU_EXPORTER = packaged("oncluster", "nvidia_smi_exporter.py")
GATE_PROGRAM = packaged("oncluster", "bearer_proxy.py")
EXPORTER_USER = "orch-exporter"   # the Redis ACL user the exporter logs in as (recipes/services/redis.yaml)


def gated_exporters(recipe: ServiceRecipe) -> list[str]:
    """The exporters that read the service with its credentials: each listens on loopback behind a gate."""
    return [e for e in recipe.exporters if e in SERVICE_EXPORTERS]


def bundle_files(recipe: ServiceRecipe) -> dict[str, bytes]:
    """The files a job ships besides its script and secrets: the recipe's own, and the exporters' gate."""
    files = {name: Path(local).read_bytes() for name, local in recipe.files.items()}
    if gated_exporters(recipe) or recipe.gate is not None:
        files[jobdir.GATE] = GATE_PROGRAM.read_bytes()
    return files


def _runtime_context(nports: int, static: dict) -> dict:
    # gate_port: where a gated server listens on the node's loopback (service.gate)
    ctx = {"node": f"{_MARK}ORCH_NODE{_MARK}", "job_dir": f"{_MARK}ORCH_JOB_DIR{_MARK}",
           "secret_file": f"{_MARK}ORCH_SECRET_FILE{_MARK}", "exporter_user": EXPORTER_USER,
           "exporter_secret_file": f"{_MARK}ORCH_EXPORTER_SECRET_FILE{_MARK}",
           "gate_port": f"{_MARK}ORCH_GATE_PORT{_MARK}", "work_dir": f"{_MARK}ORCH_WORK_DIR{_MARK}",
           "remote_venv": f"{_MARK}ORCH_REMOTE_VENV{_MARK}", **static}
    if nports:
        ctx["port"] = f"{_MARK}ORCH_PORT{_MARK}"
        ctx["ports"] = [f"{_MARK}ORCH_PORT_{i}{_MARK}" for i in range(nports)]
    return ctx


def _segments(text: str, nports: int, field: str, source: str, static: dict | None = None) -> list[tuple[bool, str]]:
    """[(is_variable, text)] for a recipe snippet after Jinja rendering."""
    if _MARK in text:
        # the marker of our own variables: a NUL in the user's text could forge one (`${x:-$(...)}`)
        raise RecipeError(f"{source}: {field}: expected text without NUL characters")
    try:
        rendered = render_string(text, **_runtime_context(nports, static or {}))
    except jinja2.UndefinedError as exc:
        hint = " (service.ports is empty)" if "port" in str(exc) and not nports else ""
        raise RecipeError(f"{source}: {field}: {exc.message}{hint}; available: node, job_dir, "
                          "secret_file, exporter_user, exporter_secret_file, gate_port, work_dir, remote_venv, scrape_interval, retention_time"
                          + (", port, ports[0..%d]" % (nports - 1) if nports else "")) from None
    except jinja2.exceptions.SecurityError as exc:
        raise RecipeError(f"{source}: {field}: not allowed in a recipe: {exc}; only the variables node, job_dir, "
                          "secret_file, exporter_user, exporter_secret_file, gate_port, work_dir, remote_venv, port, ports[i], scrape_interval and retention_time may be used") from None
    except jinja2.TemplateError as exc:
        raise RecipeError(f"{source}: {field}: template error: {exc}") from None
    parts = rendered.split(_MARK)
    return [(i % 2 == 1, p) for i, p in enumerate(parts) if p]


def shell_snippet(text: str, nports: int, field: str, source: str = "", static: dict | None = None) -> str:
    """For a bash command line: variables as ${VAR}, the user's text as written."""
    return "".join("${%s}" % t if var else t for var, t in _segments(text, nports, field, source, static))


def double_quoted(text: str, nports: int, field: str, source: str = "", static: dict | None = None) -> str:
    """For inside "...": the user's text literal, our variables expanded."""
    out = []
    for var, t in _segments(text, nports, field, source, static):
        out.append("${%s}" % t if var else re.sub(r'([\\"$`])', r"\\\1", t))
    return '"' + "".join(out) + '"'


def expand_home_word(path: str) -> str:
    """A path where ~ and $VARS expand on the node, everything else literal."""
    if path.startswith("~/"):
        path = "$HOME/" + path[2:]
    quoted = re.sub(r'([\\"`])', r"\\\1", path)
    # only $NAME and ${NAME} expand: $(...), ${x:-...} and $'...' stay literal text
    quoted = re.sub(r"\$(?!(?:[A-Za-z_][A-Za-z0-9_]*|\{[A-Za-z_][A-Za-z0-9_]*\}))", r"\\$", quoted)
    return '"' + quoted + '"'


@dataclass(frozen=True)
class SbatchOptions:
    job_name: str
    partition: str | None
    account: str | None
    qos: str | None
    time: str | None
    nodes: int
    cpus_per_task: int
    mem: str | None
    gpus: int
    constraint: str | None
    nodelist: str | None = None
    exclusive: bool = False

    def directives(self) -> list[str]:
        # --no-requeue: after a node failure SLURM would otherwise start the job again later, somewhere
        # else, as if nothing happened: a benchmark's service or load client must end and say why instead
        items = [("job-name", self.job_name), ("output", "slurm-%j.out"), ("no-requeue", True), ("nodes", self.nodes),
                 ("ntasks-per-node", 1), ("cpus-per-task", self.cpus_per_task), ("mem", self.mem),
                 ("gres", f"gpu:{self.gpus}" if self.gpus else None), ("time", self.time),
                 ("partition", self.partition), ("account", self.account), ("qos", self.qos),
                 ("constraint", self.constraint), ("nodelist", self.nodelist), ("exclusive", self.exclusive or None)]
        out = []
        for key, value in items:
            if value is None:
                continue
            if re.search(r"\s", str(value)):
                raise RecipeError(f"sbatch --{key} value {value!r} contains whitespace")
            out.append(f"--{key}" if value is True else f"--{key}={value}")
        return out


def sbatch_options(recipe: ServiceRecipe, slurm: SlurmConfig, service_id: str) -> SbatchOptions:
    """Recipe first, then config.yaml (already layered with the SLURM_* variables)."""
    r = recipe.resources
    return SbatchOptions(job_name=service_id, partition=r.partition or slurm.partition,
                         account=r.account or slurm.account, qos=r.qos or slurm.qos,
                         time=r.time or slurm.time, nodes=r.nodes, cpus_per_task=r.cpus_per_task,
                         mem=r.mem, gpus=r.gpus, constraint=r.constraint, nodelist=r.nodelist, exclusive=r.exclusive)


def render_service_script(recipe: ServiceRecipe, slurm: SlurmConfig, service_id: str,
                          remote: RemoteConfig | None = None) -> str:
    """``remote``: config.yaml's remote section, whose paths recipes reach as {{ work_dir }} and
    {{ remote_venv }} (a recipe never hard-codes ~/.orchestrator)."""
    remote = remote or RemoteConfig()
    n = len(recipe.ports)
    src = recipe.source or recipe.name
    known = {"scrape_interval": recipe.scrape_interval, "retention_time": recipe.retention_time}
    env = {k: double_quoted(v, n, f"service.environment.{k}", src, known) for k, v in recipe.environment.items()}
    command = shell_snippet(recipe.command, n, "service.command", src, known)
    metrics = None
    if recipe.metrics:
        port = recipe.metrics.port
        metrics = {"path": recipe.metrics.path,
                   "port_var": f"ORCH_PORT_{port.split(':')[1]}" if isinstance(port, str) else None,
                   "port": port if isinstance(port, int) else None}
    static = {"service_id": service_id, "recipe": recipe.name, "auth": recipe.auth,
              "health_path": recipe.health.path if recipe.health else None,
              "health_port_index": recipe.health.port if recipe.health else None,
              **({"health_tcp": True} if recipe.health and recipe.health.tcp else {})}
    container = recipe.container
    return render(
        "service.sbatch.j2",
        service_id=service_id, recipe=recipe, recipe_sha=recipe.sha256[:16],
        directives=sbatch_options(recipe, slurm, service_id).directives(),
        fixed_ports=[(i, p) for i, p in enumerate(recipe.ports) if p != AUTO],
        auto_vars=[f"ORCH_PORT_{i}" for i, p in enumerate(recipe.ports) if p == AUTO]
        + [f"ORCH_EXPORTER_{e.upper()}_PORT" for e in recipe.exporters]
        + [f"ORCH_EXPORTER_{e.upper()}_BACKEND" for e in gated_exporters(recipe)]
        + (["ORCH_GATE_PORT"] if recipe.gate is not None else []), nports=n,
        exporters=recipe.exporters, auth=recipe.auth, gated=bool(gated_exporters(recipe)) or recipe.gate is not None,
        gate=recipe.gate,
        gate_file=f'"$ORCH_JOB_DIR"/{jobdir.GATE}', exporter_user=EXPORTER_USER,
        exporter_secret_file='"$ORCH_EXPORTER_SECRET_FILE"',
        gpu_exporter_source=GPU_EXPORTER.read_text() if "gpu" in recipe.exporters else "",
        work_dir_word=expand_home_word(remote.work_dir), venv_word=expand_home_word(remote.venv_dir),
        environment=env, command=shlex.quote(command), modules=recipe.modules, metrics=metrics,
        static_json=json.dumps(static), container=container,
        image=expand_home_word(container.image_path) if container else None,
        binds=[expand_home_word(b) for b in container.binds] if container else [],
        gpu=recipe.resources.gpus > 0, binary=_first_word(recipe.command))


def _first_word(command: str) -> str:
    """The program a native command starts (after any VAR=value and `exec`), for runtime.txt."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    if "exec" in words[:-1]:  # `setup && exec server ...`: the server is what runs
        words = words[len(words) - 1 - words[::-1].index("exec") + 1:]
    for w in words:
        if "=" in w.split("/")[0] or w in ("exec", "env"):
            continue
        return re.sub(r"[{}$]", "", w) or "sh"
    return "sh"
