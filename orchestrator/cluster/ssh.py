"""SSHTransport: one paramiko connection to the login node, reused for everything.

Host keys are verified against known_hosts (never auto-added); ~/.ssh/config
supplies HostName, Port, User, IdentityFile and ProxyJump for the alias in
config.yaml, and explicit config.yaml values win, as on the ssh command line.
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import os
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

from orchestrator.cluster.hostkeys import KnownHosts, parse_known_hosts
from orchestrator.cluster.paramiko_lite import paramiko, ssh_config_from_text
from orchestrator.cluster.shell import path as shell_path
from orchestrator.cluster.streaming import LineSplitter
from orchestrator.cluster.transport import PRIVATE, CommandResult, TransportStats
from orchestrator.config import SSHConfig
from orchestrator.errors import (
    CommandTimeout,
    HostKeyError,
    OutcomeUnknown,
    TransportError,
)

_DROPPED = (paramiko.SSHException, EOFError, OSError, socket.error)


@dataclass(frozen=True)
class Endpoint:
    """Where and as whom to connect, after ~/.ssh/config was applied."""
    alias: str
    hostname: str
    port: int
    user: str
    key_files: tuple[str, ...]
    proxy_jump: tuple[str, ...]

    @property
    def known_hosts_name(self) -> str:
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"


def resolve_endpoint(alias: str, ssh_config_path: str, port: int | None = None,
                     user: str | None = None, key_file: str | None = None) -> Endpoint:
    """Apply ~/.ssh/config to an alias (pure apart from reading that file)."""
    looked: dict = {}
    cfg_path = os.path.expanduser(ssh_config_path)
    if os.path.exists(cfg_path):
        with open(cfg_path) as f:
            looked = ssh_config_from_text(f.read()).lookup(alias)
    hop_user, hop_host = (alias.split("@", 1) if "@" in alias else (None, alias))
    hostname = looked.get("hostname", hop_host)
    if hostname == alias and hop_user:
        hostname = hop_host
    keys = [key_file] if key_file else list(looked.get("identityfile", []))
    jump = looked.get("proxyjump")
    return Endpoint(
        alias=alias,
        hostname=hostname,
        port=int(port or looked.get("port", 22)),
        user=user or hop_user or looked.get("user") or getpass.getuser(),
        key_files=tuple(os.path.expanduser(k) for k in keys),
        proxy_jump=tuple(h.strip() for h in jump.split(",")) if jump and jump != "none" else (),
    )


def parse_jump(spec: str) -> tuple[str | None, str, int | None]:
    """One ProxyJump hop in any OpenSSH form: ``host``, ``user@host``, ``host:port``, ``[v6addr]:port``,
    ``ssh://user@host:port``; returns (user, host, port)."""
    s = spec.strip()
    if s.startswith("ssh://"):
        s = s[len("ssh://"):].rstrip("/")
    user = None
    if "@" in s:
        user, s = s.rsplit("@", 1)
    port = None
    if s.startswith("["):
        host, _, rest = s[1:].partition("]")
        if rest.startswith(":"):
            port = int(rest[1:])
    elif s.count(":") == 1:
        host, _, p = s.partition(":")
        port = int(p)
    else:
        host = s
    if not host:
        raise TransportError(f"ProxyJump {spec!r}: no host")
    return user or None, host, port


class _RefuseUnknownKey(paramiko.MissingHostKeyPolicy):
    """The host key check itself. paramiko is given no keys, so it asks this policy about every key,
    after the key exchange and before authentication: a revoked key is refused before the host sees
    the user's name or a signature, and a host may list several keys of one type. Unknown keys are
    refused with the command that trusts them."""

    def __init__(self, endpoint: Endpoint, known_hosts: str, kh: KnownHosts | None = None):
        self.endpoint = endpoint
        self.known_hosts = known_hosts
        self.kh = kh or KnownHosts()

    def missing_host_key(self, client, hostname, key):
        fp = key.fingerprint  # "SHA256:..." in paramiko >= 3
        ep = self.endpoint
        name, b64 = key.get_name(), key.get_base64()
        if self.kh.is_revoked(name, b64):
            raise HostKeyError(f"host key of {ep.known_hosts_name} ({name} {fp}) is marked @revoked in "
                               f"{self.known_hosts}: refused")
        listed = self.kh.keys_for(ep.known_hosts_name)
        if (name, b64) in listed:
            return
        if any(t == name for t, _ in listed):
            raise HostKeyError(
                f"host key of {ep.known_hosts_name} CHANGED (got {name} {fp}, which {self.known_hosts} does not "
                f"list for it): refused. This can mean someone is intercepting the connection; if the login "
                f"node was reinstalled, remove the old key with: ssh-keygen -R '{ep.known_hosts_name}' "
                f"-f {self.known_hosts}")
        port_flag = f"-p {ep.port} " if ep.port != 22 else ""
        if self.kh.has_ca_for(ep.known_hosts_name) or self.kh.has_ca_for(ep.hostname):
            raise HostKeyError(
                f"{ep.known_hosts_name} is trusted in {self.known_hosts} only through a @cert-authority line; "
                f"this tool checks plain host keys. After checking its fingerprint ({key.get_name()} {fp}), "
                f"add it with: ssh-keyscan {port_flag}{ep.hostname} >> {self.known_hosts}")
        raise HostKeyError(
            f"host key of {hostname} ({key.get_name()} {fp}) is not in {self.known_hosts}: refused. "
            f"If that fingerprint is the login node's, trust it with: "
            f"ssh-keyscan {port_flag}{ep.hostname} >> {self.known_hosts}")


def _key_family(algorithm: str) -> str:
    """The known_hosts key type of a host key algorithm (RSA's SHA-2 signatures use ssh-rsa keys)."""
    return "ssh-rsa" if algorithm in ("rsa-sha2-256", "rsa-sha2-512") else algorithm


def _tcp_socket(host: str, port: int, timeout: float) -> socket.socket:
    """The first hop's socket, opened here rather than by paramiko so that Nagle is off. SSH sends
    each message as a few small writes; with Nagle on, every request/reply exchange (auth, channel
    open, exec) stalls on the server's 40 ms delayed ACK, as OpenSSH avoids with TCP_NODELAY too."""
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class SSHTransport:
    """Implements transport.Transport over one lazily opened SSH connection."""

    kind = "paramiko"

    def __init__(self, cfg: SSHConfig):
        self.cfg = cfg
        self.stats = TransportStats()
        self.endpoint = resolve_endpoint(cfg.host, cfg.ssh_config, cfg.port, cfg.user, cfg.key_file)
        self.description = f"{self.endpoint.user}@{self.endpoint.hostname}:{self.endpoint.port}"
        self._client: paramiko.SSHClient | None = None
        self._hops: list[paramiko.SSHClient] = []
        self._sftp: paramiko.SFTPClient | None = None
        self._sftp_ok = True

    # -- connection -------------------------------------------------------
    def _known_hosts(self) -> KnownHosts:
        known = os.path.expanduser(self.cfg.known_hosts)
        try:
            return parse_known_hosts(open(known).read())
        except FileNotFoundError:
            return KnownHosts()
        except OSError as exc:
            raise TransportError(f"{known}: cannot read: {exc.strerror}") from None

    def _new_client(self, ep: Endpoint, sock=None) -> paramiko.SSHClient:
        known = os.path.expanduser(self.cfg.known_hosts)
        kh = self._known_hosts()
        client = paramiko.SSHClient()   # no keys given to paramiko: _RefuseUnknownKey checks every one
        client.set_missing_host_key_policy(_RefuseUnknownKey(ep, known, kh))
        # as OpenSSH does, ask the host only for key types known_hosts lists for it (none listed: any)
        listed = {t for t, _ in kh.keys_for(ep.known_hosts_name)}
        disabled = [k for k in paramiko.Transport._preferred_keys if _key_family(k) not in listed] if listed else []
        try:
            if sock is None:
                sock = _tcp_socket(ep.hostname, ep.port, self.cfg.connect_timeout)
            client.connect(
                ep.hostname, port=ep.port, username=ep.user, sock=sock,
                key_filename=list(ep.key_files) or None,
                look_for_keys=not ep.key_files, allow_agent=not ep.key_files,
                timeout=self.cfg.connect_timeout, banner_timeout=self.cfg.connect_timeout,
                auth_timeout=self.cfg.connect_timeout, disabled_algorithms={"keys": disabled})
        except HostKeyError:
            client.close()
            raise
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HostKeyError(
                f"host key of {ep.known_hosts_name} CHANGED (got {exc.key.fingerprint}, "
                f"{known} has {exc.expected_key.fingerprint}): refused. This can mean someone "
                f"is intercepting the connection; if the login node was reinstalled, remove the "
                f"old key with: ssh-keygen -R '{ep.known_hosts_name}' -f {known}") from None
        except paramiko.AuthenticationException as exc:
            client.close()
            raise TransportError(f"SSH authentication as {ep.user}@{ep.hostname}:{ep.port} failed "
                                 f"({exc}); check ssh.user and ssh.key_file") from None
        except (OSError, paramiko.SSHException) as exc:
            client.close()
            raise TransportError(f"cannot connect to {ep.hostname}:{ep.port}: {exc}") from None
        self.stats.connections += 1
        transport = client.get_transport()
        if self.cfg.keepalive:
            transport.set_keepalive(self.cfg.keepalive)
        return client

    def _connect(self) -> paramiko.SSHClient:
        sock = None
        hops = []
        targets = [resolve_endpoint(host, self.cfg.ssh_config, port, user)
                   for user, host, port in (parse_jump(h) for h in self.endpoint.proxy_jump)]
        targets.append(self.endpoint)
        for i, ep in enumerate(targets):
            client = self._new_client(ep, sock)
            hops.append(client)
            if i + 1 < len(targets):
                nxt = targets[i + 1]
                try:
                    sock = client.get_transport().open_channel(
                        "direct-tcpip", (nxt.hostname, nxt.port), ("127.0.0.1", 0), timeout=self.cfg.connect_timeout)
                except (paramiko.SSHException, OSError) as exc:
                    for c in hops:
                        c.close()
                    raise TransportError(f"jump host {ep.hostname} could not reach {nxt.hostname}:{nxt.port} "
                                         f"within {self.cfg.connect_timeout:g}s: {exc}") from None
        self._hops = hops[:-1]
        return hops[-1]

    def _alive(self) -> paramiko.Transport:
        if self._client is None:
            self._client = self._connect()
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            raise TransportError("SSH connection is not active")
        return transport

    def _reconnect(self) -> None:
        self.close()
        self._client = self._connect()

    # -- commands ----------------------------------------------------------
    def run(self, command: str, *, timeout: float | None = 120, check: bool = False,
            stdin: str | None = None, idempotent: bool = True) -> CommandResult:
        self.stats.count(command)
        try:
            result = self._exec(command, timeout, stdin)
        except (TransportError, *_DROPPED) as exc:
            if isinstance(exc, (HostKeyError, CommandTimeout)) or self._client is None:
                raise
            if not idempotent:
                raise OutcomeUnknown(f"connection lost while running a command that is not safe "
                                     f"to repeat; it may or may not have run: {command[:120]}") from None
            self._reconnect()  # once, transparently: the command is safe to repeat
            result = self._exec(command, timeout, stdin)
        return result.check() if check else result

    def _exec(self, command: str, timeout: float | None, stdin: str | None) -> CommandResult:
        transport = self._alive()
        chan = transport.open_session(timeout=self.cfg.connect_timeout)
        try:
            chan.exec_command(PRIVATE + command)
            if stdin is not None:
                chan.sendall(stdin.encode())
            chan.shutdown_write()
            out, err = bytearray(), bytearray()
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                if chan.recv_ready():
                    out += chan.recv(65536)
                elif chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                elif chan.exit_status_ready() and (chan.eof_received or chan.closed):
                    # sshd may send the exit status before the last of the output (it reaps the
                    # child while the pipe still holds data): the output is whole only at EOF
                    break
                elif chan.closed or not transport.is_active():
                    raise TransportError("connection dropped during command")
                else:
                    if deadline is not None and time.monotonic() > deadline:
                        raise CommandTimeout(f"remote command timed out after {timeout}s: {command[:120]}")
                    # stdout and close wake select; stderr does not, hence the short cap
                    select.select([chan], [], [], 0.01)
            while chan.recv_ready():
                out += chan.recv(65536)
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(65536)
            code = chan.recv_exit_status()
        finally:
            chan.close()
        return CommandResult(command, code, out.decode(errors="replace"), err.decode(errors="replace"))

    def stream(self, command: str, *, timeout: float | None = None) -> Iterator[str]:
        """Lines of the command's stdout as they arrive; closing the generator closes the channel."""
        self.stats.count(command)
        try:
            transport = self._alive()
        except TransportError:
            if self._client is None:
                raise
            self._reconnect()   # the connection went since the last command: once, as run() does
            transport = self._alive()
        try:
            chan = transport.open_session(timeout=self.cfg.connect_timeout)
        except _DROPPED as exc:
            raise TransportError(f"connection dropped: {exc}") from None
        split = LineSplitter()
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            chan.exec_command(PRIVATE + command)
            chan.shutdown_write()
            while True:
                if chan.recv_ready():
                    yield from split.feed(chan.recv(65536))
                elif chan.recv_stderr_ready():
                    chan.recv_stderr(65536)   # a stream is read for its stdout; stderr must not block it
                elif chan.eof_received or chan.closed:
                    break
                elif not transport.is_active():
                    raise TransportError("connection dropped during command")
                else:
                    if deadline is not None and time.monotonic() > deadline:
                        raise CommandTimeout(f"remote command timed out after {timeout}s: {command[:120]}")
                    select.select([chan], [], [], 0.01)
            yield from split.flush()
        except _DROPPED as exc:
            raise TransportError(f"connection dropped during command: {exc}") from None
        finally:
            chan.close()

    # -- files -------------------------------------------------------------
    # SFTP when the login node offers it, with a timeout on every operation; else (some sites
    # disable the subsystem) the bytes go base64-encoded through the shell of the same connection.
    def _sftp_client(self) -> paramiko.SFTPClient | None:
        if self._sftp is None and self._sftp_ok:
            try:
                self._sftp = self._alive() and self._client.open_sftp()
                self._sftp.get_channel().settimeout(self.cfg.connect_timeout * 4)
            except (paramiko.SSHException, EOFError, OSError):
                self._sftp_ok = False  # refused: this connection transfers over exec from now on
                self._sftp = None
        return self._sftp

    @staticmethod
    def _sftp_path(remote: str) -> str:
        # SFTP paths are relative to the login directory, i.e. the user's home
        if remote.startswith("~/"):
            return remote[2:]
        if remote.startswith("$HOME/"):
            return remote[6:]
        return remote

    def put(self, local_path: str, remote_path: str) -> None:
        self.stats.transfers += 1
        sftp = self._sftp_client()
        if sftp is not None:
            try:
                sftp.put(local_path, self._sftp_path(remote_path))
                return
            except (socket.timeout, paramiko.SSHException, EOFError) as exc:
                raise TransportError(f"upload of {remote_path} failed: {exc or type(exc).__name__}") from None
        data = base64.b64encode(open(local_path, "rb").read()).decode()
        self.run(f"base64 -d > {shell_path(remote_path)}", stdin=data, check=True, timeout=300)

    def get(self, remote_path: str, local_path: str) -> None:
        """Download to ``local_path``; on any failure no local file is left behind."""
        self.stats.transfers += 1
        sftp = self._sftp_client()
        tmp = f"{local_path}.part"
        try:
            if sftp is not None:
                try:
                    sftp.get(self._sftp_path(remote_path), tmp)
                except (socket.timeout, paramiko.SSHException, EOFError) as exc:
                    raise TransportError(f"download of {remote_path} failed: {exc or type(exc).__name__}") from None
            else:
                r = self.run(f"base64 < {shell_path(remote_path)}", timeout=300)
                if not r.ok:
                    raise OSError(f"{remote_path}: {r.stderr.strip() or 'cannot read'}")
                with open(tmp, "wb") as f:
                    f.write(base64.b64decode(r.stdout))
            os.replace(tmp, local_path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    # -- port forwarding ---------------------------------------------------
    def forward(self, remote_host: str, remote_port: int, local_port: int = 0):
        from orchestrator.cluster.forward import SSHForward
        self.stats.forwards += 1
        return SSHForward.start(self._alive(), remote_host, remote_port, local_port)

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
            self._sftp = None
        for client in [self._client, *reversed(self._hops)]:
            if client is not None:
                client.close()
        self._client = None
        self._hops = []

