"""Which transport a configuration asks for."""

from __future__ import annotations

from orchestrator.cluster.transport import Transport


def open_transport(config) -> Transport:
    """The transport a Config asks for; the SSH one connects lazily."""
    if config.ssh.local:
        from orchestrator.cluster.local import LocalTransport
        return LocalTransport()
    from orchestrator.cluster.ssh import (
        SSHTransport,  # paramiko: imported only when needed
    )
    return SSHTransport(config.ssh)
