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
            from .logs import _FORMAT, log
            if _FORMAT["value"] == "json":
                log("orch-stats", level="debug", connections=stats.connections, commands=stats.commands,
                    transfers=stats.transfers, wall_s=round(time.monotonic() - self.started, 3))
            else:
                click.echo(f"orch-stats: {stats.summary()} wall_s={time.monotonic() - self.started:.3f}", err=True)
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


def progress(message: str, **fields) -> None:
    from .logs import log
    log(message, **fields)


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@common_options
@click.option("--stats", is_flag=True, help="print SSH connections/commands used to stderr")
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None,
              help="progress and events as text (default) or JSON lines (also $ORCH_LOG_FORMAT)")
@click.option("--recipe", metavar="NAME|FILE", help="start the service of this recipe")
@click.option("--dry-run", is_flag=True, help="with --recipe: print the sbatch script, submit nothing")
@click.option("--wait", is_flag=True, help="with --recipe: wait until running and healthy")
@click.option("--timeout", type=float, default=None, help="seconds to wait (default: the recipe's health.timeout)")
@click.option("--status", is_flag=True, help="list services: job ID | service ID | state | elapsed | nodes")
@click.option("--service-endpoint", metavar="ID", help="host, port and URLs of a service (service or job ID)")
@click.option("--stop-service", metavar="ID", help="scancel a service (service or job ID)")
@click.option("--query-service-metrics", nargs=2, metavar="ID PROMQL", default=None,
              help="instant PromQL query on a monitor (or the monitor scraping service ID)")
@click.version_option(__version__)
@click.pass_context
def cli(click_ctx, config_path, as_json, stats, log_format, recipe, dry_run, wait, timeout, status,
        service_endpoint, stop_service, query_service_metrics):
    """Deploy AI services as SLURM jobs, monitor them with Prometheus, benchmark them.

    Everything runs on the cluster; this tool talks to the login node over SSH.
    """
    from .logs import set_format
    set_format(log_format or os.environ.get("ORCH_LOG_FORMAT") or "text")
    click_ctx.obj = ctx = Context(config_path, bool(as_json), stats)
    click_ctx.call_on_close(ctx.close)
    if click_ctx.invoked_subcommand is not None:
        return
    if (dry_run or wait or timeout) and not recipe:
        raise click.UsageError("--dry-run, --wait and --timeout go with --recipe")
    if recipe:
        start_service_cmd(ctx, recipe, dry_run, wait, timeout)
    elif status:
        show_status(ctx)
    elif service_endpoint:
        show_endpoint(ctx, service_endpoint)
    elif stop_service:
        st = ctx.orch.servers.stop_service(stop_service)
        emit(ctx, st.__dict__, f"stopped: {st.line()}")
    elif query_service_metrics:
        from .cli_monitor import show_query
        show_query(ctx, *query_service_metrics)
    else:
        click.echo(click_ctx.get_help())


def start_service_cmd(ctx: Context, recipe_ref: str, dry_run: bool, wait: bool, timeout) -> None:
    from .benchrecipe import is_benchmark_file
    from .recipes import load_recipe
    if is_benchmark_file(recipe_ref):
        from .cli_bench import run_benchmark
        if dry_run:
            raise click.UsageError("--dry-run is for service recipes; a benchmark recipe runs with `bench run`")
        run_benchmark(ctx, recipe_ref, out=None, keep=False)
        return
    recipe = load_recipe(recipe_ref)
    if dry_run:
        from .config import load_config
        from .servers import ServersModule
        cfg = load_config(ctx.config_path)  # no connection: nothing is submitted
        sid, script = ServersModule(cfg, transport=None).render(recipe)
        click.echo(script, nl=False)
        return
    servers = ctx.orch.servers
    sid = servers.start_service(recipe, progress=progress)
    if wait:
        ep = servers.wait_until_ready(sid, timeout=timeout or (recipe.health.timeout if recipe.health else 300),
                                      progress=progress)
        emit(ctx, {"service_id": sid, **ep.to_dict()}, f"{sid} ready: {ep.url or ep.host}")
    else:
        rec = servers.store.get(sid)
        emit(ctx, {"service_id": sid, "job_id": rec["job_id"]}, sid)


def show_status(ctx: Context) -> None:
    rows = ctx.orch.servers.list_running_services()
    tracked = ctx.orch.servers.store.load()
    verdicts = {sid: rec["verdict"] for sid, rec in tracked.items() if rec.get("verdict")}
    text = "\n".join(r.line() + (f" | {verdicts[r.service_id]}" if r.service_id in verdicts else "")
                     for r in rows) if rows else "no services"
    emit(ctx, [{**r.__dict__, "verdict": verdicts.get(r.service_id),
                "evidence": tracked.get(r.service_id, {}).get("evidence")} for r in rows], text)


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


@cli.command()
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
        job = servers.follow_logs(ident, lambda text: click.echo(text, nl=False))
        if job is not None:
            progress(f"job {job.job_id} {job.state}")
        return
    p = servers.logs(ident, lines)
    rec = servers.store.get(p.service_id) or {}
    head = ""
    if rec.get("verdict"):
        head = f"== {p.service_id} (job {p.job_id}) ended: {rec['verdict']}\n" + "".join(
            f"   evidence: {e}\n" for e in rec.get("evidence") or []) + "== log tail:\n"
    emit(ctx, {"service_id": p.service_id, "job_id": p.job_id, "state": p.job.state if p.job else None,
               "verdict": rec.get("verdict"), "evidence": rec.get("evidence"), "log": p.log}, head + p.log)


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


from . import cli_bench, cli_monitor, cli_watch  # noqa: E402,F401  (register their commands)


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
        from .logs import _FORMAT, log
        if _FORMAT["value"] == "json":
            log(str(exc), level="error")
        else:
            click.echo(f"error: {exc}", err=True)
        sys.exit(1)
