"""The SSH connection of a command, opened while the command is still importing.

Most of a short command's wall time is waiting: the login node forking sshd, key exchange, the
server's work after authentication (tens of milliseconds before a session can open), then the
remote command. The entry point knows from argv alone that a command will talk to the cluster
(cli/entry.py); it imports paramiko first, starts the handshake on a thread, and only then imports
the CLI, whose import time the handshake now hides. The command's transport (connect.open_transport)
takes this connection if it is for the same SSH settings, or raises the error that opening it met.
"""

from __future__ import annotations

import threading

_early: _Early | None = None


class _Early:
    def __init__(self, ssh_cfg):
        from orchestrator.cluster.ssh import SSHTransport  # paramiko: imported here, before anything else
        self.ssh_cfg = ssh_cfg
        self.transport = SSHTransport(ssh_cfg)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._connect, name="ssh-early", daemon=True)
        self.thread.start()

    def _connect(self) -> None:
        try:
            self.transport.connect()
        except BaseException as exc:  # raised in the command's thread, at its first remote call
            self.error = exc


def start(ssh_cfg) -> None:
    """Begin connecting with these settings (once per process)."""
    global _early
    if _early is None:
        _early = _Early(ssh_cfg)


def take(ssh_cfg):
    """The transport begun by ``start`` for the same settings, connected (None if there is none)."""
    global _early
    early = _early
    if early is None or early.ssh_cfg != ssh_cfg:
        return None
    _early = None
    early.thread.join()
    if early.error is not None:
        early.transport.close()
        raise early.error
    return early.transport
