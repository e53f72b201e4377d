"""The stand-in server and the load client, run locally on loopback (bounded)."""

import json
import subprocess
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

from orchestrator.bench.workloads.loadgen import _tokens_in_line, build_request
from orchestrator.bench.workloads.standin_llm import Engine, make_handler

LOADGEN = Path(__file__).resolve().parents[2] / "orchestrator" / "bench" / "workloads" / "loadgen.py"


def test_openai_stream_lines_count_tokens_and_usage():
    assert _tokens_in_line("openai-completions", b'data: {"choices": [{"text": " tok1"}]}\n') == (1, None)
    assert _tokens_in_line("openai-chat", b'data: {"choices": [{"delta": {"content": "x"}}]}\n') == (1, None)
    assert _tokens_in_line("openai-completions", b'data: {"choices": [], "usage": {"completion_tokens": 32}}') == (0, 32)
    assert _tokens_in_line("openai-completions", b"data: [DONE]\n") == (0, None)
    assert _tokens_in_line("ollama-generate", b'{"response": "a", "done": false}\n') == (1, None)
    assert _tokens_in_line("ollama-generate", b'{"done": true, "eval_count": 7}\n') == (0, 7)


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
