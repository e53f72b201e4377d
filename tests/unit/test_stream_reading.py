"""The load client's own HTTP/1.1 connection and its reader of a streamed answer (httpconn), against a real
socket server that cuts its bytes at the worst places: inside a chunk-size line, between CR and LF,
inside an event. Every line must come out whole and in order, the connection must carry the next
request, and an answer cut short must give what came and end the connection."""

import socket
import threading
from pathlib import Path

import pytest

from orchestrator.oncluster.httpconn import Connection, body_lines, timed_lines

EVENTS = [b'data: {"choices":[{"text":"a"}]}\n', b"\n", b'data: {"choices":[{"text":"b"}]}\n', b"\n",
          b"data: [DONE]\n", b"\n"]


def chunked(events, trailers=b""):
    out = b""
    for e in events:
        out += b"%x\r\n" % len(e) + e + b"\r\n"
    return out + b"0\r\n" + trailers + b"\r\n"


def serve(answers):
    """One connection; for each request, its answer's bytes in the given pieces (a piece None: close)."""
    srv = socket.create_server(("127.0.0.1", 0))

    def run():
        conn, _ = srv.accept()
        with conn:
            for pieces in answers:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(4096)
                head, _, body = request.partition(b"\r\n\r\n")
                fields = head.lower().split(b"content-length:")
                length = int(fields[1].split(b"\r\n")[0]) if len(fields) > 1 else 0
                while len(body) < length:   # the whole request read: a close then is a FIN, not a reset
                    body += conn.recv(4096)
                for p in pieces:
                    if p is None:
                        return
                    conn.sendall(p)
                    threading.Event().wait(0.01)   # each piece its own arrival
        srv.close()

    threading.Thread(target=run, daemon=True).start()
    return srv.getsockname()[1]


HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


def cut(data: bytes, at: list[int]) -> list[bytes]:
    bounds = [0, *at, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def test_lines_come_whole_however_the_bytes_are_cut_and_the_connection_is_kept():
    body = chunked(EVENTS, trailers=b"X-Trailer: 1\r\n")
    crlf = body.index(b"\r\n") + 1            # between the first size line's CR and LF
    mid_event = body.index(b"text") + 2        # inside an event
    size_line = body.index(b"\r\n0\r\n") + 3   # inside the last chunk's size line
    first = [HEAD + body[:1], *cut(body[1:], [crlf - 1, mid_event - 1, size_line - 1])]
    port = serve([first, [HEAD + chunked(EVENTS[:2])]])
    conn = Connection("127.0.0.1", port, 10)
    conn.request("POST", "/v1/completions", b"{}")
    resp = conn.response()
    assert list(body_lines(resp)) == EVENTS
    assert resp.isclosed() and not resp.will_close
    conn.request("POST", "/v1/completions", b"{}")   # the same connection carries the next request
    assert list(body_lines(conn.response())) == EVENTS[:2]
    conn.close()


def test_an_answer_cut_short_gives_what_came_and_ends_the_connection():
    body = chunked(EVENTS)
    port = serve([[HEAD + body[:body.index(b"data: [DONE]")], None]])
    conn = Connection("127.0.0.1", port, 10)
    conn.request("POST", "/v1/completions", b"{}")
    resp = conn.response()
    assert list(body_lines(resp)) == EVENTS[:4]
    assert resp.will_close   # the caller drops this connection
    conn.close()


def test_a_body_that_is_not_chunked_is_read_by_lines_too():
    text = b"".join(EVENTS)
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n\r\n" % len(text)
    port = serve([[head + text[:7], text[7:]]])
    conn = Connection("127.0.0.1", port, 10)
    conn.request("POST", "/v1/completions", b"{}")
    assert list(body_lines(conn.response())) == EVENTS
    conn.close()


def test_each_line_keeps_the_time_its_bytes_arrived_though_parsing_waits_for_the_end():
    # pieces 0.01 s apart (serve's pause), and one piece held back 0.3 s by sending it alone later:
    # deferring the parse must not stamp every line with the end of the answer
    import time

    body = chunked(EVENTS)
    second = len(chunked(EVENTS[:2])) - len(b"0\r\n\r\n")   # where the chunk of the second event starts
    pieces = [HEAD + body[:second], *([b""] * 30), body[second:]]   # 30 empty sends: 0.3 s of pauses
    port = serve([[p for p in pieces]])
    conn = Connection("127.0.0.1", port, 10)
    conn.request("POST", "/v1/completions", b"{}")
    t0 = time.perf_counter()
    lines = timed_lines(conn.response())
    conn.close()
    assert [line for _, line in lines] == EVENTS
    times = {line: t for t, line in lines}
    first, later = times[EVENTS[0]], times[EVENTS[2]]
    assert first - t0 < 0.2 and later - first >= 0.25   # the second event came 0.3 s after the first


RECORDED = Path(__file__).resolve().parents[1] / "data" / "llamacpp_chat_stream.http"


def test_a_recorded_llama_cpp_answer_is_read_and_counted_as_the_engine_counted_it():
    # a real answer of llama.cpp's server (32 tokens, usage included), each chunk its own arrival as it was sent
    from orchestrator.oncluster.loadgen import _tokens_in_line
    raw = RECORDED.read_bytes()
    head_end = raw.index(b"\r\n\r\n") + 4
    ends = [i + 4 for i in range(head_end, len(raw)) if raw.startswith(b"\n\n\r\n", i)]
    port = serve([cut(raw, ends)])
    conn = Connection("127.0.0.1", port, 10)
    conn.request("POST", "/v1/chat/completions", b"{}")
    resp = conn.response()
    assert resp.status == 200 and resp.chunked and not resp.will_close
    lines = timed_lines(resp)
    conn.close()
    text: list = []
    events = [(t, *_tokens_in_line("openai-chat", line, text)) for t, line in lines]
    assert sum(n for _, n, _, _ in events) == 32 == len(text)          # the role chunk (content null) is no token
    assert [u for _, _, u, _ in events if u] == [(29, 32)]             # the engine's usage, on the last event
    assert [c for _, _, _, c in events if c is not None] == [0]
    times = [t for t, n, _, _ in events if n]
    assert times == sorted(times) and times[-1] - times[0] > 0.2     # 32 arrivals about 0.01 s apart


def test_answers_framed_by_length_by_the_close_and_not_at_all_keep_the_connection_as_they_should():
    # one kept-alive connection: an interim 100 then a Content-Length body, a HEAD (a length, no body), a 204,
    # then an HTTP/1.0 answer whose body ends with the connection
    port = serve([[b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello", b" world"],
                  [b"HTTP/1.1 200 OK\r\nContent-Length: 999\r\n\r\n"],
                  [b"HTTP/1.1 204 No Content\r\nX-A: 1\r\nX-A: 2\r\n\r\n"],
                  [b"HTTP/1.0 200 OK\r\n\r\nto the ", b"end", None]])
    conn = Connection("127.0.0.1", port, 10)
    conn.request("POST", "/a", b"{}")
    resp = conn.response()
    assert (resp.status, resp.read(), resp.will_close) == (200, b"hello world", False)
    conn.request("HEAD", "/a")
    resp = conn.response()
    assert (resp.status, resp.read(), resp.will_close) == (200, b"", False)
    conn.request("GET", "/a", None)
    resp = conn.response()
    assert (resp.status, resp.read(), resp.headers["x-a"]) == (204, b"", "1, 2")
    conn.request("GET", "/a", None)
    resp = conn.response()
    assert (resp.read(), resp.will_close) == (b"to the end", True)
    conn.close()


def test_a_closed_kept_alive_connection_is_told_apart_from_a_broken_answer():
    from orchestrator.oncluster.httpconn import BadAnswer, Closed
    port = serve([[b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"], [None]])
    conn = Connection("127.0.0.1", port, 10)
    conn.request("GET", "/", None)
    assert conn.response().read() == b"ok"
    conn.request("GET", "/", None)
    with pytest.raises(Closed):   # no byte of an answer: the request may go again on a new connection
        conn.response()
    conn.close()
    port = serve([[b"HTTP/1.1 200 OK\r\nContent-Le", None]])
    conn = Connection("127.0.0.1", port, 10)
    conn.request("GET", "/", None)
    with pytest.raises(BadAnswer, match="inside the answer's head"):
        conn.response()
    conn.close()


@pytest.mark.parametrize("method, path, headers", [("GET", "/a\r\nX-Evil: 1", {}), ("GET", "/a b", {}),
                                                   ("GET", "/", {"Authorization": "Bearer x\r\nX-Evil: 1"}),
                                                   ("GET /x HTTP/1.1\r\n", "/", {})])
def test_a_request_that_would_write_a_second_line_is_refused_before_sending(method, path, headers):
    conn = Connection("127.0.0.1", 9, 1)   # nothing is connected: the refusal comes first
    with pytest.raises(ValueError, match="refusing"):
        conn.request(method, path, None, headers)
    assert conn.sock is None


def test_the_host_header_names_an_ipv6_server_in_brackets():
    try:
        srv = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    seen = []

    def run():
        conn, _ = srv.accept()
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            seen.append(request)
            conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
        srv.close()

    threading.Thread(target=run, daemon=True).start()
    port = srv.getsockname()[1]
    conn = Connection("::1", port, 10)
    conn.request("GET", "/health")
    assert conn.response().status == 204
    conn.close()
    assert f"\r\nHost: [::1]:{port}\r\n".encode() in seen[0]


def stalling_server(first: bytes, release: threading.Event) -> int:
    """One connection: reads the request, sends ``first`` (maybe nothing), then sends nothing more and
    keeps the connection open until ``release``."""
    srv = socket.create_server(("127.0.0.1", 0))

    def run():
        conn, _ = srv.accept()
        with conn, srv:
            conn.recv(4096)
            if first:
                conn.sendall(first)
            release.wait(10)

    threading.Thread(target=run, daemon=True).start()
    return srv.getsockname()[1]


@pytest.mark.parametrize("first", [b"", HEAD + chunked(EVENTS[:2])[:-5]], ids=["no-answer", "stalls-mid-stream"])
def test_a_server_that_goes_silent_times_the_request_out_after_the_timeout(first):
    """The kernel bounds each recv (SO_RCVTIMEO): a server that stops sending fails the request with
    the TimeoutError a Python socket timeout raised, after about the timeout, not at once and not never."""
    import time

    from orchestrator.oncluster import loadgen
    release = threading.Event()
    try:
        port = stalling_server(first, release)
        url = loadgen.urllib.parse.urlsplit(f"http://127.0.0.1:{port}")
        t0 = time.monotonic()
        rec = loadgen.one_request([None], url, "openai-completions", {"max_tokens": 2, "stream": True}, 0.3)
        waited = time.monotonic() - t0
    finally:
        release.set()
    assert not rec["ok"] and rec["error"] == "TimeoutError: timed out", rec
    assert 0.25 <= waited < 5, waited
