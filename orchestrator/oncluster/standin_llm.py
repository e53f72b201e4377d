#!/usr/bin/env python3
"""A STAND-IN inference server for demos and tests: no model, no GPU.

It speaks the OpenAI API (`/v1/completions`, `/v1/chat/completions`, with
streaming) and Ollama's `/api/generate`, produces tokens at a configured rate,
and serves a fixed number of requests at once with a queue behind them, so it
saturates like a real server. `/metrics` has vLLM's metric names, so the
benchmark clients and reports work unchanged against real vLLM or Ollama.
Standard library only: it runs with the cluster's python3.
"""

from __future__ import annotations

import argparse
import hmac
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0]
E2E_BUCKETS = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0]
TPOT_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5]


class Histogram:
    def __init__(self, buckets):
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, v: float) -> None:
        self.sum += v
        self.count += 1
        for i, b in enumerate(self.buckets):
            if v <= b:
                self.counts[i] += 1

    def lines(self, name: str, labels: str) -> list[str]:
        out = [f'{name}_bucket{{{labels},le="{b}"}} {c}' for b, c in zip(self.buckets, self.counts)]
        out.append(f'{name}_bucket{{{labels},le="+Inf"}} {self.count}')
        out.append(f"{name}_sum{{{labels}}} {self.sum}")
        out.append(f"{name}_count{{{labels}}} {self.count}")
        return out


class Engine:
    """Slots, queue and the metrics a real engine would keep."""

    def __init__(self, slots: int, tokens_per_second: float, ttft: float, prefill_per_token: float,
                 max_queue: int, model: str):
        self.slots = threading.BoundedSemaphore(slots)
        self.token_interval = 1.0 / tokens_per_second
        self.ttft = ttft
        self.prefill_per_token = prefill_per_token
        self.max_queue = max_queue
        self.model = model
        self.lock = threading.Lock()
        self.running = 0
        self.waiting = 0
        self.success = 0
        self.rejected = 0
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.h_ttft = Histogram(TTFT_BUCKETS)
        self.h_e2e = Histogram(E2E_BUCKETS)
        self.h_tpot = Histogram(TPOT_BUCKETS)

    def generate(self, prompt: str, max_tokens: int):
        """Admit the request now (OverflowError when the queue is full, before any
        response is sent), then return a generator of its tokens."""
        arrived = time.monotonic()
        with self.lock:
            if self.waiting >= self.max_queue:
                self.rejected += 1
                raise OverflowError("queue full")
            self.waiting += 1
        return self._tokens(prompt, max_tokens, arrived)

    def _tokens(self, prompt: str, max_tokens: int, arrived: float):
        """Yields tokens; waits in the queue while every slot is busy."""
        self.slots.acquire()
        with self.lock:
            self.waiting -= 1
            self.running += 1
        try:
            n_prompt = max(1, len(prompt.split()))
            time.sleep(self.ttft + n_prompt * self.prefill_per_token)
            first = time.monotonic()
            for i in range(max_tokens):
                if i:
                    time.sleep(self.token_interval)
                yield f" tok{i}"
            done = time.monotonic()
            with self.lock:
                self.success += 1
                self.prompt_tokens += n_prompt
                self.generation_tokens += max_tokens
                self.h_ttft.observe(first - arrived)
                self.h_e2e.observe(done - arrived)
                if max_tokens > 1:
                    self.h_tpot.observe((done - first) / (max_tokens - 1))
        finally:
            with self.lock:
                self.running -= 1
            self.slots.release()

    def metrics(self) -> str:
        m = f'model_name="{self.model}"'
        with self.lock:
            out = [
                "# TYPE vllm:num_requests_running gauge", f"vllm:num_requests_running{{{m}}} {self.running}",
                "# TYPE vllm:num_requests_waiting gauge", f"vllm:num_requests_waiting{{{m}}} {self.waiting}",
                "# TYPE vllm:request_success_total counter",
                f'vllm:request_success_total{{{m},finished_reason="length"}} {self.success}',
                "# TYPE vllm:prompt_tokens_total counter", f"vllm:prompt_tokens_total{{{m}}} {self.prompt_tokens}",
                "# TYPE vllm:generation_tokens_total counter",
                f"vllm:generation_tokens_total{{{m}}} {self.generation_tokens}",
                "# TYPE standin_requests_rejected_total counter", f"standin_requests_rejected_total{{{m}}} {self.rejected}",
                "# TYPE vllm:time_to_first_token_seconds histogram",
                *self.h_ttft.lines("vllm:time_to_first_token_seconds", m),
                "# TYPE vllm:e2e_request_latency_seconds histogram",
                *self.h_e2e.lines("vllm:e2e_request_latency_seconds", m),
                "# TYPE vllm:time_per_output_token_seconds histogram",
                *self.h_tpot.lines("vllm:time_per_output_token_seconds", m),
            ]
        return "\n".join(out) + "\n"


def make_handler(engine: Engine, api_key: str = ""):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive; streamed bodies use chunked encoding
        # Streamed tokens are small writes: with Nagle on, each waits for the client's delayed ACK (~40 ms)
        disable_nagle_algorithm = True

        def log_message(self, *a):
            pass

        def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, code: int, doc) -> None:
            self._send(code, json.dumps(doc).encode())

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def _authorized(self) -> bool:
            """As vLLM's --api-key: every route but /health and /metrics wants the bearer key."""
            if not api_key or hmac.compare_digest(self.headers.get("Authorization", ""), f"Bearer {api_key}"):
                return True
            self._json(401, {"error": "Unauthorized"})
            return False

        def do_GET(self):
            path = self.path.split("?")[0]
            if path not in ("/health", "/metrics") and not self._authorized():
                return
            if path == "/health":
                self._send(200, b"")
            elif path == "/metrics":
                self._send(200, engine.metrics().encode(), "text/plain; version=0.0.4")
            elif path == "/v1/models":
                self._json(200, {"object": "list", "data": [{"id": engine.model, "object": "model"}]})
            elif path == "/api/tags":
                self._json(200, {"models": [{"name": engine.model}]})
            else:
                self._json(404, {"error": f"no route {path}"})

        def _no_such_method(self):
            """Any other method: refused as vLLM's server refuses it (the key first, then 405)."""
            if self._authorized():
                self._json(405, {"error": f"method {self.command} not allowed"})

        do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _no_such_method

        def do_POST(self):
            path = self.path.split("?")[0]
            try:
                length = int(self.headers.get("Content-Length", "0"))
                req = json.loads(self.rfile.read(length) or b"{}")
            except (ValueError, json.JSONDecodeError) as exc:
                self._json(400, {"error": f"bad request body: {exc}"})
                return
            if not self._authorized():
                return
            if path in ("/v1/completions", "/v1/chat/completions"):
                self._openai(req, chat=path.endswith("chat/completions"))
            elif path == "/api/generate":
                self._ollama(req)
            else:
                self._json(404, {"error": f"no route {path}"})

        def _openai(self, req: dict, chat: bool) -> None:
            if chat:
                prompt = " ".join(str(m.get("content", "")) for m in req.get("messages", []))
            else:
                prompt = str(req.get("prompt", ""))
            max_tokens = int(req.get("max_tokens") or 16)
            rid = f"cmpl-{uuid.uuid4().hex[:12]}"
            obj = "chat.completion" if chat else "text_completion"
            try:
                tokens = engine.generate(prompt, max_tokens)
                if not req.get("stream"):
                    text = "".join(tokens)
                    choice = {"index": 0, "finish_reason": "length",
                              **({"message": {"role": "assistant", "content": text}} if chat else {"text": text})}
                    self._json(200, {"id": rid, "object": obj, "model": engine.model, "choices": [choice],
                                     "usage": {"prompt_tokens": max(1, len(prompt.split())),
                                               "completion_tokens": max_tokens,
                                               "total_tokens": max(1, len(prompt.split())) + max_tokens}})
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for tok in tokens:
                    delta = {"delta": {"content": tok}} if chat else {"text": tok}
                    chunk = {"id": rid, "object": obj + (".chunk" if chat else ""), "model": engine.model,
                             "choices": [{"index": 0, **delta, "finish_reason": None}]}
                    self._chunk(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                if (req.get("stream_options") or {}).get("include_usage"):
                    usage = {"prompt_tokens": max(1, len(prompt.split())), "completion_tokens": max_tokens}
                    self._chunk(b"data: " + json.dumps({"id": rid, "choices": [], "usage": usage}).encode() + b"\n\n")
                self._chunk(b"data: [DONE]\n\n")
                self._chunk(b"")
            except OverflowError:
                self._json(503, {"error": "server overloaded: queue full"})

        def _ollama(self, req: dict) -> None:
            prompt = str(req.get("prompt", ""))
            max_tokens = int((req.get("options") or {}).get("num_predict") or 16)
            start = time.monotonic_ns()
            try:
                tokens = engine.generate(prompt, max_tokens)
                stream = req.get("stream", True)
                if stream:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/x-ndjson")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                text = []
                for tok in tokens:
                    text.append(tok)
                    if stream:
                        self._chunk(json.dumps({"model": engine.model, "response": tok, "done": False}).encode() + b"\n")
                final = {"model": engine.model, "done": True, "eval_count": max_tokens,
                         "prompt_eval_count": max(1, len(prompt.split())), "total_duration": time.monotonic_ns() - start}
                if stream:
                    self._chunk(json.dumps(final).encode() + b"\n")
                    self._chunk(b"")
                else:
                    self._json(200, {**final, "response": "".join(text)})
            except OverflowError:
                self._json(503, {"error": "server overloaded: queue full"})

    return Handler


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Stand-in OpenAI/Ollama-compatible server (no model) for demos and tests")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--host", default="0.0.0.0")
    ap.add_argument("--slots", type=int, default=4, help="requests served at once; the rest wait in a queue")
    ap.add_argument("--tokens-per-second", type=float, default=100.0, help="per request")
    ap.add_argument("--ttft", type=float, default=0.05, help="seconds before the first token (plus prefill)")
    ap.add_argument("--prefill-per-token", type=float, default=0.0005, help="seconds per prompt word")
    ap.add_argument("--max-queue", type=int, default=512)
    ap.add_argument("--model", default="standin")
    ap.add_argument("--api-key-file", help="requests need `Authorization: Bearer <the file's first line>`")
    args = ap.parse_args(argv)
    api_key = ""
    if args.api_key_file:
        with open(args.api_key_file) as f:
            api_key = f.readline().strip()
    engine = Engine(args.slots, args.tokens_per_second, args.ttft, args.prefill_per_token, args.max_queue, args.model)
    # a listen backlog for the load it takes: Python's default of 5 resets connections that hundreds of
    # load-client workers open at once
    ThreadingHTTPServer.request_queue_size = max(1024, args.max_queue)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(engine, api_key))
    server.daemon_threads = True
    print(f"stand-in LLM server (not a model) on {args.host}:{args.port}: {args.slots} slots, "
          f"{args.tokens_per_second} tokens/s per request", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
