"""Which transport a configuration asks for, and why."""

from __future__ import annotations

import shutil
from typing import Callable

from orchestrator.cluster.transport import Transport


def choose_client(ssh, which: Callable[[str], str | None] = shutil.which) -> tuple[str, str]:
    """(paramiko | openssh | local, why). ``auto`` takes the system's OpenSSH where ``ssh`` is on PATH: the
    user's ~/.ssh/config, agent, MFA and ProxyJump come with it, and its ControlMaster makes every
    command after the first cheaper than a plain ``ssh``; paramiko otherwise (Windows without OpenSSH)."""
    if ssh.local:
        return "local", "ssh.local: true (on the login node itself)"
    if ssh.client != "auto":
        return ssh.client, f"ssh.client: {ssh.client} in the config"
    found = which("ssh")
    if found:
        return "openssh", f"ssh.client: auto, and OpenSSH is at {found}"
    return "paramiko", "ssh.client: auto, and no `ssh` on PATH"


def open_transport(config) -> Transport:
    """The transport a Config asks for; the SSH ones connect lazily (at the first remote call). Its
    ``chosen`` says why it was picked (``--stats`` and ``doctor`` show it)."""
    kind, why = choose_client(config.ssh)
    if kind == "local":
        from orchestrator.cluster.local import LocalTransport
        t = LocalTransport()
    elif kind == "openssh":
        from orchestrator.cluster.openssh import OpenSSHTransport  # the system's ssh: no paramiko here
        t = OpenSSHTransport(config.ssh, config.state_dir)
    else:
        from orchestrator.cluster.ssh import SSHTransport  # paramiko: imported only when needed
        t = SSHTransport(config.ssh)
    t.chosen = why
    return t
