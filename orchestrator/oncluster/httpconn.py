"""The load client's HTTP/1.1 connection: a request written as one send, an answer's head read and
split in a few bytes operations, a streamed body read one recv per arrival. Standard library only
(shipped beside loadgen.py to the job dir).

Why not http.client: its request building and its head parsing (the email package's feed parser)
cost about 0.25 ms of CPU per request, a quarter of the client's whole budget for a 32-token
streamed answer; what a benchmark needs of HTTP/1.1 (Content-Length, chunked, keep-alive,
``Connection: close``, a server that closes a kept-alive connection) is this file.
"""

from __future__ import annotations

import bisect
import functools
import socket
import struct
import time

MAX_HEAD = 65536   # an answer's status line and headers; more is no HTTP server we benchmark


class Closed(ConnectionError):
    """The server closed the connection before any byte of an answer (a kept-alive connection it
    had let go): the request may be sent again on a new one."""


class BadAnswer(ValueError):
    """An answer that is not HTTP/1.x, or cut short where its framing says more must come."""


def _checked(text: str, what: str) -> str:
    # a path or header value with a line break would write a second request (or header) into this one
    if any(c in text for c in "\r\n\0") or (what == "path" and (" " in text or not text.startswith("/"))):
        raise ValueError(f"refusing to send {what} {text!r}: it must be one line" +
                         (" starting with / and without spaces" if what == "path" else ""))
    return text


def _timed_out(func):
    """A send or recv the kernel's bound stopped (EAGAIN on a blocking socket) is the TimeoutError a
    Python socket timeout would have raised, with its words."""
    @functools.wraps(func)
    def bounded(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except BlockingIOError:
            raise TimeoutError("timed out") from None
    return bounded


class Answer:
    """An answer's status and headers (names lower-cased), and its body's framing. ``buf`` holds the
    bytes read past the head; ``will_close``: the connection carries no further request."""

    def __init__(self, conn: "Connection", status: int, version: bytes, headers: dict[str, str], buf: bytes,
                 bodiless: bool = False):
        self.conn, self.status, self.headers, self.buf = conn, status, headers, buf
        tokens = {t.strip() for t in headers.get("connection", "").lower().split(",")}
        self.will_close = "close" in tokens or (version == b"HTTP/1.0" and "keep-alive" not in tokens)
        self.chunked = not bodiless and "chunked" in headers.get("transfer-encoding", "").lower()
        self.length: int | None = None
        if not self.chunked:
            if "content-length" in headers:
                try:
                    self.length = int(headers["content-length"])
                except ValueError:
                    raise BadAnswer(f"Content-Length is not a number: {headers['content-length']!r}") from None
                if bodiless:   # a HEAD's answer says the length its GET would have, and sends no body
                    self.length = 0
            elif bodiless or status in (204, 304):
                self.length = 0
            else:
                self.will_close = True   # the body ends where the connection does
        self.closed = False

    def isclosed(self) -> bool:
        return self.closed

    def finish(self, whole: bool) -> None:
        """The body has been read (``whole``), or reading stopped short: then the connection is spent."""
        self.closed = True
        if not whole:
            self.will_close = True

    @_timed_out
    def read(self) -> bytes:
        """The whole body."""
        sock, buf = self.conn.sock, self.buf
        self.buf = b""
        if self.chunked:
            decoder = ChunkedLines()
            parts = decoder.feed(buf)
            while not decoder.done:
                data = sock.recv(65536)
                if not data:
                    raise BadAnswer("the connection ended inside a chunked body")
                parts += decoder.feed(data)
            self.finish(True)
            return b"".join(parts)
        if self.length is None:
            parts = [buf]
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                parts.append(data)
            self.finish(False)
            return b"".join(parts)
        parts, have = [buf], len(buf)
        while have < self.length:
            data = sock.recv(65536)
            if not data:
                raise BadAnswer(f"the connection ended {self.length - have} bytes short of the body's Content-Length")
            parts.append(data)
            have += len(data)
        body = b"".join(parts)
        self.finish(have == self.length)   # bytes past the body: nothing asked for them, the connection is spent
        return body[:self.length]


class Connection:
    """One kept-alive connection to ``host:port``; ``served``: it has carried a whole answer."""

    def __init__(self, host: str, port: int, timeout: float):
        self.host, self.port, self.timeout = host, port, timeout
        self.sock: socket.socket | None = None
        self.served = False
        self.method = ""
        name = f"[{host}]" if ":" in host else host   # an IPv6 address is bracketed in a Host header
        self._host_header = f"{name}:{port}" if port != 80 else name

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # The kernel bounds each send and recv (SO_SNDTIMEO, SO_RCVTIMEO), not Python: a socket with
        # a Python timeout polls before every recv, two system calls per arriving token where one
        # does (8% of a bare socket's CPU for a streamed llama.cpp answer). A wait past the bound
        # fails the call with EAGAIN, which ``_timed_out`` turns back into the TimeoutError it is.
        whole = max(self.timeout, 0.001)
        tv = struct.pack("@ll", int(whole), int(whole % 1 * 1_000_000))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
        sock.settimeout(None)
        self.sock = sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    @_timed_out
    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> None:
        """Write the request in one send (connecting first when not connected)."""
        if not (method.isascii() and method.replace("-", "").isalnum()):
            raise ValueError(f"refusing to send method {method!r}: an HTTP method is one word")
        lines = [f"{method} {_checked(path, 'path')} HTTP/1.1", f"Host: {self._host_header}", "Accept-Encoding: identity"]
        for name, value in (headers or {}).items():
            lines.append(f"{_checked(name, 'header name')}: {_checked(str(value), 'header value')}")
        if body is not None or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body or b'')}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
        if self.sock is None:
            self.connect()
        self.method = method
        self.sock.sendall(data)

    @_timed_out
    def response(self) -> Answer:
        """The answer's head (interim 1xx answers skipped); its body is left to read."""
        buf = b""
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    raise BadAnswer(f"no end of the answer's head in its first {MAX_HEAD} bytes")
                data = self.sock.recv(65536)
                if not data:
                    if not buf:
                        raise Closed("the server closed the connection without an answer")
                    raise BadAnswer(f"the connection ended inside the answer's head: {buf[:80]!r}")
                buf += data
                continue
            head, buf = buf[:end], buf[end + 4:]
            status_line, *fields = head.split(b"\r\n")
            version, _, rest = status_line.partition(b" ")
            code = rest[:3]
            if not version.startswith(b"HTTP/1.") or not code.isdigit():
                raise BadAnswer(f"not an HTTP/1.x status line: {status_line[:80]!r}")
            status = int(code)
            if 100 <= status < 200 and status != 101:
                continue   # an interim answer: the real one follows
            headers: dict[str, str] = {}
            for field in fields:
                name, sep, value = field.partition(b":")
                if not sep:
                    raise BadAnswer(f"not a header line: {field[:80]!r}")
                key = name.strip().lower().decode("latin-1")
                value_s = value.strip().decode("latin-1")
                headers[key] = f"{headers[key]}, {value_s}" if key in headers else value_s
            return Answer(self, status, version, headers, buf, bodiless=self.method == "HEAD")


class ChunkedLines:
    """A chunked body (what every streaming engine sends) decoded into its lines as its bytes are
    given, each line with the time of the arrival that completed its chunk. The bytes are walked by
    offset, not cut: decoding a whole answer at once costs a few bytes operations per chunk."""

    def __init__(self) -> None:
        self.raw = b""       # bytes not yet decoded (a size line or a chunk still incomplete)
        self.body = b""      # decoded bytes of a line still incomplete
        self.done = False    # the last chunk and the trailers' end were read

    def decode(self, arrivals: list[tuple[float, bytes]]) -> list[tuple[float, bytes]]:
        """The lines (with their newline) that these arrivals complete, each with its arrival's time."""
        raw = self.raw + b"".join([data for _, data in arrivals])
        ends, at = [], len(self.raw)
        for _, data in arrivals:   # where each arrival's bytes end in ``raw``
            at += len(data)
            ends.append(at)
        out, body, pos = [], self.body, 0
        while True:
            eol = raw.find(b"\r\n", pos)
            if eol < 0:
                break
            try:
                size = int(raw[pos:eol].split(b";", 1)[0], 16)
            except ValueError:
                raise BadAnswer(f"not a chunk size: {raw[pos:eol][:40]!r}") from None
            if size == 0:
                last = raw.find(b"\r\n\r\n", eol)
                if last < 0:
                    break   # the end of the trailers (an empty line) is still to come
                self.done, self.raw, self.body = True, b"", b""
                t = arrivals[bisect.bisect_right(ends, last + 3)][0]
                return out + [(t, line) for line in body.splitlines(keepends=True)]
            stop = eol + 4 + size
            if len(raw) < stop:
                break
            body += raw[eol + 2:stop - 2]
            pos = stop
            if b"\n" in body:
                t = arrivals[bisect.bisect_right(ends, stop - 1)][0]   # the arrival that completed this chunk
                *lines, body = body.split(b"\n")
                out += [(t, line + b"\n") for line in lines]
        self.raw, self.body = raw[pos:], body
        return out

    def feed(self, data: bytes) -> list[bytes]:
        """The lines that ``data`` completes."""
        return [line for _, line in self.decode([(0.0, data)])]

    def rest(self) -> list[bytes]:
        """What is left of the body once no more comes."""
        lines, self.body = self.body.splitlines(keepends=True), b""
        return lines


@_timed_out
def timed_lines(resp: Answer) -> list[tuple[float, bytes]]:
    """A streamed answer's lines, each with the time its bytes arrived (``time.perf_counter``).

    While the answer streams, each arrival costs one recv and one clock reading, nothing more:
    decoding waits for the body's end (or an arrival that may be it: one that ends in an empty
    line). Parsing each arrival as it came cost the client about 2 ms of CPU per 32-token answer
    from llama.cpp, whose tokens arrive apart: every arrival ran the parser on caches the engine's
    work between two tokens had evicted. Once the last chunk is read the connection is kept for the
    next request; an answer cut short gives what came and marks the connection to be dropped
    (``will_close``)."""
    clock = time.perf_counter
    recv = resp.conn.sock.recv
    first, resp.buf = resp.buf, b""
    if not resp.chunked:
        return _plain_lines(resp, clock, recv, first)
    decoder, out, tail = ChunkedLines(), [], b""
    pending = [(clock(), first)] if first else []
    data = first
    while True:
        if data:
            tail = data[-4:] if len(data) >= 4 else (tail + data)[-4:]
            if tail == b"\r\n\r\n":   # possibly the end: decode what came so far
                out += decoder.decode(pending)
                pending = []
                if decoder.done:
                    resp.finish(True)   # the whole answer is read: the connection can carry the next request
                    return out
        data = recv(65536)
        if not data:
            break
        pending.append((clock(), data))
    out += decoder.decode(pending)
    end = pending[-1][0] if pending else clock()
    out += [(end, line) for line in decoder.rest()]
    resp.finish(False)   # cut short: the caller sees the connection end (will_close) and drops it
    return out


def _plain_lines(resp: Answer, clock, recv, first: bytes) -> list[tuple[float, bytes]]:
    """``timed_lines`` for a body framed by its Content-Length or by the connection's end."""
    pieces = [(clock(), first)] if first else []
    have = len(first)
    while resp.length is None or have < resp.length:
        data = recv(65536)
        if not data:
            break
        pieces.append((clock(), data))
        have += len(data)
    left = have if resp.length is None else resp.length
    out, rest = [], b""
    for t, piece in pieces:
        piece = piece[:left]
        left -= len(piece)
        *done, rest = (rest + piece).split(b"\n")
        out += [(t, line + b"\n") for line in done]
    if rest:
        out.append((pieces[-1][0], rest))
    resp.finish(resp.length == have)   # cut short, bytes past it, or a body ended by the close: the connection is spent
    return out


def body_lines(resp: Answer) -> list[bytes]:
    """A streamed answer's lines (``timed_lines`` without the times)."""
    return [line for _, line in timed_lines(resp)]
