"""A locked relay for llama.cpp's RPC backend across the nodes of one job (standard library only).

ggml-rpc-server has no authentication and warns never to expose it to a network; on a shared
cluster any user can reach a compute node's ports. So each worker runs it on its own loopback,
behind this gate, and the head reaches the workers only through the gate:

  head:   llama-server --rpc 127.0.0.1:L1,127.0.0.1:L2   (local ports of ``rpc_gate.py head``)
            -> rpc_gate head: sends "<job secret>\\n", expects "ok\\n", then relays bytes
  worker: rpc_gate worker (0.0.0.0:G) -> checks the secret -> 127.0.0.1:R ggml-rpc-server

Workers write their gate port to ``<state dir>/rpc-<node>.port`` (the job dir, on the shared file
system) and their traffic to ``rpc-<node>.json`` (connections, bytes each way, refusals, and the
totals' history, so a time window's traffic is known). The head
waits until every worker answers with the secret before it hands out its local ports (written to
``rpc-head.json``), then checks each worker every few seconds: a worker that stops answering ends
the head gate with an error line that names its node, so the job (and a session on it) ends saying
which node was lost. The head's local ports take only connections of the job's own user (the peer's
socket owner in /proc/net/tcp): another user logged in to the head node gets nothing from them. Anyone
who can log in to a worker node can still reach that worker's loopback rpc-server.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import socket
import subprocess
import sys
import threading
import time
from typing import Callable

CHUNK = 1 << 16
HELLO_MAX = 256
HISTORY = 7200   # [time, bytes to, bytes from] when they changed, at most one a second


def log(message: str) -> None:
    print(f"[rpc-gate {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def read_line(sock: socket.socket, limit: int = HELLO_MAX) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk or len(data) >= limit:
            return b""
        data += chunk
    return data[:-1]


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Counter:
    def __init__(self):
        self.lock = threading.Lock()
        self.values = {"connections": 0, "refused": 0, "bytes_to_worker": 0, "bytes_from_worker": 0}

    def add(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.values[key] += n

    def snapshot(self) -> dict:
        with self.lock:
            return dict(self.values)


def pipe(src: socket.socket, dst: socket.socket, counter: Counter | None, key: str,
         ended: threading.Event | None = None) -> None:
    """Copy until EOF or an error, then set ``ended`` and shut the other side's writing down (in that
    order: the other side closes in answer, and whoever watches it must already know who began)."""
    try:
        while True:
            data = src.recv(CHUNK)
            if not data:
                break
            dst.sendall(data)
            if counter is not None:
                counter.add(key, len(data))
    except OSError:
        pass
    finally:
        if ended is not None:
            ended.set()
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def relay(a: socket.socket, b: socket.socket, counter: Counter | None,
          on_b_gone: Callable[[], None] | None = None) -> None:
    """Both directions; returns when both have ended. ``a`` is the head's side; ``on_b_gone`` runs
    when ``b`` ends its side while ``a`` still has the connection open (a worker that went away)."""
    a_done = threading.Event()

    def back() -> None:
        pipe(b, a, counter, "bytes_from_worker")
        if on_b_gone is not None and not a_done.is_set():
            on_b_gone()
    t = threading.Thread(target=back, daemon=True)
    t.start()
    pipe(a, b, counter, "bytes_to_worker", a_done)
    t.join()
    a.close()
    b.close()


# -- worker ---------------------------------------------------------------------------------------
def worker(args, secret: bytes) -> int:
    node = args.node or os.environ.get("SLURMD_NODENAME") or socket.gethostname().split(".")[0]
    rpc_port = free_port("127.0.0.1")
    cmd = [*args.command, "-H", "127.0.0.1", "-p", str(rpc_port)]
    child = subprocess.Popen(cmd)
    deadline = time.monotonic() + args.timeout
    while True:   # ggml-rpc-server answers on its loopback port
        if child.poll() is not None:
            log(f"error: {cmd[0]} on {node} exited with {child.returncode} before it listened")
            return child.returncode or 1
        try:
            socket.create_connection(("127.0.0.1", rpc_port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                log(f"error: {cmd[0]} on {node} did not listen within {args.timeout:g}s")
                child.kill()
                return 1
            time.sleep(0.2)
    gate = socket.create_server(("0.0.0.0", args.port or 0), backlog=16)
    port = gate.getsockname()[1]
    counter = Counter()
    stats_path = os.path.join(args.state_dir, f"rpc-{node}.json")
    write_atomic(os.path.join(args.state_dir, f"rpc-{node}.port"), f"{port}\n")
    log(f"{node}: {cmd[0]} on 127.0.0.1:{rpc_port}, gate on port {port}")

    def serve(conn: socket.socket, peer) -> None:
        conn.settimeout(10)
        try:
            hello = read_line(conn)
        except OSError:
            hello = b""
        if not hello or not hmac.compare_digest(hello, secret):
            counter.add("refused")
            log(f"{node}: refused a connection from {peer[0]} (no or wrong secret)")
            conn.close()
            return
        conn.sendall(b"ok\n")
        conn.settimeout(None)
        first = conn.recv(CHUNK)   # a head's liveness check closes here: no rpc-server connection for it
        if not first:
            conn.close()
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", rpc_port))
        except OSError as exc:
            log(f"error: {node}: {cmd[0]} does not answer: {exc}")
            conn.close()
            return
        counter.add("connections")
        upstream.sendall(first)
        counter.add("bytes_to_worker", len(first))
        relay(conn, upstream, counter)

    def accept() -> None:
        while True:
            conn, peer = gate.accept()
            threading.Thread(target=serve, args=(conn, peer), daemon=True).start()
    threading.Thread(target=accept, daemon=True).start()
    last, history = None, []
    while child.poll() is None:
        now = counter.snapshot()
        if now != last:   # totals, and when they changed (a window's traffic is the difference of two)
            history = (history + [[round(time.time(), 3), now["bytes_to_worker"], now["bytes_from_worker"]]])[-HISTORY:]
            write_atomic(stats_path, json.dumps({"node": node, "gate_port": port, **now, "history": history}) + "\n")
            last = now
        time.sleep(1)
    log(f"error: {cmd[0]} on {node} exited with {child.returncode}")
    return child.returncode or 1


# -- head -----------------------------------------------------------------------------------------
def check(host: str, port: int, secret: bytes, timeout: float = 5) -> str | None:
    """None when the worker's gate takes the secret; else why not."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(secret + b"\n")
            answer = read_line(s, 8)
            return None if answer == b"ok" else "it refused the job's secret"
    except OSError as exc:
        return str(exc) or type(exc).__name__


def _proc_address(host: str, port: int) -> str:
    """An IPv4 address as /proc/net/tcp writes it: the address's 32 bits in host order, then the port."""
    return "%08X:%04X" % (int.from_bytes(socket.inet_aton(host), sys.byteorder), port)


def loopback_peer_uid(conn: socket.socket, table: str = "/proc/net/tcp") -> int | None:
    """The uid owning the other end of an accepted loopback connection (its socket is in the same
    network namespace's table, with our ends swapped); None when it is not found."""
    local, peer = conn.getsockname()[:2], conn.getpeername()[:2]
    want = (_proc_address(*peer), _proc_address(*local))
    try:
        with open(table) as f:
            rows = f.read().splitlines()[1:]
    except OSError:
        return None
    for row in rows:
        fields = row.split()
        if len(fields) > 7 and (fields[1], fields[2]) == want:
            return int(fields[7])
    return None


def head(args, secret: bytes) -> int:
    workers = [w for w in args.workers.split(",") if w]
    lost_file = os.path.join(args.state_dir, "rpc-lost")

    def lost(w: str, why: str) -> None:
        """Say which worker node was lost, in the log and in ``rpc-lost`` (the job's last words use it)."""
        log(f"error: RPC worker node {w} lost: {why}")
        if not os.path.exists(lost_file):
            write_atomic(lost_file, f"{w}\n")
    ports: dict[str, int] = {}
    deadline = time.monotonic() + args.timeout
    waiting_said = 0.0
    while len(ports) < len(workers):   # every worker's gate up and taking the secret
        for w in workers:
            if w in ports:
                continue
            try:
                with open(os.path.join(args.state_dir, f"rpc-{w}.port")) as f:
                    p = int(f.read().strip() or 0)
            except (OSError, ValueError):
                continue
            if p and check(w, p, secret) is None:
                ports[w] = p
                log(f"RPC worker {w} answers on port {p}")
        if len(ports) < len(workers):
            if time.monotonic() > deadline:
                missing = ", ".join(w for w in workers if w not in ports)
                log(f"error: RPC worker node(s) {missing} did not answer within {args.timeout:g}s")
                return 1
            if time.monotonic() - waiting_said > 10:
                log("waiting for RPC worker(s) " + ", ".join(w for w in workers if w not in ports))
                waiting_said = time.monotonic()
            time.sleep(0.5)
    local = []
    for w in workers:
        server = socket.create_server(("127.0.0.1", 0), backlog=16)
        local.append(f"127.0.0.1:{server.getsockname()[1]}")

        def accept(server=server, w=w) -> None:
            while True:
                conn, _ = server.accept()
                uid = loopback_peer_uid(conn)
                if uid != os.getuid():   # another user on this node: the relay adds the secret, so never
                    log(f"refused a connection to worker {w}'s relay from uid {uid} (not the job's user)")
                    conn.close()
                    continue
                try:
                    up = socket.create_connection((w, ports[w]), timeout=10)
                    up.sendall(secret + b"\n")
                    if read_line(up, 8) != b"ok":
                        raise OSError("it refused the job's secret")
                    up.settimeout(None)
                except OSError as exc:
                    lost(w, str(exc))
                    conn.close()
                    continue
                gone = (lambda w=w: lost(w, "it closed a connection llama-server still had open"))
                threading.Thread(target=relay, args=(conn, up, None, gone), daemon=True).start()
        threading.Thread(target=accept, daemon=True).start()
    write_atomic(os.path.join(args.state_dir, "rpc-head.json"),
                 json.dumps({"rpc": ",".join(local), "workers": {w: ports[w] for w in workers}}) + "\n")
    log(f"--rpc {','.join(local)} ({len(workers)} worker(s): {', '.join(workers)})")
    failures = {w: 0 for w in workers}
    while True:   # a worker that stops answering ends the head gate, naming its node
        time.sleep(args.check_interval)
        for w in workers:
            why = check(w, ports[w], secret)
            failures[w] = failures[w] + 1 if why else 0
            if failures[w] >= 2:
                lost(w, why)
                return 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("role", choices=["worker", "head"])
    ap.add_argument("--secret-file", required=True)
    ap.add_argument("--state-dir", required=True, help="the job dir, seen by every node of the job")
    ap.add_argument("--node", default=None, help="worker: this node's name (default: the host name)")
    ap.add_argument("--port", type=int, default=0, help="worker: the gate's port (default: a free one)")
    ap.add_argument("--workers", default="", help="head: the worker nodes, comma-separated")
    ap.add_argument("--timeout", type=float, default=300, help="seconds to wait for the workers / rpc-server")
    ap.add_argument("--check-interval", type=float, default=3.0)
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[argv.index("--") + 1:] if "--" in argv else []   # worker: -- ggml-rpc-server [options]
    args = ap.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    args.command = command
    if args.role == "worker" and not args.command:
        ap.error("worker: give the RPC server's command after --")
    with open(args.secret_file, "rb") as f:
        secret = f.read().strip()
    if not secret:
        ap.error(f"{args.secret_file}: empty secret")
    return worker(args, secret) if args.role == "worker" else head(args, secret)


if __name__ == "__main__":
    sys.exit(main())
