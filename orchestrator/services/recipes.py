"""Service recipes: YAML under recipes/services/, validated into dataclasses.

Errors name the file, the field path and what was expected, and unknown keys
suggest the nearest valid one (``service.resources.parition`` -> 'partition').
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from orchestrator.cluster.jobdir import RESERVED
from orchestrator.config import is_slurm_time
from orchestrator.errors import RecipeError
from orchestrator.resources import RECIPES, packaged
from orchestrator.times import DURATION_RE
from orchestrator.schema import (
    SchemaViolation,
    check_keys,
    expect_duration,
    expect_int,
    expect_list,
    expect_mapping,
    expect_pattern,
    expect_str,
    load_yaml_file,
)

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
MEM_RE = re.compile(r"^\d+[KMGT]$", re.IGNORECASE)


def mem_bytes(mem: str) -> int:
    """A SLURM memory size (``--mem``: no suffix means megabytes) in bytes."""
    unit = mem[-1].upper() if mem[-1].isalpha() else "M"
    return int(mem.rstrip("KMGTkmgt")) * 1024 ** "KMGT".index(unit) * 1024
EXPORTERS = ("node", "gpu", "redis", "postgres")
SERVICE_EXPORTERS = ("redis", "postgres")   # read the service itself on its first port
AUTO = "auto"
# How the service is locked (a cluster is shared): each job gets a random secret, ``secret`` (mode 600) in
# its private job dir, that the recipe's command hands to the server; ``auth`` says how a client shows it.
#   bearer    HTTP ``Authorization: Bearer <secret>`` (vLLM, llama.cpp, Chroma, Qdrant, the stand-in)
#   basic     HTTP basic auth, user ``orch`` (Prometheus's --web.config.file)
#   password  the server's own login (Redis AUTH, PostgreSQL SCRAM): nothing for HTTP probes to send
#   none      open to every user of the cluster: allowed, and every report says so
AUTHS = ("bearer", "basic", "password", "none")
BASIC_USER = "orch"


@dataclass(frozen=True)
class Container:
    docker_source: str
    image_path: str
    runtime: str = "apptainer"
    binds: tuple[str, ...] = ()


@dataclass(frozen=True)
class Resources:
    partition: str | None = None
    nodes: int = 1
    cpus_per_task: int = 1
    mem: str | None = None
    gpus: int = 0
    time: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    nodelist: str | None = None
    exclusive: bool = False          # whole nodes (sbatch --exclusive): no other user's job beside ours


@dataclass(frozen=True)
class Health:
    path: str = "/"                  # HTTP GET answered 2xx/3xx; "" with tcp
    timeout: int = 300
    port: int = 0                    # index into ports
    tcp: bool = False                # ready when the port accepts a connection (Redis, PostgreSQL: no HTTP)


@dataclass(frozen=True)
class Metrics:
    path: str = "/metrics"
    port: int | str = 0              # a fixed port number, or "port:<index>" of ports


@dataclass(frozen=True)
class ServiceRecipe:
    name: str
    command: str
    description: str = ""
    container: Container | None = None
    environment: dict[str, str] = field(default_factory=dict)
    resources: Resources = field(default_factory=Resources)
    ports: tuple[int | str, ...] = ()
    health: Health | None = None
    metrics: Metrics | None = None
    exporters: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()
    monitoring_targets: tuple[TargetSpec, ...] = ()
    scrape_interval: str = "15s"
    retention_time: str = "15d"
    files: dict[str, str] = field(default_factory=dict)   # job-dir file name -> local file
    engine: str | None = None        # an inference engine of engines.py: whose metric names
    auth: str = "none"               # one of AUTHS: how clients show the job's secret
    replicas: int = 1                # copies, each its own job (a session spreads a client's load over them)
    replica_not_ready: str = "stop"  # a replica never ready: stop the session, or measure_others
    # the tool's bearer gate on the first port, the server on {{ gate_port }} of the node's loopback:
    # the paths served without the key (GET only), or None for no gate
    gate: tuple[str, ...] | None = None
    source: str = ""                 # the file it came from
    text: str = ""                   # the YAML as read, for manifests and reruns

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    @property
    def is_monitor(self) -> bool:
        """A Prometheus monitor: its command reads the prometheus.yml the tool renders for its targets,
        so it starts through MonitorsModule.start_monitor, never as a plain service."""
        return "prometheus.yml" in self.command


REPLICA_POLICIES = ("stop", "measure_others")


@dataclass(frozen=True)
class TargetSpec:
    """A monitoring target: a service (by service or job ID), a SLURM job the tool did not start (its
    job ID and a port), or a fixed address."""
    service_id: str | None = None
    host: str | None = None
    job_name: str | None = None
    port: int | None = None
    metrics_path: str | None = None
    job_id: str | None = None            # a job the tool did not start: scraped at its first node
    scheme: str = "http"
    credentials_file: str | None = None  # a local file holding the bearer token this target wants
    labels: tuple = ()                   # (name, value) pairs added to its series (a session's service_id)


_SERVICE_KEYS = ["replicas", "replica_not_ready", "name", "description", "container", "command", "environment",
                 "resources", "ports",
                 "health", "metrics", "exporters", "modules", "monitoring_targets", "scrape_interval",
                 "retention_time", "files", "engine", "launch", "auth", "gate"]
LAUNCHES = ("native", "container")
_TARGET_KEYS = ["service_id", "host", "job_name", "port", "metrics_path"]
_CONTAINER_KEYS = ["docker_source", "image_path", "runtime", "binds"]
_RESOURCE_KEYS = ["partition", "nodes", "cpus_per_task", "mem", "gpus", "time", "account", "qos", "constraint",
                  "nodelist", "exclusive"]
_HEALTH_KEYS = ["path", "timeout", "port", "tcp"]
_METRICS_KEYS = ["path", "port"]


def recipe_dirs(kind: str, configured: Iterable[str | Path] = ()) -> list[Path]:
    """Where a recipe given by name is looked for, in order: ``<dir>/<kind>/`` of each
    directory configured in config.yaml's ``recipe_dirs``, then the recipes shipped in
    the package. Never the current directory: a name must not change meaning with it."""
    return [Path(d).expanduser() / kind for d in configured] + [RECIPES / kind]


def find_named(name_or_path: str, dirs: list[Path], what: str) -> Path:
    """A path as given, else ``<dir>/<name>.yaml`` in the first of ``dirs`` that has it."""
    p = Path(name_or_path).expanduser()
    if p.suffix in (".yaml", ".yml") or "/" in name_or_path:
        if not p.exists():
            raise RecipeError(f"{p}: file not found")
        return p
    for d in dirs:
        for ext in (".yaml", ".yml"):
            if (d / f"{name_or_path}{ext}").exists():
                return d / f"{name_or_path}{ext}"
    known = sorted({f.stem for d in dirs if d.is_dir() for f in d.glob("*.y*ml")})
    import difflib  # only for the error's suggestion
    near = difflib.get_close_matches(name_or_path, known, n=1, cutoff=0.6)
    hint = f"did you mean '{near[0]}'? " if near else ""
    raise RecipeError(f"no {what} named '{name_or_path}'; {hint}known {what}s: {', '.join(known) or 'none'}")


def find_recipe(name_or_path: str, configured: Iterable[str | Path] = ()) -> Path:
    """A path as given, else ``services/<name>.yaml`` in the configured, then the packaged recipe dirs."""
    return find_named(name_or_path, recipe_dirs("services", configured), "recipe")


def load_recipe(name_or_path: str, configured: Iterable[str | Path] = ()) -> ServiceRecipe:
    path = find_recipe(name_or_path, configured)
    try:
        raw = load_yaml_file(path)
        return parse_recipe(raw, source=str(path), text=path.read_text())
    except SchemaViolation as exc:
        raise RecipeError(f"{path}: {exc}" if exc.path else f"{path}: {exc.message}") from None


URL_PATH_RE = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*$")
IMAGE_RE = re.compile(r"^(docker|oras|library|shub|docker-archive|oci-archive)://[A-Za-z0-9._/:@+-]+$")


def _path_str(value, path: str) -> str:
    # it ends up in URLs that curl fetches on the login node and in endpoint.json
    return expect_pattern(value, path, lambda s: bool(URL_PATH_RE.match(s)),
                          "a URL path starting with / (letters, digits and URL punctuation; no quotes or spaces)")


def _container(raw) -> Container | None:
    if raw is None:
        return None
    raw = expect_mapping(raw, "service.container")
    check_keys(raw, _CONTAINER_KEYS, "service.container", required=("docker_source", "image_path"))
    runtime = raw.get("runtime", "apptainer")
    if runtime not in ("apptainer", "singularity"):
        raise SchemaViolation("service.container.runtime", f"expected apptainer or singularity, got {runtime!r}")
    binds = tuple(expect_str(b, f"service.container.binds[{i}]")
                  for i, b in enumerate(expect_list(raw.get("binds", []), "service.container.binds")))
    docker_source = expect_pattern(raw["docker_source"], "service.container.docker_source",
                                   lambda s: bool(IMAGE_RE.match(s)), "an image URI such as docker://vllm/vllm-openai:latest")
    return Container(docker_source=docker_source,
                     image_path=expect_str(raw["image_path"], "service.container.image_path"),
                     runtime=runtime, binds=binds)


def _resources(raw, where: str = "service.resources", keys: list[str] = _RESOURCE_KEYS) -> Resources:
    """Validated SLURM resources (service recipes, and load clients with ``where``/``keys`` of their own)."""
    raw = expect_mapping(raw or {}, where)
    check_keys(raw, keys, where)
    p = where + "."
    mem = raw.get("mem")
    if mem is not None:
        if isinstance(mem, int) and not isinstance(mem, bool) or isinstance(mem, str) and mem.isdigit():
            # SLURM reads a bare --mem number as megabytes: 64 meant as GB would get 64 MB
            raise SchemaViolation(p + "mem", f"expected a size with its unit, like {mem}G or {mem}M (SLURM reads "
                                             f"a bare number as megabytes), got {mem!r}")
        mem = expect_pattern(mem, p + "mem", lambda s: bool(MEM_RE.match(s)), "a size like 4G or 512M")
    time = raw.get("time")
    if time is not None:
        time = expect_pattern(time, p + "time", is_slurm_time, "a SLURM time such as 02:00:00")
    return Resources(
        partition=expect_str(raw.get("partition"), p + "partition", optional=True),
        nodes=expect_int(raw.get("nodes", 1), p + "nodes", 1),
        cpus_per_task=expect_int(raw.get("cpus_per_task", 1), p + "cpus_per_task", 1),
        mem=mem, gpus=expect_int(raw.get("gpus", 0), p + "gpus", 0), time=time,
        account=expect_str(raw.get("account"), p + "account", optional=True),
        qos=expect_str(raw.get("qos"), p + "qos", optional=True),
        constraint=expect_str(raw.get("constraint"), p + "constraint", optional=True),
        nodelist=expect_str(raw.get("nodelist"), p + "nodelist", optional=True),
        exclusive=_bool(raw.get("exclusive", False), p + "exclusive"))


def _bool(value, path: str) -> bool:
    if not isinstance(value, bool):
        raise SchemaViolation(path, f"expected true or false, got {value!r}")
    return value


parse_resources = _resources


def _ports(raw) -> tuple[int | str, ...]:
    ports = []
    for i, v in enumerate(expect_list(raw if raw is not None else [], "service.ports")):
        if v == AUTO:
            ports.append(AUTO)
        else:
            ports.append(expect_int(v, f"service.ports[{i}]", 1, 65535) if not isinstance(v, str)
                         else expect_pattern(v, f"service.ports[{i}]", lambda s: False, "a port number or 'auto'"))
    return tuple(ports)


def _health(raw, nports: int) -> Health | None:
    if raw is None:
        return None
    raw = expect_mapping(raw, "service.health")
    check_keys(raw, _HEALTH_KEYS, "service.health")
    if nports == 0:
        raise SchemaViolation("service.health", "a health probe needs service.ports")
    tcp = raw.get("tcp", False)
    if not isinstance(tcp, bool):
        raise SchemaViolation("service.health.tcp", f"expected true or false, got {tcp!r}")
    if tcp and "path" in raw:
        raise SchemaViolation("service.health", "expected path (an HTTP probe) or tcp: true, not both")
    return Health(path="" if tcp else _path_str(raw.get("path", "/"), "service.health.path"),
                  timeout=math.ceil(expect_duration(raw.get("timeout", 300), "service.health.timeout", 1)),
                  port=expect_int(raw.get("port", 0), "service.health.port", 0, nports - 1), tcp=tcp)


def _metrics(raw, nports: int) -> Metrics | None:
    if raw is None:
        return None
    raw = expect_mapping(raw, "service.metrics")
    check_keys(raw, _METRICS_KEYS, "service.metrics")
    port = raw.get("port")
    if port is None:
        if nports == 0:
            raise SchemaViolation("service.metrics.port", "required when service.ports is empty")
        port = "port:0"
    elif port == AUTO:
        port = "port:0"
    else:
        port = expect_int(port, "service.metrics.port", 1, 65535)
    return Metrics(path=_path_str(raw.get("path", "/metrics"), "service.metrics.path"), port=port)


def parse_target(raw, path: str) -> TargetSpec:
    raw = expect_mapping(raw, path)
    check_keys(raw, _TARGET_KEYS, path)
    if (raw.get("service_id") is None) == (raw.get("host") is None):
        raise SchemaViolation(path, "expected exactly one of service_id or host")
    if raw.get("host") is not None and raw.get("port") is None:
        raise SchemaViolation(f"{path}.port", "required with host")
    job_name = raw.get("job_name")
    if job_name is not None:
        expect_pattern(job_name, f"{path}.job_name", lambda v: bool(re.fullmatch(r"[A-Za-z0-9_.:-]+", v)),
                       "letters, digits, '_', '-', '.' or ':'")
    return TargetSpec(
        service_id=None if raw.get("service_id") is None else str(raw["service_id"]),
        host=expect_str(raw.get("host"), f"{path}.host", optional=True), job_name=job_name,
        port=None if raw.get("port") is None else expect_int(raw["port"], f"{path}.port", 1, 65535),
        metrics_path=None if raw.get("metrics_path") is None else _path_str(raw["metrics_path"], f"{path}.metrics_path"))


def _files(raw, source: str) -> dict[str, str]:
    """``{name-in-job-dir: local path}``; a relative path is looked up beside the
    recipe; ``package:PATH`` names a file shipped in the package (the stand-in, the load client)."""
    out = {}
    for name, local in expect_mapping(raw or {}, "service.files").items():
        path = f"service.files.{name}"
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}", str(name)) or name in RESERVED:
            raise SchemaViolation(path, "expected a plain file name (letters, digits, '_', '-', '.'; not starting "
                                        f"with '.'; no '/') other than {', '.join(RESERVED)}")
        local = expect_str(local, path)
        if local.startswith("package:"):
            # a packaged file only: `package:../../../etc/shadow` must not leave the package
            root = packaged().resolve()
            target = packaged(*local[len("package:"):].split("/")).resolve()
            if root not in target.parents:
                raise SchemaViolation(path, f"expected package:PATH inside the package, got {local}")
            candidates = [target]
        else:
            # only files beside the recipe (or below its folder) are shipped: a recipe from elsewhere
            # must not copy ~/.ssh or /etc to the cluster
            base = Path(source).parent.resolve() if source else Path.cwd().resolve()
            target = (base / Path(local).expanduser()).resolve()
            if base != target and base not in target.parents:
                raise SchemaViolation(path, f"expected a file beside the recipe (in {base}) or package:PATH, "
                                            f"got {local}")
            candidates = [target]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise SchemaViolation(path, f"file not found: {local}")
        out[str(name)] = str(found)
    return out


def _gate(raw, ports: tuple, auth: str) -> tuple[str, ...] | None:
    if raw is None:
        return None
    raw = expect_mapping(raw, "service.gate")
    check_keys(raw, ["open"], "service.gate")
    if not ports:
        raise SchemaViolation("service.gate", "the gate serves the service's first port: service.ports is needed")
    if auth != "bearer":
        raise SchemaViolation("service.gate", f"the gate asks for the job's secret as a bearer key: expected "
                                              f"service.auth: bearer, got {auth!r}")
    return tuple(_path_str(p, f"service.gate.open[{i}]")
                 for i, p in enumerate(expect_list(raw.get("open") or [], "service.gate.open")))


def _engine(value) -> str | None:
    from orchestrator.engines import ENGINES
    if value is None:
        return None
    return expect_pattern(value, "service.engine", lambda v: v in ENGINES, "one of " + ", ".join(ENGINES))


def _duration(value, path: str) -> str:
    return expect_pattern(value, path, lambda v: bool(DURATION_RE.match(v)), "a duration such as 15s, 5m or 15d")


def monitor_defaults() -> dict:
    """The packaged Prometheus recipe's service fields (command, auth, health, ...), for a monitor
    recipe that gives no command of its own."""
    from orchestrator.resources import packaged
    raw = load_yaml_file(packaged("recipes", "services", "prometheus.yaml"))
    return {k: v for k, v in raw["service"].items() if k not in ("name", "description", "monitoring_targets")}


def parse_recipe(raw, source: str = "", text: str = "") -> ServiceRecipe:
    """Validate a parsed YAML document (pure)."""
    top = expect_mapping(raw, "")
    check_keys(top, ["service"], "", required=("service",))
    s = expect_mapping(top["service"], "service")
    if "command" not in s and ("monitoring_targets" in s or s.get("name") == "prometheus"):
        # seed 001's monitor recipes name targets, a container and resources but no command: they are
        # the packaged Prometheus with those fields in place of its own
        s = {**monitor_defaults(), **s}
    check_keys(s, _SERVICE_KEYS, "service", required=("name", "command"))
    name = expect_pattern(s["name"], "service.name", lambda v: bool(NAME_RE.match(v)),
                          "lowercase letters, digits and '-', starting with a letter (max 40)")
    env_raw = expect_mapping(s.get("environment") or {}, "service.environment")
    environment = {}
    for k, v in env_raw.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(k)):
            raise SchemaViolation(f"service.environment.{k}", "expected a shell variable name")
        if isinstance(v, bool) or v is None or isinstance(v, (dict, list)):
            raise SchemaViolation(f"service.environment.{k}", f"expected a string or number, got {v!r}")
        if "\x00" in str(v):
            # a NUL cannot be in an environment variable, and the job script's renderer marks its own
            # variables with it: refused here, whatever else the value holds
            raise SchemaViolation(f"service.environment.{k}", "expected text without NUL characters")
        environment[str(k)] = str(v)
    ports = _ports(s.get("ports"))
    exporters = tuple(expect_list(s.get("exporters", []), "service.exporters"))
    for i, e in enumerate(exporters):
        if e not in EXPORTERS:
            raise SchemaViolation(f"service.exporters[{i}]", f"expected one of {', '.join(EXPORTERS)}, got {e!r}")
        if e in SERVICE_EXPORTERS and not ports:
            raise SchemaViolation(f"service.exporters[{i}]", f"the {e} exporter reads the service on its first "
                                  "port: service.ports is needed")
    modules = tuple(expect_str(m, f"service.modules[{i}]")
                    for i, m in enumerate(expect_list(s.get("modules", []), "service.modules")))
    description = s.get("description", "")
    if description is not None and not isinstance(description, str):
        raise SchemaViolation("service.description", "expected a string")
    container = _container(s.get("container"))
    # one declared field says how the command runs: the same recipe serves natively where the engine is
    # installed (or a module provides it) and from its image where it is not
    launch = s.get("launch", "container" if container else "native")
    if launch not in LAUNCHES:
        raise SchemaViolation("service.launch", f"expected native or container, got {launch!r}")
    if launch == "container" and container is None:
        raise SchemaViolation("service.launch", "launch: container needs a service.container (docker_source, "
                                                "image_path)")
    auth = s.get("auth", "none")
    if auth not in AUTHS:
        raise SchemaViolation("service.auth", f"expected one of {', '.join(AUTHS)}, got {auth!r}")
    return ServiceRecipe(
        name=name, command=expect_str(s["command"], "service.command"), description=description or "",
        container=container if launch == "container" else None, environment=environment,
        resources=_resources(s.get("resources")), ports=ports,
        health=_health(s.get("health"), len(ports)), metrics=_metrics(s.get("metrics"), len(ports)),
        exporters=exporters, modules=modules,
        monitoring_targets=tuple(parse_target(t, f"service.monitoring_targets[{i}]") for i, t in
                                 enumerate(expect_list(s.get("monitoring_targets") or [], "service.monitoring_targets"))),
        scrape_interval=_duration(s.get("scrape_interval", "15s"), "service.scrape_interval"),
        retention_time=_duration(s.get("retention_time", "15d"), "service.retention_time"),
        files=_files(s.get("files"), source), engine=_engine(s.get("engine")), auth=auth,
        replicas=expect_int(s.get("replicas", 1), "service.replicas", 1, 64),
        replica_not_ready=expect_pattern(s.get("replica_not_ready", "stop"), "service.replica_not_ready",
                                         lambda v: v in REPLICA_POLICIES, " or ".join(REPLICA_POLICIES)),
        gate=_gate(s.get("gate"), ports, auth), source=source, text=text)


__all__ = ["ServiceRecipe", "Container", "Resources", "Health", "Metrics", "load_recipe", "parse_recipe",
           "find_recipe"]
