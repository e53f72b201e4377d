"""OpenSSHTransport: the system's ``ssh`` with a ControlMaster, as HPC users and Ansible run it.

Every call is one ``ssh`` process through one persistent master connection (opened by its own
``ssh -M -f -N`` with ControlPersist; commands use ControlMaster=no), whose socket lives in a private
0700 directory. What paramiko cannot do comes with
it: all of ``~/.ssh/config`` (Match, ProxyCommand, ProxyJump, GSSAPI), and a master the user opened
by hand on a keyboard-interactive or MFA login node (point ``ssh.control_path`` at it). Host keys
are OpenSSH's business: ``StrictHostKeyChecking=yes`` against the configured known_hosts.

Commands run as exec with stdin; files go over exec too (``cat``), so no SFTP subsystem is needed;
port forwards are asked of the master (``-O forward -L``). Failures map to the same typed errors as
the paramiko transport: HostKeyError, TransportError, CommandTimeout, OutcomeUnknown.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from orchestrator.cluster.shell import path as remote_path
from orchestrator.cluster.streaming import process_lines
from orchestrator.cluster.transport import PRIVATE, CommandResult, TransportStats
from orchestrator.config import SSHConfig
from orchestrator.errors import CommandTimeout, HostKeyError, OutcomeUnknown, TransportError
from orchestrator.fileio import NotPrivate, atomic_open, private_dir

PERSIST = 600   # seconds the master stays after the last command (ControlPersist)

# what ssh itself prints when it, not the remote command, fails (its exit code is then 255)
_HOST_KEY = re.compile(r"Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|"
                       r"No \S+ host key is known|host key for .* has changed|REVOKED HOST KEY")
_SSH_FAILURE = re.compile(r"^(ssh: |kex_exchange_identification|Connection (to .* )?closed|Connection reset|"
                          r"Connection refused|Connection timed out|client_loop: |(\S+@\S+: )?Permission denied \(|"
                          r"Control socket connect|mux_client_|Received disconnect|Bad owner or permissions|"
                          r"Timeout, server .* not responding|Broken pipe|packet_write_wait)", re.M)


def ssh_options(cfg: SSHConfig, control_path: str) -> list[str]:
    """The options every call takes (pure): the master, strict host keys, timeouts, identity."""
    opts = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={os.path.expanduser(cfg.known_hosts)}",
            "-o", f"ControlPath={control_path}", "-o", f"ConnectTimeout={int(cfg.connect_timeout)}"]
    if cfg.keepalive:
        opts += ["-o", f"ServerAliveInterval={cfg.keepalive}", "-o", "ServerAliveCountMax=3"]
    if os.path.exists(os.path.expanduser(cfg.ssh_config)):
        opts += ["-F", os.path.expanduser(cfg.ssh_config)]
    if cfg.port:
        opts += ["-p", str(cfg.port)]
    if cfg.user:
        opts += ["-l", cfg.user]
    if cfg.key_file:
        opts += ["-i", os.path.expanduser(cfg.key_file), "-o", "IdentitiesOnly=yes"]
    return opts


NO_SSH = "ssh: command not found (ssh.client: openssh needs OpenSSH's client)"


def classify(exit_code: int, stderr: str) -> type[TransportError] | None:
    """The transport error an ``ssh`` exit stands for, or None when the remote command's own exit it is
    (pure). A remote command may exit 255 too: only ssh's own messages make it a transport failure."""
    if exit_code != 255:
        return None
    if _HOST_KEY.search(stderr):
        return HostKeyError
    if _SSH_FAILURE.search(stderr):
        return TransportError
    return None


SOCKET_MAX = 104   # bytes of a Unix socket path (macOS; Linux allows 108); ssh adds 17 while it makes one


def control_path(cfg: SSHConfig, state_dir: str | os.PathLike, env=None) -> str:
    """The master's socket, in a private 0700 directory (whoever reaches it runs commands as the user):
    ``<state_dir>/ssh``, or when that path is too long for a socket, ``$XDG_RUNTIME_DIR/orch-ssh``, then
    ``/tmp/orch-ssh-<uid>`` (checked: ours, no link). One per login target and identity."""
    import hashlib
    env = os.environ if env is None else env
    key = "\0".join(str(x) for x in (cfg.host, cfg.port, cfg.user, cfg.key_file, cfg.known_hosts, cfg.ssh_config))
    name = hashlib.sha256(key.encode()).hexdigest()[:12]
    dirs = [Path(state_dir) / "ssh"]
    if env.get("XDG_RUNTIME_DIR"):
        dirs.append(Path(env["XDG_RUNTIME_DIR"]) / "orch-ssh")
    dirs.append(Path(f"/tmp/orch-ssh-{os.getuid()}"))
    for d in dirs:
        if len(str(d.expanduser().absolute())) + 1 + len(name) + 17 < SOCKET_MAX:
            try:
                return str(private_dir(d.expanduser().absolute()) / name)
            except NotPrivate as exc:
                raise TransportError(f"the OpenSSH control directory: {exc}") from None
    raise TransportError("no directory short enough for the OpenSSH control socket: set ssh.control_path")


@dataclass
class MasterForward:
    """A local port forward held by the master (``ssh -O forward``); closed with ``-O cancel``."""
    transport: "OpenSSHTransport"
    spec: str
    local_port: int

    def close(self) -> None:
        self.transport._control("cancel", "-L", self.spec)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class OpenSSHTransport:
    description = "openssh"
    kind = "openssh"

    def __init__(self, cfg: SSHConfig, state_dir: str | os.PathLike):
        self.cfg = cfg
        self.stats = TransportStats()
        self.control_path = os.path.expanduser(cfg.control_path) if cfg.control_path else control_path(cfg, state_dir)
        self._opts = ssh_options(cfg, self.control_path)
        self._checked = False

    # -- the master ----------------------------------------------------------------
    def _control(self, op: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["ssh", *self._opts, "-O", op, *args, self.cfg.host], capture_output=True,
                              text=True, timeout=self.cfg.connect_timeout + 5)

    def _ensure_master(self) -> None:
        """The master, opened when none answers (once per transport, and again after a drop). Opened by
        its own ``ssh -f -N`` whose output goes to a file: a master that inherited a command's pipes
        would hold them open for its whole life."""
        if self._checked:
            return
        # no socket: no master (a master that ends removes it); a socket: ask it whether it still answers
        if not os.path.exists(self.control_path) or self._control("check").returncode != 0:
            import tempfile
            with tempfile.TemporaryFile() as err:
                try:
                    proc = subprocess.run(["ssh", *self._opts, "-o", "ControlMaster=yes", "-o",
                                           f"ControlPersist={PERSIST}", "-f", "-N", self.cfg.host],
                                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                          timeout=self.cfg.connect_timeout * 2 + 10)
                except subprocess.TimeoutExpired:
                    raise TransportError(f"cannot connect to {self.cfg.host}: ssh did not log in within "
                                         f"{self.cfg.connect_timeout * 2 + 10:.0f}s") from None
                except FileNotFoundError:
                    raise TransportError(NO_SSH) from None
                err.seek(0)
                message = err.read().decode(errors="replace")
            if proc.returncode != 0:
                if _HOST_KEY.search(message):
                    raise self._host_key_error(message)
                raise TransportError(f"cannot connect to {self.cfg.host} with ssh: {_first_line(message)}")
            self.stats.connections += 1
        self._checked = True

    def _host_key_error(self, stderr: str) -> HostKeyError:
        return HostKeyError(f"host key of {self.cfg.host} refused by OpenSSH ({_first_line(stderr)}); "
                            f"check {self.cfg.known_hosts}")

    def start(self) -> None:
        """Open (or find) the master: the `connect` command for this transport."""
        self._ensure_master()

    def stop(self) -> bool:
        """Close the master; False when none ran."""
        return self._control("exit").returncode == 0

    # -- commands --------------------------------------------------------------------
    def _ssh(self, command: str, stdin: bytes | None, timeout: float | None) -> subprocess.CompletedProcess:
        if self._checked and not os.path.exists(self.control_path):
            self._checked = False   # the master went (a dropped connection removes its socket): a new one
        self._ensure_master()
        try:
            # ControlMaster=no: through the master, never a second one of its own
            return subprocess.run(["ssh", *self._opts, "-o", "ControlMaster=no", self.cfg.host, "--", PRIVATE + command],
                                  input=stdin if stdin is not None else b"", capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise CommandTimeout(f"remote command timed out after {timeout}s: {command[:120]}") from None
        except FileNotFoundError:
            raise TransportError(NO_SSH) from None

    def _exec(self, command: str, stdin: bytes | None, timeout: float | None, idempotent: bool
              ) -> subprocess.CompletedProcess:
        proc = self._ssh(command, stdin, timeout)
        stderr = proc.stderr.decode(errors="replace")
        err = classify(proc.returncode, stderr)
        if err is None:
            return proc
        if err is HostKeyError:
            raise self._host_key_error(stderr)
        if not idempotent:
            raise OutcomeUnknown(f"connection lost while running a command that is not safe to repeat; it may "
                                 f"or may not have run ({_first_line(stderr)}): {command[:120]}")
        # once, transparently: the master is checked again, and opened anew if it went
        self._checked = False
        proc = self._ssh(command, stdin, timeout)
        stderr = proc.stderr.decode(errors="replace")
        if classify(proc.returncode, stderr) is not None:
            raise TransportError(f"cannot reach {self.cfg.host} over ssh: {_first_line(stderr)}")
        return proc

    def run(self, command: str, *, timeout: float | None = 120, check: bool = False,
            stdin: str | None = None, idempotent: bool = True) -> CommandResult:
        self.stats.count(command)
        proc = self._exec(command, stdin.encode() if stdin is not None else None, timeout, idempotent)
        result = CommandResult(command, proc.returncode, proc.stdout.decode(errors="replace"),
                               proc.stderr.decode(errors="replace"))
        return result.check() if check else result

    def stream(self, command: str, *, timeout: float | None = None) -> Iterator[str]:
        """Lines of the command's stdout as they arrive; closing the generator ends the ssh process."""
        self.stats.count(command)
        if self._checked and not os.path.exists(self.control_path):
            self._checked = False
        self._ensure_master()

        def ended(code: int, stderr: str) -> None:
            if classify(code, stderr) is not None:
                raise TransportError(f"lost {self.cfg.host} during a remote command: {_first_line(stderr)}")
        try:
            yield from process_lines(["ssh", *self._opts, "-o", "ControlMaster=no", self.cfg.host, "--",
                                      PRIVATE + command], timeout, command, ended)
        except FileNotFoundError:
            raise TransportError(NO_SSH) from None

    # -- files (over exec: no SFTP subsystem needed) ----------------------------------------
    def put(self, local_path: str, remote_path_: str) -> None:
        self.stats.transfers += 1
        data = Path(local_path).read_bytes()
        target = remote_path(remote_path_)
        proc = self._exec(f"cat > {target}.part && mv {target}.part {target}", data, 600, idempotent=True)
        if proc.returncode != 0:
            raise TransportError(f"upload to {remote_path_} failed: {_first_line(proc.stderr.decode(errors='replace'))}")

    def get(self, remote_path_: str, local_path: str) -> None:
        self.stats.transfers += 1
        proc = self._exec(f"cat -- {remote_path(remote_path_)}", None, 600, idempotent=True)
        if proc.returncode != 0:
            raise TransportError(f"download of {remote_path_} failed: "
                                 f"{_first_line(proc.stderr.decode(errors='replace'))}")
        with atomic_open(local_path, "wb") as f:   # a failed download leaves no local file
            f.write(proc.stdout)

    # -- forwards -------------------------------------------------------------------------------
    def forward(self, remote_host: str, remote_port: int, local_port: int = 0) -> MasterForward:
        self.stats.forwards += 1
        self._ensure_master()
        if not local_port:
            with socket.socket() as s:   # a free loopback port (the master binds it right after)
                s.bind(("127.0.0.1", 0))
                local_port = s.getsockname()[1]
        spec = f"127.0.0.1:{local_port}:{remote_host}:{int(remote_port)}"
        proc = self._control("forward", "-L", spec)
        if proc.returncode != 0:
            raise TransportError(f"port forward {spec} refused: {_first_line(proc.stderr)}")
        return MasterForward(self, spec, local_port)

    def close(self) -> None:
        """The master stays (ControlPersist): the next command reuses it. `connect --stop` closes it."""


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else "no message"
