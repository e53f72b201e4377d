"""What every command shares: the per-invocation context (one orchestrator, one
SSH connection), --config/--json, output and progress lines."""

from __future__ import annotations

import json
import os
import time

import click


class Context:
    """Per-invocation state: one orchestrator (hence one SSH connection)."""

    def __init__(self, config_path: str | None, as_json: bool, stats: bool):
        self.config_path = config_path
        self.as_json = as_json
        self.stats = stats or os.environ.get("ORCH_STATS") == "1"
        self.started = time.monotonic()
        self._orch = None
        self._config = None

    def optional_config(self):
        """The config (read once per invocation), or None where no file was named and ./config.yaml is
        absent: the commands that need no cluster (dry runs, validate, recipes list) work without one."""
        if self._config is None:
            from orchestrator.config import load_config, resolve_config_path
            if not (self.config_path or resolve_config_path(None).exists()):
                return None
            self._config = load_config(self.config_path)
        return self._config

    @property
    def orch(self):
        if self._orch is None:
            from orchestrator.api import BenchmarkOrchestrator
            self._orch = BenchmarkOrchestrator(self._config or self.config_path)
        return self._orch

    def close(self) -> None:
        if self._orch is None:
            return
        if self.stats and self._orch.opened_transport is not None:
            stats = self._orch.opened_transport.stats
            via = getattr(self._orch.opened_transport, "kind", "?")
            why = getattr(self._orch.opened_transport, "chosen", "")
            from orchestrator.logs import json_format, log
            if json_format():
                log("orch-stats", connections=stats.connections, commands=stats.commands,
                    transfers=stats.transfers, commands_by_phase=dict(stats.by_phase), wall_s=round(time.monotonic() - self.started, 3), transport=via,
                    transport_chosen=why)
            else:
                click.echo(f"orch-stats: {stats.summary()} wall_s={time.monotonic() - self.started:.3f} "
                           f"transport={via}" + (f" ({why})" if why else ""), err=True)
        self._orch.close()


def common_options(fn):
    """--config and --json on every command; a subcommand's value wins over the group's."""
    fn = click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
                      help="config file (default: $ORCH_CONFIG, else ./config.yaml)")(fn)
    fn = click.option("--json", "as_json", is_flag=True, default=None, help="machine-readable output")(fn)
    return fn


def _ctx(click_ctx, config_path=None, as_json=None) -> Context:
    ctx: Context = click_ctx.obj
    if config_path:
        ctx.config_path = config_path
    if as_json:
        ctx.as_json = True
    return ctx


def emit(ctx: Context, data, text: str) -> None:
    from orchestrator.terminal import printable
    click.echo(json.dumps(data, indent=2, default=str) if ctx.as_json else printable(text))


def progress(message: str, **fields) -> None:
    from orchestrator.logs import log
    log(message, **fields)
