"""The SSH connection of a command, opened while the command is still importing.

Most of a short command's wall time is waiting: the login node forking sshd, key exchange, the
server's work after authentication (tens of milliseconds before a session can open), then the
remote command. The entry point knows from argv alone that a command will talk to the cluster
(cli/entry.py); it imports paramiko first, starts the handshake on a thread, and only then imports
the CLI, whose import time the handshake now hides. The command's transport (connect.open_transport)
is this one if it is for the same SSH settings: its first remote call waits for the connection, or
raises the error that opening it met.
"""

from __future__ import annotations

_early = None  # (SSH settings, SSHTransport opening)


def start(ssh_cfg) -> None:
    """Begin connecting with these settings (once per process)."""
    global _early
    if _early is None:
        from orchestrator.cluster.ssh import SSHTransport  # paramiko: imported here, before anything else
        transport = SSHTransport(ssh_cfg)
        transport.connect_in_background()
        _early = (ssh_cfg, transport)


def take(ssh_cfg):
    """The transport begun by ``start`` for the same settings (None if there is none); its first
    remote call waits for the connection, or raises the error opening it met."""
    global _early
    if _early is None or _early[0] != ssh_cfg:
        return None
    transport, _early = _early[1], None
    return transport
