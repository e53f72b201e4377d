"""BenchmarkOrchestrator: the Python API; wires config, transport and modules."""

from __future__ import annotations

import os

from orchestrator.cluster.connect import open_transport
from orchestrator.cluster.transport import Transport
from orchestrator.config import Config, load_config


class BenchmarkOrchestrator:
    """Entry point of the Python API.

    >>> orch = BenchmarkOrchestrator("config.yaml")
    >>> sid = orch.servers.start_service(orch.load_recipe("recipes/services/ollama.yaml"))

    One transport (one SSH connection, opened on first use) serves every module.
    """

    def __init__(self, config: str | os.PathLike | Config | None = None,
                 transport: Transport | None = None):
        self.config = config if isinstance(config, Config) else load_config(config)
        self._transport = transport
        self._servers = None
        self._monitors = None

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            self._transport = open_transport(self.config)
        return self._transport

    @property
    def servers(self):
        if self._servers is None:
            from orchestrator.services.servers import ServersModule
            self._servers = ServersModule(self.config, self.transport)
        return self._servers

    @property
    def monitors(self):
        if self._monitors is None:
            from orchestrator.monitoring.monitors import MonitorsModule
            self._monitors = MonitorsModule(self.config, self.servers)
        return self._monitors

    def show_monitors_status(self) -> list[dict]:
        """Every tracked monitor with its job state and targets' up/down state."""
        return [self.monitors.check_monitor_status(mid) for mid, rec in self.monitors.store.load().items()
                if not rec.get("stopped_at")]

    def get_system_status(self) -> dict:
        """Services and monitors in one squeue call."""
        rows = self.servers.list_running_services()
        monitors = self.monitors.store.load()
        return {"services": [r.__dict__ for r in rows if r.service_id not in monitors],
                "monitors": [r.__dict__ for r in rows if r.service_id in monitors]}

    def start_benchmark_session(self, recipe, out_dir=None, keep: bool = False, progress=None) -> dict:
        """Run a whole benchmark session; returns report.json's content."""
        from orchestrator.bench.recipe import BenchmarkRecipe, load_benchmark
        from orchestrator.bench.session import BenchmarkSession
        recipe = recipe if isinstance(recipe, BenchmarkRecipe) else load_benchmark(recipe, self.config.recipe_dirs)
        return BenchmarkSession(self, recipe, out_dir, keep, progress).run()

    def load_recipe(self, name_or_path: str):
        """A service recipe by file path, or by name from config.yaml's recipe_dirs, then the packaged ones."""
        from orchestrator.services.recipes import load_recipe
        return load_recipe(name_or_path, self.config.recipe_dirs)

    def doctor(self):
        from orchestrator.cluster.doctor import run_doctor
        return run_doctor(self.transport, self.config.remote.work_dir, self.config.remote.venv)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
