"""Monitoring targets: from service IDs (via their endpoint.json) to scrape jobs (pure)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from orchestrator.cluster.jobdir import SECRET
from orchestrator.services.probe import Probe, endpoint_hosts
from orchestrator.services.recipes import TargetSpec


@dataclass(frozen=True)
class ResolvedTarget:
    job_name: str
    address: str                 # host:port, as seen from the monitor's node
    metrics_path: str
    labels: dict
    service_id: str | None       # None for a fixed host
    kind: str = "service"        # service | node | gpu | host
    auth: str = ""               # "bearer": scraped with the service job's secret (recipe field auth)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ResolvedTarget":
        return cls(**d)


def targets_from_probe(spec: TargetSpec, probe: Probe) -> list[ResolvedTarget]:
    """The service's metrics endpoint plus the exporters its job started."""
    ep = probe.endpoint or {}
    sid = probe.service_id
    job_name = spec.job_name or sid
    labels = {"service_id": sid, "slurm_job_id": probe.job_id}
    metrics = ep.get("metrics") or {}
    # a locked service's /metrics may want its key (llama.cpp's does); its exporters never do
    auth = "bearer" if (ep.get("static") or {}).get("auth") == "bearer" else ""
    out = []
    port = spec.port or metrics.get("port") or (ep.get("ports") or [None])[0]
    if port is not None and (spec.port or metrics):
        out.append(ResolvedTarget(job_name, f"{ep['node']}:{port}", spec.metrics_path or metrics.get("path", "/metrics"),
                                  labels, sid, auth=auth))
    elif port is not None and spec.metrics_path:
        # the recipe declares no metrics, but the caller named a path to scrape on the service port
        out.append(ResolvedTarget(job_name, f"{ep['node']}:{port}", spec.metrics_path, labels, sid, auth=auth))
    # else: no metrics (Ollama, Redis without its exporter, most HTTP services): nothing to scrape;
    # its exporters below, if any, are still targets
    for kind, eport in (ep.get("exporters") or {}).items():
        # a job across nodes runs a node exporter on each of them (the job script's srun step)
        hosts = endpoint_hosts(ep) if kind == "node" else [ep["node"]]
        for host in hosts:
            out.append(ResolvedTarget(f"{job_name}-{kind}", f"{host}:{eport}", "/metrics",
                                      {**labels, "exporter": kind}, sid, kind))
    return out


def host_target(spec: TargetSpec) -> ResolvedTarget:
    return ResolvedTarget(spec.job_name or spec.host, f"{spec.host}:{spec.port}", spec.metrics_path or "/metrics",
                          {"host": spec.host}, None, "host")


def render_prometheus_config(monitor_id: str, targets: list[ResolvedTarget], scrape_interval: str) -> str:
    jobs: dict[tuple, dict] = {}
    for t in targets:
        # the secret file is relative to prometheus.yml, in the monitor's job dir: a sibling job dir's,
        # readable by the monitor's job because it is the same user's
        secret = f"../{t.service_id}/{SECRET}" if t.auth == "bearer" and t.service_id else None
        job = jobs.setdefault((t.job_name, t.metrics_path, secret),
                              {"job_name": t.job_name, "metrics_path": t.metrics_path, "targets": [],
                               "credentials_file": secret})
        job["targets"].append({"address": t.address, "labels": t.labels})
    from orchestrator.templating import render  # Jinja2: only for commands that write a config
    return render("prometheus.yml.j2", monitor_id=monitor_id, scrape_interval=scrape_interval,
                  jobs=list(jobs.values()))
