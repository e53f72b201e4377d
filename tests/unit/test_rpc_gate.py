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
    if os.getuid() == 0:   # another user on the head node: its relay (which adds the secret) refuses them
        # (the system's python3: this interpreter's own library may be in a folder only root reads)
        other = subprocess.run(["/usr/bin/python3", "-c", "import os, socket, sys\nos.setuid(65534)\n"
                                "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=5)\n"
                                "s.sendall(b'hello rpc'); s.settimeout(5)\ntry:\n    print(repr(s.recv(100)))\n"
                                "except ConnectionResetError:\n    print('reset')", local],
                               capture_output=True, text=True, timeout=30)
        assert other.returncode == 0 and other.stdout.strip() in ("b''", "reset"), other
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


def test_a_loopback_peers_uid_is_read_from_the_kernels_socket_table():
    from orchestrator.oncluster.rpc_gate import loopback_peer_uid
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    conn, _ = server.accept()
    try:
        assert loopback_peer_uid(conn) == os.getuid()
        # a table without that connection (or none at all): unknown, and so refused by the relay
        assert loopback_peer_uid(conn, table="/nonexistent") is None
    finally:
        for s in (conn, client, server):
            s.close()


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


def test_a_job_across_nodes_has_a_node_exporter_target_on_each_node():
    """The endpoint.json a 3-node llamacpp-rpc job wrote on the sandbox (its nodes as SLURM compresses
    them): the service on the head, a node exporter on each node."""
    from orchestrator.monitoring.targets import targets_from_probe
    from orchestrator.services.probe import Probe
    from orchestrator.services.recipes import TargetSpec
    endpoint = {"job_id": "2", "node": "n1", "nodes": "n[1-3]", "ports": [59277],
                "metrics": {"port": 59277, "path": "/metrics"}, "exporters": {"node": 46097},
                "static": {"auth": "bearer"}}
    targets = targets_from_probe(TargetSpec(service_id="llamacpp-rpc_48a3ae35"),
                                 Probe("2", "llamacpp-rpc_48a3ae35", None, endpoint))
    assert [(t.job_name, t.address, t.kind) for t in targets] == [
        ("llamacpp-rpc_48a3ae35", "n1:59277", "service"), ("llamacpp-rpc_48a3ae35-node", "n1:46097", "node"),
        ("llamacpp-rpc_48a3ae35-node", "n2:46097", "node"), ("llamacpp-rpc_48a3ae35-node", "n3:46097", "node")]
    assert targets[0].auth == "bearer" and all(t.auth == "" for t in targets[1:])


def test_a_workers_traffic_in_a_window_is_the_difference_of_its_totals():
    from orchestrator.analysis.rpc import worker_traffic
    stats = {"connections": 17, "refused": 1, "bytes_to_worker": 900, "bytes_from_worker": 90,
             "history": [[10.0, 600, 10], [12.0, 700, 40], [15.0, 900, 90]]}
    row = worker_traffic("llamacpp-rpc", "n2", stats, 11.0, 14.0)
    assert (row["bytes_to_worker"], row["bytes_from_worker"]) == (100, 30)   # from the totals at 10 to those at 12
    assert worker_traffic("x", "n2", stats, 0.0, 20.0)["bytes_to_worker"] == 900
    assert (row["total_to_worker"], row["connections"], row["refused"]) == (900, 17, 1)


def _load_gate():
    import importlib.util
    spec = importlib.util.spec_from_file_location("rpc_gate_under_test", GATE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class SlowToReturn:
    """A worker-side socket whose peer closes the moment it sees EOF, and whose shutdown() returns
    late: the worker's close reaches the relay before the head side's end is noted, unless it is
    noted first (as a busy node's scheduler may arrange)."""

    def __init__(self, sock: socket.socket, peer: socket.socket):
        self.sock, self.peer = sock, peer

    def recv(self, n):
        return self.sock.recv(n)

    def sendall(self, data):
        self.sock.sendall(data)

    def shutdown(self, how):
        self.sock.shutdown(how)
        self.peer.close()   # the worker answers EOF with its own close
        time.sleep(0.3)

    def close(self):
        self.sock.close()


def test_the_head_closing_first_is_never_taken_for_a_lost_worker():
    """llama-server closing one of its connections, and the worker closing in answer, is normal;
    only a worker that ends while the head still holds the connection is lost."""
    rpc_gate = _load_gate()
    head, head_peer = socket.socketpair()
    worker, worker_peer = socket.socketpair()
    lost = []
    import threading
    t = threading.Thread(target=rpc_gate.relay, args=(head, SlowToReturn(worker, worker_peer), None,
                                                      lambda: lost.append("worker")))
    t.start()
    head_peer.close()   # llama-server ends that connection
    t.join(5)
    assert not t.is_alive() and lost == []
    # and a worker that goes while the head side is open is reported
    head, head_peer = socket.socketpair()
    worker, worker_peer = socket.socketpair()
    t = threading.Thread(target=rpc_gate.relay, args=(head, worker, None, lambda: lost.append("worker")))
    t.start()
    worker_peer.close()
    time.sleep(0.3)
    assert lost == ["worker"]
    head_peer.close()
    t.join(5)
