"""MonitorsModule: Prometheus as a SLURM job, its targets, and PromQL from the laptop.

A monitor is a service (recipe ``prometheus``) whose prometheus.yml the tool
renders from service IDs. Every query runs as curl on the login node inside a
probe of the monitor, so it is one remote command and needs no local state.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from orchestrator.cluster.shell import heredoc
from orchestrator.cluster.slurm import TERMINAL_STATES
from orchestrator.config import Config
from orchestrator.errors import OrchestratorError, Terminated
from orchestrator.monitoring.promql import (
    QueryResult,
)
from orchestrator.monitoring.queries import REPORT_QUERIES
from orchestrator.monitoring.querying import MonitorQueries
from orchestrator.monitoring.jobtargets import JOB_ID_RE, read_tokens, resolve_targets, token_files
from orchestrator.monitoring.monitor_recipes import (
    MonitorRecipe,
    find_monitor_recipe,
    is_monitor_recipe,
    load_monitor_recipe,
    monitor_recipe_paths,
    parse_monitor_recipe,
)
from orchestrator.monitoring.targets import (
    ResolvedTarget,
    parse_target,
    render_prometheus_config,
    targets_from_probe,
)
from orchestrator.services.servers import ServersModule, ServiceStatus
from orchestrator.state import MonitorRecord, StateStore
from orchestrator.times import DURATION_RE, now_iso, parse_duration

from orchestrator.services.recipes import TargetSpec

if TYPE_CHECKING:
    from orchestrator.services.recipes import ServiceRecipe

Progress = Callable[[str], None]
_ACTIVE_TARGETS = "curl -sS --max-time 20 \"$BASE/api/v1/targets?state=active\""
PROMTOOL_CHECK = "if command -v promtool >/dev/null 2>&1; then promtool check config prometheus.yml; fi"


class MonitorsModule:
    def __init__(self, config: Config, servers: ServersModule):
        self.config = config
        self.servers = servers
        self.store = StateStore(config.state_dir, "monitors")
        self.queries = MonitorQueries(config, servers, self.store)

    # -- targets ------------------------------------------------------------------
    def resolve_targets(self, specs: list[TargetSpec], timeout: float = 600, progress: Progress | None = None,
                        allow_other_users: bool = False) -> list[ResolvedTarget]:
        """Targets to node:port (monitoring/jobtargets.py); what is not running yet is waited for."""
        return resolve_targets(self.servers, specs, timeout, progress, allow_other_users)

    @staticmethod
    def specs(targets: list[str | TargetSpec], monitor_recipe: MonitorRecipe | None = None,
              bearer_file: str | None = None) -> list[TargetSpec]:
        """What the user named, as targets: a job ID with a monitor recipe means the recipe's ports on
        that job; otherwise ``parse_target``'s forms (service, ``JOBID:PORT``, ``host:port``, URL)."""
        out: list[TargetSpec] = []
        for t in targets:
            if isinstance(t, TargetSpec):
                out.append(t)
            elif monitor_recipe is not None and JOB_ID_RE.match(str(t)):
                out += [replace(s, credentials_file=bearer_file) for s in monitor_recipe.specs(str(t))]
            else:
                out.append(parse_target(str(t), credentials_file=bearer_file))
        return out

    def monitor_recipe(self, recipe) -> MonitorRecipe | None:
        """Seed 000's monitor recipe that ``recipe`` names or is (a name in recipes/monitors/, a file in
        its format, or its mapping), else None."""
        if isinstance(recipe, dict):
            return parse_monitor_recipe(recipe, "<dict>") if is_monitor_recipe(recipe) else None
        if isinstance(recipe, str):
            return find_monitor_recipe(recipe, monitor_recipe_dirs(self.config))
        return None

    # -- lifecycle ------------------------------------------------------------------
    def start_monitor(self, recipe: ServiceRecipe | str | dict = "prometheus", targets: list[str | TargetSpec] = (),
                      *, wait: bool = True, timeout: float | None = None, progress: Progress | None = None,
                      scrape_interval: str | None = None, allow_other_users: bool = False,
                      bearer_file: str | None = None) -> str:
        """Deploy Prometheus for the given targets (plus the recipe's monitoring_targets). ``recipe``: a
        service recipe (name, file, mapping, or loaded), or a monitor recipe of seed 000's format, whose
        targets' ports are scraped on each job ID given."""
        mrec = self.monitor_recipe(recipe)
        specs = self.specs(list(targets), mrec, bearer_file)
        if mrec is not None:
            recipe = mrec.prometheus(self.servers.load_recipe("prometheus"))
        elif isinstance(recipe, dict):
            from orchestrator.services.recipes import parse_recipe
            recipe = parse_recipe(recipe if "service" in recipe else {"service": recipe}, "<dict>")
        recipe = self.servers.load_recipe(recipe) if isinstance(recipe, str) else recipe
        if "gpu" in recipe.exporters:
            raise OrchestratorError(f"{recipe.source or recipe.name}: exporters: [gpu] on the monitor is not "
                                    "possible: a GPU exporter must run in the job that holds the GPUs; put "
                                    "exporters: [gpu] on the service recipe instead")
        interval = scrape_interval or recipe.scrape_interval
        if not DURATION_RE.match(str(interval)) or parse_duration(interval) <= 0:
            raise OrchestratorError(f"--scrape-interval: expected a duration such as 5s or 1m, got {interval!r}")
        all_specs = list(recipe.monitoring_targets) + specs
        resolved = self.resolve_targets(all_specs, progress=progress, allow_other_users=allow_other_users)
        tokens = read_tokens(token_files(all_specs))
        exporter_jobs: list[str] = []
        if "node" in recipe.exporters:  # on the services' nodes, not in the monitor's own job
            try:
                resolved += self._node_exporters(resolved, exporter_jobs, progress)
            except BaseException:
                self.servers.cancel_many(exporter_jobs)  # one command; nothing left behind
                raise
        recipe = replace(recipe, exporters=())
        mid = self.servers.new_service_id(recipe)
        config_text = render_prometheus_config(mid, resolved, interval)
        try:
            self.servers.start_service(recipe, service_id=mid, extra_files={"prometheus.yml": config_text, **tokens},
                                       precheck=PROMTOOL_CHECK, progress=progress, labels={"role": "monitor"})
        except BaseException:
            self.servers.cancel_many(exporter_jobs)  # nothing left behind when the monitor itself is refused
            raise
        self.store.update(mid, monitor_id=mid, job_id=self.servers.registry.record(mid).job_id,
                          targets=[t.to_dict() for t in resolved], scrape_interval=interval,
                          retention_time=recipe.retention_time, submitted_at=now_iso(), exporter_jobs=exporter_jobs)
        if wait:
            try:
                self.servers.wait_until_ready(mid, timeout=timeout or (recipe.health.timeout if recipe.health else 300),
                                              progress=progress)
            except (KeyboardInterrupt, Terminated):
                self.servers.cancel_many([mid, *exporter_jobs])  # nothing outlives an interrupted start
                raise
            self.store.update(mid, started_at=now_iso())
        return mid

    def _node_exporters(self, targets: list[ResolvedTarget], started: list[str],
                        progress: Progress | None) -> list[ResolvedTarget]:
        """A node_exporter job pinned to each service node that has none yet; returns their targets."""
        covered = {t.address.rsplit(":", 1)[0] for t in targets if t.kind == "node"}
        hosts = sorted({t.address.rsplit(":", 1)[0] for t in targets if t.kind == "service"} - covered)
        base = self.servers.load_recipe("node-exporter")
        for host in hosts:
            pinned = replace(base, resources=replace(base.resources, nodelist=host))
            started.append(self.servers.start_service(pinned, progress=progress, labels={"role": "exporter"}))
        out = []
        for sid, host in zip(started, hosts):
            self.servers.wait_until_ready(sid, timeout=120, progress=progress)
            out += [replace(t, job_name=f"node-{host}", kind="node", labels={**t.labels, "exporter": "node"})
                    for t in targets_from_probe(TargetSpec(service_id=sid), self.servers.probe(sid))]
        return out

    def stop(self, monitor_id: str) -> ServiceStatus:
        """scancel the monitor and the node exporters it started; its record says when. Raises when the
        monitor cannot be stopped (unknown, not ours)."""
        status = self.servers.stop_service(self.monitor_for(monitor_id))
        rec = self.store.get(status.service_id)
        if rec:
            for sid in rec.get("exporter_jobs") or []:  # the exporters it started go with it
                try:
                    self.servers.stop_service(sid)
                except OrchestratorError:
                    pass
            self.store.update(status.service_id, stopped_at=now_iso())
        return status

    def record(self, monitor_id: str) -> MonitorRecord | None:
        """What local state knows of a monitor, typed; None when it is not tracked here."""
        rec = self.store.get(monitor_id)
        return MonitorRecord.from_dict(monitor_id, rec) if rec is not None else None

    def _record(self, monitor_id: str) -> dict:
        rec = self.store.get(monitor_id)
        if rec is None:
            raise OrchestratorError(f"monitor {monitor_id} is not tracked here (its targets are unknown); "
                                    f"known monitors: {', '.join(self.store.load()) or 'none'}")
        return rec

    def _reload(self, monitor_id: str, targets: list[ResolvedTarget], tokens: dict[str, str] | None = None) -> None:
        """Re-render prometheus.yml on the cluster, check it, hot-reload: one remote command (new
        targets' token files travel on its stdin, never on a command line)."""
        rec = self._record(monitor_id)
        text = render_prometheus_config(monitor_id, targets, rec["scrape_interval"])
        from orchestrator.services.servers import job_bundle
        unpack = "base64 -d | tar -xzf - && " if tokens else ""
        snippet = ('cd "$D" && ' + unpack + heredoc("prometheus.yml.new", text)
                   + 'sed -i "s/__ORCH_SELF_PORT__/$port/" prometheus.yml.new\n'
                   + "if command -v promtool >/dev/null 2>&1 && ! promtool check config prometheus.yml.new "
                     "> promtool.out 2>&1; then echo promtool-failed; cat promtool.out; rm -f prometheus.yml.new\n"
                   + "else mv prometheus.yml.new prometheus.yml && "
                     "curl -sS -X POST -o /dev/null -w 'reload=%{http_code}\\n' --max-time 30 \"$BASE/-/reload\"; fi")
        p = self.servers.probe(monitor_id, then=snippet,
                               stdin=job_bundle({k: v.encode() for k, v in tokens.items()}) if tokens else None)
        out = p.then_output or ""
        if p.then_output is None:
            raise OrchestratorError(f"monitor {monitor_id} has no endpoint (job {p.job.state if p.job else '?'})")
        if "promtool-failed" in out:
            raise OrchestratorError(f"promtool rejected the new config of {monitor_id}: {out.strip()}")
        if "reload=200" not in out:
            raise OrchestratorError(f"Prometheus did not accept the reload of {monitor_id}: {out.strip()}")
        self.store.update(monitor_id, targets=[t.to_dict() for t in targets])

    def add_targets(self, monitor_id: str, targets: list[str | TargetSpec], progress: Progress | None = None,
                    allow_other_users: bool = False, bearer_file: str | None = None) -> list[ResolvedTarget]:
        """Targets as ``start_monitor`` takes them, added with a hot reload."""
        current = [ResolvedTarget.from_dict(t) for t in self._record(monitor_id)["targets"]]
        specs = self.specs(list(targets), bearer_file=bearer_file)
        new = self.resolve_targets(specs, progress=progress, allow_other_users=allow_other_users)
        names = {(t.job_name, t.address) for t in current}
        merged = current + [t for t in new if (t.job_name, t.address) not in names]
        self._reload(monitor_id, merged, read_tokens(token_files(specs)))
        return new

    def remove_targets(self, monitor_id: str, names: list[str]) -> list[ResolvedTarget]:
        """Remove targets by service ID, SLURM job ID or job_name."""
        current = [ResolvedTarget.from_dict(t) for t in self._record(monitor_id)["targets"]]
        wanted = set(names)
        gone = [t for t in current if {t.service_id, t.job_name, t.labels.get("slurm_job_id")} & wanted]
        if not gone:
            raise OrchestratorError(f"no target {', '.join(names)} on monitor {monitor_id}; targets: "
                                    + ", ".join(sorted({t.job_name for t in current})))
        self._reload(monitor_id, [t for t in current if t not in gone])
        return gone

    def available_recipes(self) -> list[dict]:
        """The service recipes that run a Prometheus, then seed 000's monitor recipes (with their ports)."""
        out = available_recipes(self.config, self.servers.load_recipe)
        for name, path in monitor_recipe_paths(monitor_recipe_dirs(self.config)).items():
            try:
                m = load_monitor_recipe(path)
            except OrchestratorError:
                continue
            out.append({"name": name, "path": str(path), "description": m.description,
                        "targets": [f"{t.name}:{t.port}{t.metrics_path}" for t in m.targets]})
        return out

    # -- queries (monitoring/querying.py) ----------------------------------------------------
    def tracked(self, ident: str) -> str | None:
        return self.queries.tracked(ident)

    def monitor_for(self, ident: str) -> str:
        return self.queries.monitor_for(ident)

    def live_monitors(self) -> list[str]:
        return self.queries.live_monitors()

    def query_many(self, monitor_id: str, queries: list[str], at: float | None = None) -> list[QueryResult]:
        return self.queries.query_many(monitor_id, queries, at)

    def query_many_at(self, monitor_id: str, queries: list[tuple[str, float | None]]) -> list[QueryResult]:
        return self.queries.query_many_at(monitor_id, queries)

    def query_at_and_range(self, monitor_id: str, instant: list[tuple[str, float | None]], ranges: list[str],
                           start: float, end: float, step: float | str = 15
                           ) -> tuple[list[QueryResult], list[QueryResult]]:
        return self.queries.query_at_and_range(monitor_id, instant, ranges, start, end, step)

    def query_metrics(self, monitor_id: str, promql: str, at: float | None = None) -> QueryResult:
        return self.queries.query_many(monitor_id, [promql], at)[0]

    def query_range(self, monitor_id: str, promql: str, start: float, end: float,
                    step: float | str = 15) -> QueryResult:
        return self.queries.query_range(monitor_id, promql, start, end, step)

    def query_range_many(self, monitor_id: str, queries: list[str], start: float, end: float,
                         step: float | str = 15) -> list[QueryResult]:
        return self.queries.query_range_many(monitor_id, queries, start, end, step)

    def collect(self, monitor_id: str, queries: list[str], start: float, end: float,
                step: float | str, path: str | Path, fmt: str | None = None) -> Path:
        return self.queries.collect(monitor_id, queries, start, end, step, path, fmt)

    # -- status and reports -------------------------------------------------------------
    def check_monitor_status(self, monitor_id: str) -> dict:
        return self._status(self.servers.probe(self.monitor_for(monitor_id), then=_ACTIVE_TARGETS))

    def status_rounds(self, monitor_id: str, *, interval: float, timeout: float) -> Iterator[dict]:
        """``check_monitor_status`` every ``interval`` seconds, for a wait: one remote command in all."""
        for p in self.servers.probe_rounds(self.monitor_for(monitor_id), interval=interval, timeout=timeout,
                                           then=_ACTIVE_TARGETS):
            yield self._status(p)

    def _status(self, p) -> dict:
        rec = self.store.get(p.service_id) or {}
        targets = []
        if p.then_output:
            try:
                doc = json.loads(p.then_output)
                for t in doc["data"]["activeTargets"]:
                    targets.append({"job": t["labels"].get("job"), "instance": t["labels"].get("instance"),
                                    "service_id": t["labels"].get("service_id"), "health": t.get("health"),
                                    "last_error": t.get("lastError", ""), "last_scrape": t.get("lastScrape")})
            except (json.JSONDecodeError, KeyError):
                pass
        state = p.job.state if p.job else "UNKNOWN"
        # seed 001 tests ``status == 'running'``: SLURM's state in lower case; ``state`` keeps SLURM's spelling
        return {"monitor_id": p.service_id, "status": state.lower(), "state": state, "job_id": p.job_id,
                "nodes": p.job.nodes if p.job else [], "submitted_at": rec.get("submitted_at"),
                "started_at": rec.get("started_at") or (p.job.start_time if p.job else None),
                "url": p.endpoint and f"http://{p.endpoint['node']}:{p.endpoint['ports'][0]}", "targets": targets}

    def endpoint(self, monitor_id: str) -> dict:
        """Where the monitor answers (URLs resolve on the cluster), with its API and UI URLs."""
        ep = self.servers.get_service_endpoint(self.monitor_for(monitor_id))
        return {**ep.to_dict(), "api_url": f"{ep.url}/api/v1", "ui_url": f"{ep.url}/graph"}

    def report(self, monitor_id: str) -> dict:
        """Status, up per target, CPU, memory, scrape duration (absent sources stay absent)."""
        status = self.check_monitor_status(monitor_id)
        results = self.query_many(status["monitor_id"], list(REPORT_QUERIES.values()))
        sections = {}
        for (name, q), r in zip(REPORT_QUERIES.items(), results):
            sections[name] = {"query": q, "series": [{"labels": s.labels, "value": s.values[-1][1]} for s in r.series]}
        return {"generated_at": now_iso(), **status, "metrics": sections}

    def running_monitors(self) -> list[ServiceStatus]:
        """Every monitor in the queue (one squeue call): those tracked here and any prometheus_ job of ours;
        one stopped here is not running, though SLURM may show it COMPLETING for a while."""
        rows = self.servers.list_running_services()
        tracked = self.store.load()
        return [r for r in rows if (r.service_id in tracked or r.service_id.startswith("prometheus_"))
                and r.state not in TERMINAL_STATES and not (tracked.get(r.service_id) or {}).get("stopped_at")]



def monitor_recipe_dirs(config: Config) -> list[Path]:
    from orchestrator.services.recipes import recipe_dirs
    return recipe_dirs("monitors", config.recipe_dirs)


def available_recipes(config: Config, load) -> list[dict]:
    """Monitor recipes (Prometheus ones) in recipe_dirs and the package: name, path, description."""
    from orchestrator.services.recipes import recipe_dirs
    out = []
    for d in recipe_dirs("services", config.recipe_dirs):
        for f in sorted(d.glob("*.yaml")) if d.is_dir() else []:
            try:
                r = load(str(f))
            except OrchestratorError:
                continue
            if "prometheus" in r.command and r.health and r.health.path.startswith("/-/"):
                if all(x["name"] != r.name for x in out):
                    out.append({"name": r.name, "path": str(f), "description": r.description})
    return out


