"""Local port forwarding: 127.0.0.1:<local_port> -> <host>:<port> seen from the login node.

One listener thread accepts; each connection gets a pump thread that copies
bytes both ways between the local socket and an upstream opened by
``open_upstream`` (an SSH direct-tcpip channel, or a plain socket locally).
"""

from __future__ import annotations

import select
import socket
import threading
from typing import Callable


class _Forward:
    def __init__(self, open_upstream: Callable[[], object], local_port: int):
        self._open_upstream = open_upstream
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", local_port))  # loopback only: never expose the cluster
        self._listener.listen(16)
        self.local_port = self._listener.getsockname()[1]
        self._closed = threading.Event()
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._pump, args=(conn,), daemon=True).start()

    def _pump(self, conn: socket.socket) -> None:
        try:
            upstream = self._open_upstream()
        except Exception:
            conn.close()
            return
        try:
            while not self._closed.is_set():
                ready, _, _ = select.select([conn, upstream], [], [], 0.5)
                for src in ready:
                    data = src.recv(65536)
                    if not data:
                        return
                    (upstream if src is conn else conn).sendall(data)
        except OSError:
            pass
        finally:
            conn.close()
            upstream.close()

    def close(self) -> None:
        self._closed.set()
        self._listener.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SSHForward(_Forward):
    @classmethod
    def start(cls, transport, host: str, port: int, local_port: int = 0) -> "SSHForward":
        return cls(lambda: transport.open_channel("direct-tcpip", (host, port), ("127.0.0.1", 0)),
                   local_port)


class LocalForward(_Forward):
    @classmethod
    def start(cls, host: str, port: int, local_port: int = 0) -> "LocalForward":
        return cls(lambda: socket.create_connection((host, port), timeout=10), local_port)
