"""What the laptop and the programs on the nodes both read: the reference tools' result files and their
conversion into request records, and what a payload may not set. Standard library only; shipped with every
client job beside ``clientjob.py``. The one module of ``oncluster/`` the laptop's code imports
(tests/unit/test_architecture.py holds it to that): ``report compare`` reads a tool's result with the very
code that converts it on the node, and a recipe's payload is checked before any job as the client will.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

VLLM_RESULT = "vllm-bench-result.json"
AIPERF_DIR = "aiperf-artifacts"
AIPERF_RECORDS = "profile_export.jsonl"


def _record(start, latency, ttft, itls, tokens_in, tokens_out, error, warmup=False) -> dict:
    ok = not error
    tpot = None
    if ok and ttft is not None and latency is not None and tokens_out and tokens_out > 1:
        tpot = (latency - ttft) / (tokens_out - 1)   # vLLM's definition, per request
    rec = {"start": round(start, 6), "latency_s": None if latency is None else round(latency, 6),
           "ttft_s": None if ttft is None or not ok else round(ttft, 6),
           "tpot_s": None if tpot is None else round(tpot, 6), "status": 200 if ok else 0, "ok": ok,
           "tokens_in": tokens_in, "tokens_out": tokens_out if ok else None,
           "error": None if ok else str(error).strip().splitlines()[-1][:300] if str(error).strip() else "failed",
           "client_cpu_s": None, "warmup": warmup}
    if ok and itls:
        rec["itl_s"] = [round(g, 6) for g in itls]
    return rec


def vllm_bench_records(doc: dict, monotonic_offset: float | None = None) -> list[dict]:
    """Records from a ``vllm bench serve --save-detailed`` result. ``monotonic_offset`` (wall time minus
    perf_counter, read on the same machine during the run) turns its start times into wall time; without
    it (a result read later) the run is placed to end at its ``date``, which has one-second resolution."""
    starts = doc.get("start_times")
    if not isinstance(starts, list) or "latencies" not in doc:
        raise ValueError("not a `vllm bench serve` result saved with --save-detailed (no start_times/latencies)")
    n = len(starts)
    col = {k: doc.get(k) or [None] * n for k in ("latencies", "ttfts", "itls", "input_lens", "output_lens", "errors")}
    if monotonic_offset is None:
        ends = [s + (lat or 0) for s, lat in zip(starts, col["latencies"])]
        finished = time.mktime(time.strptime(doc["date"], "%Y%m%d-%H%M%S")) if doc.get("date") else time.time()
        monotonic_offset = finished - max(ends, default=0)
    out = []
    for i in range(n):
        error = col["errors"][i] or ""
        out.append(_record(starts[i] + monotonic_offset, col["latencies"][i], col["ttfts"][i], col["itls"][i],
                           col["input_lens"][i], col["output_lens"][i], error))
    return out


def _ms(metrics: dict, name: str) -> float | list | None:
    m = metrics.get(name)
    if not isinstance(m, dict) or m.get("value") is None:
        return None
    v = m["value"]
    scale = {"ms": 1e-3, "ns": 1e-9, "us": 1e-6, "sec": 1.0, "s": 1.0}.get(m.get("unit", "ms"), 1e-3)
    return [x * scale for x in v] if isinstance(v, list) else v * scale


def aiperf_records(lines) -> list[dict]:
    """Records from aiperf's ``profile_export.jsonl`` (one JSON object a line)."""
    out = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        doc = json.loads(line)
        meta, metrics = doc.get("metadata") or {}, doc.get("metrics") or {}
        if "request_start_ns" not in meta:
            raise ValueError(f"line {i}: not an aiperf profile_export.jsonl record (no metadata.request_start_ns)")
        error = doc.get("error")
        if isinstance(error, dict):
            error = error.get("message") or error.get("type") or json.dumps(error)
        if meta.get("was_cancelled") and not error:
            error = "cancelled by aiperf"
        latency = _ms(metrics, "request_latency")
        if latency is None and meta.get("request_end_ns"):
            latency = (meta["request_end_ns"] - meta["request_start_ns"]) / 1e9

        def count(name):
            m = metrics.get(name)
            return int(m["value"]) if isinstance(m, dict) and m.get("value") is not None else None
        out.append(_record(meta["request_start_ns"] / 1e9, latency, _ms(metrics, "time_to_first_token"),
                           _ms(metrics, "inter_chunk_latency"),
                           count("usage_prompt_tokens") or count("input_sequence_length"),
                           count("usage_completion_tokens") or count("output_sequence_length"), error,
                           warmup=meta.get("benchmark_phase") == "warmup"))
    return out


def read_result(path: Path) -> list[dict]:
    """Records from a reference tool's result: a vllm bench result JSON, or aiperf's export (the
    profile_export.jsonl file, or the artifact folder that holds it)."""
    if path.is_dir():
        found = sorted(path.rglob(AIPERF_RECORDS))
        if not found:
            raise ValueError(f"{path}: no {AIPERF_RECORDS} inside (an aiperf artifact folder has one)")
        path = found[0]
    text = path.read_text()
    if path.name.endswith(".jsonl"):
        return aiperf_records(text.splitlines())
    return vllm_bench_records(json.loads(text))


# what the client itself must decide for each kind: a payload may set everything else of the body
_NOT_HONOURED = {
    "openai-chat": {"n": "the client measures one completion per request (n must be 1)",
                    "best_of": "the client measures one completion per request"},
    "openai-completions": {"messages": "a completions request has a prompt, not messages (use kind: openai-chat)",
                           "n": "the client measures one completion per request (n must be 1)",
                           "best_of": "the client measures one completion per request"},
    "ollama-generate": {"messages": "/api/generate takes a prompt, not messages"},
}


def payload_problems(kind: str, payload: dict) -> list[str]:
    """Fields of a payload this kind cannot honour, each with why (empty: the payload is sent as given)."""
    out = []
    for key, why in _NOT_HONOURED.get(kind, {}).items():
        if key in payload and not (key == "n" and payload[key] == 1):
            out.append(f"{key}: {why}")
    if kind == "openai-chat" and "prompt" in payload and "messages" in payload:
        out.append("prompt and messages: give one (prompt is sent as a single user message)")
    if kind == "openai-chat" and "messages" in payload:
        msgs = payload["messages"]
        if not isinstance(msgs, list) or not msgs or not all(isinstance(m, dict) and "role" in m for m in msgs):
            out.append("messages: expected a list of {role, content} objects")
    if "stream_options" in payload and not isinstance(payload["stream_options"], dict):
        out.append("stream_options: expected a mapping")
    return out

def build_request(kind: str, payload: dict, row: dict | None = None) -> tuple[str, str, dict | None, bool]:
    """(method, path, body, streaming) for one request of this kind.

    The body is the user's payload as given (``top_p``, ``stop``, ``messages``, ``response_format``,
    ``logprobs``...): only what the workload decides is set over it. A dataset ``row`` sets the prompt
    (for chat: the messages, as one user message) and ``max_tokens``; streaming requests ask for the
    usage in their last chunk, which is how tokens are counted. ``prompt`` in a chat payload is a
    shorthand for one user message."""
    if kind == "http":
        return payload.get("method", "GET"), payload.get("path", "/"), payload.get("body"), False
    if kind not in ("openai-completions", "openai-chat", "ollama-generate"):
        raise SystemExit(f"unknown client kind {kind!r}")
    body = dict(payload)
    if row and row.get("model"):
        body["model"] = row["model"]   # a LoRA mix: this request's model
    body.setdefault("model", "standin")
    stream = bool(body.get("stream", True))
    body["stream"] = stream
    if kind == "ollama-generate":
        if row and "messages" in row:
            raise SystemExit("a dataset row of chat messages needs kind openai-chat")
        if row and "prompt" in row:
            body["prompt"] = row["prompt"]
        body.setdefault("prompt", "Hello")
        options = dict(body.get("options") or {})
        max_tokens = body.pop("max_tokens", None)   # Ollama's word for it is options.num_predict
        num_predict = (row or {}).get("max_tokens") or max_tokens or options.get("num_predict", 16)
        body["options"] = {**options, "num_predict": num_predict}
        return "POST", "/api/generate", body, stream
    if row:
        if "messages" in row:
            if kind != "openai-chat":
                raise SystemExit("a dataset row of chat messages needs kind openai-chat")
            body["messages"] = row["messages"]
            body.pop("prompt", None)
        elif "prompt" in row:
            body["prompt"] = row["prompt"]
            body.pop("messages", None)
        if row.get("max_tokens"):
            body["max_tokens"] = row["max_tokens"]
    body.setdefault("max_tokens", 16)
    if stream:
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    if kind == "openai-chat":
        if "messages" not in body:
            body["messages"] = [{"role": "user", "content": body.pop("prompt", "Hello")}]
        return "POST", "/v1/chat/completions", body, stream
    body.setdefault("prompt", "Hello")
    return "POST", "/v1/completions", body, stream
