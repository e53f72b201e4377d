"""An optional persistent connection, as OpenSSH's ControlPersist: a per-user local agent holds the
SSH connection between invocations, and commands reach it over a Unix socket.

Off by default; ``ssh.agent: true`` in config.yaml (or ``ORCH_AGENT=1``) turns it on, and
``connect`` starts it ahead (else the first command does). Safety: the socket is in a directory
only its user may enter (0700), is itself 0600, and the agent answers only peers of its own uid
(SO_PEERCRED); it exits after ``idle`` seconds without a request, or on ``connect --stop``.
Host keys are checked as always: the agent is an SSHTransport like any command's.

Frames both ways: a 4-byte big-endian length, then JSON. Requests: run, get, put, ping, stop.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from orchestrator import errors
from orchestrator.cluster.frames import peer_uid, recv_frame, send_frame
from orchestrator.cluster.transport import CommandResult, TransportStats
from orchestrator.errors import OutcomeUnknown, TransportError
from orchestrator.fileio import NotPrivate, private_dir, unlink_if_same

IDLE = 600.0


def socket_path(config) -> Path:
    """One agent per login target and identity, under the laptop's state dir."""
    s = config.ssh
    key = json.dumps([s.host, s.port, s.user, s.key_file, s.known_hosts, s.ssh_config], sort_keys=True)
    return Path(config.state_dir) / "agent" / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.sock"


# -- the agent ----------------------------------------------------------------------
def serve(config, idle: float = IDLE, fork_first: Callable[[], Callable[[], None] | None] | None = None) -> None:
    """Run the agent in this process until idle (its process: ``python -m orchestrator.cli.agentd
    CONFIG``). ``fork_first()`` runs before this process has a thread or a connection (the command
    zygote forks there) and may return what stops the forked process, called on exit."""
    path = socket_path(config)
    _private_parent(path)
    path.unlink(missing_ok=True)
    stop_forked = fork_first() if fork_first is not None else None
    if config.ssh.local:  # (the login node itself: what the tests use)
        from orchestrator.cluster.local import LocalTransport
        transport = LocalTransport()
    else:
        from orchestrator.cluster.ssh import SSHTransport
        transport = SSHTransport(config.ssh)
    lock = threading.Lock()
    last = [time.monotonic()]
    stop = threading.Event()
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # the socket is created 0600
    try:
        srv.bind(str(path))
    finally:
        os.umask(old)
    inode = path.stat().st_ino
    srv.listen(16)
    srv.settimeout(1.0)

    def handle(conn: socket.socket) -> None:
        with conn:
            if peer_uid(conn) != os.getuid():
                return  # another user: not a word
            while (req := recv_frame(conn)) is not None:
                last[0] = time.monotonic()
                with lock:
                    answer = _answer(transport, req, stop)
                if stop.is_set():
                    unlink_if_same(path, inode)  # gone at once: the next command starts a new agent
                send_frame(conn, answer)

    try:
        while not stop.is_set() and time.monotonic() - last[0] < idle:
            try:
                conn, _ = srv.accept()
            except socket.timeout:
                continue
            threading.Thread(target=handle, args=(conn,), daemon=True).start()
    finally:
        srv.close()
        unlink_if_same(path, inode)
        transport.close()
        if stop_forked is not None:
            stop_forked()


def _answer(transport, req: dict, stop: threading.Event) -> dict:
    try:
        op = req.get("op")
        if op == "run":
            r = transport.run(req["command"], timeout=req.get("timeout"), stdin=req.get("stdin"),
                              idempotent=req.get("idempotent", True))
            return {"exit_code": r.exit_code, "stdout": r.stdout, "stderr": r.stderr}
        if op == "get":
            transport.get(req["remote"], req["local"])
            return {}
        if op == "put":
            transport.put(req["local"], req["remote"])
            return {}
        if op == "ping":
            return {"description": transport.description, "pid": os.getpid()}
        if op == "stop":
            stop.set()
            return {}
        return {"error": {"type": "OrchestratorError", "message": f"unknown request {op!r}"}}
    except Exception as exc:  # sent back as what it was: the command's process raises it
        return {"error": {"type": type(exc).__name__, "message": str(exc)}}


# -- the client ---------------------------------------------------------------------
class AgentTransport:
    """A Transport whose calls go to the agent (started on demand); forwards open an SSH connection
    of their own, as they carry traffic for as long as the command runs."""

    def __init__(self, config, start_timeout: float = 20.0):
        self.config = config
        self.path = socket_path(config)
        self.start_timeout = start_timeout
        self.stats = TransportStats()
        self.description = f"agent for {config.ssh.user + '@' if config.ssh.user else ''}{config.ssh.host}"
        self._sock: socket.socket | None = None
        self._direct = None

    def _connect(self) -> socket.socket:
        if self._sock is None:
            self._sock = connect_or_start(self.config, self.start_timeout)
        return self._sock

    def _call(self, req: dict, retry: bool = True) -> dict:
        """One request; ``retry``: it is safe to send again, to a new agent, if this one went away
        without answering (it was stopping: idle, `connect --stop`, the tool's code changed)."""
        for attempt in (1, 2):
            sock = self._connect()
            try:
                send_frame(sock, req)
                doc = recv_frame(sock)
                why = "the local agent closed the connection (it stopped?)"
            except OSError as exc:
                doc, why = None, f"the local agent's connection broke: {exc}"
            if doc is not None:
                break
            self.close()
            if req.get("op") == "run" and not retry:
                raise OutcomeUnknown(f"{why} while running a command that is not safe to repeat; it may or "
                                     f"may not have run: {req['command'][:120]}")
            if attempt == 2:
                raise TransportError(why)
        if "error" in doc:
            raise _rebuilt(doc["error"])
        return doc

    def run(self, command: str, *, timeout: float | None = 120, check: bool = False, stdin: str | None = None,
            idempotent: bool = True) -> CommandResult:
        doc = self._call({"op": "run", "command": command, "timeout": timeout, "stdin": stdin,
                          "idempotent": idempotent}, retry=idempotent)
        self.stats.commands += 1
        result = CommandResult(command, doc["exit_code"], doc["stdout"], doc["stderr"])
        return result.check() if check else result

    def put(self, local_path: str, remote_path: str) -> None:
        self._call({"op": "put", "local": os.path.abspath(local_path), "remote": remote_path})
        self.stats.transfers += 1

    def get(self, remote_path: str, local_path: str) -> None:
        self._call({"op": "get", "remote": remote_path, "local": os.path.abspath(local_path)})
        self.stats.transfers += 1

    def forward(self, remote_host: str, remote_port: int, local_port: int = 0):
        if self._direct is None:
            from orchestrator.cluster.ssh import SSHTransport
            self._direct = SSHTransport(self.config.ssh)
            self.stats.connections += 1
        self.stats.forwards += 1
        return self._direct.forward(remote_host, remote_port, local_port)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._direct is not None:
            self._direct.close()
            self._direct = None


def _rebuilt(err: dict) -> Exception:
    """The agent's exception as this process raises it: the same class where it takes a message."""
    cls = getattr(errors, err.get("type", ""), None)
    if isinstance(cls, type) and issubclass(cls, errors.OrchestratorError):
        try:
            return cls(err["message"])
        except TypeError:
            pass
    return TransportError(err["message"])


def _private_parent(path: Path) -> None:
    try:
        private_dir(path.parent)
    except NotPrivate as exc:
        raise TransportError(f"the agent's socket directory: {exc}") from None


def _dial(path: Path) -> socket.socket | None:
    """A connection to the agent at ``path``, only if its directory is ours and the process listening
    is ours (SO_PEERCRED): a command's stdin and answers never go to another uid."""
    if not path.parent.is_dir():
        return None
    _private_parent(path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(path))
    except OSError:
        s.close()
        return None
    if peer_uid(s) != os.getuid():
        s.close()
        raise TransportError(f"the process at {path} is not yours: refusing to send it anything")
    return s


def connect_or_start(config, timeout: float = 20.0) -> socket.socket:
    """A connection to the running agent, starting one (detached) when there is none."""
    sock = _dial(socket_path(config))
    if sock is not None:
        return sock
    if config.source is None:
        raise TransportError("the local agent needs the config file's path to start (ssh.agent)")
    path = socket_path(config)
    _private_parent(path)
    log = path.with_suffix(".log")
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two commands at once start one agent, not two
        sock = _dial(path)
        if sock is not None:
            return sock
        import subprocess
        with open(log, "w") as out:
            subprocess.Popen([sys.executable, "-m", "orchestrator.cli.agentd", str(config.source)],
                             stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                             env={**os.environ, "ORCH_AGENT": "0"})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sock = _dial(path)
            if sock is not None:
                return sock
            time.sleep(0.05)
    tail = log.read_text().strip().splitlines()[-1:] if log.exists() else []
    raise TransportError(f"the local agent did not start within {timeout:.0f}s" + (f": {tail[0]}" if tail else ""))


def stop_agent(config) -> bool:
    """Ask a running agent to exit; False when none ran."""
    return stop_agent_at(socket_path(config))


def stop_agent_at(path, timeout: float | None = None) -> bool:
    """Ask the agent listening at ``path`` to exit; False when none ran. It removes its socket before
    it answers, so a command right after this starts a new agent."""
    sock = _dial(Path(path))
    if sock is None:
        return False
    with sock:
        sock.settimeout(timeout)
        send_frame(sock, {"op": "stop"})
        recv_frame(sock)
    return True

