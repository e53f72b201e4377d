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
