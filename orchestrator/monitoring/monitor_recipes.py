"""Monitor recipes in seed 000's format (``recipes/monitors/*.yml``): which ports of a job to scrape,
and the Prometheus that scrapes them (pure but for reading the files).

    name: vllm-monitor
    targets: [{name: vllm-llm, port: 8000, metrics_path: /metrics}]
    prometheus: {scrape_interval: 15s, retention_time: 24h, partition: cpu,
                 resources: {cpu_cores: 2, memory_gb: 4, gpu_count: 0}}

``monitor start --recipe vllm-monitor --targets 12345`` scrapes each target's port on the node of
job 12345, a job the tool did not start; the Prometheus is the packaged ``prometheus`` service
recipe with this recipe's settings.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from orchestrator.errors import RecipeError
from orchestrator.services.recipes import TargetSpec
from orchestrator.schema import (
    SchemaViolation,
    check_keys,
    expect_int,
    expect_list,
    expect_mapping,
    expect_str,
    safe_load,
)
from orchestrator.times import DURATION_RE

_KEYS = ["name", "description", "targets", "prometheus"]
_TARGET_KEYS = ["name", "port", "metrics_path"]
_PROMETHEUS_KEYS = ["enabled", "image", "scrape_interval", "retention_time", "port", "partition", "resources"]
_RESOURCE_KEYS = ["cpu_cores", "memory_gb", "gpu_count"]
SUFFIXES = (".yml", ".yaml")


@dataclass(frozen=True)
class MonitorTarget:
    name: str
    port: int
    metrics_path: str = "/metrics"


@dataclass(frozen=True)
class MonitorRecipe:
    name: str
    description: str
    targets: tuple[MonitorTarget, ...]
    scrape_interval: str | None = None
    retention_time: str | None = None
    port: int | None = None
    partition: str | None = None
    cpu_cores: int | None = None
    memory_gb: int | None = None
    gpu_count: int | None = None
    image: str | None = None
    source: str = ""

    def specs(self, job_id: str) -> list[TargetSpec]:
        """Each of the recipe's targets on job ``job_id``."""
        return [TargetSpec(job_id=job_id, port=t.port, metrics_path=t.metrics_path, job_name=t.name)
                for t in self.targets]

    def prometheus(self, base):
        """The ``prometheus`` service recipe (``base``) with this recipe's settings."""
        res = base.resources
        res = replace(res, partition=self.partition or res.partition,
                      cpus_per_task=self.cpu_cores or res.cpus_per_task,
                      mem=f"{self.memory_gb}G" if self.memory_gb else res.mem,
                      gpus=self.gpu_count if self.gpu_count is not None else res.gpus)
        changes: dict[str, Any] = {"resources": res, "description": self.description or base.description}
        if self.scrape_interval:
            changes["scrape_interval"] = self.scrape_interval
        if self.retention_time:
            changes["retention_time"] = self.retention_time
        if self.port:
            changes["ports"] = (self.port,)
        if self.image:
            from orchestrator.services.recipes import Container
            changes["container"] = Container(docker_source=self.image,
                                             image_path=f"$HOME/containers/{self.name}.sif")
        return replace(base, **changes)


def _duration(value: Any, path: str) -> str | None:
    text = expect_str(value, path, optional=True)
    if text is not None and not DURATION_RE.match(text):
        raise SchemaViolation(path, f"expected a duration such as 15s, 5m or 24h, got {text!r}")
    return text


def parse_monitor_recipe(doc: Any, source: str) -> MonitorRecipe:
    """A monitor recipe document (a mapping, as read from YAML or given from Python)."""
    try:
        doc = expect_mapping(doc, "")
        check_keys(doc, _KEYS, "", required=("name", "targets"))
        name = expect_str(doc["name"], "name")
        targets = []
        for i, raw in enumerate(expect_list(doc["targets"], "targets")):
            path = f"targets[{i}]"
            raw = expect_mapping(raw, path)
            check_keys(raw, _TARGET_KEYS, path, required=("name", "port"))
            mpath = expect_str(raw.get("metrics_path", "/metrics"), f"{path}.metrics_path")
            if not mpath.startswith("/"):
                raise SchemaViolation(f"{path}.metrics_path", f"expected a path starting with /, got {mpath!r}")
            targets.append(MonitorTarget(expect_str(raw["name"], f"{path}.name"),
                                         expect_int(raw["port"], f"{path}.port", 1, 65535), mpath))
        if not targets:
            raise SchemaViolation("targets", "expected at least one target (name, port, metrics_path)")
        prom = expect_mapping(doc.get("prometheus") or {}, "prometheus")
        check_keys(prom, _PROMETHEUS_KEYS, "prometheus")
        if prom.get("enabled", True) is not True:
            raise SchemaViolation("prometheus.enabled", "this recipe's Prometheus is switched off (enabled: "
                                  "false): a monitor recipe starts one; remove the key or set it to true")
        res = expect_mapping(prom.get("resources") or {}, "prometheus.resources")
        check_keys(res, _RESOURCE_KEYS, "prometheus.resources")
        return MonitorRecipe(
            name=name, description=expect_str(doc.get("description", ""), "description") or "",
            targets=tuple(targets),
            scrape_interval=_duration(prom.get("scrape_interval"), "prometheus.scrape_interval"),
            retention_time=_duration(prom.get("retention_time"), "prometheus.retention_time"),
            port=expect_int(prom["port"], "prometheus.port", 1, 65535) if "port" in prom else None,
            partition=expect_str(prom.get("partition"), "prometheus.partition", optional=True),
            cpu_cores=expect_int(res["cpu_cores"], "prometheus.resources.cpu_cores", 1) if "cpu_cores" in res else None,
            memory_gb=expect_int(res["memory_gb"], "prometheus.resources.memory_gb", 1) if "memory_gb" in res else None,
            gpu_count=expect_int(res["gpu_count"], "prometheus.resources.gpu_count", 0) if "gpu_count" in res else None,
            image=expect_str(prom.get("image"), "prometheus.image", optional=True), source=source)
    except SchemaViolation as exc:
        raise RecipeError(f"{source}: {exc}") from None


def is_monitor_recipe(doc: Any) -> bool:
    """Seed 000's shape (``targets`` at the top), not a service recipe (``service:``)."""
    return isinstance(doc, dict) and "service" not in doc and "targets" in doc


def monitor_recipe_paths(dirs: list[Path]) -> dict[str, Path]:
    """Every monitor recipe by name, the first directory that has one winning."""
    out: dict[str, Path] = {}
    for d in dirs:
        for f in sorted(d.glob("*")) if d.is_dir() else []:
            if f.suffix in SUFFIXES and f.stem not in out:
                out[f.stem] = f
    return out


def load_monitor_recipe(path: Path) -> MonitorRecipe:
    try:
        doc = safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise RecipeError(f"{path}: cannot read it as YAML: {exc}") from None
    return parse_monitor_recipe(doc, str(path))


def find_monitor_recipe(name_or_path: str, dirs: list[Path]) -> MonitorRecipe | None:
    """The monitor recipe ``name_or_path`` names (a file in seed 000's format, or a name in ``dirs``),
    or None when it names no monitor recipe (it may be a service recipe: ``prometheus``)."""
    p = Path(name_or_path).expanduser()
    if p.suffix in SUFFIXES and p.is_file():
        try:
            doc = safe_load(p.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise RecipeError(f"{p}: cannot read it as YAML: {exc}") from None
        return parse_monitor_recipe(doc, str(p)) if is_monitor_recipe(doc) else None
    found = monitor_recipe_paths(dirs).get(name_or_path)
    return load_monitor_recipe(found) if found else None
