"""The tool's own LLM and HTTP clients (``oncluster/loadgen.py``, standard library only): OpenAI
completions and chat, Ollama's generate, and plain HTTP. Open or closed loop, arrivals constant,
Poisson or gamma, ramps, datasets; TTFT, TPOT and ITL as vLLM's benchmark defines them."""

from __future__ import annotations

from orchestrator.bench.kinds import ClientKind


def _argv(spec, url: str, node_index: int, context: dict) -> list[str]:
    args = ["--url", url, "--kind", spec.kind, "--payload-file", "payload.json"]
    if spec.arrival != "constant":
        args += ["--arrival", spec.arrival, "--burstiness", str(spec.burstiness)]
    if spec.ramp_up:
        args += ["--ramp-from", str(spec.ramp_up[0]), "--ramp-to", str(spec.ramp_up[1]),
                 "--ramp-over", str(spec.ramp_up[2])]
    if spec.dataset:
        args += ["--dataset-file", "dataset.jsonl", "--seed", str(spec.dataset.seed + node_index)]
    elif node_index:
        args += ["--seed", str(node_index)]
    return args


def _kind(name: str, tokens: bool = True) -> ClientKind:
    return ClientKind(name=name, program="loadgen.py", keys=("payload", "arrival", "burstiness", "ramp_up", "dataset"),
                      argv=_argv, tokens=tokens, ships_payload=True)


# `http` takes the same keys (its payload is method, path and body) and has no tokens; its SLOs are e2e only
KINDS = (_kind("openai-completions"), _kind("openai-chat"), _kind("ollama-generate"), _kind("http", tokens=False))
