"""The load client's own reader of a chunked streamed answer (loadgen.body_lines), against a real
socket server that cuts its bytes at the worst places: inside a chunk-size line, between CR and LF,
inside an event. Every line must come out whole and in order, the connection must carry the next
request, and an answer cut short must give what came and end the connection."""

import http.client
import socket
import threading

from orchestrator.oncluster.loadgen import body_lines

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
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
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
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", "/v1/completions", body=b"{}")
    resp = conn.getresponse()
    assert list(body_lines(resp)) == EVENTS
    assert resp.isclosed() and not resp.will_close
    conn.request("POST", "/v1/completions", body=b"{}")   # the same connection carries the next request
    assert list(body_lines(conn.getresponse())) == EVENTS[:2]
    conn.close()


def test_an_answer_cut_short_gives_what_came_and_ends_the_connection():
    body = chunked(EVENTS)
    port = serve([[HEAD + body[:body.index(b"data: [DONE]")], None]])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", "/v1/completions", body=b"{}")
    resp = conn.getresponse()
    assert list(body_lines(resp)) == EVENTS[:4]
    assert resp.will_close   # the caller drops this connection
    conn.close()


def test_a_body_that_is_not_chunked_is_read_by_lines_too():
    text = b"".join(EVENTS)
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n\r\n" % len(text)
    port = serve([[head + text[:7], text[7:]]])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", "/v1/completions", body=b"{}")
    assert list(body_lines(conn.getresponse())) == EVENTS
    conn.close()


def test_each_line_keeps_the_time_its_bytes_arrived_though_parsing_waits_for_the_end():
    # pieces 0.01 s apart (serve's pause), and one piece held back 0.3 s by sending it alone later:
    # deferring the parse must not stamp every line with the end of the answer
    import time

    from orchestrator.oncluster.loadgen import timed_lines
    body = chunked(EVENTS)
    second = len(chunked(EVENTS[:2])) - len(b"0\r\n\r\n")   # where the chunk of the second event starts
    pieces = [HEAD + body[:second], *([b""] * 30), body[second:]]   # 30 empty sends: 0.3 s of pauses
    port = serve([[p for p in pieces]])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", "/v1/completions", body=b"{}")
    t0 = time.perf_counter()
    lines = timed_lines(conn.getresponse())
    conn.close()
    assert [line for _, line in lines] == EVENTS
    times = {line: t for t, line in lines}
    first, later = times[EVENTS[0]], times[EVENTS[2]]
    assert first - t0 < 0.2 and later - first >= 0.25   # the second event came 0.3 s after the first
