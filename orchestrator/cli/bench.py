"""CLI: bench run (a whole benchmark session)."""

from __future__ import annotations

import sys

import click

from orchestrator.cli.common import _ctx, common_options, emit, progress
from orchestrator.terminal import render_table
from orchestrator.errors import Terminated


def kpi_table(kpis: list[dict]) -> str:
    rows = []
    for k in kpis:
        v = k["value"]
        rows.append([k["kpi"], "absent" if v is None else f"{v:.6g}", k["unit"], k["source"]])
    return render_table(["kpi", "value", "unit", "source"], rows)


def run_session(run) -> dict:
    """A session to its end; Ctrl-C or a signal exits 130 / 128+N after the session's own cleanup."""
    try:
        return run()
    except (KeyboardInterrupt, Terminated) as exc:
        code = exc.exit_code if isinstance(exc, Terminated) else 130
        click.echo(f"{'interrupted' if code == 130 else exc}: the jobs the session started were cancelled "
                   "(or recorded with the command that cancels them); partial results were written", err=True)
        sys.exit(code)


INVALID_EXIT = 3    # the session ran, but did not measure the load it was asked for (report.json: valid false)


def exit_if_invalid(report: dict) -> None:
    """An invalid session is not a warning in small print: its reasons, then exit 3."""
    if report.get("valid") is False:
        click.echo("INVALID session: " + "; ".join(report.get("invalid_reasons") or []), err=True)
        sys.exit(INVALID_EXIT)


def run_benchmark(ctx, recipe_ref: str, out: str | None, keep: bool) -> None:
    report = run_session(lambda: ctx.orch.start_benchmark_session(recipe_ref, out_dir=out, keep=keep, progress=progress))
    emit(ctx, report, kpi_table(report["kpis"]) + f"\n\nsession {report['session']}: {report['out_dir']}/report.html")
    exit_if_invalid(report)


@click.group()
def bench():
    """Benchmark sessions: services + monitor + load clients -> KPIs and a report."""


@bench.command("run")
@common_options
@click.argument("recipe", metavar="NAME|FILE")
@click.option("--out", default=None, type=click.Path(file_okay=False), help="artifacts dir (default: results_dir/<session>)")
@click.option("--keep", is_flag=True, help="leave services, monitor and clients running")
@click.option("--dry-run", is_flag=True, help="check the recipe and everything it names, print the plan "
                                              "(jobs, nodes, ports, clients, window); submit nothing")
@click.option("--scripts", "scripts_dir", default=None, type=click.Path(file_okay=False),
              help="with --dry-run: write each job's rendered sbatch script into this folder")
@click.pass_context
def bench_run(click_ctx, config_path, as_json, recipe, out, keep, dry_run, scripts_dir):
    """Deploy, monitor, load, collect, report, clean up. Exits 3 when the session is invalid (its load not
    delivered, too many errors, counts the engine contradicts): report.json says why."""
    ctx = _ctx(click_ctx, config_path, as_json)
    if dry_run:
        show_plan(ctx, recipe, scripts_dir)
    elif scripts_dir:
        raise click.UsageError("--scripts goes with --dry-run")
    else:
        run_benchmark(ctx, recipe, out, keep)


def show_plan(ctx, recipe_ref: str, scripts_dir: str | None = None) -> None:
    """A benchmark recipe's plan, checked here; no job submitted, no connection opened."""
    import re
    from pathlib import Path

    from orchestrator.bench.plan import plan_text
    from orchestrator.bench.session import dry_run
    from orchestrator.bench.recipe import load_benchmark
    from orchestrator.fileio import write_atomic
    recipe = load_benchmark(recipe_ref, ctx.orch.config.recipe_dirs)
    plan = dry_run(ctx.orch, recipe)
    text = plan_text(plan)
    if scripts_dir:
        folder = Path(scripts_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for i, job in enumerate(plan.jobs):
            write_atomic(folder / f"{i:02d}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', job.name).strip('-')}.sbatch", job.script)
        text += f"\n\n{len(plan.jobs)} sbatch script(s) written to {folder}"
    doc = plan.to_dict()
    for job in doc["jobs"]:
        job.pop("script")
    emit(ctx, doc, text)


@bench.command("collect")
@common_options
@click.argument("session_dir", type=click.Path(file_okay=False, exists=True))
@click.pass_context
def bench_collect(click_ctx, config_path, as_json, session_dir):
    """Query a kept session's monitor again for its window and rewrite its artifacts."""
    from pathlib import Path

    from orchestrator.bench.collect import recollect_session
    ctx = _ctx(click_ctx, config_path, as_json)
    report = recollect_session(ctx.orch, Path(session_dir))
    progress(f"report: {Path(session_dir) / 'report.html'}")
    emit(ctx, report, kpi_table(report["kpis"]))


@bench.command("report")
@common_options
@click.argument("session_dir", required=False, type=click.Path(file_okay=False))
@click.option("--monitor", "monitor_id", default=None, help="report on a monitor's services instead of a session")
@click.option("--from", "start", default="-15m", show_default=True, help="with --monitor")
@click.option("--to", "end", default="now", show_default=True, help="with --monitor")
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="where to write (a session: a copy of it there, re-rendered; the session is left as it was)")
@click.option("--format", "formats", multiple=True, type=click.Choice(["md", "pdf", "png"]),
              help="also export: md (report.md, for a PR or a chat), pdf (report.pdf), png (charts/*.png); "
                   "pdf and png through headless Chromium")
@click.pass_context
def bench_report(click_ctx, config_path, as_json, session_dir, monitor_id, start, end, out, formats):
    """Re-render a session's report offline, or report on any monitor over --from/--to; --format
    exports it as Markdown, PDF or PNG charts."""
    from pathlib import Path

    from orchestrator.bench.collect import monitor_window_report
    from orchestrator.reports.artifacts import rerender_session
    ctx = _ctx(click_ctx, config_path, as_json)
    if monitor_id:
        from orchestrator.cli.monitor import _window
        s, e = _window(start, end)
        target = Path(out or session_dir or ctx.orch.config.results_dir / f"{monitor_id}-report")
        report = monitor_window_report(ctx.orch, monitor_id, s, e, target)
        progress(f"report: {target / 'report.html'}")
    elif session_dir:
        target = Path(session_dir)
        if out and Path(out).resolve() != target.resolve():
            target = copy_session(target, Path(out))
        report = rerender_session(target)
        progress(f"report: {target / 'report.html'}")
    else:
        raise click.UsageError("give a session directory, or --monitor ID with --from/--to")
    exported = _export(report, target, formats)
    if exported:
        report = {**report, "exported": [str(p) for p in exported]}
    emit(ctx, report, kpi_table(report["kpis"]))


def copy_session(session_dir, out):
    """The session's files in ``out`` (new, or empty), for a report that leaves the original untouched."""
    import shutil

    from orchestrator.errors import OrchestratorError
    if not (session_dir / "MANIFEST.json").exists():
        raise OrchestratorError(f"{session_dir}: no MANIFEST.json: not a session directory")
    if out.exists() and any(out.iterdir()):
        raise OrchestratorError(f"{out}: not empty; --out needs a new or empty directory")
    shutil.copytree(session_dir, out, dirs_exist_ok=True, symlinks=True)
    return out


def _export(report: dict, target, formats) -> list:
    from orchestrator.fileio import write_atomic
    from orchestrator.reports import export
    written = []
    if "md" in formats:
        write_atomic(target / "report.md", export.markdown(report))
        written.append(target / "report.md")
    if "pdf" in formats:
        written.append(export.pdf(target, target / "report.pdf"))
    if "png" in formats:
        written += export.pngs(target, target / "charts")
    for p in written:
        progress(f"exported: {p}")
    return written


@bench.command("cleanup")
@common_options
@click.argument("session_dir", type=click.Path(file_okay=False, exists=True))
@click.pass_context
def bench_cleanup(click_ctx, config_path, as_json, session_dir):
    """Cancel the jobs a session could not cancel itself (recorded in its LEFT_RUNNING.json)."""
    import json
    from pathlib import Path

    from orchestrator.bench.cleanup import LEFT_RUNNING
    ctx = _ctx(click_ctx, config_path, as_json)
    path = Path(session_dir) / LEFT_RUNNING
    if not path.exists():
        emit(ctx, {"cancelled": {}}, f"{session_dir}: nothing left running (no {LEFT_RUNNING})")
        return
    jobs = {j["service_id"]: j.get("job_id") for j in json.loads(path.read_text())["jobs"]}
    servers = ctx.orch.servers
    for sid, job_id in jobs.items():  # the session's state may be elsewhere: the file has the job IDs
        servers.registry.remember(sid, job_id)
    result = servers.cancel_many(list(jobs))
    path.unlink()
    emit(ctx, {"cancelled": result}, "\n".join(f"{sid}: {r}" for sid, r in result.items()))


@click.group("report")
def report_group():
    """Reports of sessions: compare two for regressions."""


@report_group.command("compare")
@common_options
@click.argument("a", type=click.Path(exists=True))
@click.argument("b", type=click.Path(exists=True))
@click.option("--threshold", "thresholds", multiple=True, metavar="KPI=PCT%",
              help="e.g. p99=10% throughput=10% (default: p99=10%, throughput=10%)")
@click.pass_context
def report_compare(click_ctx, config_path, as_json, a, b, thresholds):
    """Side by side; exit 1 when B is worse than A beyond a threshold (and beyond the noise), 3 when either
    session is invalid (no verdict is called on a session that did not deliver its load).

    A and B are session directories, or a reference tool's own result: a `vllm bench serve
    --save-detailed` JSON, or aiperf's profile_export.jsonl (or its artifact folder)."""
    from pathlib import Path

    from orchestrator.analysis.compare import compare_sessions
    from orchestrator.analysis.experiments import parse_thresholds
    ctx = _ctx(click_ctx, config_path, as_json)
    try:
        thr = parse_thresholds([t for group in thresholds for t in group.split()]) if thresholds else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--threshold") from None
    rows, _, refused = compare_sessions(Path(a), Path(b), thr)
    pct = lambda v: "-" if v is None else f"{v * 100:+.1f}%"
    val = lambda v: "absent" if v is None else f"{v:.4g}"
    table = render_table(["kpi", "A", "B", "change", "noise (2σ)", "threshold", "verdict"],
                         [[r.kpi, val(r.a), val(r.b), pct(r.change), "-" if r.noise is None else f"±{2 * r.noise * 100:.1f}%",
                           "-" if r.threshold is None else f"{r.threshold * 100:.0f}%", r.verdict] for r in rows])
    regressions = [r for r in rows if r.verdict.startswith("REGRESSION")]
    summary = ("not compared: " + "; ".join(refused) if refused else
               f"REGRESSION in {', '.join(r.kpi for r in regressions)}" if regressions
               else "no regression beyond the thresholds")
    emit(ctx, {"a": a, "b": b, "rows": [r.__dict__ for r in rows], "regression": bool(regressions),
               **({"refused": refused} if refused else {})},
         f"A: {a}\nB: {b}\n{table}\n{summary}")
    if refused:
        sys.exit(INVALID_EXIT)
    if regressions:
        sys.exit(1)


@click.command("rerun")
@common_options
@click.argument("session_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="artifacts dir of the new session (default: results_dir/<session>)")
@click.option("--keep", is_flag=True, help="leave services, monitor and clients running")
@click.pass_context
def rerun(click_ctx, config_path, as_json, session_dir, out, keep):
    """Run a session again from MANIFEST.json: the recipes as they were, not as they are on disk."""
    from pathlib import Path

    from orchestrator.bench.rerun import rerun_recipes
    from orchestrator.bench.session import BenchmarkSession
    ctx = _ctx(click_ctx, config_path, as_json)
    bench, services, previous, warnings = rerun_recipes(Path(session_dir))
    for w in warnings:
        click.echo(f"warning: {w}", err=True)
    progress(f"rerun of {previous} with its recorded recipes")
    report = run_session(lambda: BenchmarkSession(ctx.orch, bench, out, keep, progress, service_recipes=services,
                                                  rerun_of=previous).run())
    emit(ctx, report, kpi_table(report["kpis"]) + f"\n\nsession {report['session']} (rerun of {previous}): "
                                                  f"{report['out_dir']}/report.html")
    exit_if_invalid(report)
