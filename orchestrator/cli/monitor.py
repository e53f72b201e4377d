"""CLI: monitor start|list|status|stop|add-target|remove-target|report|collect, query-range, tunnel."""

from __future__ import annotations

import csv
import io
import math
import sys
import time

import click

from orchestrator.cli.common import _ctx, common_options, emit, progress
from orchestrator.terminal import render_table
from orchestrator.api import result_text
from orchestrator.monitoring.promql import QueryResult, format_value, label_text
from orchestrator.times import parse_time


def warn(r: QueryResult) -> None:
    for w in r.warnings:
        click.echo(f"warning from Prometheus: {w}", err=True)


def show_query(ctx, ident: str, promql: str) -> None:
    r = ctx.orch.monitors.query_result(ident, promql)
    warn(r)
    emit(ctx, r.to_dict(), result_text(r))


@click.group()
def monitor():
    """Prometheus as a SLURM job, scraping services by their IDs."""


@monitor.command("start")
@common_options
@click.option("--recipe", default="prometheus", show_default=True,
              help="monitor recipe: a Prometheus service recipe, or one of recipes/monitors/ (vllm-monitor, ...: "
                   "its ports are scraped on each job ID given; `monitor list --available`)")
@click.option("--targets", multiple=True, metavar="TARGET",
              help="what to scrape (repeatable; also space-separated): a service ID or name of this tool, a job ID "
                   "(with a recipes/monitors/ recipe), JOBID:PORT, host:port, or http(s)://host:port/path")
@click.option("--allow-other-users", is_flag=True,
              help="a job ID may be another user's job (it is only scraped, never cancelled, tailed or written to)")
@click.option("--bearer-file", type=click.Path(dir_okay=False), default=None,
              help="file holding the bearer token the address and job targets want (never on the command line)")
@click.option("--scrape-interval", default=None, help="e.g. 5s (default: the recipe's)")
@click.option("--no-wait", is_flag=True, help="return once submitted")
@click.option("--grafana", is_flag=True, help="also deploy Grafana (the grafana recipe, a container) with this "
              "monitor as its datasource and the tool's dashboards")
@click.argument("more_targets", nargs=-1, metavar="[ID...]")
@click.pass_context
def monitor_start(click_ctx, config_path, as_json, recipe, targets, allow_other_users, bearer_file, scrape_interval,
                  no_wait, grafana, more_targets):
    """Deploy Prometheus with the given targets: services, jobs the tool did not start, addresses."""
    ctx = _ctx(click_ctx, config_path, as_json)
    if grafana and no_wait:
        raise click.UsageError("--grafana needs the monitor's address: drop --no-wait")
    ids = [t for group in targets for t in group.split()] + list(more_targets)
    mid = ctx.orch.monitors.start_monitor(recipe, ids, wait=not no_wait, progress=progress,
                                          scrape_interval=scrape_interval, allow_other_users=allow_other_users,
                                          bearer_file=bearer_file)
    if no_wait:
        emit(ctx, {"monitor_id": mid}, mid)
        return
    ep = ctx.orch.monitors.endpoint(mid)
    doc, text = {"monitor_id": mid, **ep}, f"{mid} ready: {ep['url']} (UI {ep['ui_url']})"
    if grafana:
        gid = _start_grafana(ctx, ep["url"], mid)
        gep = ctx.orch.servers.get_service_endpoint(gid)
        doc["grafana"] = {"service_id": gid, "url": gep.url}
        text += f"\n{gid} ready: {gep.url}; open it here with `tunnel {gid}` (dashboards: orchestrator: ...)"
    emit(ctx, doc, text)


def _start_grafana(ctx, prometheus_url: str, monitor_id: str) -> str:
    """Grafana with its provisioning files (datasource: this monitor; the tool's dashboards) shipped
    into its job dir, and the monitor's ID, whose secret its job reads at start."""
    from orchestrator.monitoring.grafana import provisioning
    recipe = ctx.orch.servers.load_recipe("grafana")
    files = {f"provisioning/{name}": text for name, text in provisioning(prometheus_url).items()}
    files["monitor-id"] = monitor_id + "\n"
    return ctx.orch.servers.start_service(recipe, extra_files=files, wait=True, progress=progress)


@monitor.command("list")
@common_options
@click.option("--available", is_flag=True, help="monitor recipes that can be started")
@click.pass_context
def monitor_list(click_ctx, config_path, as_json, available):
    """Running monitors (one squeue call), or the available monitor recipes."""
    ctx = _ctx(click_ctx, config_path, as_json)
    if available:
        rows = ctx.orch.monitors.available_recipes()
        emit(ctx, rows, render_table(["recipe", "targets", "description", "path"],
                                     [[r["name"], ", ".join(r.get("targets") or ["(the services named)"]),
                                       r["description"], r["path"]] for r in rows]))
        return
    rows = ctx.orch.monitors.running_monitors()
    emit(ctx, [r.__dict__ for r in rows], "\n".join(r.line() for r in rows) or "no monitors")


def id_argument(fn):
    """``monitor status ID`` or, as seed 000 writes it, ``monitor status --id ID``."""
    fn = click.option("--id", "id_option", metavar="ID", default=None, help="the monitor (as the argument)")(fn)
    return click.argument("ident", metavar="ID", required=False)(fn)


def one_id(ident: str | None, id_option: str | None) -> str:
    if ident and id_option and ident != id_option:
        raise click.UsageError(f"two monitors given ({ident} and --id {id_option}): name one")
    if not (ident or id_option):
        raise click.UsageError("name the monitor: ID or --id ID (`monitor list` shows them)")
    return ident or id_option


@monitor.command("status")
@common_options
@id_argument
@click.pass_context
def monitor_status(click_ctx, config_path, as_json, ident, id_option):
    """Job state, node, and each target's up/down state."""
    ctx = _ctx(click_ctx, config_path, as_json)
    ident = one_id(ident, id_option)
    st = ctx.orch.monitors.check_monitor_status(ident)
    head = (f"monitor {st['monitor_id']}: {st['status']} (job {st['job_id']} on {', '.join(st['nodes']) or '-'})\n"
            f"submitted {st['submitted_at'] or '-'}, started {st['started_at'] or '-'}, url {st['url'] or '-'}")
    rows = [[t["job"], t["instance"], t["health"], t["last_error"]] for t in st["targets"]]
    emit(ctx, st, head + "\n" + (render_table(["job", "instance", "health", "last error"], rows) if rows else "no targets"))


@monitor.command("stop")
@common_options
@id_argument
@click.pass_context
def monitor_stop(click_ctx, config_path, as_json, ident, id_option):
    """scancel the monitor (and the node exporters it started)."""
    ctx = _ctx(click_ctx, config_path, as_json)
    st = ctx.orch.monitors.stop(one_id(ident, id_option))
    emit(ctx, st.__dict__, f"stopped: {st.line()}")


@monitor.command("add-target")
@common_options
@click.argument("monitor_id")
@click.argument("ids", nargs=-1, required=True, metavar="TARGET...")
@click.option("--job-name", default=None, help="Prometheus job name (default: the service ID or the address)")
@click.option("--allow-other-users", is_flag=True,
              help="a JOBID:PORT may be another user's job (it is only scraped, never touched)")
@click.option("--bearer-file", type=click.Path(dir_okay=False), default=None,
              help="file holding the bearer token these targets want (never on the command line)")
@click.pass_context
def monitor_add_target(click_ctx, config_path, as_json, monitor_id, ids, job_name, allow_other_users, bearer_file):
    """Add targets (a service ID or name, JOBID:PORT, host:port, or http(s)://host:port/path): config
    re-rendered on the cluster and hot-reloaded."""
    from dataclasses import replace

    from orchestrator.monitoring.targets import parse_target
    ctx = _ctx(click_ctx, config_path, as_json)
    specs = [replace(parse_target(i, credentials_file=bearer_file), job_name=job_name) for i in ids]
    added = ctx.orch.monitors.add_targets(monitor_id, specs, progress=progress, allow_other_users=allow_other_users)
    emit(ctx, [t.to_dict() for t in added], "\n".join(f"added {t.job_name} {t.address}{t.metrics_path}" for t in added))


@monitor.command("remove-target")
@common_options
@click.argument("monitor_id")
@click.argument("names", nargs=-1, required=True, metavar="ID|JOB_NAME...")
@click.pass_context
def monitor_remove_target(click_ctx, config_path, as_json, monitor_id, names):
    """Remove targets (by service ID, job ID or job name) with a hot reload."""
    ctx = _ctx(click_ctx, config_path, as_json)
    gone = ctx.orch.monitors.remove_targets(monitor_id, list(names))
    emit(ctx, [t.to_dict() for t in gone], "\n".join(f"removed {t.job_name} {t.address}" for t in gone))


@monitor.command("report")
@common_options
@click.argument("ident", metavar="ID")
@click.pass_context
def monitor_report(click_ctx, config_path, as_json, ident):
    """Status, up per target, CPU, memory, GPU and scrape duration, now."""
    ctx = _ctx(click_ctx, config_path, as_json)
    rep = ctx.orch.monitors.report(ident)
    lines = [f"monitor {rep['monitor_id']}: {rep['status']} on {', '.join(rep['nodes']) or '-'}"]
    for name, sec in rep["metrics"].items():
        if not sec["series"]:
            lines.append(f"{name}: absent")
            continue
        for s in sec["series"]:
            who = s["labels"].get("job") or s["labels"].get("instance") or label_text(s["labels"])
            lines.append(f"{name} [{who}]: {format_value(s['value'])}")
    emit(ctx, rep, "\n".join(lines))


def _window(start: str, end: str) -> tuple[float, float]:
    try:
        now = time.time()
        return parse_time(start, now), parse_time(end, now)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@monitor.command("collect")
@common_options
@click.argument("ident", metavar="ID")
@click.option("--query", "queries", multiple=True, required=True, help="PromQL (repeatable)")
@click.option("--from", "start", default="-15m", show_default=True, help="unix seconds, ISO 8601 or relative (-15m)")
@click.option("--to", "end", default="now", show_default=True, help="unix seconds, ISO 8601, relative, or now")
@click.option("--step", default="15s", show_default=True, help="resolution of the range query (Prometheus' step)")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="file.json or file.csv")
@click.pass_context
def monitor_collect(click_ctx, config_path, as_json, ident, queries, start, end, step, out):
    """Write range queries over a time window to a JSON or CSV file."""
    ctx = _ctx(click_ctx, config_path, as_json)
    s, e = _window(start, end)
    path = ctx.orch.monitors.collect(ident, list(queries), s, e, step, out)
    emit(ctx, {"path": str(path)}, f"wrote {path}")


@click.command("query-range")
@common_options
@click.argument("ident", metavar="ID")
@click.argument("promql")
@click.option("--from", "start", default="-15m", show_default=True, help="unix seconds, ISO 8601 or relative (-15m)")
@click.option("--to", "end", default="now", show_default=True, help="unix seconds, ISO 8601, relative, or now")
@click.option("--step", default="15s", show_default=True, help="resolution of the range query (Prometheus' step)")
@click.option("--csv", "as_csv", is_flag=True, help="timestamp,series,value rows")
@click.pass_context
def query_range(click_ctx, config_path, as_json, ident, promql, start, end, step, as_csv):
    """A PromQL range query through the login node (split past 11,000 points)."""
    ctx = _ctx(click_ctx, config_path, as_json)
    s, e = _window(start, end)
    r = ctx.orch.monitors.query_range(ident, promql, s, e, step)
    warn(r)
    if as_csv:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["timestamp", "series", "value"])
        for series in r.series:
            w.writerows([f"{t:.3f}", label_text(series.labels), "" if math.isnan(v) else repr(v)]
                        for t, v in series.values)
        click.echo(buf.getvalue(), nl=False)
        return
    rows = [[label_text(x.labels), len(x.values), format_value(min(v for _, v in x.values)),
             format_value(max(v for _, v in x.values)), format_value(x.values[-1][1])] for x in r.series if x.values]
    emit(ctx, r.to_dict(), render_table(["series", "points", "min", "max", "last"], rows) if rows else "no data")


@click.command()
@common_options
@click.argument("ident", metavar="ID")
@click.option("--port", "local_port", default=0, help="local port (default: any free one)")
@click.option("--seconds", default=None, type=float, help="close after this long (default: until Ctrl-C)")
@click.pass_context
def tunnel(click_ctx, config_path, as_json, ident, local_port, seconds):
    """Forward a monitor's (or any service's) port to localhost over the SSH connection."""
    ctx = _ctx(click_ctx, config_path, as_json)
    ep = ctx.orch.servers.get_service_endpoint(ident)
    fwd = ctx.orch.transport.forward(ep.host, ep.port, local_port)
    url = f"http://127.0.0.1:{fwd.local_port}"
    secret = f"{ctx.orch.servers.job_dir(ep.service_id)}/secret"
    # the secret is not printed (a terminal's scrollback is a log): where it is, and how to show it
    how = {"basic": f"log in as orch with the job's secret (on the login node: cat {secret})",
           "bearer": f"requests need 'Authorization: Bearer <the job's secret>' (on the login node: cat {secret})",
           "password": f"the service's own login; its password is the job's secret (on the login node: cat {secret})",
           }.get(ep.auth, "open: no login (recipe auth: none)")
    emit(ctx, {"service_id": ep.service_id, "local_url": url, "remote": f"{ep.host}:{ep.port}", "auth": ep.auth,
               "secret_file": secret if ep.auth != "none" else None},
         f"{ep.service_id}: {ep.host}:{ep.port} -> {url}" + ("  (UI: " + url + "/graph)" if ep.service_id.startswith("prometheus") else "")
         + f"\n{how}")
    try:
        _hold(seconds)
    finally:
        fwd.close()


@click.command()
@common_options
@click.argument("ident", metavar="SESSION_DIR|MONITOR_ID")
@click.option("--port", default=0, help="local port (default: a free one, printed)")
@click.option("--no-browser", is_flag=True, help="do not open a browser; print the URL")
@click.option("--interval", default=None, type=float, help="seconds between refreshes (default: the scrape interval)")
@click.option("--seconds", default=None, type=float, help="stop after this long (default: until Ctrl-C)")
@click.pass_context
def dashboard(click_ctx, config_path, as_json, ident, port, no_browser, interval, seconds):
    """A live page on 127.0.0.1: throughput, latency, TTFT, running and waiting requests, CPU/GPU and
    memory per target, for a running session (its directory) or any monitor, through this command's
    one SSH connection."""
    import json
    import webbrowser
    from pathlib import Path

    from orchestrator.monitoring.dashboard import Dashboard, serve
    from orchestrator.times import parse_duration
    ctx = _ctx(click_ctx, config_path, as_json)
    manifest = Path(ident) / "MANIFEST.json"
    if manifest.exists():
        m = json.loads(manifest.read_text())
        if not m.get("monitor_id"):
            raise click.UsageError(f"{ident}: the session had no monitor")
        mid, title, scrape = m["monitor_id"], f"session {m['session']}", m.get("scrape_interval", "5s")
    else:
        mid = ctx.orch.monitors.monitor_for(ident)
        title, scrape = f"monitor {mid}", getattr(ctx.orch.monitors.record(mid), "scrape_interval", "") or "5s"
    dash = Dashboard(ctx.orch.monitors, mid, title, interval=interval or max(1.0, parse_duration(scrape)))
    srv = serve(dash, port)
    url = f"http://127.0.0.1:{srv.server_address[1]}/"
    emit(ctx, {"url": url, "monitor_id": mid}, f"dashboard of {title}: {url} (Ctrl-C to stop)")
    if not no_browser:
        webbrowser.open(url)
    try:
        _hold(seconds)
    finally:
        srv.shutdown()


def _hold(seconds: float | None) -> None:
    """Until ``seconds`` passed (None: until Ctrl-C), with what was printed flushed first."""
    sys.stdout.flush()
    try:
        deadline = None if seconds is None else time.monotonic() + seconds
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
