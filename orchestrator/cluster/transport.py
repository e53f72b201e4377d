"""The one boundary between the tool and the cluster.

Everything above this module takes a ``Transport`` and calls ``run``, ``stream``, ``put``,
``get`` or ``forward``. ``cluster.ssh.SSHTransport`` talks to the login node
over a single reused paramiko connection; ``cluster.openssh.OpenSSHTransport`` runs the system's
ssh over a ControlMaster; ``cluster.local.LocalTransport`` runs
the same commands here, for use on the login node itself; tests replay
recorded sessions through ``tests/fakes.py``. ``cluster.connect`` picks one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from orchestrator.errors import RemoteCommandError

# heads every command a transport runs: what a command creates on the cluster (a job dir made by
# `doctor`, a log archive on its way back) is the user's alone, whatever the login shell's umask
PRIVATE = "umask 077; "


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
    phase: str = ""                                           # what the caller is doing (a session's phase)
    by_phase: dict[str, int] = field(default_factory=dict)    # commands per phase, in the order first seen

    def count(self, command: str) -> None:
        self.commands += 1
        self.log.append(command)
        if self.phase:
            self.by_phase[self.phase] = self.by_phase.get(self.phase, 0) + 1

    def summary(self) -> str:
        phases = f" ({', '.join(f'{k} {v}' for k, v in self.by_phase.items())})" if self.by_phase else ""
        return (f"connections={self.connections} commands={self.commands}{phases} "
                f"transfers={self.transfers} forwards={self.forwards}")


class Forward(Protocol):
    local_port: int

    def close(self) -> None: ...


class Transport(Protocol):
    stats: TransportStats
    description: str
    kind: str                    # paramiko | openssh | local: what --stats names

    def run(self, command: str, *, timeout: float | None = 120, check: bool = False,
            stdin: str | None = None, idempotent: bool = True) -> CommandResult: ...

    def stream(self, command: str, *, timeout: float | None = None) -> Iterator[str]:
        """The command's stdout line by line as it arrives (a wait's rounds, ``cluster.streaming``);
        closing the iterator early ends the command."""
        ...

    def put(self, local_path: str, remote_path: str) -> None: ...

    def get(self, remote_path: str, local_path: str) -> None: ...

    def forward(self, remote_host: str, remote_port: int, local_port: int = 0) -> Forward: ...

    def close(self) -> None: ...
