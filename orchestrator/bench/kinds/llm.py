"""The tool's own LLM and HTTP clients (``oncluster/loadgen.py``, standard library only): OpenAI
completions and chat, Ollama's generate, and plain HTTP. Open or closed loop, arrivals constant,
Poisson or gamma, ramps, datasets; TTFT, TPOT and ITL as vLLM's benchmark defines them."""

from __future__ import annotations

import json

from orchestrator.bench.kinds import ClientKind
from orchestrator.oncluster.formats import build_request


def _argv(spec, url: str, node_index: int, context: dict) -> list[str]:
    args = ["--url", url, "--kind", spec.kind, "--payload-file", "payload.json"]
    if spec.arrival != "constant":
        args += ["--arrival", spec.arrival, "--burstiness", str(spec.burstiness)]
    if spec.ramp_up:
        args += ["--ramp-from", str(spec.ramp_up[0]), "--ramp-to", str(spec.ramp_up[1]),
                 "--ramp-over", str(spec.ramp_up[2])]
    ds = spec.dataset
    if ds:
        args += ["--dataset-file", "dataset.jsonl", "--seed", str(ds.seed + node_index)]
        if ds.timed and ds.speedup != 1.0:
            args += ["--speedup", repr(ds.speedup)]
        if ds.conversations and ds.think_time:
            args += ["--think-time", repr(ds.think_time)]
    elif node_index:
        args += ["--seed", str(node_index)]
    # every job of the client (its nodes, over its target's replicas) takes its own rows of the dataset
    index, parts = spec.part[0] * spec.nodes + node_index, spec.part[1] * spec.nodes
    if ds and parts > 1:
        args += ["--part", f"{index}/{parts}"]
    if spec.models:
        args += ["--models", json.dumps(spec.models), "--model-selection", spec.model_selection]
    return args


def _vllm_bench(backend: str, endpoint: str):
    """``vllm bench serve`` with a client's load (its flags as the vllm-bench kind passes them)."""
    def argv(spec, url: str) -> list[str]:
        p = spec.payload
        out = ["vllm", "bench", "serve", "--backend", backend, "--base-url", url, "--endpoint", endpoint,
               "--model", str(p.get("model", "MODEL"))]
        ds = spec.dataset
        if ds is not None and ds.kind == "prefix":
            out += ["--dataset-name", "prefix_repetition", "--prefix-repetition-prefix-len", str(ds.prefix_tokens),
                    "--prefix-repetition-suffix-len", str(ds.suffix_tokens),
                    "--prefix-repetition-num-prefixes", str(ds.prefixes)]
        elif ds is not None and ds.kind == "synthetic":
            out += ["--dataset-name", "random", "--random-input-len", str(int(ds.input_tokens[0])),
                    "--random-output-len", str(int(ds.output_tokens[0])), "--random-range-ratio", "0"]
        elif "max_tokens" in p:
            out += ["--dataset-name", "random", "--random-output-len", str(p["max_tokens"])]
        # a load bounded by time: the count its rate sends in that time (closed loop: not known before)
        count = spec.requests if spec.requests is not None else (
            round(spec.rate * spec.duration) if spec.rate and spec.duration else "N")
        out += ["--num-prompts", str(count),
                "--max-concurrency", str(spec.concurrency), "--request-rate", f"{spec.rate:g}" if spec.rate else "inf"]
        if spec.rate and spec.arrival == "gamma":
            out += ["--burstiness", f"{spec.burstiness:g}"]
        if p.get("ignore_eos"):
            out.append("--ignore-eos")
        return out
    return argv


def _first_request(spec) -> tuple[str, str, dict | None] | None:
    """The load's first request as the client job builds it (formats.build_request, the one both sides
    use), whole and asking for one token: its model, path and fields are the load's own."""
    row = {"model": next(iter(spec.models))} if spec.models else None
    payload = {**spec.payload, "stream": False, "max_tokens": 1} if spec.kind != "http" else spec.payload
    method, path, body, _ = build_request(spec.kind, payload, row)
    return method, path, body


def _kind(name: str, tokens: bool = True, reference=None) -> ClientKind:
    return ClientKind(name=name, program="loadgen.py", keys=("payload", "arrival", "burstiness", "ramp_up", "dataset"),
                      argv=_argv, tokens=tokens, ships_payload=True, files=("formats.py", "httpconn.py"),
                      takes_messages=name == "openai-chat", reference=reference or (lambda spec, url: None),
                      first_request=_first_request)


# `http` takes the same keys (its payload is method, path and body) and has no tokens; its SLOs are e2e only
KINDS = (_kind("openai-completions", reference=_vllm_bench("openai", "/v1/completions")),
         _kind("openai-chat", reference=_vllm_bench("openai-chat", "/v1/chat/completions")),
         _kind("ollama-generate"), _kind("http", tokens=False))
