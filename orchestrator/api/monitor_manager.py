"""Seed 000's Python form of the monitor module, over the same MonitorsModule the CLI uses:

    from orchestrator import MonitorManager          # (seed 000: from src.monitor import MonitorManager)
    mgr = MonitorManager(recipe_directory="recipes/monitors")
    print("Recipes:", mgr.list_available_recipes())
    inst = mgr.start_monitor("vllm-monitor", target_job_ids=["12345"])
    print("Started:", inst.id, inst.prometheus_url)
    mgr.export_metrics(inst.id, "out/snapshot.json")
    mgr.stop_monitor(inst.id)

The jobs named are the user's own (started without this tool): they are waited for, scraped at
their node, and never touched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from orchestrator.fileio import atomic_open
from orchestrator.times import now_iso


@dataclass(frozen=True)
class MonitorInstance:
    id: str
    prometheus_url: str | None      # http://node:port, reachable from the login node
    job_id: str | None
    recipe: str
    targets: tuple[str, ...]        # the job IDs it scrapes


class MonitorManager:
    def __init__(self, recipe_directory: str | Path | None = None, config=None, orchestrator=None):
        """``recipe_directory``: monitor recipes looked for there first, then in the configured and
        packaged ``recipes/monitors/``; ``config``: a config.yaml path (default as the CLI finds it)."""
        if orchestrator is None:
            from orchestrator.api import BenchmarkOrchestrator
            orchestrator = BenchmarkOrchestrator(config)
        self.orch = orchestrator
        self.recipe_directory = Path(recipe_directory).expanduser() if recipe_directory else None

    def _dirs(self) -> list[Path]:
        from orchestrator.monitoring.monitors import monitor_recipe_dirs
        return ([self.recipe_directory] if self.recipe_directory else []) + monitor_recipe_dirs(self.orch.config)

    def list_available_recipes(self) -> list[str]:
        from orchestrator.monitoring.monitor_recipes import monitor_recipe_paths
        return sorted(monitor_recipe_paths(self._dirs()))

    def start_monitor(self, recipe: str, target_job_ids: list[str] = (), *, allow_other_users: bool = False,
                      progress=None) -> MonitorInstance:
        """Prometheus for the recipe's ports on each job (waited for while pending), ready when it returns."""
        from orchestrator.monitoring.monitor_recipes import monitor_recipe_paths
        path = monitor_recipe_paths(self._dirs()).get(recipe)
        mid = self.orch.monitors.start_monitor(str(path) if path else recipe, [str(j) for j in target_job_ids],
                                               allow_other_users=allow_other_users, progress=progress)
        status = self.orch.monitors.module.check_monitor_status(mid)
        return MonitorInstance(mid, status.get("url"), status.get("job_id"), recipe,
                               tuple(str(j) for j in target_job_ids))

    def get_status(self, monitor_id: str) -> dict:
        return self.orch.monitors.check_monitor_status(monitor_id)

    def export_metrics(self, monitor_id: str, path: str | Path) -> Path:
        """A snapshot of the monitor now: each target's health and last error, and the current value of
        its report's metrics (up, CPU, memory, GPU, scrape duration), as JSON."""
        report = self.orch.monitors.report(monitor_id)
        doc = {"monitor_id": report["monitor_id"], "taken_at": now_iso(), "targets": report["targets"],
               "metrics": report["metrics"]}
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path, "w") as f:
            json.dump(doc, f, indent=1)
        return path

    def stop_monitor(self, monitor_id: str) -> bool:
        return self.orch.monitors.stop_monitor(monitor_id)

    def close(self) -> None:
        self.orch.close()
