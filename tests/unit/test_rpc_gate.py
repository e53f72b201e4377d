"""The RPC gate (oncluster/rpc_gate.py) on loopback: worker and head as processes, an echo server in
place of ggml-rpc-server (the real one runs in tests/e2e/test_multinode_e2e.py)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

GATE = Path(__file__).resolve().parents[2] / "orchestrator" / "oncluster" / "rpc_gate.py"
ECHO = """
import socket, sys, threading
args = sys.argv[1:]
host, port = args[args.index("-H") + 1], int(args[args.index("-p") + 1])
srv = socket.create_server((host, port))
def serve(c):
    while True:
        d = c.recv(65536)
        if not d:
            break
        c.sendall(d.upper())
    c.close()
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


def wait_file(path: Path, timeout=20):
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().strip()):
        assert time.monotonic() < deadline, f"{path} never written"
        time.sleep(0.1)
    return path.read_text()


@pytest.fixture
def gate(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("ab" * 24 + "\n")
    (tmp_path / "echo.py").write_text(ECHO)
    procs = []
    env = dict(os.environ, SLURMD_NODENAME="localhost")

    def start(*args):
        p = subprocess.Popen([sys.executable, str(GATE), "--secret-file", str(secret), "--state-dir", str(tmp_path),
                              *args], env=env, stderr=subprocess.PIPE, text=True)
        procs.append(p)
        return p
    yield tmp_path, start, secret
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def test_the_head_relays_to_the_worker_and_the_worker_counts_the_traffic(gate):
    tmp, start, secret = gate
    worker = start("worker", "--", sys.executable, str(tmp / "echo.py"))
    port = int(wait_file(tmp / "rpc-localhost.port"))
    head = start("head", "--workers", "localhost", "--check-interval", "0.5")
    rpc = json.loads(wait_file(tmp / "rpc-head.json"))["rpc"]
    host, local = rpc.split(":")
    assert host == "127.0.0.1"
    with socket.create_connection((host, int(local)), timeout=5) as s:
        s.sendall(b"hello rpc")
        got = b""
        while len(got) < 9:
            got += s.recv(100)
    assert got == b"HELLO RPC"
    deadline = time.monotonic() + 10
    while True:
        stats = json.loads((tmp / "rpc-localhost.json").read_text())
        if stats["bytes_to_worker"] >= 9 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert stats["connections"] == 1 and stats["bytes_to_worker"] == 9 and stats["bytes_from_worker"] == 9
    # without the secret, or with a wrong one, the worker's gate takes nothing
    for hello in (b"", b"cd" * 24 + b"\n"):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(hello)
            if not hello:
                s.shutdown(socket.SHUT_WR)
            assert s.recv(10) == b""
    deadline = time.monotonic() + 10
    while json.loads((tmp / "rpc-localhost.json").read_text())["refused"] < 2:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    # the worker goes away: the head ends, naming its node
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    assert head.wait(timeout=20) == 1
    assert "error: RPC worker node localhost lost" in head.stderr.read()
    assert (tmp / "rpc-lost").read_text() == "localhost\n"


def test_a_head_whose_workers_never_answer_says_which(gate):
    tmp, start, _ = gate
    head = start("head", "--workers", "localhost,ghost-node", "--timeout", "1")
    assert head.wait(timeout=20) == 1
    assert "RPC worker node(s) localhost, ghost-node did not answer within 1s" in head.stderr.read()


def test_a_worker_whose_rpc_server_fails_says_so(gate):
    tmp, start, _ = gate
    worker = start("worker", "--", sys.executable, "-c", "import sys; sys.exit(3)")
    assert worker.wait(timeout=20) == 3
    assert "exited with 3 before it listened" in worker.stderr.read()
