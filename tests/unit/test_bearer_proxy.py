"""The bearer gate in front of servers without authentication of their own, on loopback: the key is
checked before any body is read, bodies are bounded, streamed answers keep their timing."""

import http.client
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from orchestrator.oncluster.bearer_proxy import make_handler

KEY = "s3cret-key"


class Backend(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list = []
    paths: list = []    # what GETs reached the server, as it saw them

    def do_GET(self):
        Backend.paths.append(self.path)
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        Backend.seen.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(3):     # three pieces, 0.2 s apart
            data = f"data: {i}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
            time.sleep(0.2)
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, *a):
        pass


def serve(handler) -> int:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv.server_address[1]


@pytest.fixture(scope="module")
def proxy():
    backend = serve(Backend)
    return serve(make_handler(("127.0.0.1", backend), KEY, {"/health"}, max_body=1 << 20))


def raw(port: int, head: bytes, timeout: float = 5) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def test_a_caller_without_the_key_is_refused_before_its_body_is_read(proxy):
    # a 200 MiB body announced, none of it sent: the answer comes at once, and the connection closes
    start = time.monotonic()
    answer = raw(proxy, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 209715200\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 401") and b"Connection: close" in answer
    assert time.monotonic() - start < 2


@pytest.mark.parametrize("headers, code", [
    (b"Content-Length: -1\r\n", b"400"),
    (b"Content-Length: 2097152\r\n", b"413"),
    (b"Transfer-Encoding: chunked\r\n", b"411"),
])
def test_bodies_must_state_a_bounded_length_even_with_the_key(proxy, headers, code):
    answer = raw(proxy, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode()
                 + b"\r\n" + headers + b"\r\n")
    assert answer.split(b" ")[1] == code


def test_open_paths_need_no_key_and_others_do(proxy):
    conn = http.client.HTTPConnection("127.0.0.1", proxy, timeout=5)
    conn.request("GET", "/health")
    assert conn.getresponse().read() == b"ok"
    conn = http.client.HTTPConnection("127.0.0.1", proxy, timeout=5)
    conn.request("GET", "/v1/models", headers={"Authorization": "Bearer wrong"})
    assert conn.getresponse().status == 401


def test_a_streamed_answer_is_relayed_piece_by_piece_as_it_comes(proxy):
    conn = http.client.HTTPConnection("127.0.0.1", proxy, timeout=5)
    start = time.monotonic()
    conn.request("POST", "/v1/completions", body=b'{"prompt": "x"}',
                 headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200
    arrivals = []
    while line := resp.readline():
        if line.startswith(b"data:"):
            arrivals.append(time.monotonic() - start)
    assert len(arrivals) == 3 and Backend.seen[-1] == b'{"prompt": "x"}'
    # the first piece arrives before the backend wrote the last (0.4 s later): not buffered whole
    assert arrivals[0] < 0.15 and arrivals[2] - arrivals[0] > 0.3


def test_an_open_path_is_served_to_get_only_and_without_the_callers_query(proxy):
    """An exporter's /metrics is open, its /metrics?target=... must not reach it (redis_exporter would log
    in to the host named), and a POST to an open path needs the key like any other."""
    Backend.paths.clear()
    conn = http.client.HTTPConnection("127.0.0.1", proxy, timeout=5)
    conn.request("GET", "/health?target=redis://10.0.0.9:6379&check-keys=*")
    r = conn.getresponse()
    assert r.status == 200 and r.read() == b"ok" and Backend.paths == ["/health"]
    conn = http.client.HTTPConnection("127.0.0.1", proxy, timeout=5)
    conn.request("POST", "/health", body=b"{}", headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    assert r.status == 401 and Backend.seen.count(b"{}") == 0
    # with the key, the caller's request goes as sent
    conn = http.client.HTTPConnection("127.0.0.1", proxy, timeout=5)
    conn.request("GET", "/health?x=1", headers={"Authorization": f"Bearer {KEY}"})
    assert conn.getresponse().status == 200 and Backend.paths[-1] == "/health?x=1"
