"""CLI: --recipe, --status, --service-endpoint, logs, doctor."""

from __future__ import annotations

import sys

import click

from orchestrator.cli.common import Context, _ctx, common_options, emit, progress
from orchestrator.terminal import render_table
from orchestrator.errors import Terminated


def start_service_cmd(ctx: Context, recipe_ref: str, dry_run: bool, wait: bool, timeout) -> None:
    from orchestrator.bench.recipe import is_benchmark_ref
    from orchestrator.cli.recipes import configured_dirs
    if is_benchmark_ref(recipe_ref, configured_dirs(ctx)):
        from orchestrator.cli.bench import run_benchmark
        if dry_run:
            from orchestrator.cli.bench import show_plan
            show_plan(ctx, recipe_ref)
            return
        run_benchmark(ctx, recipe_ref, out=None, keep=False)
        return
    if dry_run:  # no connection: nothing is submitted
        from orchestrator.cli.recipes import render_dry_run
        click.echo(render_dry_run(ctx, recipe_ref)[1], nl=False)
        return
    recipe = ctx.orch.load_recipe(recipe_ref)
    if recipe.is_monitor:  # a Prometheus recipe (seed 001's my_prometheus.yaml): its targets get a prometheus.yml
        mid = ctx.orch.monitors.start_monitor(recipe, wait=wait, timeout=timeout, progress=progress)
        if wait:
            ep = ctx.orch.monitors.endpoint(mid)
            emit(ctx, {"service_id": mid, "monitor_id": mid, **ep}, f"{mid} ready: {ep['url']} (UI {ep['ui_url']})")
        else:
            emit(ctx, {"service_id": mid, "monitor_id": mid, "job_id": ctx.orch.servers.registry.record(mid).job_id}, mid)
        return
    servers = ctx.orch.servers
    wait_s = timeout or (recipe.health.timeout if recipe.health else 300)
    if recipe.replicas > 1:   # N copies, each its own job (a benchmark session spreads a client over them)
        ids = []
        try:
            for _ in range(recipe.replicas):
                ids.append(servers.start_service(recipe, progress=progress))
            eps = [servers.wait_until_ready(sid, timeout=wait_s, progress=progress) for sid in ids] if wait else []
        except (KeyboardInterrupt, Terminated):
            servers.cancel_many(ids)   # none of them outlives an interrupted start
            raise
        emit(ctx, [{"service_id": sid, **(eps[i].to_dict() if eps else {"job_id": servers.registry.record(sid).job_id})}
                   for i, sid in enumerate(ids)],
             "\n".join(f"{sid} ready: {eps[i].url or eps[i].host}" if eps else sid for i, sid in enumerate(ids)))
        return
    sid = servers.start_service(recipe, progress=progress)
    if wait:
        try:
            ep = servers.wait_until_ready(sid, timeout=wait_s, progress=progress)
        except (KeyboardInterrupt, Terminated):
            servers.cancel_many([sid])  # interrupted while waiting: the job does not outlive the command
            raise
        emit(ctx, {"service_id": sid, **ep.to_dict()}, f"{sid} ready: {ep.url or ep.host}")
    else:
        emit(ctx, {"service_id": sid, "job_id": servers.registry.record(sid).job_id}, sid)


def stop_cmd(ctx: Context, ident: str) -> None:
    """--stop-service: a monitor goes through MonitorsModule (its exporters stop too, and monitors.json
    says it stopped), any other service through ServersModule."""
    mid = ctx.orch.monitors.tracked(ident)
    st = ctx.orch.monitors.stop(mid) if mid else ctx.orch.servers.stop_service(ident)
    emit(ctx, st.__dict__, f"stopped: {st.line()}")


def explain_unexplained(ctx: Context) -> None:
    """Jobs of ours that ended badly with no verdict yet (no watcher ran) are attributed on first sight:
    one poll of the watcher, which reads each such job's log once."""
    from orchestrator.watch.attribution import ended_badly
    servers = ctx.orch.servers
    unexplained = [sid for sid, rec in servers.registry.records().items()
                   if rec.job_id and not rec.verdict and not rec.stopped_by_user
                   and ended_badly(rec.state, rec.exit_code)
                   and rec.state not in ("PENDING", "RUNNING", "SUBMITTING", "CANCELLED")]
    if unexplained:
        from orchestrator.watch.watcher import Watcher, WatchOptions
        Watcher(ctx.orch.config, ctx.orch.transport, servers, WatchOptions(), log=progress).poll()


def show_status(ctx: Context, show_all: bool = False) -> None:
    """--status: what is queued or running (a day's use leaves dozens of ended records); with --all,
    every service this laptop knows of, and a count of what the short form hides."""
    from orchestrator.cluster.slurm import TERMINAL_STATES
    every = ctx.orch.servers.list_running_services()
    explain_unexplained(ctx)
    rows = every if show_all else [r for r in every if r.state not in TERMINAL_STATES and r.state != "LEFT_QUEUE"]
    hidden = len(every) - len(rows)
    tracked = ctx.orch.servers.registry.records()
    verdicts = {sid: rec.verdict for sid, rec in tracked.items() if rec.verdict}
    text = "\n".join(r.line() + (f" | {verdicts[r.service_id]}" if r.service_id in verdicts else "")
                     for r in rows) if rows else "no services queued or running" if hidden else "no services"
    if hidden:
        text += f"\n({hidden} ended service(s) not shown: --status --all lists them)"
    emit(ctx, [{**r.__dict__, "verdict": verdicts.get(r.service_id),
                "evidence": tracked[r.service_id].evidence if r.service_id in tracked else None} for r in rows], text)


def show_endpoint(ctx: Context, ident: str) -> None:
    ep = ctx.orch.servers.get_service_endpoint(ident)
    lines = [f"service:  {ep.service_id} (job {ep.job_id}, {ep.state})",
             f"host:     {ep.host}" + (f"  (all nodes: {', '.join(ep.hosts)})" if len(ep.hosts) > 1 else ""),
             f"port:     {ep.port if ep.port is not None else '-'}" + (
                 f"  (all: {', '.join(map(str, ep.ports))})" if len(ep.ports) > 1 else ""),
             f"url:      {ep.url or '-'}"]
    if ep.health_url:
        lines.append(f"health:   {ep.health_url}")
    if ep.metrics_url:
        lines.append(f"metrics:  {ep.metrics_url}")
    extra = {}
    if ep.url and (ep.health_url or "").endswith("/-/ready"):  # a Prometheus monitor
        extra = {"api_url": f"{ep.url}/api/v1", "ui_url": f"{ep.url}/graph"}
        lines += [f"api:      {extra['api_url']}", f"ui:       {extra['ui_url']}"]
    lines.append("(URLs resolve on the cluster; `tunnel ID` forwards one to this machine)")
    emit(ctx, {**ep.to_dict(), **extra}, "\n".join(lines))


@click.command()
@common_options
@click.argument("ident", metavar="ID")
@click.option("-n", "--lines", default=50, show_default=True, help="lines from the end")
@click.option("-f", "--follow", is_flag=True, help="keep printing as the log grows, until the job ends")
@click.pass_context
def logs(click_ctx, config_path, as_json, ident, lines, follow):
    """The tail of a service's job output (service ID or SLURM job ID)."""
    ctx = _ctx(click_ctx, config_path, as_json)
    servers = ctx.orch.servers
    if follow:
        from orchestrator.terminal import printable
        job = servers.follow_logs(ident, lambda text: click.echo(printable(text), nl=False))
        if job is not None:
            progress(f"job {job.job_id} {job.state}")
        return
    p = servers.logs(ident, lines)
    if p.job is not None and p.job.state not in ("PENDING", "RUNNING"):
        explain_unexplained(ctx)
    rec = servers.registry.record(p.service_id) if p.service_id else None
    verdict, evidence = (rec.verdict, rec.evidence) if rec else (None, None)
    head = ""
    if verdict:
        head = f"== {p.service_id} (job {p.job_id}) ended: {verdict}\n" + "".join(
            f"   evidence: {e}\n" for e in evidence or []) + "== log tail:\n"
    emit(ctx, {"service_id": p.service_id, "job_id": p.job_id, "state": p.job.state if p.job else None,
               "verdict": verdict, "evidence": evidence, "log": p.log}, head + p.log)


@click.command()
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


@click.command()
@common_options
@click.option("--stop", is_flag=True, help="close the connection instead")
@click.pass_context
def connect(click_ctx, config_path, as_json, stop):
    """Open OpenSSH's master connection (ssh.client: openssh), which every command then reuses for
    10 idle minutes, or close it (--stop)."""
    from orchestrator.cluster.connect import choose_client
    ctx = _ctx(click_ctx, config_path, as_json)
    cfg = ctx.orch.config
    kind, why = choose_client(cfg.ssh)
    if kind != "openssh":
        raise click.UsageError(f"a connection kept between commands is OpenSSH's, and this config uses {kind} "
                               f"({why}): set ssh.client: openssh or auto (each paramiko command opens its own)")
    from orchestrator.cluster.openssh import OpenSSHTransport
    master = OpenSSHTransport(cfg.ssh, cfg.state_dir)
    if stop:
        stopped = master.stop()
        emit(ctx, {"stopped": stopped}, "OpenSSH master stopped" if stopped else "no OpenSSH master was running")
        return
    master.start()
    emit(ctx, {"control_path": master.control_path, "target": cfg.ssh.host},
         f"OpenSSH master connected to {cfg.ssh.host}: {master.control_path} (exits after 10 idle minutes)")


# `orch service ...`: the same commands as the seed documents' flags (--recipe, --status,
# --service-endpoint, --stop-service, --query-service-metrics), as one group with an ID argument each
@click.group("service")
def service():
    """Services as SLURM jobs: start, list, endpoint, stop, metrics (the seed flags' commands, grouped).
    ID is a service ID, its 8 hex alone, or a SLURM job ID."""


@service.command("start")
@common_options
@click.argument("recipe", metavar="NAME|FILE")
@click.option("--wait", is_flag=True, help="wait until running and healthy")
@click.option("--timeout", type=float, default=None, help="seconds to wait (default: the recipe's health.timeout)")
@click.option("--dry-run", is_flag=True, help="print the sbatch script (a benchmark: its plan); submit nothing")
@click.pass_context
def service_start(click_ctx, config_path, as_json, recipe, wait, timeout, dry_run):
    """Start the service of a recipe (as --recipe)."""
    start_service_cmd(_ctx(click_ctx, config_path, as_json), recipe, dry_run, wait, timeout)


@service.command("list")
@common_options
@click.option("--all", "show_all", is_flag=True, help="ended services too (this laptop's whole history)")
@click.pass_context
def service_list(click_ctx, config_path, as_json, show_all):
    """Queued and running services (as --status)."""
    show_status(_ctx(click_ctx, config_path, as_json), show_all)


@service.command("endpoint")
@common_options
@click.argument("ident", metavar="ID")
@click.pass_context
def service_endpoint(click_ctx, config_path, as_json, ident):
    """Host, port and URLs of a service (as --service-endpoint)."""
    show_endpoint(_ctx(click_ctx, config_path, as_json), ident)


@service.command("stop")
@common_options
@click.argument("ident", metavar="ID")
@click.pass_context
def service_stop(click_ctx, config_path, as_json, ident):
    """scancel a service; a monitor stops with its exporters (as --stop-service)."""
    stop_cmd(_ctx(click_ctx, config_path, as_json), ident)


@service.command("metrics")
@common_options
@click.argument("ident", metavar="ID")
@click.argument("promql")
@click.pass_context
def service_metrics(click_ctx, config_path, as_json, ident, promql):
    """Instant PromQL query on a monitor, or on the monitor scraping a service (as --query-service-metrics)."""
    from orchestrator.cli import monitor
    monitor.show_query(_ctx(click_ctx, config_path, as_json), ident, promql)


@service.command("prune")
@common_options
@click.option("--older-than", "older_than", default="7d", show_default=True,
              help="forget ended services submitted longer ago than this (30m, 12h, 7d)")
@click.pass_context
def service_prune(click_ctx, config_path, as_json, older_than):
    """Forget ended services in this laptop's records (--status --all lists fewer); nothing on the
    cluster changes, and a queued or running service is never forgotten."""
    import time

    from orchestrator.times import parse_duration
    ctx = _ctx(click_ctx, config_path, as_json)
    try:
        age = parse_duration(older_than)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--older-than") from None
    gone = ctx.orch.servers.registry.prune(time.time() - age)
    emit(ctx, {"pruned": gone}, f"forgot {len(gone)} ended service(s) submitted more than {older_than} ago")
