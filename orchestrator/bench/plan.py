"""What a benchmark recipe would do, worked out without the cluster: every service's job script
rendered, every client's jobs and load, the points, the window, and for LLM clients the reference
tool's nearest command line. ``bench run --dry-run`` and ``orch validate`` print it; nothing is
submitted and no connection is opened."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from orchestrator.bench.clients import client_recipe
from orchestrator.bench.kinds import KINDS, LLM_KINDS
from orchestrator.bench.points import apply_to_client
from orchestrator.bench.recipe import BenchmarkRecipe, ClientSpec
from orchestrator.services.jobscript import render_service_script
from orchestrator.services.recipes import ServiceRecipe
from orchestrator.services.servers import new_service_id

# where a client's target runs is known only once its job does: the plan's scripts show this instead
TARGET_URL = "http://TARGET-NODE:TARGET-PORT"


@dataclass
class PlannedJob:
    role: str                     # service | client | monitor
    name: str
    recipe: str                   # its recipe's path, or what generates it
    nodes: int
    resources: str                # as sbatch is asked: partition, cpus, memory, GPUs, time
    ports: str
    script: str = ""              # the rendered sbatch script


@dataclass
class Plan:
    benchmark: str
    source: str
    jobs: list[PlannedJob]
    reused: list[str]             # services the session reuses (running already; never submitted)
    clients: list[dict]
    points: list[str]
    monitor: str
    window: str
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"benchmark": self.benchmark, "source": self.source, "monitor": self.monitor, "window": self.window,
                "points": self.points, "reused": self.reused, "clients": self.clients, "notes": self.notes,
                "jobs": [j.__dict__ for j in self.jobs]}


def _resources(recipe: ServiceRecipe, slurm) -> str:
    r = recipe.resources
    parts = [f"partition {r.partition or slurm.partition or '(the cluster default)'}",
             f"{r.nodes} node(s)" + (" exclusive" if r.exclusive else ""), f"{r.cpus_per_task} CPU(s)",
             f"mem {r.mem or '(the partition default)'}", f"time {_time(r.time or slurm.time)}"]
    if r.gpus:
        parts.insert(3, f"{r.gpus} GPU(s) per node")
    return ", ".join(parts)


def _time(limit: str | None) -> str:
    if not limit:
        return "(the partition limit)"
    return f"{limit} min" if limit.isdigit() else limit   # sbatch reads a bare number as minutes


def load_text(spec: ClientSpec) -> str:
    if spec.requests is not None:
        bound = f"{spec.requests} requests"
    elif spec.duration is not None:
        bound = f"{spec.duration:g}s"
    elif spec.dataset is not None and spec.dataset.timed:
        bound = "the trace's requests at their own times"
    else:
        bound = "bounded by its own counts"
    offered = (f"{spec.rate:g} requests/s ({spec.arrival})" if spec.rate else "as fast as answers come (closed loop)")
    return (f"{spec.concurrency} connection(s), {offered}, {bound}"
            + (f" after {spec.warmup:g}s of warm-up" if spec.warmup else "")
            + (f", on {spec.nodes} client jobs" if spec.nodes > 1 else ""))


def reference_command(spec: ClientSpec) -> str | None:
    """The reference client's command line for this client's load (its kind's ``reference``), or None."""
    argv = KINDS[spec.kind].reference(spec, TARGET_URL)
    return shlex.join(argv) if argv else None


def make_plan(recipe: BenchmarkRecipe, config, base_recipes: dict[str, ServiceRecipe], points,
              monitor: ServiceRecipe | None = None) -> Plan:
    """The plan of a session whose services' recipes are ``base_recipes`` (by service name, as the
    session loads them) over ``points`` (its grid, or a search's first point), with ``monitor``'s job."""
    slurm, remote = config.slurm, config.remote
    jobs, reused, clients, notes = [], [], [], []
    for ref in recipe.services:
        if ref.external:
            reused.append(f"{ref.name}: " + (f"your job {ref.job}" if ref.job else ref.url)
                          + " (started outside this tool: loaded and monitored, never stopped)")
            continue
        if ref.recipe is None:
            reused.append(f"{ref.name}: {ref.service_id} (running already)")
            continue
        r = base_recipes[ref.name]
        for i in range(r.replicas):
            name = ref.name if r.replicas == 1 else f"{ref.name}-r{i + 1}"
            jobs.append(PlannedJob("service", name, r.source, r.resources.nodes, _resources(r, slurm),
                                   ", ".join(map(str, r.ports)) or "-",
                                   render_service_script(r, slurm, new_service_id(r), remote)))
    if monitor is not None:
        jobs.append(PlannedJob("monitor", monitor.name, monitor.source, monitor.resources.nodes,
                               _resources(monitor, slurm), ", ".join(map(str, monitor.ports)) or "-",
                               render_service_script(monitor, slurm, new_service_id(monitor), remote)))
    for i, spec in enumerate(recipe.clients):
        spec = apply_to_client(spec, points[0])
        generated = client_recipe(spec, TARGET_URL, 0, remote.venv_dir)
        for node in range(spec.nodes):
            jobs.append(PlannedJob("client", f"client {i} ({spec.kind}) job {node + 1}/{spec.nodes}",
                                   "(generated from benchmark.clients)", 1, _resources(generated, slurm), "auto",
                                   render_service_script(client_recipe(spec, TARGET_URL, node, remote.venv_dir),
                                                         slurm, new_service_id(generated), remote)))
        entry = {"index": i, "kind": spec.kind, "target": spec.target, "load": load_text(spec),
                 "model": spec.payload.get("model") if spec.kind in LLM_KINDS else None,
                 "reference_command": reference_command(spec)}
        if spec.kind in LLM_KINDS and not spec.payload.get("model") and not spec.models:
            notes.append(f"clients[{i}]: no payload.model; before the load the session asks the service's "
                         "/v1/models and sends the one it serves")
        clients.append(entry)
        ds = spec.dataset
        if entry["reference_command"] and ds is not None and ds.kind == "synthetic" and (
                ds.input_tokens[1] or ds.output_tokens[1]):
            notes.append(f"clients[{i}]: its lengths spread (stddev); vLLM's random dataset at range ratio 0 "
                         "sends the means only")
        if not KINDS[spec.kind].tokens and spec.slo:
            notes.append(f"clients[{i}]: {spec.kind} has no tokens: only an e2e SLO applies")
    warm = max((s.warmup for s in recipe.clients), default=0)
    bounded = [s.duration for s in recipe.clients if s.duration is not None]
    window = (f"from the go, after {warm:g}s of warm-up, until the last client is done"
              + (f" (about {max(bounded):g}s of load)" if bounded else ""))
    if len(points) > 1:
        notes.append("the jobs are the first point's: each later point redeploys the services it changes")
    labels = [p.label for p in points] if not recipe.search else [
        f"a search over {recipe.search.field} from {recipe.search.low:g}, at most {recipe.search.max_points} points"]
    return Plan(recipe.name, recipe.source, jobs, reused, clients, labels,
                f"{recipe.monitor_recipe}, scraping every {recipe.scrape_interval}", window, notes)


def plan_text(plan: Plan) -> str:
    lines = [f"benchmark {plan.benchmark} ({plan.source or 'inline'}): nothing submitted, no connection opened",
             f"points: {len(plan.points)}: {'; '.join(plan.points)}", f"monitor: {plan.monitor}",
             f"window: {plan.window}", "", "jobs it would submit:"]
    for j in plan.jobs:
        lines.append(f"  {j.role:8} {j.name}: {j.resources}; ports {j.ports}  [{j.recipe}]")
    lines += [f"  reused   {r}" for r in plan.reused]
    lines += ["", "clients:"]
    for c in plan.clients:
        lines.append(f"  [{c['index']}] {c['kind']} -> {c['target']}: {c['load']}"
                     + (f", model {c['model']}" if c["model"] else ""))
        if c["reference_command"]:
            lines.append(f"      the same load with vLLM's client: {c['reference_command']}")
    if plan.notes:
        lines += [""] + [f"note: {n}" for n in plan.notes]
    return "\n".join(lines)

