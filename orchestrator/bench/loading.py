"""A session's load phase: the go, and the wait for the clients while the services keep running."""

from __future__ import annotations

import time

from orchestrator import waiting
from orchestrator.engines import engine_named
from orchestrator.bench.points import apply_to_client
from orchestrator.bench.kinds import LLM_KINDS
from orchestrator.bench.context import SessionContext
from orchestrator.bench.deploy import reset_prefix_cache
from orchestrator.bench.runstate import PointRun
from orchestrator.cluster.slurm import STATE_CAUSES, TERMINAL_STATES
from orchestrator.errors import OrchestratorError


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:g} ms" if seconds < 1 else f"{seconds:g} s"


class Load:
    """The load phase: empty the prefix caches a client wants cold, the go, and the wait for the clients
    while the services keep running. Writes the point's go time, cache states and lost clients, and the
    context's cache modes (which services a later point restarts)."""

    def __init__(self, ctx: SessionContext):
        self.ctx = ctx

    def _cold_targets(self) -> list[str]:
        """Services (each replica) whose prefix cache a client wants empty before each point's load."""
        names = []
        for spec in self.ctx.recipe.clients:
            if spec.cache == "cold":
                names += [n for n in self.ctx.targets_of(spec.target) if n not in names]
        return names

    def empty_caches(self, pr: PointRun) -> None:
        """cache: cold: the engine's own route empties its prefix cache now; where it has none (or refuses),
        the first point's services are new, and later points restart them (``restarts``)."""
        engines = self.ctx.engines()
        for name in self._cold_targets():
            engine = engine_named(engines.get(name))
            if engine.reset_prefix_cache and self.ctx.cache_mode.get(name) != "restart":
                if reset_prefix_cache(self.ctx.orch, self.ctx.state.services[name], engine):
                    self.ctx.cache_mode[name] = "reset"
                    pr.cache[name] = f"cold: emptied just before the load (POST {engine.reset_prefix_cache})"
                    self.ctx.say(f"{name}: prefix cache emptied")
                    continue
            self.ctx.cache_mode[name] = "restart"
            pr.cache[name] = ("cold: a new service, started for this session" if pr.point.index == 0 else
                              "cold: the service was restarted before this point")
        for spec in self.ctx.recipe.clients:   # engines with a prefix cache the report can speak of
            if spec.cache == "warm" and spec.kind in LLM_KINDS:
                for name in self.ctx.targets_of(spec.target):
                    if engine_named(engines.get(name)).prefix_cache_hits:
                        pr.cache.setdefault(name, "warm: as earlier requests (warm-up, earlier points) left it")

    def restarts(self) -> frozenset:
        """Services restarted before each later point (cache: cold, with no route that empties the cache)."""
        return frozenset(self.ctx.group_of(n) for n, mode in self.ctx.cache_mode.items() if mode == "restart")

    def go(self, pr: PointRun) -> None:
        pr.go_time = waiting.now()   # the wall clock (replays give back the recorded one)
        self.ctx.orch.servers.files.signal_go(pr.clients)
        self.ctx.say(f"{pr.point.label}: load started on {len(pr.clients)} client(s)")

    def wait_clients(self, pr: PointRun) -> None:
        """Until every client is done, or its job ended without finishing (its node failed, it was
        cancelled): those are named in the report, their records so far kept."""
        specs = [apply_to_client(s, pr.point) for s in self.ctx.recipe.clients]
        budget = max((s.warmup + (s.duration or 3600)) for s in specs) + 120
        lost: dict[str, str] = {}

        services = {sid: name for name, sid in self.ctx.state.services.items()}

        expected = max((s.warmup + s.duration) for s in specs if s.duration) if any(s.duration for s in specs) else None
        # every 2 s during the load, every 0.25 s once its end is due (the wait begins as the load does)
        rounds = self.ctx.orch.servers.files.progress_rounds(
            pr.clients + list(services), interval=2.0, timeout=budget,
            fast_after=max(0.0, expected - 2.0) if expected else None, fast_interval=0.25,
            jobs={e.sid: e.job_id for e in self.ctx.externals.values() if e.job_id})   # the user's jobs: watched too

        def step(found: dict) -> tuple[bool, str]:
            # the services' jobs in the same command: a service that dies under the load ends the session
            for sid, name in services.items():
                job = found.pop(sid, {}).get("job")
                if job is not None and job.state in TERMINAL_STATES:
                    raise self.ctx.service_died(name, sid, job)
            for sid, f in found.items():
                job = f["job"]
                if not f["done"] and job is not None and job.state in TERMINAL_STATES and sid not in lost:
                    cause = STATE_CAUSES.get(job.state, f"job {job.state}")
                    lost[sid] = f"{sid}: client job {job.job_id} on {job.nodelist or '?'} ended {job.state} " \
                                f"({cause}) before it finished; its records up to then are kept"
                    self.ctx.say(lost[sid])
            docs = [f["progress"] for f in found.values() if f["progress"]]
            done = sum(f["done"] for f in found.values())
            ok, err, flight = (sum(d.get(k, 0) for d in docs) for k in ("ok", "errors", "in_flight"))
            elapsed = time.time() - pr.go_time
            lat = "".join(f", {name} <= {_ms(max(vals))}" for name, vals in
                          (("p50", [d["p50_le"] for d in docs if d.get("p50_le")]),
                           ("p99", [d["p99_le"] for d in docs if d.get("p99_le")])) if vals)
            pr.all_done = done >= len(pr.clients)
            return done + len(lost) >= len(pr.clients), (
                f"{pr.point.label}: load: {ok} ok, {err} errors, {ok / max(elapsed, 1e-9):.0f}/s{lat}, "
                f"{flight} in flight, {elapsed:.0f}s elapsed, {done}/{len(pr.clients)} clients done"
                + (f", {len(lost)} lost" if lost else ""))

        def over_budget() -> OrchestratorError:
            return OrchestratorError(f"clients did not finish within {budget:.0f}s")

        waiting.follow(rounds, step, timeout=budget, say=self.ctx.say, every=5, expected=expected,
                       on_timeout=over_budget)
        self.ctx.state.errors.extend(lost.values())
        pr.lost = list(lost.values())
