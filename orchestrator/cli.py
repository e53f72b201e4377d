"""Click commands: parse arguments, call the API, print. No logic of its own."""

from __future__ import annotations

import json
import os
import sys
import time

import click

from . import __version__
from .errors import OrchestratorError
from .table import render_table


class Context:
    """Per-invocation state: one orchestrator (hence one SSH connection)."""

    def __init__(self, config_path: str | None, as_json: bool, stats: bool):
        self.config_path = config_path
        self.as_json = as_json
        self.stats = stats or os.environ.get("ORCH_STATS") == "1"
        self.started = time.monotonic()
        self._orch = None

    @property
    def orch(self):
        if self._orch is None:
            from .orchestrator import BenchmarkOrchestrator
            self._orch = BenchmarkOrchestrator(self.config_path)
        return self._orch

    def close(self) -> None:
        if self._orch is None:
            return
        if self.stats and self._orch._transport is not None:
            stats = self._orch._transport.stats
            click.echo(f"orch-stats: {stats.summary()} wall_s={time.monotonic() - self.started:.3f}",
                       err=True)
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
    click.echo(json.dumps(data, indent=2, default=str) if ctx.as_json else text)


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@common_options
@click.option("--stats", is_flag=True, help="print SSH connections/commands used to stderr")
@click.version_option(__version__)
@click.pass_context
def cli(click_ctx, config_path, as_json, stats):
    """Deploy AI services as SLURM jobs, monitor them with Prometheus, benchmark them.

    Everything runs on the cluster; this tool talks to the login node over SSH.
    """
    click_ctx.obj = Context(config_path, bool(as_json), stats)
    click_ctx.call_on_close(click_ctx.obj.close)
    if click_ctx.invoked_subcommand is None:
        click.echo(click_ctx.get_help())


@cli.command()
@common_options
@click.pass_context
def doctor(click_ctx, config_path, as_json):
    """Check SSH, SLURM, the remote work dir and cluster tools (one remote command)."""
    ctx = _ctx(click_ctx, config_path, as_json)
    checks = ctx.orch.doctor()
    rows = [[c.name, c.status, c.detail + (f"  -> {c.fix}" if not c.ok and c.fix else "")] for c in checks]
    emit(ctx, [c.__dict__ | {"status": c.status} for c in checks],
         render_table(["check", "status", "detail"], rows))
    if any(not c.ok and c.required for c in checks):
        sys.exit(1)


@cli.group()
def sandbox():
    """A throwaway SLURM cluster on this machine, in network namespaces (root)."""


@sandbox.command("up")
@click.option("--nodes", default=2, show_default=True, type=click.IntRange(1, 8))
@click.option("--no-install", is_flag=True, help="fail instead of installing missing packages")
def sandbox_up(nodes, no_install):
    """Build the cluster (idempotent) and write a config file pointing at it."""
    from . import sandbox as sb
    path = sb.up(nodes=nodes, install=not no_install, progress=lambda m: click.echo(f"[sandbox] {m}", err=True))
    click.echo(f"export ORCH_CONFIG={path}")


@sandbox.command("down")
def sandbox_down():
    """Remove every namespace, route, process and file `up` created."""
    from . import sandbox as sb
    sb.down(progress=lambda m: click.echo(f"[sandbox] {m}", err=True))


@sandbox.command("status")
@click.option("--json", "as_json", is_flag=True)
def sandbox_status(as_json):
    """Is the sandbox up; daemons and node states."""
    from . import sandbox as sb
    st = sb.status()
    if as_json:
        click.echo(json.dumps(st, indent=2))
    elif not st["up"] and "daemons" not in st:
        click.echo("sandbox: down")
    else:
        click.echo(f"sandbox: {'up' if st['up'] else 'DEGRADED'}  config: {st['config']}")
        click.echo(render_table(["daemon", "running"], [[k, v] for k, v in st["daemons"].items()]))
        click.echo(render_table(["node", "state"], [[k, v] for k, v in st["nodes"].items()]))
    if not st["up"]:
        sys.exit(1)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except OrchestratorError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
