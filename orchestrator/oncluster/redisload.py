#!/usr/bin/env python3
"""Redis load client, run as a SLURM job next to the service.

Standard library only. Speaks RESP over ``--concurrency`` connections from one
thread (a selector loop: no thread switches, so one core drives tens of
thousands of operations per second), GET and SET in the ``--ratio`` given over
``--keys`` keys of ``--value-bytes`` each, ``--pipeline`` commands per round
trip. The keys are written once with MSET before the go (MSET is not a GET or
SET, so the server's count of those stays the load's own). Every operation is
one JSON line: start, latency_s, ok, error, op, bytes (of the value sent or
received; a GET of a missing key is 0), client_cpu_s (this client's CPU time
per operation, its overhead: each loop turn's CPU shared by the operations it
completed), warmup.
"""

from __future__ import annotations

import argparse
import json
import random
import selectors
import socket
import threading
import time

try:  # shipped beside this file to the job dir; imported from the package in tests
    from orchestrator.oncluster import clientjob
except ImportError:
    import clientjob

OPS = ("get", "set")


def command(*parts: bytes) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for p in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(p), p))
    return b"".join(out)


def parse_reply(buf: bytes | bytearray, pos: int):
    """One RESP reply at ``pos``: (kind, value, next position), or None while it is incomplete.
    kind: "+" status, "-" error, ":" integer, "$" bulk (value None for a missing key)."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return None
    kind = chr(buf[pos])
    if kind == "$":
        n = int(buf[pos + 1:end])
        if n < 0:
            return kind, None, end + 2
        if len(buf) < end + 4 + n:
            return None
        return kind, bytes(buf[end + 2:end + 2 + n]), end + 4 + n
    if kind in "+-:":
        return kind, bytes(buf[pos + 1:end]).decode(errors="replace"), end + 2
    raise ValueError(f"unexpected reply type {kind!r}: this client sends GET, SET and MSET only")


def parse_ratio(text: str) -> dict[str, float]:
    """"get=0.9,set=0.1" -> {"get": 0.9, "set": 0.1}, normalised to sum 1."""
    out = {}
    for item in text.split(","):
        op, _, share = item.partition("=")
        op = op.strip().lower()
        if op not in OPS:
            raise SystemExit(f"--ratio: unknown operation {op!r}; expected {' and '.join(OPS)}")
        out[op] = float(share)
    total = sum(out.values())
    if total <= 0:
        raise SystemExit("--ratio: the shares must add up to more than 0")
    return {k: v / total for k, v in out.items()}


def login(sock: socket.socket) -> None:
    """AUTH with the target's secret (Redis's requirepass), before any measured command; nothing
    when the target is open."""
    secret = clientjob.target_secret()
    if not secret:
        return
    sock.sendall(command(b"AUTH", secret.encode()))
    buf = bytearray()
    while (r := parse_reply(buf, 0)) is None:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("the server closed the connection at AUTH")
        buf += chunk
    if r[0] == "-":
        raise SystemExit(f"AUTH refused by the server: {r[1]}")


class Conn:
    """One connection and the batch it has in flight."""

    def __init__(self, host: str, port: int):
        self.sock = socket.create_connection((host, port), timeout=10)
        login(self.sock)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(10)  # sends block (a big pipeline), reads come only when the selector says so
        self.buf = bytearray()
        self.batch: list[tuple[str, int]] = []   # (op, bytes sent) per command in flight
        self.start = 0.0
        self.t0 = 0.0


class Load:
    def __init__(self, args, stats: clientjob.OpStats, stop: threading.Event):
        self.args, self.stats, self.stop = args, stats, stop
        self.host, _, port = args.address.rpartition(":")
        self.port = int(port)
        self.ratio = parse_ratio(args.ratio)
        self.rng = random.Random(args.seed)
        self.value = (b"%d" % args.seed * args.value_bytes)[:args.value_bytes].ljust(args.value_bytes, b"v")
        self.out = open(args.out, "a", buffering=1 << 16)
        self.sent = 0

    def preload(self, batch: int = 1000) -> None:
        """Every key written once, with MSET (pipelined, blocking socket): GETs find values."""
        s = socket.create_connection((self.host, self.port), timeout=60)
        try:
            login(s)
            pending = 0
            for lo in range(0, self.args.keys, batch):
                parts = [b"MSET"]
                for k in range(lo, min(lo + batch, self.args.keys)):
                    parts += [b"key:%d" % k, self.value]
                s.sendall(command(*parts))
                pending += 1
            buf = bytearray()
            while pending:
                chunk = s.recv(65536)
                if not chunk:
                    raise ConnectionError("the server closed the connection during the preload")
                buf += chunk
                pos = 0
                while (r := parse_reply(buf, pos)) is not None:
                    if r[0] == "-":
                        raise SystemExit(f"preload: MSET failed: {r[1]}")
                    pos, pending = r[2], pending - 1
                del buf[:pos]
        finally:
            s.close()

    def next_ops(self) -> list[tuple[str, bytes]]:
        ops = []
        for _ in range(self.args.pipeline):
            if self.args.requests and self.sent >= self.args.requests:
                break
            self.sent += 1
            key = b"key:%d" % self.rng.randrange(self.args.keys)
            op = "get" if self.rng.random() < self.ratio.get("get", 0.0) else "set"
            ops.append((op, command(b"GET", key) if op == "get" else command(b"SET", key, self.value)))
        return ops

    def send(self, c: Conn, now: float) -> bool:
        ops = self.next_ops()
        if not ops:
            return False
        c.batch = [(op, self.args.value_bytes if op == "set" else 0) for op, _ in ops]
        c.start, c.t0 = now, time.perf_counter()
        c.sock.sendall(b"".join(cmd for _, cmd in ops))
        return True

    def write(self, c: Conn, replies: list, cpu_each: float, warmup_until: float) -> None:
        lat = time.perf_counter() - c.t0
        lines = []
        st = self.stats
        with st.lock:
            for (op, sent), (kind, value) in zip(c.batch, replies):
                ok = kind != "-"
                nbytes = sent if op == "set" else (len(value) if value else 0)
                lines.append(json.dumps({
                    "start": round(c.start, 6), "latency_s": round(lat, 6), "ttft_s": None, "tpot_s": None,
                    "status": None, "ok": ok, "tokens_in": None, "tokens_out": None,
                    "error": None if ok else f"redis: {value}", "op": op, "bytes": nbytes,
                    "client_cpu_s": round(cpu_each, 7), "warmup": c.start < warmup_until,
                    "client": self.args.client_id}))
                st.add(op, ok, lat, nbytes, cpu_each)
            st.in_flight -= len(c.batch)
        self.out.write("\n".join(lines) + "\n")
        c.batch = []

    def fail(self, c: Conn, error: str, warmup_until: float) -> None:
        self.write(c, [("-", error)] * len(c.batch), 0.0, warmup_until)

    def run(self, begin: float, end: float, warmup_until: float) -> None:
        sel = selectors.DefaultSelector()
        conns = [Conn(self.host, self.port) for _ in range(self.args.concurrency)]
        for c in conns:
            sel.register(c.sock, selectors.EVENT_READ, c)
        gap = 1.0 / self.args.rate if self.args.rate else 0.0
        next_send = begin
        idle = list(conns)
        cpu_mark = time.process_time()
        while True:
            now = time.time()
            stopping = self.stop.is_set() or now >= end
            # start batches on idle connections (at the rate, if one is set)
            while idle and not stopping and (not gap or now >= next_send):
                c = idle.pop()
                if not self.send(c, now):
                    idle.append(c)
                    stopping = True
                    break
                with self.stats.lock:
                    self.stats.in_flight += len(c.batch)
                next_send += gap * len(c.batch)
            busy = len(conns) - len(idle)
            if busy == 0 and (stopping or (self.args.requests and self.sent >= self.args.requests)):
                break
            timeout = max(0.0, min(next_send - now, 0.05)) if gap and idle and not stopping else 0.05
            done_here: list[tuple[Conn, list]] = []
            for key, _ in sel.select(timeout):
                c = key.data
                try:
                    chunk = c.sock.recv(1 << 16)
                except (ConnectionError, OSError) as exc:
                    chunk, err = b"", f"{type(exc).__name__}: {exc}"
                else:
                    err = "connection closed by the server"
                if not chunk:
                    self.fail(c, err, warmup_until)
                    sel.unregister(c.sock)
                    c.sock.close()
                    conns.remove(c)
                    continue
                c.buf += chunk
                replies, pos = [], 0
                while len(replies) < len(c.batch) and (r := parse_reply(c.buf, pos)) is not None:
                    replies.append(r[:2])
                    pos = r[2]
                if len(replies) == len(c.batch):
                    del c.buf[:pos]
                    done_here.append((c, replies))
            if done_here:
                cpu_now = time.process_time()
                n = sum(len(c.batch) for c, _ in done_here)
                for c, replies in done_here:
                    self.write(c, replies, (cpu_now - cpu_mark) / n, warmup_until)
                    idle.append(c)
                cpu_mark = cpu_now
            if not conns:
                break
        for c in conns:
            c.sock.close()
        self.out.close()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--address", required=True, help="HOST:PORT of the Redis server")
    ap.add_argument("--ratio", default="get=0.9,set=0.1", help="shares of GET and SET, e.g. get=0.9,set=0.1")
    ap.add_argument("--keys", type=int, default=100_000, help="key space: key:0 .. key:N-1")
    ap.add_argument("--value-bytes", type=int, default=1024)
    ap.add_argument("--pipeline", type=int, default=1, help="commands per round trip on a connection")
    ap.add_argument("--no-preload", action="store_true", help="do not write the keys before the load")
    ap.add_argument("--seed", type=int, default=0)
    args = clientjob.parse_job_arguments(ap, argv)
    job = clientjob.Job(args)
    stats = clientjob.OpStats(OPS)
    load = Load(args, stats, job.stop)
    if not args.no_preload:
        load.preload()  # before /metrics answers: the session's readiness check waits for it
    if args.metrics_port:
        clientjob.serve_metrics(args.metrics_port, stats.metrics)
    job.run(load.run, stats.counts, f"load: redis -> {args.address}, {args.ratio}, concurrency {args.concurrency}, "
            f"pipeline {args.pipeline}, {'rate %g/s' % args.rate if args.rate else 'closed loop'}")


if __name__ == "__main__":
    main()
