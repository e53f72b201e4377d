"""What every phase of a benchmark session is handed: the orchestrator, the recipe, the run state, the
output, and the few facts the phases share (the services' engines, their replicas). Each phase
(bench/deploy.py, bench/loading.py, bench/gathering.py, bench/cleanup.py) reads and writes only this;
bench/session.py runs them in order."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from orchestrator.analysis.sweep import Point
from orchestrator.bench.recipe import BenchmarkRecipe
from orchestrator.bench.runstate import SessionState
from orchestrator.errors import OrchestratorError
from orchestrator.services.recipes import ServiceRecipe

Progress = Callable[[str], None]


class ServiceDied(OrchestratorError):
    """A service's job ended under the load: the session stops, writes what it has and fails."""


@dataclass
class SessionContext:
    orch: Any                        # orchestrator.api.BenchmarkOrchestrator (its servers, monitors, config)
    recipe: BenchmarkRecipe
    state: SessionState              # the jobs started, services by name, points run, errors, the output dir
    say: Progress
    attempted_from: int              # the servers' submission count before the session: later ones are ours
    points: list[Point]              # a grid's points, or a search's as it chooses them
    base_recipes: dict[str, ServiceRecipe] = field(default_factory=dict)      # service name -> recipe as given
    service_recipes: dict[str, ServiceRecipe] = field(default_factory=dict)   # as deployed (for the manifest)
    search_log: list[dict] = field(default_factory=list)   # each point a search tried: value, passed, why, next
    cache_mode: dict[str, str] = field(default_factory=dict)  # cold services: "reset" (the engine's route) or "restart"
    rerun_of: str | None = None
    keep: bool = False
    externals: dict = field(default_factory=dict)   # name -> bench.external.External: loaded, never started here

    @property
    def is_sweep(self) -> bool:
        return bool(self.recipe.sweep) or self.recipe.search is not None

    def targets_of(self, target: str) -> list[str]:
        """The service names a client's ``target`` loads: the service, or each of its replicas."""
        return self.state.replicas.get(target) or [target]

    def group_of(self, name: str) -> str:
        """The service a replica belongs to (a service that is no replica: itself)."""
        return next((g for g, names in self.state.replicas.items() if name in names), name)

    def engines(self) -> dict[str, str]:
        """Service name -> engine, from the recipes deployed; a reused service's from what was recorded
        when this laptop started it."""
        out = {name: r.engine for name, r in self.base_recipes.items() if r.engine}
        tracked = None
        for ref in self.recipe.services:
            if ref.service_id and ref.name not in out:
                tracked = tracked if tracked is not None else self.orch.servers.registry.records()
                sid = self.state.services.get(ref.name, ref.service_id)
                engine = tracked[sid].engine if sid in tracked else None
                if engine:
                    out[ref.name] = engine
        out.update({name: e.engine for name, e in self.externals.items() if e.engine})
        for group, names in self.state.replicas.items():   # each replica is its group's engine
            out.update({name: out[group] for name in names if group in out})
        return out

    def tried(self) -> list[tuple[float, bool, float | None]]:
        """The search's points so far: (value, passed, throughput)."""
        return [(e["value"], e["passed"], e["throughput"]) for e in self.search_log]

    def stop(self, ids: list[str], wait: bool = False) -> None:
        """scancel what is still running (one command); with ``wait``, until it has ended (bounded)."""
        try:
            self.orch.servers.cancel_many(ids)
            if wait:
                self.orch.servers.wait_until_ended(ids, timeout=30)
        except OrchestratorError as exc:
            self.state.errors.append(f"could not stop {', '.join(ids)}: {exc}")

    def service_died(self, name: str, sid: str, job, when: str = "during the load") -> ServiceDied:
        """What ends a session whose service's job ended: the job, its state, and the engine's own last
        log lines (the cause is usually there: a crash, an out-of-memory kill)."""
        from orchestrator.cluster.slurm import STATE_CAUSES
        cause = STATE_CAUSES.get(job.state, f"job {job.state}")
        if name in self.externals:   # the user's own job: its log is theirs, never tailed by the tool
            tail = "(started outside this tool: its log is where its sbatch script wrote it)"
        else:
            try:
                tail = self.orch.servers.logs(sid, lines=12).log.rstrip()
            except OrchestratorError as exc:
                tail = f"(its log could not be read: {exc})"
        return ServiceDied(f"service {name} ({sid}): job {job.job_id} on {job.nodelist or '?'} ended {job.state} "
                           f"({cause}) {when}; its last log lines:\n{tail}")
