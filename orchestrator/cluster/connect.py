"""Which transport a configuration asks for."""

from __future__ import annotations

import os

from orchestrator.cluster.transport import Transport


def agent_wanted(config, env=None) -> bool:
    """``ssh.agent: true`` or ORCH_AGENT=1 (ORCH_AGENT=0 wins: the agent itself connects directly)."""
    env = os.environ if env is None else env
    if env.get("ORCH_AGENT") == "0" or config.ssh.local or config.ssh.client == "openssh":
        return False
    return env.get("ORCH_AGENT") == "1" or config.ssh.agent


def open_transport(config) -> Transport:
    """The transport a Config asks for; the SSH one connects lazily."""
    if config.ssh.local:
        from orchestrator.cluster.local import LocalTransport
        return LocalTransport()
    if config.ssh.client == "openssh":
        from orchestrator.cluster.openssh import OpenSSHTransport  # the system's ssh: no paramiko here
        return OpenSSHTransport(config.ssh, config.state_dir)
    if agent_wanted(config):
        from orchestrator.cluster.agent import AgentTransport  # no paramiko in this process
        return AgentTransport(config)
    from orchestrator.cluster import early
    taken = early.take(config.ssh)  # the connection the entry point began, if any
    if taken is not None:
        return taken
    from orchestrator.cluster.ssh import (
        SSHTransport,  # paramiko: imported only when needed
    )
    return SSHTransport(config.ssh)
