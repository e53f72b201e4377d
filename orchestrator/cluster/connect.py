"""Which transport a configuration asks for."""

from __future__ import annotations

from orchestrator.cluster.transport import Transport


def open_transport(config) -> Transport:
    """The transport a Config asks for; the SSH ones connect lazily (at the first remote call)."""
    if config.ssh.local:
        from orchestrator.cluster.local import LocalTransport
        return LocalTransport()
    if config.ssh.client == "openssh":
        from orchestrator.cluster.openssh import OpenSSHTransport  # the system's ssh: no paramiko here
        return OpenSSHTransport(config.ssh, config.state_dir)
    from orchestrator.cluster.ssh import SSHTransport  # paramiko: imported only when needed
    return SSHTransport(config.ssh)
