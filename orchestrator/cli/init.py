"""`orch init`: a first config.yaml, from the login host of the user's ~/.ssh/config."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from orchestrator.cli.common import _ctx, common_options, emit
from orchestrator.errors import ConfigError


def _choose_host(hosts: list[str], ssh_config: Path) -> str:
    if len(hosts) == 1:
        return hosts[0]
    if not hosts:
        raise ConfigError(f"{ssh_config}: no Host entry to use as the login node; add one (Host, HostName, "
                          "User, IdentityFile) or give --host user@login.example.org")
    if not sys.stdin.isatty():
        raise ConfigError(f"{ssh_config} has {len(hosts)} hosts ({', '.join(hosts)}): name the login node "
                          "with --host")
    return click.prompt("login node (a Host of " + str(ssh_config) + ")", type=click.Choice(hosts))


@click.command()
@common_options
@click.option("--host", default=None, help="the login node: a Host alias of your ssh config, or user@host "
                                           "(default: the config's only Host, else asked)")
@click.option("--partition", default=None, help="SLURM partition for every job (default: the cluster's)")
@click.option("--account", default=None, help="SLURM account to charge (default: yours)")
@click.option("--ssh-config", "ssh_config", default="~/.ssh/config", show_default=True,
              help="the OpenSSH config to read hosts from")
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None,
              help="where to write it (default: --config, $ORCH_CONFIG, else ./config.yaml)")
@click.option("--force", is_flag=True, help="replace an existing file")
@click.pass_context
def init(click_ctx, config_path, as_json, host, partition, account, ssh_config, out, force):
    """Write a config.yaml for your cluster: the login node from your ~/.ssh/config (asked when it has
    several), the SLURM partition and account (asked when run in a terminal). Then: orch doctor."""
    from orchestrator.config import init_config_text, resolve_config_path, ssh_config_hosts
    from orchestrator.fileio import write_atomic
    ctx = _ctx(click_ctx, config_path, as_json)
    path = Path(out).expanduser() if out else resolve_config_path(ctx.config_path)
    if path.exists() and not force:
        raise ConfigError(f"{path}: already exists; --force replaces it, --out FILE writes elsewhere")
    cfg_file = Path(ssh_config).expanduser()
    if host is None:
        text = cfg_file.read_text() if cfg_file.exists() else ""
        host = _choose_host(ssh_config_hosts(text), cfg_file)
    interactive = sys.stdin.isatty() and not ctx.as_json
    if interactive and partition is None:
        partition = click.prompt("SLURM partition (empty: the cluster's default)", default="", show_default=False)
    if interactive and account is None:
        account = click.prompt("SLURM account (empty: your default)", default="", show_default=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, init_config_text(host, partition or None, account or None, ssh_config))
    os.chmod(path, 0o600)
    emit(ctx, {"config": str(path), "host": host, "partition": partition or None, "account": account or None},
         f"wrote {path} (login node {host}); next: orch doctor" + (f" --config {path}" if out else ""))
