"""Benchmark recipes (recipes/benchmarks/*.yaml): services, monitor, load clients."""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from orchestrator.bench.datasets import FILE_KINDS, MAX_ROWS, DatasetSpec
from orchestrator.analysis.definitions import DEFAULT_PERCENTILES
from orchestrator.bench.kinds import CLIENT_KINDS, KINDS, LLM_KINDS
from orchestrator.analysis.sweep import parse_slo
from orchestrator.bench.points import validate_sweep
from orchestrator.analysis.limits import Validity, parse_validity
from orchestrator.analysis.search import Search, parse_search
from orchestrator.errors import RecipeError
from orchestrator.schema import (
    SchemaViolation,
    check_keys,
    expect_duration,
    expect_int,
    expect_list,
    expect_mapping,
    expect_number,
    expect_pattern,
    expect_str,
    load_yaml_file,
    safe_load,
)
from orchestrator.services.recipes import find_named, parse_resources, recipe_dirs

MAX_CLIENT_SECONDS = 24 * 3600


@dataclass(frozen=True)
class ServiceRef:
    recipe: str | None = None          # recipe name or path, deployed by the session
    service_id: str | None = None      # or an existing service, reused
    alias: str | None = None
    # fields of the recipe this benchmark sets ("environment.VLLM_MODEL", "resources.mem"), as (path, value)
    overrides: tuple = ()
    # or a service the tool did not start: the user's own SLURM job, or a URL (never stopped, never touched)
    job: str | None = None
    url: str | None = None
    port: int | None = None            # the job's API port (default: its monitor recipe's first target's)
    monitor_recipe: str | None = None  # recipes/monitors/: which of the job's ports to scrape
    metrics_path: str | None = None    # where its Prometheus metrics are (default /metrics on its port)
    engine: str | None = None          # vllm, llamacpp, ... (default: from the monitor recipe's name)
    key_file: str | None = None        # a local file holding its API key (sent as a bearer token)

    @property
    def external(self) -> bool:
        """A service the session loads but did not start (``job:`` or ``url:``)."""
        return self.job is not None or self.url is not None

    @property
    def name(self) -> str:
        if self.alias:
            return self.alias
        if self.recipe:
            return Path(self.recipe).stem
        return self.service_id.rsplit("_", 1)[0]


@dataclass(frozen=True)
class ClientSpec:
    kind: str
    target: str
    nodes: int = 1
    concurrency: int = 1
    rate: float | None = None
    duration: float | None = None
    requests: int | None = None
    warmup: float = 0.0
    payload: dict = field(default_factory=dict)
    resources: dict = field(default_factory=dict)
    arrival: str = "constant"                       # constant | poisson | gamma (open loop)
    burstiness: float = 1.0                         # gamma shape: 1 is Poisson, below 1 burstier
    ramp_up: tuple[float, float, float] | None = None   # (from, to requests/s, over seconds)
    dataset: DatasetSpec | None = None
    percentiles: tuple[float, ...] = DEFAULT_PERCENTILES
    slo: dict = field(default_factory=dict)         # per request, seconds: ttft, tpot, e2e (goodput)
    options: dict = field(default_factory=dict)     # the kind's own (redis: ratio, keys, value_bytes, ...)
    models: dict = field(default_factory=dict)      # a LoRA mix: model name -> weight (each request's model)
    model_selection: str = "random"                 # random (by weight, from the seed) | round-robin
    cache: str = "warm"                             # cold: the engine's prefix cache emptied before each point
    part: tuple[int, int] = (0, 1)                  # this job's share of a trace: (index, parts)


@dataclass(frozen=True)
class BenchmarkRecipe:
    name: str
    services: tuple[ServiceRef, ...]
    clients: tuple[ClientSpec, ...]
    monitor_recipe: str = "prometheus"
    scrape_interval: str = "5s"
    description: str = ""
    sweep: dict = field(default_factory=dict)
    slo: dict = field(default_factory=dict)     # parsed: seconds / ratio
    validity: Validity = field(default_factory=Validity)
    search: Search | None = None                # the highest load meeting an SLO, searched (analysis.search)
    source: str = ""
    text: str = ""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


_KEYS = ["name", "description", "services", "monitor", "clients", "sweep", "slo", "validity", "cache", "search"]
_COMMON_CLIENT_KEYS = ["kind", "target", "nodes", "concurrency", "rate", "duration", "requests", "warmup",
                       "resources", "percentiles", "slo", "cache"]

def is_benchmark_file(path: str) -> bool:
    p = Path(path)
    if not p.is_file():
        return False
    try:
        doc = load_yaml_file(p)
    except SchemaViolation:
        return False
    return isinstance(doc, dict) and "benchmark" in doc


def is_benchmark_ref(ref: str, configured=()) -> bool:
    """A benchmark recipe's file, or a name that only a benchmark recipe has (a service recipe's name
    wins: ``--recipe vllm`` is the service)."""
    if is_benchmark_file(ref):
        return True
    if Path(ref).suffix in (".yaml", ".yml") or "/" in ref:
        return False
    def found(kind: str) -> bool:
        return any((d / f"{ref}{ext}").exists() for d in recipe_dirs(kind, configured) for ext in (".yaml", ".yml"))
    return not found("services") and found("benchmarks")


def find_benchmark(name_or_path: str, configured=()) -> Path:
    return find_named(name_or_path, recipe_dirs("benchmarks", configured), "benchmark")


def load_benchmark(name_or_path: str, configured=()) -> BenchmarkRecipe:
    path = find_benchmark(name_or_path, configured)
    return load_benchmark_text(path.read_text(), str(path))


def load_benchmark_text(text: str, source: str) -> BenchmarkRecipe:
    import yaml
    try:
        try:
            raw = safe_load(text)
        except yaml.YAMLError as exc:
            raise SchemaViolation("", f"malformed YAML: {str(exc).splitlines()[0]}") from None
        return parse_benchmark(raw, source, text)
    except SchemaViolation as exc:
        raise RecipeError(f"{source}: {exc}" if exc.path else f"{source}: {exc.message}") from None


def _seconds(value, path: str) -> float:
    return expect_duration(value, path, 0, MAX_CLIENT_SECONDS)


_EXTERNAL_KEYS = ["name", "job", "url", "port", "monitor_recipe", "metrics_path", "engine", "key_file"]


def _external(raw: dict, path: str) -> ServiceRef:
    """``{name, job: 12345, monitor_recipe: ...}`` or ``{name, url: http://node:port, engine, key_file}``."""
    check_keys(raw, _EXTERNAL_KEYS, path, required=("name",))
    if (raw.get("job") is None) == (raw.get("url") is None):
        raise SchemaViolation(path, "expected one of job (your SLURM job's ID) or url (http://host:port)")
    name = expect_str(raw["name"], f"{path}.name")
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,39}", name):
        raise SchemaViolation(f"{path}.name", f"expected lower-case letters, digits and - (it names the service "
                                              f"in the report and the clients' target), got {name!r}")
    job = str(raw["job"]) if raw.get("job") is not None else None
    if job is not None and not re.fullmatch(r"\d+(_\d+)?", job):
        raise SchemaViolation(f"{path}.job", f"expected a SLURM job ID such as 12345, got {raw['job']!r}")
    url = expect_str(raw.get("url"), f"{path}.url", optional=True)
    if url is not None:
        from orchestrator.monitoring.targets import parse_target
        from orchestrator.errors import OrchestratorError
        try:
            spec = parse_target(url.rstrip("/"))
        except OrchestratorError as exc:
            raise SchemaViolation(f"{path}.url", str(exc)) from None
        if spec.host is None or not url.startswith(("http://", "https://")):
            raise SchemaViolation(f"{path}.url", f"expected http(s)://host:port, got {url!r}")
    port = expect_int(raw["port"], f"{path}.port", 1, 65535) if raw.get("port") is not None else None
    if job is not None and port is None and raw.get("monitor_recipe") is None:
        raise SchemaViolation(path, "a job needs its API port: port, or a monitor_recipe whose first target names it")
    mpath = expect_str(raw.get("metrics_path"), f"{path}.metrics_path", optional=True)
    if mpath is not None and not mpath.startswith("/"):
        raise SchemaViolation(f"{path}.metrics_path", f"expected a path starting with /, got {mpath!r}")
    return ServiceRef(alias=name, job=job, url=url, port=port,
                      monitor_recipe=expect_str(raw.get("monitor_recipe"), f"{path}.monitor_recipe", optional=True),
                      metrics_path=mpath, engine=expect_str(raw.get("engine"), f"{path}.engine", optional=True),
                      key_file=expect_str(raw.get("key_file"), f"{path}.key_file", optional=True))


def _service(raw, i: int) -> ServiceRef:
    path = f"benchmark.services[{i}]"
    raw = expect_mapping(raw, path)
    if "job" in raw or "url" in raw:
        return _external(raw, path)
    check_keys(raw, ["recipe", "service_id", "as", "environment", "resources"], path)
    if (raw.get("recipe") is None) == (raw.get("service_id") is None):
        raise SchemaViolation(path, "expected exactly one of recipe (deploy), service_id (reuse), job (your own "
                                    "SLURM job) or url (a service at an address)")
    overrides = []
    for section in ("environment", "resources"):   # another model, more memory: without copying the recipe
        if section not in raw:
            continue
        if raw.get("service_id") is not None:
            raise SchemaViolation(f"{path}.{section}", "a reused service runs as it was started: only a recipe "
                                                       "the session deploys takes overrides")
        for key, value in expect_mapping(raw[section], f"{path}.{section}").items():
            if not isinstance(key, str) or isinstance(value, (dict, list)):
                raise SchemaViolation(f"{path}.{section}.{key}", f"expected a scalar value, got {value!r}")
            overrides.append((f"{section}.{key}", value))
    return ServiceRef(recipe=expect_str(raw.get("recipe"), f"{path}.recipe", optional=True),
                      service_id=expect_str(raw.get("service_id"), f"{path}.service_id", optional=True),
                      alias=expect_str(raw.get("as"), f"{path}.as", optional=True), overrides=tuple(overrides))


def _client(raw, i: int, names: list[str], cache: str = "warm") -> ClientSpec:
    path = f"benchmark.clients[{i}]"
    raw = expect_mapping(raw, path)
    kind = raw.get("kind")
    if kind not in CLIENT_KINDS:
        raise SchemaViolation(f"{path}.kind", f"expected one of {', '.join(CLIENT_KINDS)}, got {kind!r}")
    k = KINDS[kind]
    check_keys(raw, _COMMON_CLIENT_KEYS + list(k.keys) + (["models", "model_selection"] if k.tokens else []), path,
               required=("kind", "target"))
    target = expect_str(raw["target"], f"{path}.target")
    if target not in names:
        raise SchemaViolation(f"{path}.target", f"expected a service of this benchmark ({', '.join(names)}), got {target!r}")
    for theirs, ours in k.aliases:   # a tool's own word for one of ours (pgbench's clients: its connections)
        if theirs in raw:
            if ours in raw:
                raise SchemaViolation(f"{path}.{theirs}", f"expected {theirs} or {ours} (the same thing), not both")
            raw = {**raw, ours: raw[theirs]}
    dataset = _dataset(raw.get("dataset"), f"{path}.dataset")
    if raw.get("duration") is None and raw.get("requests") is None and not k.duration_free \
            and not (dataset and dataset.timed):
        raise SchemaViolation(path, "expected duration or requests (a load is always bounded)")
    if dataset and dataset.timed:
        for key in ("rate", "arrival", "ramp_up"):
            if raw.get(key) is not None:
                raise SchemaViolation(f"{path}.{key}", "a trace is sent at its own times (scaled by dataset.speedup): "
                                      f"a {key} beside it is refused")
    if dataset and dataset.conversations and (raw.get("rate") is not None or raw.get("ramp_up") is not None):
        raise SchemaViolation(f"{path}.rate", "a multiturn client slot carries one conversation at a time: set "
                              "concurrency (conversations at once) and dataset.think_time, not a rate")
    models = _models(raw.get("models"), f"{path}.models")
    if models and kind not in LLM_KINDS:
        raise SchemaViolation(f"{path}.models", f"a {kind} client has no model to choose")
    if models and "model" in (raw.get("payload") or {}):
        raise SchemaViolation(f"{path}.models", "expected models (a mix) or payload.model (one model), not both")
    selection = raw.get("model_selection", "random")
    if selection not in ("random", "round-robin"):
        raise SchemaViolation(f"{path}.model_selection", f"expected random or round-robin, got {selection!r}")
    cache = raw.get("cache", cache)
    if cache not in ("cold", "warm"):
        raise SchemaViolation(f"{path}.cache", f"expected cold or warm, got {cache!r}")
    if k.needs_requests and raw.get("requests") is None:
        raise SchemaViolation(f"{path}.requests", f"a {kind} client is bounded by a request count: requests is needed")
    payload = expect_mapping(raw.get("payload") or {}, f"{path}.payload")
    if k.ships_payload:
        from orchestrator.oncluster.formats import payload_problems
        problems = payload_problems(kind, payload)
        if problems:
            field, _, why = problems[0].partition(": ")
            raise SchemaViolation(f"{path}.payload.{field.split(' ')[0]}", f"a {kind} client cannot honour it: {why}")
    resources = expect_mapping(raw.get("resources") or {}, f"{path}.resources")
    # checked like a service's, so "4x" is refused here, not by int() after the services are up
    parse_resources(resources, f"{path}.resources",
                    ["partition", "cpus_per_task", "mem", "time", "account", "qos", "nodelist"])
    arrival = raw.get("arrival", "constant")
    if arrival not in ("constant", "poisson", "gamma"):
        raise SchemaViolation(f"{path}.arrival", f"expected constant, poisson or gamma, got {arrival!r}")
    ramp = _ramp(raw.get("ramp_up"), f"{path}.ramp_up")
    if (arrival != "constant" or ramp) and raw.get("rate") is None and not ramp:
        raise SchemaViolation(f"{path}.rate", f"arrival: {arrival} is an open loop: a rate (requests/s) is needed")
    percentiles = tuple(expect_number(v, f"{path}.percentiles[{j}]", 0.001) for j, v in
                        enumerate(expect_list(raw.get("percentiles", list(DEFAULT_PERCENTILES)), f"{path}.percentiles")))
    if any(p >= 100 for p in percentiles) or not percentiles:
        raise SchemaViolation(f"{path}.percentiles", "expected percentiles between 0 and 100, such as [50, 90, 99]")
    slo_raw = expect_mapping(raw.get("slo") or {}, f"{path}.slo")
    check_keys(slo_raw, ["ttft", "tpot", "e2e"], f"{path}.slo")
    slo = {k: _seconds(v, f"{path}.slo.{k}") for k, v in slo_raw.items()}
    if kind not in LLM_KINDS and set(slo) - {"e2e"}:
        raise SchemaViolation(f"{path}.slo", f"a {kind} client has no tokens: only e2e applies, got "
                              + ", ".join(sorted(set(slo) - {"e2e"})))
    spec = ClientSpec(
        options=k.parse(raw, path),
        arrival=arrival, burstiness=expect_number(raw.get("burstiness", 1.0), f"{path}.burstiness", 0.001),
        ramp_up=ramp, dataset=dataset, percentiles=percentiles, slo=slo, models=models, model_selection=selection,
        cache=cache,
        kind=kind, target=target, nodes=expect_int(raw.get("nodes", 1), f"{path}.nodes", 1, 64),
        concurrency=expect_int(raw.get("concurrency", 1), f"{path}.concurrency", 1, 4096),
        rate=None if raw.get("rate") is None else expect_number(raw["rate"], f"{path}.rate", 0.001),
        duration=None if raw.get("duration") is None else _seconds(raw["duration"], f"{path}.duration"),
        requests=None if raw.get("requests") is None else expect_int(raw["requests"], f"{path}.requests", 1, 10_000_000),
        warmup=_seconds(raw.get("warmup", 0), f"{path}.warmup"), payload=payload, resources=resources)
    k.check(spec, path)
    return spec


def _ramp(raw, path: str) -> tuple[float, float, float] | None:
    if raw is None:
        return None
    raw = expect_mapping(raw, path)
    check_keys(raw, ["from", "to", "over"], path, required=("from", "to", "over"))
    return (expect_number(raw["from"], f"{path}.from", 0.001), expect_number(raw["to"], f"{path}.to", 0.001),
            max(_seconds(raw["over"], f"{path}.over"), 0.001))


def _stats(raw, path: str, default: float) -> tuple[float, float]:
    if raw is None:
        return (default, 0.0)
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return (expect_number(raw, path, 1), 0.0)
    raw = expect_mapping(raw, path)
    check_keys(raw, ["mean", "stddev"], path, required=("mean",))
    return (expect_number(raw["mean"], f"{path}.mean", 1), expect_number(raw.get("stddev", 0), f"{path}.stddev", 0))


_DATASET_KEYS = {
    "synthetic": ("input_tokens", "output_tokens", "seed"),
    "sharegpt": ("path", "seed"),
    "prefix": ("prefixes", "prefix_tokens", "suffix_tokens", "output_tokens", "seed"),
    "multiturn": ("turns", "input_tokens", "output_tokens", "think_time", "path", "seed"),
    "trace": ("path", "speedup", "block_tokens", "seed"),
    "prompts": ("path",),
}


def _dataset(raw, path: str) -> DatasetSpec | None:
    if raw is None:
        return None
    raw = expect_mapping(raw, path)
    kind = raw.get("kind", "synthetic")
    if kind not in _DATASET_KEYS:
        raise SchemaViolation(f"{path}.kind", f"expected one of {', '.join(_DATASET_KEYS)}, got {kind!r}")
    check_keys(raw, ["kind", *_DATASET_KEYS[kind]], path)
    if kind in FILE_KINDS and not raw.get("path"):
        what = {"sharegpt": "a ShareGPT-format JSON file", "trace": "a JSONL trace (timestamp in ms, input_length, "
                "output_length, hash_ids)", "prompts": 'a JSONL file of {"prompt": ..., "output_tokens": N}'}[kind]
        raise SchemaViolation(f"{path}.path", f"expected the path of {what}")
    speedup = expect_number(raw.get("speedup", 1.0), f"{path}.speedup", 0.001)
    return DatasetSpec(kind=kind, input_tokens=_stats(raw.get("input_tokens"), f"{path}.input_tokens", 64),
                       output_tokens=_stats(raw.get("output_tokens"), f"{path}.output_tokens",
                                            16 if kind == "prefix" else 32),
                       seed=expect_int(raw.get("seed", 0), f"{path}.seed", 0),
                       path=expect_str(raw.get("path"), f"{path}.path", optional=True),
                       prefixes=expect_int(raw.get("prefixes", 1), f"{path}.prefixes", 1, MAX_ROWS),
                       prefix_tokens=expect_int(raw.get("prefix_tokens", 256), f"{path}.prefix_tokens", 1, 1_000_000),
                       suffix_tokens=expect_int(raw.get("suffix_tokens", 32), f"{path}.suffix_tokens", 0, 1_000_000),
                       turns=expect_int(raw.get("turns", 4), f"{path}.turns", 1, 1000),
                       think_time=_seconds(raw.get("think_time", 0), f"{path}.think_time"),
                       speedup=speedup,
                       block_tokens=expect_int(raw.get("block_tokens", 512), f"{path}.block_tokens", 1, 1_000_000))


def _models(raw, path: str) -> dict[str, float]:
    """``models: {name: weight}`` (a LoRA mix: each request's ``model`` drawn by weight), or a list of
    names (equal weights)."""
    if raw is None:
        return {}
    if isinstance(raw, list):
        raw = {expect_str(v, f"{path}[{i}]"): 1 for i, v in enumerate(raw)}
    raw = expect_mapping(raw, path)
    if not raw:
        raise SchemaViolation(path, "expected at least one model, e.g. {base: 0.5, adapter-a: 0.5}")
    out = {}
    for name, weight in raw.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0 \
                or not math.isfinite(weight):
            raise SchemaViolation(f"{path}.{name}", f"expected a positive weight (a number above 0), got {weight!r}")
        out[str(name)] = float(weight)
    return out


def parse_benchmark(raw, source: str = "", text: str = "") -> BenchmarkRecipe:
    top = expect_mapping(raw, "")
    check_keys(top, ["benchmark"], "", required=("benchmark",))
    b = expect_mapping(top["benchmark"], "benchmark")
    check_keys(b, _KEYS, "benchmark", required=("name", "services", "clients"))
    name = expect_pattern(b["name"], "benchmark.name", lambda v: bool(re.fullmatch(r"[a-z0-9][a-z0-9-]{0,39}", v)),
                          "lowercase letters, digits and '-'")
    services = tuple(_service(s, i) for i, s in enumerate(expect_list(b["services"], "benchmark.services")))
    if not services:
        raise SchemaViolation("benchmark.services", "expected at least one service")
    names = [s.name for s in services]
    cache = b.get("cache", "warm")
    if cache not in ("cold", "warm"):
        raise SchemaViolation("benchmark.cache", f"expected cold or warm, got {cache!r}")
    clients = tuple(_client(c, i, names, cache)
                    for i, c in enumerate(expect_list(b["clients"], "benchmark.clients")))
    if not clients:
        raise SchemaViolation("benchmark.clients", "expected at least one client")
    search = _search(b.get("search"), b.get("sweep"), clients)
    if search and search.goodput:
        # the share of requests meeting the search's per-request limits (slo_attainment) is counted by
        # the clients' own per-request SLO: the search's limits are theirs for this session
        clients = tuple(replace(c, slo={**c.slo, **search.per_request}) for c in clients)
    mon = expect_mapping(b.get("monitor") or {}, "benchmark.monitor")
    check_keys(mon, ["recipe", "scrape_interval"], "benchmark.monitor")
    interval = str(mon.get("scrape_interval", "5s"))
    _seconds(interval, "benchmark.monitor.scrape_interval")
    return BenchmarkRecipe(
        name=name, services=services, clients=clients,
        monitor_recipe=expect_str(mon.get("recipe", "prometheus"), "benchmark.monitor.recipe"),
        scrape_interval=interval, description=str(b.get("description") or ""),
        sweep=validate_sweep(expect_mapping(b.get("sweep") or {}, "benchmark.sweep"), names),
        slo=_slo(b.get("slo")), validity=parse_validity(b.get("validity"), "benchmark.validity"),
        search=search, source=source, text=text)


def _search(raw, sweep, clients) -> Search | None:
    search = parse_search(raw)
    if search is None:
        return None
    if sweep:
        raise SchemaViolation("benchmark.search", "expected a search or a sweep, not both (a search chooses its "
                              "own points)")
    if search.field == "rate" and any(c.rate is None and not c.ramp_up for c in clients):
        raise SchemaViolation("benchmark.search.rate", "a search over rate needs open-loop clients: give each "
                              "client a rate (the search sets it at each point)")
    if any(c.dataset and c.dataset.timed for c in clients):
        raise SchemaViolation("benchmark.search", "a trace is sent at its own times: search over its speedup is "
                              "not offered; replay it at several dataset.speedup values instead")
    return search


def _slo(raw) -> dict:
    try:
        return parse_slo(expect_mapping(raw or {}, "benchmark.slo"))
    except RecipeError as exc:
        path, _, msg = str(exc).partition(": ")
        raise SchemaViolation(path, msg) from None
