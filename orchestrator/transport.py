"""The one boundary between the tool and the cluster.

Everything above this module takes a ``Transport`` and calls ``run``, ``put``,
``get`` or ``forward``. ``SSHTransport`` talks to the login node over a single
reused paramiko connection; ``LocalTransport`` runs the same commands here,
for use on the login node itself and in tests.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from typing import Protocol

from .errors import RemoteCommandError


@dataclass(frozen=True)
class CommandResult:
    command: str
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def check(self) -> "CommandResult":
        if not self.ok:
            raise RemoteCommandError(self)
        return self


@dataclass
class TransportStats:
    """Counters for the benchmarks: the cost of a command is its round trips."""
    connections: int = 0
    commands: int = 0
    transfers: int = 0
    forwards: int = 0
    log: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"connections={self.connections} commands={self.commands} "
                f"transfers={self.transfers} forwards={self.forwards}")


class Forward(Protocol):
    local_port: int

    def close(self) -> None: ...


class Transport(Protocol):
    stats: TransportStats
    description: str

    def run(self, command: str, *, timeout: float | None = 120, check: bool = False,
            stdin: str | None = None, idempotent: bool = True) -> CommandResult: ...

    def put(self, local_path: str, remote_path: str) -> None: ...

    def get(self, remote_path: str, local_path: str) -> None: ...

    def forward(self, remote_host: str, remote_port: int, local_port: int = 0) -> Forward: ...

    def close(self) -> None: ...


class LocalTransport:
    """Runs commands with the local shell: the tool is on the login node."""

    description = "local"

    def __init__(self) -> None:
        self.stats = TransportStats()

    def run(self, command: str, *, timeout: float | None = 120, check: bool = False,
            stdin: str | None = None, idempotent: bool = True) -> CommandResult:
        from .errors import CommandTimeout
        self.stats.commands += 1
        self.stats.log.append(command)
        try:
            proc = subprocess.run(["bash", "-c", command], input=stdin, capture_output=True,
                                  text=True, timeout=timeout, cwd=os.path.expanduser("~"))
        except subprocess.TimeoutExpired:
            raise CommandTimeout(f"command timed out after {timeout}s: {command[:120]}") from None
        result = CommandResult(command, proc.returncode, proc.stdout, proc.stderr)
        return result.check() if check else result

    def put(self, local_path: str, remote_path: str) -> None:
        import shutil
        self.stats.transfers += 1
        shutil.copyfile(local_path, os.path.expanduser(remote_path))

    def get(self, remote_path: str, local_path: str) -> None:
        import shutil
        self.stats.transfers += 1
        shutil.copyfile(os.path.expanduser(remote_path), local_path)

    def forward(self, remote_host: str, remote_port: int, local_port: int = 0) -> Forward:
        from .forward import LocalForward
        self.stats.forwards += 1
        return LocalForward.start(remote_host, remote_port, local_port)

    def close(self) -> None:
        pass


def open_transport(config) -> Transport:
    """The transport a Config asks for; the SSH one connects lazily."""
    if config.ssh.local:
        return LocalTransport()
    from .ssh import SSHTransport
    return SSHTransport(config.ssh)
