"""CLI: watch (job watcher + status server), health."""

from __future__ import annotations

import os
import sys

import click

from orchestrator.cli.common import _ctx, common_options, emit, progress
from orchestrator.terminal import render_table


@click.command()
@common_options
@click.option("--interval", type=float, default=None, help="seconds between polls (default 30; $ORCH_WATCH_INTERVAL)")
@click.option("--partitions", default=None, help="also watch any job in these partitions (comma- or space-separated)")
@click.option("--user", default=None, help="also watch this user's jobs")
@click.option("--job-pattern", default=None, help="also watch jobs whose name matches this regex")
@click.option("--port", type=int, default=None, help="serve /healthz /stats /jobs /metrics on 127.0.0.1:PORT")
@click.option("--once", is_flag=True, help="one poll, then exit")
@click.option("--count", type=int, default=None, help="stop after this many polls")
@click.option("--attrsvc-url", default=None, metavar="URL",
              help="POST each failed job's verdict and log tail to this attribution service's /logs, with "
                   "retries (also $NVRX_ATTRSVC_URL, $ORCH_WATCH_ATTRSVC_URL)")
@click.option("--post-all", is_flag=True, default=None,
              help="POST every ended job to the attribution service, not only the failed ones ($ORCH_WATCH_POST_ALL)")
@click.option("--timeout", type=float, default=None,
              help="seconds per attribution-service request (default 60; $ORCH_WATCH_TIMEOUT)")
@click.option("-v", "--verbose", is_flag=True, help="debug lines too: each poll, each post ($LOG_LEVEL=DEBUG, "
              "$NVRX_SMONSVC_VERBOSE=true, $ORCH_WATCH_VERBOSE=1)")
@click.pass_context
def watch(click_ctx, config_path, as_json, interval, partitions, user, job_pattern, port, once, count,
          attrsvc_url, post_all, timeout, verbose):
    """Follow the tool's jobs (and optionally others) to their end and say why they ended."""
    from orchestrator.watch.watcher import Watcher, WatchOptions, split_partitions
    ctx = _ctx(click_ctx, config_path, as_json)
    env = os.environ
    # seed 003's VERBOSE, as its service reads it: $NVRX_SMONSVC_VERBOSE (or $ORCH_WATCH_VERBOSE) true/1/yes
    verbose = verbose or any((env.get(v) or "").strip().lower() in ("1", "true", "yes", "on")
                             for v in ("ORCH_WATCH_VERBOSE", "NVRX_SMONSVC_VERBOSE"))
    if verbose:
        from orchestrator.logs import verbose as debug_lines
        debug_lines()
    opts = WatchOptions.from_env(env, interval=interval, partitions=split_partitions(partitions) if partitions else None,
                                 user=user, job_pattern=job_pattern, attrsvc_url=attrsvc_url, timeout=timeout,
                                 post_all=post_all or None)
    if opts.post_all and not opts.attrsvc_url:
        raise click.UsageError("--post-all posts to the attribution service: give --attrsvc-url (or $NVRX_ATTRSVC_URL)")
    env_port = env.get("ORCH_WATCH_PORT") or env.get("NVRX_SMONSVC_PORT")
    if port is None and env_port:
        if not env_port.isdigit():
            raise click.BadParameter(f"$ORCH_WATCH_PORT: expected a port number, got {env_port!r}")
        port = int(env_port)
    w = Watcher(ctx.orch.config, ctx.orch.transport, ctx.orch.servers, opts, log=progress)
    server = None
    if port is not None:
        server = w.serve(port)
        progress(f"status server on http://127.0.0.1:{server.server_address[1]}/ (healthz, stats, jobs, metrics)")
    progress(f"watching every {opts.interval:g}s" + (f", partitions {','.join(opts.partitions)}" if opts.partitions else "")
             + (f", user {opts.user}" if opts.user else "") + (f", jobs matching {opts.job_pattern!r}" if opts.job_pattern else "")
             + (f"; verdicts posted to {opts.attrsvc_url}/logs" if opts.attrsvc_url else ""))
    try:
        w.run(count=1 if once else count)
    except KeyboardInterrupt:
        pass
    finally:
        if server is not None:
            server.shutdown()
    jobs = w.jobs()
    rows = [[j["job_id"], j.get("name", ""), j.get("state", ""), j.get("nodelist", ""), j.get("verdict") or ""]
            for j in jobs]
    emit(ctx, {"stats": w.stats_doc(), "jobs": jobs}, render_table(["job", "name", "state", "nodes", "verdict"], rows)
         if rows else "no jobs watched")


@click.command()
@common_options
@click.pass_context
def health(click_ctx, config_path, as_json):
    """Probe every tracked service's health endpoint from the login node (one remote command)."""
    from orchestrator.cluster.slurm import TERMINAL_STATES
    ctx = _ctx(click_ctx, config_path, as_json)
    servers = ctx.orch.servers
    ids = [sid for sid, rec in servers.registry.records().items() if rec.job_id and rec.state not in TERMINAL_STATES]
    if not ids:
        emit(ctx, [], "no running services tracked")
        return
    rows = []
    for p in servers.probe_many(ids, health=True):
        state = p.job.state if p.job else "UNKNOWN"
        ok = state == "RUNNING" and p.healthy
        rows.append({"service_id": p.service_id, "job_id": p.job_id, "state": state, "url": p.health_url,
                     "http_code": p.health_code, "healthy": ok})
    emit(ctx, rows, render_table(["service", "job", "state", "health URL", "HTTP", "healthy"],
                                 [[r["service_id"], r["job_id"], r["state"], r["url"] or "-", r["http_code"] or "-",
                                   "yes" if r["healthy"] else "NO"] for r in rows]))
    if any(not r["healthy"] for r in rows):
        sys.exit(1)
