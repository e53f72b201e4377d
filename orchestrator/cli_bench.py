"""CLI: bench run (a whole benchmark session)."""

from __future__ import annotations

import sys

import click

from .cli import _ctx, cli, common_options, emit, progress
from .table import render_table


def kpi_table(kpis: list[dict]) -> str:
    rows = []
    for k in kpis:
        v = k["value"]
        rows.append([k["kpi"], "absent" if v is None else f"{v:.6g}", k["unit"], k["source"]])
    return render_table(["kpi", "value", "unit", "source"], rows)


def run_benchmark(ctx, recipe_ref: str, out: str | None, keep: bool) -> None:
    try:
        report = ctx.orch.start_benchmark_session(recipe_ref, out_dir=out, keep=keep, progress=progress)
    except KeyboardInterrupt:
        click.echo("interrupted: every job the session started was stopped; partial results were written", err=True)
        sys.exit(130)
    out_dir = report["manifest"]["session"]
    emit(ctx, report, kpi_table(report["kpis"]) + f"\n\nsession {out_dir}: see report.html beside MANIFEST.json")


@cli.group()
def bench():
    """Benchmark sessions: services + monitor + load clients -> KPIs and a report."""


@bench.command("run")
@common_options
@click.argument("recipe", metavar="NAME|FILE")
@click.option("--out", default=None, type=click.Path(file_okay=False), help="artifacts dir (default: results_dir/<session>)")
@click.option("--keep", is_flag=True, help="leave services, monitor and clients running")
@click.pass_context
def bench_run(click_ctx, config_path, as_json, recipe, out, keep):
    """Deploy, monitor, load, collect, report, clean up."""
    run_benchmark(_ctx(click_ctx, config_path, as_json), recipe, out, keep)


@bench.command("collect")
@common_options
@click.argument("session_dir", type=click.Path(file_okay=False, exists=True))
@click.pass_context
def bench_collect(click_ctx, config_path, as_json, session_dir):
    """Query a kept session's monitor again for its window and rewrite its artifacts."""
    from pathlib import Path
    from .artifacts import recollect_session
    ctx = _ctx(click_ctx, config_path, as_json)
    report = recollect_session(ctx.orch, Path(session_dir), say=progress)
    emit(ctx, report, kpi_table(report["kpis"]))


@bench.command("report")
@common_options
@click.argument("session_dir", required=False, type=click.Path(file_okay=False))
@click.option("--monitor", "monitor_id", default=None, help="report on a monitor's services instead of a session")
@click.option("--from", "start", default="-15m", show_default=True, help="with --monitor")
@click.option("--to", "end", default="now", show_default=True, help="with --monitor")
@click.option("--out", default=None, type=click.Path(file_okay=False), help="with --monitor: where to write")
@click.pass_context
def bench_report(click_ctx, config_path, as_json, session_dir, monitor_id, start, end, out):
    """Re-render a session's report offline, or report on any monitor over --from/--to."""
    from pathlib import Path
    from .artifacts import monitor_window_report, rerender_session
    ctx = _ctx(click_ctx, config_path, as_json)
    if monitor_id:
        from .cli_monitor import _window
        s, e = _window(start, end)
        target = Path(out or session_dir or ctx.orch.config.results_dir / f"{monitor_id}-report")
        report = monitor_window_report(ctx.orch, monitor_id, s, e, target, say=progress)
    elif session_dir:
        report = rerender_session(Path(session_dir), say=progress)
    else:
        raise click.UsageError("give a session directory, or --monitor ID with --from/--to")
    emit(ctx, report, kpi_table(report["kpis"]))
