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
    def opened_transport(self) -> Transport | None:
        """The transport if a remote call opened it (None: nothing was asked of the cluster)."""
        return self._transport

    @property
    def servers(self):
        """ServersModule (services/servers.py) behind seed 001's forms (api/seeds.py)."""
        if self._servers is None:
            from orchestrator.api.seeds import SeedServers
            from orchestrator.services.servers import ServersModule
            self._servers = SeedServers(ServersModule(self.config, self.transport))
        return self._servers

    @property
    def monitors(self):
        """MonitorsModule (monitoring/monitors.py) behind seed 001's forms (api/seeds.py)."""
        if self._monitors is None:
            from orchestrator.api.seeds import SeedMonitors
            from orchestrator.monitoring.monitors import MonitorsModule
            # the seed forms print here (show_metrics' table), never in monitoring/
            self._monitors = SeedMonitors(MonitorsModule(self.config, self.servers.module),
                                          show=lambda r: print(result_text(r)))
        return self._monitors

    def show_monitors_status(self) -> list[dict]:
        """Every tracked monitor with its job state and targets' up/down state."""
        return [self.monitors.check_monitor_status(mid) for mid in self.monitors.live_monitors()]

    def get_system_status(self) -> dict:
        """Services and monitors in one squeue call."""
        rows = self.servers.list_running_services()
        monitors = self.monitors.store.load()
        return {"services": [r.__dict__ for r in rows if r.service_id not in monitors],
                "monitors": [r.__dict__ for r in rows if r.service_id in monitors]}

    @property
    def ssh_client(self) -> "SSHClient":
        """Seed 001's ``orchestrator.ssh_client.execute_command(cmd)``, over the one connection."""
        return SSHClient(self.transport)

    def start_benchmark_session(self, recipe, out_dir=None, keep: bool = False, progress=None):
        """Run a whole benchmark session (a benchmark recipe: its name, path or BenchmarkRecipe) and
        return report.json's content.

        Given a service recipe (as seed 001 does, ``start_benchmark_session(load_recipe(...))``), it
        starts that service instead and returns its ID: a Prometheus recipe as a monitor of its
        ``monitoring_targets``, any other as a plain service."""
        from orchestrator.services.recipes import ServiceRecipe
        if isinstance(recipe, ServiceRecipe):
            if recipe.is_monitor:
                return self.monitors.start_monitor(recipe, progress=progress)
            return self.servers.start_service(recipe, progress=progress)
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


class SSHClient:
    """Run a command on the login node over the orchestrator's connection (seed 001's ssh_client).

    The command is run as given, by the login node's shell: quote what it interpolates
    (``orchestrator.cluster.shell.quote``)."""

    def __init__(self, transport: Transport):
        self.transport = transport

    def execute_command(self, command: str, timeout: float | None = 120) -> tuple[int, str, str]:
        """``(exit_code, stdout, stderr)``; a lost connection or a timeout raises (TransportError)."""
        # not idempotent: a command of the caller's is never run twice after a dropped connection
        r = self.transport.run(command, timeout=timeout, idempotent=False)
        return r.exit_code, r.stdout, r.stderr


def result_text(r) -> str:
    """An instant answer (a monitoring.promql.QueryResult) as a table for the terminal: one row per series,
    its latest value."""
    from orchestrator.monitoring.promql import format_value, label_text
    from orchestrator.terminal import render_table
    if not r.series:
        return f"no data for {r.query}"
    return render_table(["series", "value"], [[label_text(s.labels), format_value(s.values[-1][1])] for s in r.series])
