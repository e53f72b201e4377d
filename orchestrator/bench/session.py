"""Benchmark sessions: deploy, monitor, load, collect, compute KPIs, report, clean up.

A session runs one or more points (one, or one per combination of a sweep).
The monitor starts with the services; each point's load clients are added as
targets with a hot reload, wait for a ``go`` file in their job dir (so the
monitor is scraping them when the load starts) and form their own measured
window. Everything the session starts is stopped at the end (unless kept),
also on Ctrl-C, after which what was collected is still written.
"""

from __future__ import annotations

import math
import secrets
from datetime import datetime, timezone
from pathlib import Path

from orchestrator.analysis.sweep import Point, grid
from orchestrator.bench.plan import Plan, make_plan
from orchestrator.bench.points import service_changes
from orchestrator.bench.cleanup import Cleanup
from orchestrator.bench.context import Progress, ServiceDied, SessionContext
from orchestrator.bench.deploy import Deploy
from orchestrator.bench.gathering import Gather
from orchestrator.bench.loading import Load
from orchestrator.bench.recipe import BenchmarkRecipe
from orchestrator.bench.runstate import PointRun, SessionState
from orchestrator.errors import OrchestratorError, Terminated
from orchestrator.services.recipes import ServiceRecipe, TargetSpec



class BenchmarkSession:
    """One benchmark session, by phase, each an object handed the same context (bench/context.py):
    deploy (bench/deploy.py), load (bench/loading.py), gather and report (bench/gathering.py), clean up
    (bench/cleanup.py); this module runs them in order, point by point."""

    def __init__(self, orch, recipe: BenchmarkRecipe, out_dir: str | Path | None = None, keep: bool = False,
                 progress: Progress | None = None, service_recipes: dict[str, ServiceRecipe] | None = None,
                 rerun_of: str | None = None):
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        sid = f"{recipe.name}-{stamp}-{secrets.token_hex(2)}"
        base = Path(out_dir) if out_dir else orch.config.results_dir / sid
        limit = orch.config.limits.sweep_points
        size = math.prod(len(v) for v in recipe.sweep.values()) if recipe.sweep else 1
        if size > limit:
            raise OrchestratorError(f"{recipe.source or recipe.name}: benchmark.sweep has {size} points, more than "
                                    f"the limit of {limit} (config.yaml limits.sweep_points)")
        # a search chooses its points as their results come: the first is its low end
        points = [Point(0, {recipe.search.field: recipe.search.low})] if recipe.search else grid(recipe.sweep)
        self.ctx = SessionContext(
            orch=orch, recipe=recipe, state=SessionState(sid, base), say=progress or (lambda m: None),
            attempted_from=orch.servers.submissions(),   # submissions before this session are not ours
            points=points, base_recipes=dict(service_recipes or {}), rerun_of=rerun_of, keep=keep)
        self.deploy = Deploy(self.ctx)
        self.load = Load(self.ctx)
        self.gather = Gather(self.ctx)
        self.cleanup = Cleanup(self.ctx)

    @property
    def state(self) -> SessionState:
        return self.ctx.state

    @property
    def recipe(self) -> BenchmarkRecipe:
        return self.ctx.recipe

    @property
    def points(self) -> list[Point]:
        return self.ctx.points

    @property
    def say(self) -> Progress:
        return self.ctx.say

    @property
    def is_sweep(self) -> bool:
        return self.ctx.is_sweep

    def _begin_point(self, pr: PointRun) -> None:
        """The point's services (those it changes) and its clients, which wait for their go."""
        if self.recipe.search:
            self.say(f"search point {pr.point.index + 1} (at most {self.recipe.search.max_points}): {pr.point.label}")
        else:
            self.say(f"point {pr.point.index + 1}/{len(self.points)}: {pr.point.label}" if self.is_sweep else
                     "running the load")
        if pr.point.index > 0:
            new = self.deploy.deploy_services(pr.point, only_swept=True, restart=self.load.restarts())
            pr.redeployed = list(new)
            if new:
                self.ctx.orch.monitors.add_targets(self.state.monitor_id, [
                    TargetSpec(service_id=sid, job_name=name) for name, sid in self.state.services.items() if sid in new])
        self.deploy.start_clients(pr)

    def _run_load(self, pr: PointRun) -> None:
        self.deploy.wait_scraped(pr)
        self.load.empty_caches(pr)
        self._phase("load")
        self.load.go(pr)
        self.load.wait_clients(pr)

    def _phase(self, name: str) -> None:
        """What `--stats` counts the next remote commands under."""
        self.ctx.orch.transport.stats.phase = name

    def _point_run(self, point: Point) -> PointRun:
        out = self.state.out_dir / "points" / point.dirname if self.is_sweep else self.state.out_dir
        pr = PointRun(point, out)
        self.state.points.append(pr)
        return pr

    def _changes_services(self, point: Point) -> bool:
        return bool(self.load.restarts()) or any(service_changes(point, ref.name) for ref in self.recipe.services)

    def _following(self, pr: PointRun) -> Point | None:
        """A grid's point after ``pr`` (a search's is known only once ``pr`` is reported: ``_searched``)."""
        i = pr.point.index
        if self.recipe.search:
            return None
        return self.points[i + 1] if i + 1 < len(self.points) else None

    def _searched(self, pr: PointRun) -> Point | None:
        """The point a search tries after ``pr``, from the verdicts of every point so far (None: done)."""
        from orchestrator.analysis.search import judge, next_value
        i = pr.point.index
        search = self.recipe.search
        kpis = {k["kpi"]: k["value"] for k in pr.report["kpis"]}
        passed, why = judge(search, kpis, pr.report.get("valid", False), pr.report.get("invalid_reasons", []))
        self.ctx.search_log.append({"point": pr.point.label, "value": pr.point.values[search.field], "passed": passed,
                                "why": why, "throughput": kpis.get("throughput")})
        self.say(f"{pr.point.label}: {'passes' if passed else 'fails'} ({why})")
        value, where = next_value(search, self.ctx.tried())
        self.ctx.search_log[-1]["next"] = where
        self.say(f"search: {where}")
        if value is None:
            return None
        point = Point(i + 1, {search.field: int(value) if search.field == "concurrency" else value})
        self.points.append(point)
        return point

    def run(self) -> dict:
        from orchestrator.logs import log_context
        with log_context(session=self.state.session_id):
            return self._run()

    def _run(self) -> dict:
        self._phase("deploy")
        self.deploy.preflight()
        self.state.out_dir.mkdir(parents=True, exist_ok=True)
        self.say(f"session {self.state.session_id} -> {self.state.out_dir}"
                 + (f" ({len(self.points)} points)" if self.is_sweep else ""))
        current = None
        ended_by: BaseException | None = None
        try:
            self.deploy.deploy_services(self.points[0])
            self.deploy.check_models(self.ctx.engines())   # the running services' own model lists, before the monitor
            self.deploy.check_first_requests()             # one request as the load sends it, before any client
            self.deploy.start_monitor()
            ready: PointRun | None = None
            point: Point | None = self.points[0]
            while point is not None:
                current, ready = ready or self._point_run(point), None
                if not current.clients:
                    self._phase("deploy")
                    self._begin_point(current)
                self._run_load(current)
                following = self._following(current)
                if following is not None and not self._changes_services(following):
                    # the next point's clients start now and wait for their go: this point's
                    # collection and report overlap their scheduling
                    ready = self._point_run(following)
                    self._phase("deploy")
                    self._begin_point(ready)
                current.last = following is None and not self.recipe.search
                self._phase("gather")
                self.gather.finish_point(current)
                if self.recipe.search:
                    following = self._searched(current)
                current = None
                point = following
        except (KeyboardInterrupt, Terminated) as exc:
            self.state.interrupted = True
            ended_by = exc
            self.say(f"{'interrupted' if isinstance(exc, KeyboardInterrupt) else exc}: stopping what this "
                     "session started, then writing what was collected")
        except OrchestratorError as exc:
            self.state.errors.append(str(exc))
            self.say(f"error: {exc}")
            if isinstance(exc, ServiceDied):   # the session failed: its report is written, then it says so
                ended_by = exc
        except Exception as exc:  # a lost connection, a bug: the jobs must still go
            self.state.errors.append(f"{type(exc).__name__}: {exc}")
            self.say(f"error: {type(exc).__name__}: {exc}")
            ended_by = exc
        result = None
        try:
            self._phase("gather")
            result = self.gather.write_what_was_collected(current)
        except (Exception, KeyboardInterrupt, Terminated) as exc:
            self.state.errors.append(f"writing the artifacts: {type(exc).__name__}: {exc}")
            ended_by = ended_by or exc
        finally:
            if not self.ctx.keep or ended_by is not None:
                self._phase("cleanup")
                self.cleanup.run()
            else:
                self.say(f"kept running: {', '.join(self.state.started)}")
        if ended_by is not None:
            raise ended_by
        if self.state.errors and not any(p.records for p in self.state.points):
            raise OrchestratorError("; ".join(self.state.errors))
        return {**result, "out_dir": str(self.state.out_dir)}


def dry_run(orch, recipe: BenchmarkRecipe) -> Plan:
    """A session's checks that need no cluster, then its plan; ``orch`` connects only on a remote call,
    and none is made here."""
    session = BenchmarkSession(orch, recipe)
    session.deploy.check_here()
    base = {ref.name: session.deploy.base_recipe(ref) for ref in recipe.services if ref.recipe is not None}
    return make_plan(recipe, orch.config, base, session.points, orch.load_recipe(recipe.monitor_recipe))
