"""vLLM's own benchmark client, ``vllm bench serve``, as a client job (``oncluster/refclient.py`` runs it
with ``--save-detailed`` and turns its per-request results into the session's records).

TTFT, TPOT, ITL and e2e latency are then computed from its measurements by the same code as for
every client; its failed requests (connection resets against llama.cpp, say) count as errors."""

from __future__ import annotations

from orchestrator.bench.kinds.reference import ENDPOINTS, fixed_lengths, parse_common, reference_kind
from orchestrator.oncluster.formats import VLLM_RESULT
from orchestrator.schema import SchemaViolation

RESERVED = ("--backend", "--base-url", "--endpoint", "--model", "--tokenizer", "--dataset-name",
            "--random-input-len", "--random-output-len", "--random-range-ratio", "--num-prompts",
            "--prefix-repetition-prefix-len", "--prefix-repetition-suffix-len", "--prefix-repetition-num-prefixes",
            "--prefix-repetition-output-len",
            "--max-concurrency", "--request-rate", "--burstiness", "--seed", "--ignore-eos", "--save-result",
            "--save-detailed", "--result-dir", "--result-filename", "--host", "--port")


def _options(raw, path: str) -> dict:
    if raw.get("duration") is not None:
        raise SchemaViolation(f"{path}.duration", "vllm bench serve is bounded by a request count: use requests")
    if raw.get("rate") and raw.get("arrival", "constant") == "constant":
        raise SchemaViolation(f"{path}.arrival", "vllm bench serve draws Poisson or gamma arrivals: "
                              "arrival: poisson (or gamma with burstiness)")
    return parse_common(raw, path, "vllm", RESERVED)


def tool_argv(spec, url: str, node_index: int) -> list[str]:
    o = spec.options
    (n_in, _), (n_out, _), seed = fixed_lengths(spec, "client", stddev_ok=False, datasets=DATASETS)
    ds = spec.dataset
    if ds.kind == "prefix":   # vLLM's own prefix_repetition: the same lengths and prefix count as ours
        data = ["--dataset-name", "prefix_repetition", "--prefix-repetition-prefix-len", str(ds.prefix_tokens),
                "--prefix-repetition-suffix-len", str(ds.suffix_tokens),
                "--prefix-repetition-num-prefixes", str(ds.prefixes),
                "--prefix-repetition-output-len", str(int(n_out))]
    else:
        data = ["--dataset-name", "random", "--random-input-len", str(int(n_in)), "--random-output-len",
                str(int(n_out)), "--random-range-ratio", "0"]
    env = ["env", "HF_HUB_OFFLINE=1"] if o["tokenizer"].startswith(("/", "~", ".")) else ["env"]
    argv = [*env, "VLLM_CACHE_ROOT=cache", o["program"], "bench", "serve",
            "--backend", "openai-chat" if o["endpoint"] == "chat" else "openai", "--base-url", url,
            "--endpoint", ENDPOINTS[o["endpoint"]], "--model", o["model"], "--tokenizer", o["tokenizer"], *data,
            "--num-prompts", str(spec.requests), "--max-concurrency", str(spec.concurrency),
            "--request-rate", str(spec.rate) if spec.rate else "inf", "--seed", str(seed + node_index),
            "--percentile-metrics", "ttft,tpot,itl,e2el", "--save-result", "--save-detailed", "--result-dir", ".",
            "--result-filename", VLLM_RESULT]
    if spec.rate:
        argv += ["--burstiness", str(spec.burstiness if spec.arrival == "gamma" else 1.0)]
    if o["ignore_eos"]:
        argv.append("--ignore-eos")
    return argv + o["args"]


DATASETS = ("synthetic", "prefix")   # vllm bench serve's random and prefix_repetition

# vllm bench serve imports vLLM and torch: about 1 GB RSS
KINDS = (reference_kind("vllm-bench", tool_argv, _options, subcommand=["bench", "serve"], count_flag="--num-prompts",
                        stddev_ok=False, mem="2G", needs_requests=True, datasets=DATASETS),)
