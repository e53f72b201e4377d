"""The `orch` / `python main.py` command: the root group and its flag-style commands;
every subcommand lives in its own module and is registered here."""

from __future__ import annotations

import importlib
import os
import signal
import sys

import click

from orchestrator.cli.common import Context, common_options
from orchestrator.errors import OrchestratorError, Terminated
from orchestrator.version import __version__

# Each subcommand's module is imported only when that command runs (or for --help): a command
# pays for what it uses, so `--status` does not load the benchmark, monitor or sandbox code.
SUBCOMMANDS = {
    "bench": ("bench", "bench"), "connect": ("services", "connect"), "dashboard": ("monitor", "dashboard"),
    "doctor": ("services", "doctor"), "health": ("watch", "health"), "init": ("init", "init"), "logs": ("services", "logs"),
    "monitor": ("monitor", "monitor"), "query-range": ("monitor", "query_range"), "report": ("bench", "report_group"),
    "recipes": ("recipes", "recipes"), "rerun": ("bench", "rerun"), "service": ("services", "service"), "validate": ("recipes", "validate"), "sandbox": ("sandbox", "sandbox"), "tunnel": ("monitor", "tunnel"),
    "watch": ("watch", "watch"),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx, name: str):
        if name not in SUBCOMMANDS:
            return None
        module, attr = SUBCOMMANDS[name]
        return getattr(importlib.import_module(f"orchestrator.cli.{module}"), attr)


@click.group(cls=LazyGroup, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@common_options
@click.option("--stats", is_flag=True, help="print SSH connections/commands used to stderr")
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None,
              help="progress and events as text (default) or JSON lines (also $ORCH_LOG_FORMAT)")
@click.option("--recipe", metavar="NAME|FILE", help="start the service of this recipe (names: config recipe_dirs, then the recipes shipped in the package)")
@click.option("--dry-run", is_flag=True, help="with --recipe: print the sbatch script, submit nothing")
@click.option("--wait", is_flag=True, help="with --recipe: wait until running and healthy")
@click.option("--timeout", type=float, default=None, help="seconds to wait (default: the recipe's health.timeout)")
@click.option("--status", is_flag=True, help="list queued and running services: job ID | service ID | state | elapsed | nodes")
@click.option("--all", "show_all", is_flag=True, help="with --status: ended services too (this laptop's whole history)")
@click.option("--service-endpoint", metavar="ID", help="host, port and URLs of a service (service or job ID)")
@click.option("--stop-service", metavar="ID", help="scancel a service (service or job ID)")
@click.option("--query-service-metrics", nargs=2, metavar="ID PROMQL", default=None,
              help="instant PromQL query on a monitor (or the monitor scraping service ID)")
@click.version_option(__version__)
@click.pass_context
def cli(click_ctx, config_path, as_json, stats, log_format, recipe, dry_run, wait, timeout, status, show_all,
        service_endpoint, stop_service, query_service_metrics):
    """Deploy AI services as SLURM jobs, monitor them with Prometheus, benchmark them.

    Everything runs on the cluster; this tool talks to the login node over SSH.
    A recipe given by name is looked up in each of config.yaml's recipe_dirs
    (DIR/services/NAME.yaml, DIR/benchmarks/NAME.yaml), then among the recipes
    shipped with the tool; never in the current directory. --debug shows a
    traceback with an error.
    """
    from orchestrator.logs import configure
    configure(log_format or os.environ.get("ORCH_LOG_FORMAT") or "text")
    click_ctx.obj = ctx = Context(config_path, bool(as_json), stats)
    click_ctx.call_on_close(ctx.close)
    if click_ctx.invoked_subcommand is not None:
        return
    ident = service_endpoint or stop_service or (query_service_metrics[0] if query_service_metrics else None)
    try:
        _dispatch(click_ctx, ctx, recipe, dry_run, wait, timeout, status, show_all, service_endpoint,
                  stop_service, query_service_metrics)
    except OrchestratorError as exc:
        exc.log_fields = ident_fields(ident)  # the JSON error line says which service or job
        raise


def ident_fields(ident: str | None) -> dict:
    from orchestrator.services.probe import JOB_ID_RE, SERVICE_ID_RE
    ident = (ident or "").strip()
    if SERVICE_ID_RE.match(ident):
        return {"service_id": ident}
    return {"job_id": ident} if JOB_ID_RE.match(ident) else {}


def _dispatch(click_ctx, ctx, recipe, dry_run, wait, timeout, status, show_all, service_endpoint, stop_service,
              query_service_metrics) -> None:
    if (dry_run or wait or timeout) and not recipe:
        raise click.UsageError("--dry-run, --wait and --timeout go with --recipe")
    if show_all and not status:
        raise click.UsageError("--all goes with --status")
    from orchestrator.cli import services
    if recipe:
        services.start_service_cmd(ctx, recipe, dry_run, wait, timeout)
    elif status:
        services.show_status(ctx, show_all)
    elif service_endpoint:
        services.show_endpoint(ctx, service_endpoint)
    elif stop_service:
        services.stop_cmd(ctx, stop_service)
    elif query_service_metrics:
        from orchestrator.cli import monitor
        monitor.show_query(ctx, *query_service_metrics)
    else:
        click.echo(click_ctx.get_help())


def _terminate(signum, frame):
    raise Terminated(signum)


def main() -> None:
    debug = "--debug" in sys.argv[1:] or os.environ.get("ORCH_DEBUG") == "1"
    if "--debug" in sys.argv[1:]:
        sys.argv.remove("--debug")
    # SIGTERM (timeout, a CI runner, kill) and SIGHUP (a closed terminal) unwind like Ctrl-C, so every
    # `finally` that cancels jobs runs; the exit code says which signal it was
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    try:
        cli.main(standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Terminated as exc:
        click.echo(str(exc), err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except OrchestratorError as exc:
        _fail(str(exc), debug, getattr(exc, "log_fields", {}))
    except Exception as exc:  # a bug or an unforeseen failure: one line for users, the traceback with --debug
        _fail(f"internal error: {type(exc).__name__}: {exc}" + ("" if debug else " (run with --debug for the traceback)"),
              debug)


def _fail(message: str, debug: bool, fields: dict | None = None) -> None:
    from orchestrator.logs import json_format, log
    if debug:
        import traceback
        traceback.print_exc()
    if json_format():
        log(message, level="error", **(fields or {}))
    else:
        from orchestrator.terminal import printable  # (an error may quote a job's name or log)
        click.echo(f"error: {printable(message)}", err=True)
    sys.exit(1)
