"""The stand-in server and the load client, run locally on loopback (bounded)."""

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from orchestrator.oncluster.loadgen import _tokens_in_line, build_request
from orchestrator.oncluster.standin_llm import Engine, make_handler

LOADGEN = Path(__file__).resolve().parents[2] / "orchestrator" / "oncluster" / "loadgen.py"


def test_openai_stream_lines_count_tokens_and_usage():
    assert _tokens_in_line("openai-completions", b'data: {"choices": [{"text": " tok1"}]}\n') == (1, None, None)
    assert _tokens_in_line("openai-chat", b'data: {"choices": [{"delta": {"content": "x"}}]}\n') == (1, None, None)
    assert _tokens_in_line("openai-completions", b'data: {"choices": [], "usage": {"prompt_tokens": 9, '
                                                 b'"completion_tokens": 32}}') == (0, (9, 32), None)
    assert _tokens_in_line("openai-completions", b"data: [DONE]\n") == (0, None, None)
    assert _tokens_in_line("ollama-generate", b'{"response": "a", "done": false}\n') == (1, None, None)
    assert _tokens_in_line("ollama-generate", b'{"done": true, "eval_count": 7, "prompt_eval_count": 3}\n') \
        == (0, (3, 7), None)


def test_the_cached_prompt_tokens_and_the_answers_text_are_read_from_the_stream():
    # vLLM (--enable-prompt-tokens-details) in usage; llama.cpp in its timings
    assert _tokens_in_line("openai-chat", b'data: {"choices": [], "usage": {"prompt_tokens": 40, "completion_tokens": '
                                          b'3, "prompt_tokens_details": {"cached_tokens": 32}}}')[2] == 32
    assert _tokens_in_line("openai-chat", b'data: {"choices": [{"delta": {}}], "timings": {"cache_n": 17}}')[2] == 17
    text: list = []
    _tokens_in_line("openai-chat", b'data: {"choices": [{"delta": {"content": "Hel"}}]}', text)
    _tokens_in_line("openai-chat", b'data: {"choices": [{"delta": {"content": "lo"}}]}', text)
    _tokens_in_line("openai-completions", b'data: {"choices": [{"text": "!"}]}', text)
    assert "".join(text) == "Hello!"


def test_requests_per_kind():
    assert build_request("openai-chat", {"prompt": "hi", "max_tokens": 4})[1:3] == (
        "/v1/chat/completions", {"model": "standin", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4,
                                 "stream": True, "stream_options": {"include_usage": True}})
    assert build_request("ollama-generate", {"stream": False})[2]["options"] == {"num_predict": 16}


def test_engine_serves_at_most_its_slots_and_queues_the_rest():
    # slow tokens (5 at 10/s: 0.5 s a request), so the state with 2 running and 4 queued lasts long
    # enough to be seen; waiting for that state (not sampling) cannot miss it on a busy machine
    engine = Engine(slots=2, tokens_per_second=10, ttft=0.0, prefill_per_token=0, max_queue=10, model="m")
    threads = [threading.Thread(target=lambda: list(engine.generate("p", 5))) for _ in range(6)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while (engine.running, engine.waiting) != (2, 4) and time.monotonic() < deadline:
        time.sleep(0.01)
    seen = (engine.running, engine.waiting)
    for t in threads:
        t.join()
    assert seen == (2, 4), "never saw 2 requests running and 4 queued"
    assert engine.running == 0 and engine.waiting == 0 and engine.success == 6
    assert 'vllm:request_success_total{model_name="m",finished_reason="length"} 6' in engine.metrics()


def test_loadgen_against_the_standin_records_every_request(tmp_path):
    engine = Engine(slots=2, tokens_per_second=500, ttft=0.01, prefill_per_token=0, max_queue=100, model="standin")
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(engine))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        proc = subprocess.run([sys.executable, str(LOADGEN), "--url", f"http://127.0.0.1:{port}", "--concurrency", "3",
                               "--requests", "30", "--warmup", "0.1", "--payload", json.dumps({"max_tokens": 5}),
                               "--out", str(tmp_path / "r.jsonl"), "--max-seconds", "30"],
                              capture_output=True, text=True, cwd=tmp_path, timeout=60)
        assert proc.returncode == 0, proc.stderr
    finally:
        server.shutdown()
    records = [json.loads(l) for l in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert len(records) == 30 and all(r["ok"] and r["tokens_out"] == 5 for r in records)
    assert all(r["ttft_s"] is not None and r["ttft_s"] <= r["latency_s"] for r in records)
    assert engine.success == 30  # the server counted exactly what the client sent
    done = json.loads((tmp_path / "done.json").read_text())
    assert done["ok"] == 30 and done["errors"] == 0


def test_full_queue_answers_503_before_streaming():
    engine = Engine(slots=1, tokens_per_second=5, ttft=0.5, prefill_per_token=0, max_queue=0, model="m")
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(engine))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    import http.client
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
        conn.request("POST", "/v1/completions", body=json.dumps({"stream": True}))
        resp = conn.getresponse()
        assert resp.status == 503 and b"queue full" in resp.read()
    finally:
        server.shutdown()


class ClosingSSE(BaseHTTPRequestHandler):
    """Like llama.cpp's server: answers a streamed request, then closes the connection without saying so."""
    protocol_version = "HTTP/1.1"
    served = 0

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        ClosingSSE.served += 1
        body = (b'data: {"choices": [{"text": "a"}]}\n\ndata: {"choices": [{"text": "b"}]}\n\n'
                b'data: {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 2}}\n\ndata: [DONE]\n\n')
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        self.close_connection = True  # and no "Connection: close" header

    def log_message(self, *a):
        pass


def twenty_streamed_requests(handler) -> list[dict]:
    """20 streamed requests, one after another on one connection slot, to ``handler`` on loopback."""
    from orchestrator.oncluster.loadgen import one_request
    import urllib.parse
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = urllib.parse.urlsplit(f"http://127.0.0.1:{server.server_address[1]}")
    box = [None]
    try:
        return [one_request(box, url, "openai-completions", {"stream": True}, 10) for _ in range(20)]
    finally:
        server.shutdown()


def test_a_server_that_closes_after_each_stream_costs_no_request(tmp_path):
    recs = twenty_streamed_requests(ClosingSSE)
    assert all(r["ok"] for r in recs), [r["error"] for r in recs if not r["ok"]]
    assert ClosingSSE.served == 20  # each request reached the server exactly once
    assert [r["tokens_in"] for r in recs] == [4] * 20 and [r["tokens_out"] for r in recs] == [2] * 20
    # the first closed connections are noticed and counted; then each request gets a fresh connection before
    # its clock starts (requests_retried: a handful, not every request)
    assert sum(1 for r in recs if r.get("retried")) <= 3
    assert all(len(r["itl_s"]) == 1 for r in recs)  # two chunks: one gap


def test_a_server_is_given_fresh_connections_once_it_closes_most_reused_ones():
    from orchestrator.oncluster.loadgen import Keepalive
    k = Keepalive()
    k.reused, k.stale = 3, 1
    assert not k.fresh_each_time            # one closed connection may be a timeout
    k.reused, k.stale = 10, 2
    assert not k.fresh_each_time            # most reuses worked: keep-alive is kept
    k.reused, k.stale = 4, 2
    assert k.fresh_each_time


def test_arrivals_follow_the_rate_and_the_seed():
    import itertools
    import statistics
    from orchestrator.oncluster.loadgen import arrivals
    const = list(itertools.islice(arrivals(0.0, 4.0), 5))
    assert const == [0.0, 0.25, 0.5, 0.75, 1.0]
    poisson = list(itertools.islice(arrivals(0.0, 10.0, "poisson", seed=3), 4001))
    gaps = [b - a for a, b in zip(poisson, poisson[1:])]
    assert abs(statistics.mean(gaps) - 0.1) < 0.01 and abs(statistics.stdev(gaps) - 0.1) < 0.01  # exponential
    assert poisson == list(itertools.islice(arrivals(0.0, 10.0, "poisson", seed=3), 4001))  # reproducible
    bursty = list(itertools.islice(arrivals(0.0, 10.0, "gamma", burstiness=0.25, seed=3), 4001))
    bgaps = [b - a for a, b in zip(bursty, bursty[1:])]
    assert abs(statistics.mean(bgaps) - 0.1) < 0.02 and statistics.stdev(bgaps) > 1.5 * statistics.stdev(gaps)
    ramp = list(itertools.islice(arrivals(0.0, 0, ramp=(1.0, 10.0, 10.0)), 200))
    assert ramp[1] - ramp[0] == 1.0 and abs((ramp[-1] - ramp[-2]) - 0.1) < 1e-9  # from 1/s up to 10/s


def test_dataset_rows_set_prompt_and_max_tokens():
    method, path, body, stream = build_request("openai-chat", {"model": "m", "ignore_eos": True},
                                               {"row": 3, "prompt": "a b c", "max_tokens": 7})
    assert body["messages"] == [{"role": "user", "content": "a b c"}] and body["max_tokens"] == 7
    assert body["ignore_eos"] is True


def test_the_stand_in_takes_hundreds_of_connections_opened_at_once(tmp_path):
    # Python's default listen backlog (5) resets or times out connections that a load client's
    # hundreds of workers open together; the stand-in listens with a backlog fit for that load
    import socket
    standin = Path(__file__).resolve().parents[2] / "orchestrator" / "oncluster" / "standin_llm.py"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(standin), "--host", "127.0.0.1", "--port", str(port), "--slots", "64"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        failures = []
        barrier = threading.Barrier(300)

        def hit():
            barrier.wait()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                    c.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    data = b""
                    while chunk := c.recv(4096):
                        data += chunk
                    if not data.startswith(b"HTTP/1.0 200") and not data.startswith(b"HTTP/1.1 200"):
                        failures.append(data[:40])
            except OSError as exc:
                failures.append(type(exc).__name__)
        threads = [threading.Thread(target=hit) for _ in range(300)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        proc.terminate()
        proc.wait(10)
    assert failures == []


class KeepingSSE(ClosingSSE):
    """A server that keeps its connections alive, as it says (HTTP/1.1, a Content-Length)."""
    connections = set()

    def do_POST(self):
        KeepingSSE.connections.add(self.client_address)
        super().do_POST()
        self.close_connection = False


def test_a_server_that_keeps_connections_alive_gets_one_connection_per_slot():
    recs = twenty_streamed_requests(KeepingSSE)
    assert all(r["ok"] for r in recs) and not any(r.get("retried") for r in recs)
    assert len(KeepingSSE.connections) == 1   # never dropped by the check before each request
