"""Monitoring targets: from what a user names (a service, a job the tool did not start, an address)
to scrape jobs (pure)."""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import asdict, dataclass

from orchestrator.cluster.jobdir import SECRET
from orchestrator.errors import OrchestratorError
from orchestrator.services.probe import Probe, endpoint_hosts
from orchestrator.services.recipes import TargetSpec


@dataclass(frozen=True)
class ResolvedTarget:
    job_name: str
    address: str                 # host:port, as seen from the monitor's node
    metrics_path: str
    labels: dict
    service_id: str | None       # None for a fixed host or a job the tool did not start
    kind: str = "service"        # service | node | gpu | host | job
    auth: str = ""               # "bearer": scraped with the service job's secret (recipe field auth)
    scheme: str = "http"
    credentials: str = ""        # a token file shipped into the monitor's job dir (its name there)

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


def host_target(spec: TargetSpec, credentials: str = "") -> ResolvedTarget:
    return ResolvedTarget(spec.job_name or spec.host, f"{spec.host}:{spec.port}", spec.metrics_path or "/metrics",
                          {"host": spec.host, **dict(spec.labels)}, None, "host", scheme=spec.scheme,
                          credentials=credentials)


def job_targets(spec: TargetSpec, node: str, credentials: str = "") -> ResolvedTarget:
    """A job the tool did not start, running on ``node``: its port there."""
    return ResolvedTarget(spec.job_name or f"job-{spec.job_id}", f"{node}:{spec.port}", spec.metrics_path or "/metrics",
                          {"slurm_job_id": spec.job_id, "node": node, **dict(spec.labels)}, None, "job", scheme=spec.scheme,
                          credentials=credentials)


_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
_PATH = re.compile(r"^/[A-Za-z0-9._~/-]*$")


def parse_target(text: str, job_name: str | None = None, credentials_file: str | None = None) -> TargetSpec:
    """What a user names as a target (pure): ``JOBID:PORT`` (a job the tool did not start),
    ``host:port``, ``http(s)://host:port/path``, or a service ID, name or job ID of the tool's own."""
    t = text.strip()
    m = re.fullmatch(r"(\d+(?:_\d+)?):(\d{1,5})", t)
    if m:
        return TargetSpec(job_id=m.group(1), port=_port(m.group(2), text), job_name=job_name,
                          credentials_file=credentials_file)
    if t.startswith(("http://", "https://")):
        u = urllib.parse.urlsplit(t)
        if not u.hostname or not _HOST.match(u.hostname) or u.query or u.fragment or u.username:
            raise OrchestratorError(f"target {text!r}: expected http(s)://host:port/path (no query, no user)")
        path = u.path or "/metrics"
        if not _PATH.match(path):
            raise OrchestratorError(f"target {text!r}: the path may hold letters, digits and . _ ~ / - only")
        try:
            port = u.port or (443 if u.scheme == "https" else 80)
        except ValueError:
            raise OrchestratorError(f"target {text!r}: the port is not a number from 1 to 65535") from None
        return TargetSpec(host=u.hostname, port=port, metrics_path=path, scheme=u.scheme, job_name=job_name,
                          credentials_file=credentials_file)
    m = re.fullmatch(r"([^:/\s]+):(\d+)", t)
    if m:
        if not _HOST.match(m.group(1)):
            raise OrchestratorError(f"target {text!r}: {m.group(1)!r} is not a host name or address")
        return TargetSpec(host=m.group(1), port=_port(m.group(2), text), job_name=job_name,
                          credentials_file=credentials_file)
    if credentials_file:
        raise OrchestratorError(f"target {text!r}: --bearer-file is for addresses and jobs the tool did not "
                                "start; the tool's own services are scraped with their own secret")
    return TargetSpec(service_id=t, job_name=job_name)


def _port(text: str, whole: str) -> int:
    port = int(text)
    if not 1 <= port <= 65535:
        raise OrchestratorError(f"target {whole!r}: the port must be from 1 to 65535")
    return port


def render_prometheus_config(monitor_id: str, targets: list[ResolvedTarget], scrape_interval: str) -> str:
    jobs: dict[tuple, dict] = {}
    for t in targets:
        # the secret file is relative to prometheus.yml, in the monitor's job dir: a sibling job dir's,
        # readable by the monitor's job because it is the same user's
        secret = f"../{t.service_id}/{SECRET}" if t.auth == "bearer" and t.service_id else (t.credentials or None)
        job = jobs.setdefault((t.job_name, t.metrics_path, secret, t.scheme),
                              {"job_name": t.job_name, "metrics_path": t.metrics_path, "targets": [],
                               "credentials_file": secret, "scheme": t.scheme})
        job["targets"].append({"address": t.address, "labels": t.labels})
    from orchestrator.templating import render  # Jinja2: only for commands that write a config
    return render("prometheus.yml.j2", monitor_id=monitor_id, scrape_interval=scrape_interval,
                  jobs=list(jobs.values()))
