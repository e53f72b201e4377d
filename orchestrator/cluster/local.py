"""LocalTransport: the tool runs on the login node itself, so commands run in a local shell."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

from orchestrator.cluster.forward import LocalForward
from orchestrator.cluster.streaming import process_lines
from orchestrator.cluster.transport import PRIVATE, CommandResult, Forward, TransportStats
from orchestrator.errors import CommandTimeout


class LocalTransport:
    """Runs commands with the local shell: the tool is on the login node."""

    description = "local"
    kind = "local"

    def __init__(self) -> None:
        self.stats = TransportStats()

    def run(self, command: str, *, timeout: float | None = 120, check: bool = False,
            stdin: str | None = None, idempotent: bool = True) -> CommandResult:
        self.stats.count(command)
        try:
            proc = subprocess.run(["bash", "-c", PRIVATE + command], input=stdin, capture_output=True,
                                  encoding="utf-8", errors="replace", timeout=timeout, cwd=os.path.expanduser("~"))
        except subprocess.TimeoutExpired:
            raise CommandTimeout(f"command timed out after {timeout}s: {command[:120]}") from None
        result = CommandResult(command, proc.returncode, proc.stdout, proc.stderr)
        return result.check() if check else result

    def stream(self, command: str, *, timeout: float | None = None) -> Iterator[str]:
        """Lines of the command's stdout as they arrive; closing the generator ends the shell."""
        self.stats.count(command)
        yield from process_lines(["bash", "-c", PRIVATE + command], timeout, command,
                                 cwd=os.path.expanduser("~"))

    def put(self, local_path: str, remote_path: str) -> None:
        self.stats.transfers += 1
        shutil.copyfile(local_path, _expand(remote_path))

    def get(self, remote_path: str, local_path: str) -> None:
        self.stats.transfers += 1
        shutil.copyfile(_expand(remote_path), local_path)

    def forward(self, remote_host: str, remote_port: int, local_port: int = 0) -> Forward:
        self.stats.forwards += 1
        return LocalForward.start(remote_host, remote_port, local_port)

    def close(self) -> None:
        pass


def _expand(remote_path: str) -> str:
    """``~/x`` and ``$HOME/x`` mean the same as they do to SSHTransport: the user's home."""
    if remote_path == "$HOME" or remote_path.startswith("$HOME/"):
        remote_path = "~" + remote_path[len("$HOME"):]
    return os.path.expanduser(remote_path)
