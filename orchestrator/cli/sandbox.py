"""CLI: sandbox up|down|status (the throwaway cluster; tooling that lives beside the package)."""

from __future__ import annotations

import json
import sys

import click

from orchestrator.terminal import render_table
from orchestrator.errors import OrchestratorError


def _sandbox():
    try:
        from sandbox import cluster
    except ImportError:
        raise OrchestratorError("the sandbox cluster is tooling of the source checkout, not of the installed "
                                "package: run `python main.py sandbox ...` from a clone of the repository") from None
    return cluster


@click.group()
def sandbox():
    """A throwaway SLURM cluster on this machine, in network namespaces (root)."""


@sandbox.command("up")
@click.option("--nodes", default=3, show_default=True, type=click.IntRange(1, 32),
              help="compute nodes (network namespaces n1..nN, each with its slurmd)")
@click.option("--no-install", is_flag=True, help="fail instead of installing missing packages")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def sandbox_up(nodes, no_install, as_json):
    """Build the cluster (idempotent) and write a config file pointing at it."""
    sb = _sandbox()
    path = sb.up(nodes=nodes, install=not no_install, progress=lambda m: click.echo(f"[sandbox] {m}", err=True))
    click.echo(json.dumps({"config": str(path), "nodes": nodes}) if as_json else f"export ORCH_CONFIG={path}")


@sandbox.command("down")
def sandbox_down():
    """Remove every namespace, route, process and file `up` created."""
    sb = _sandbox()
    sb.down(progress=lambda m: click.echo(f"[sandbox] {m}", err=True))


@sandbox.command("status")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def sandbox_status(as_json):
    """Is the sandbox up; daemons and node states."""
    sb = _sandbox()
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
