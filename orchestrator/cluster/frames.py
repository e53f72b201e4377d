"""Length-prefixed JSON frames over a Unix socket: the agent's protocol (a 4-byte big-endian
length, then JSON). Standard library only: the hand-off client imports it before anything else."""

from __future__ import annotations

import json
import socket
import struct


def frame(doc: dict) -> bytes:
    data = json.dumps(doc).encode()
    return struct.pack(">I", len(data)) + data


def send_frame(sock: socket.socket, doc: dict) -> None:
    sock.sendall(frame(doc))


def recv_frame(sock: socket.socket, first: bytes = b"") -> dict | None:
    """One frame, None at EOF; ``first``: bytes of it already read (with the descriptors of a recvmsg)."""
    head = _exactly(sock, 4, first[:4])
    if head is None:
        return None
    body = _exactly(sock, struct.unpack(">I", head)[0], first[4:])
    return None if body is None else json.loads(body)


def _exactly(sock: socket.socket, n: int, have: bytes = b"") -> bytes | None:
    buf = bytearray(have)
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def peer_uid(conn: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket (SO_PEERCRED: pid, uid, gid)."""
    return struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[1]
