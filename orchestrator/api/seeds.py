"""Seed 001's call forms, as one thin facade over the modules that do the work.

The seed documents show users calling ``orch.monitors.show_metrics(...)``,
``construct_report``, ``list_*``, ``get_monitor_endpoint`` and ``orch.servers.get_service_host``.
Those forms answer instead of raising (a bool, None, a plain list) and may print; the modules
(services/servers.py, monitoring/monitors.py) raise and never print. ``orch.servers`` and
``orch.monitors`` are these facades: the seed forms are defined here, everything else is the
module's own attribute.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from orchestrator import waiting
from orchestrator.logs import log
from orchestrator.errors import OrchestratorError
from orchestrator.fileio import atomic_open

if TYPE_CHECKING:
    # monitoring is imported by the first monitor call: a command about services alone (endpoint,
    # logs, stop) does not pay for it (about 15 ms of a 300 ms command)
    from orchestrator.monitoring.monitors import MonitorsModule
    from orchestrator.monitoring.promql import QueryResult
    from orchestrator.services.servers import ServersModule


def answered(what: str, fn, failed, *also: type[Exception]):
    """Seed 001's forms answer instead of raising: ``fn()``, or ``failed`` with the reason logged."""
    try:
        return fn()
    except (OrchestratorError, *also) as exc:
        log(f"{what}: {exc}", level="warning")
        return failed


def write_json(path: Path, doc) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "w") as f:
        json.dump(doc, f, indent=1, default=str)


class _Facade:
    """Every attribute not defined by the facade is its module's."""

    def __init__(self, module):
        self.module = module

    def __getattr__(self, name: str):
        return getattr(self.module, name)


class SeedServers(_Facade):
    module: ServersModule

    def get_service_host(self, ident: str) -> str | None:
        """Seed 001's form: the node the service runs on, or None (unknown ID, not running yet; the
        reason is logged), as the seed's ``if host:`` expects."""
        try:
            return self.module.get_service_endpoint(ident).host
        except OrchestratorError as exc:
            log(f"get_service_host({ident}): {exc}", level="warning")
            return None


class SeedMonitors(_Facade):
    module: MonitorsModule

    def __init__(self, module: MonitorsModule, show: Callable[[QueryResult], None] | None = None):
        super().__init__(module)
        self.show = show   # how show_metrics shows an answer (the API prints a table); None: not at all

    def get_monitor_endpoint(self, monitor_id: str) -> str | None:
        """``http://node:port``, or None while the monitor has no endpoint (pending, ended, unknown; the
        reason is logged)."""
        return answered(f"get_monitor_endpoint({monitor_id})", lambda: self.endpoint(monitor_id)["url"], None)

    def query_metrics(self, monitor_id: str, query: str, at: float | None = None) -> dict:
        """Seed 001's form: Prometheus' API response as a plain dict (``{"status": "success", "data":
        {"resultType": ..., "result": [...]}}``), which ``json.dumps`` takes. ``query_result`` gives the
        parsed series (labels, float values)."""
        return self.module.query_metrics(monitor_id, query, at).api_response()

    def query_result(self, monitor_id: str, query: str, at: float | None = None) -> QueryResult:
        """The answer parsed: ``.series``, each with ``.labels`` and ``.values`` [(time, float)]."""
        return self.module.query_metrics(monitor_id, query, at)

    def check_monitor_status(self, monitor_id: str) -> dict:
        """Seed 001's form: ``submitted_at`` and ``started_at`` as epoch seconds (floats), or None;
        the CLI's ``monitor status`` shows them as ISO 8601."""
        doc = dict(self.module.check_monitor_status(monitor_id))
        for key in ("submitted_at", "started_at"):
            doc[key] = epoch(doc.get(key))
        return doc

    def show_metrics(self, monitor_id: str, query: str | None = None) -> dict:
        """Show the current answer to ``query`` (default ``up``) as a table and return Prometheus' API
        response."""
        result = self.query_result(monitor_id, query or "up")
        if self.show is not None:
            self.show(result)
        return result.api_response()

    def construct_report(self, monitor_id: str, output_file: str | Path) -> bool:
        """``report`` written to ``output_file`` as JSON; True when written, False (the reason logged)
        otherwise."""
        def write() -> bool:
            write_json(Path(output_file), self.report(monitor_id))
            return True
        return answered(f"construct_report({monitor_id})", write, False, OSError)

    def stop_monitor(self, monitor_id: str) -> bool:
        """True once the monitor is stopped, False (with the reason logged) otherwise."""
        def stopped() -> bool:
            self.stop(monitor_id)
            return True
        return answered(f"stop_monitor({monitor_id})", stopped, False)

    def list_running_monitors(self) -> list[str]:
        """The IDs of the running monitors."""
        return [r.service_id for r in self.running_monitors()]

    def list_available_monitors(self) -> list[str]:
        """The monitor types that can be started (recipe names, ``prometheus`` first)."""
        return [r["name"] for r in self.available_recipes()]

    def collect_metrics_to_file(self, monitor_id: str, query: str, output_file: str | Path, *,
                                start: float | None = None, end: float | None = None,
                                step: float | str = 15) -> bool:
        """The query's current answer (Prometheus' JSON) to ``output_file``; a bare file name lands in
        ``metrics/`` of the working directory. With ``start``/``end`` it is a range query over that
        window instead (``collect`` writes several, or CSV). True when written; False, with the reason
        logged, when the query or the file failed."""
        path = Path(output_file)
        if path.parent == Path("."):
            path = Path("metrics") / path

        def write() -> bool:
            path.parent.mkdir(parents=True, exist_ok=True)
            if start is not None or end is not None:
                now = waiting.now()
                self.collect(monitor_id, [query], start if start is not None else now - 900,
                             end if end is not None else now, step, path, "json")
            else:
                write_json(path, self.query_metrics(monitor_id, query))
            return True
        return answered(f"collect_metrics_to_file({monitor_id}, {query!r})", write, False, OSError)


def epoch(value) -> float | None:
    """An ISO 8601 time (as records keep them), or SLURM's local ``2026-12-04T10:00:00``, as epoch
    seconds; None for none."""
    if value in (None, "", "Unknown", "N/A"):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    from datetime import datetime
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
