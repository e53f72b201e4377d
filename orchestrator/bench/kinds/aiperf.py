"""NVIDIA's aiperf as a client job (``oncluster/refclient.py`` runs ``aiperf profile`` and reads its
``profile_export.jsonl``, one line a request, into the session's records)."""

from __future__ import annotations

from orchestrator.bench.kinds.reference import fixed_lengths, parse_common, reference_kind
from orchestrator.oncluster.formats import AIPERF_DIR

RESERVED = ("--api-key", "--model", "-m", "--url", "-u", "--endpoint-type", "--streaming", "--isl", "--osl", "--isl-stddev",
            "--osl-stddev", "--concurrency", "--request-count", "--benchmark-duration", "--request-rate",
            "--arrival-pattern", "--request-rate-mode", "--arrival-smoothness", "--vllm-burstiness", "--tokenizer",
            "--artifact-dir", "--random-seed", "--extra-inputs", "--use-server-token-count")


def _options(raw, path: str) -> dict:
    return parse_common(raw, path, "aiperf", RESERVED)


def tool_argv(spec, url: str, node_index: int) -> list[str]:
    o = spec.options
    (n_in, sd_in), (n_out, sd_out), seed = fixed_lengths(spec, "client", stddev_ok=True)
    # aiperf 0.13 refuses to start with HF_HUB_OFFLINE set; a local tokenizer directory needs no hub
    argv = ["env", "-u", "HF_HUB_OFFLINE", o["program"], "profile", "--model", o["model"], "--url", url,
            "--endpoint-type", o["endpoint"], "--streaming", "--tokenizer", o["tokenizer"],
            "--isl", str(int(n_in)), "--isl-stddev", str(sd_in), "--osl", str(int(n_out)), "--osl-stddev", str(sd_out),
            "--concurrency", str(spec.concurrency), "--random-seed", str(seed + node_index),
            "--use-server-token-count", "--artifact-dir", AIPERF_DIR, "--ui-type", "none",
            "--no-server-metrics", "--no-gpu-telemetry"]
    if spec.requests is not None:
        argv += ["--request-count", str(spec.requests)]
    if spec.duration is not None:
        argv += ["--benchmark-duration", str(spec.warmup + spec.duration)]
    if spec.rate:
        argv += ["--request-rate", str(spec.rate), "--arrival-pattern", spec.arrival]
        if spec.arrival == "gamma":
            argv += ["--arrival-smoothness", str(spec.burstiness)]
    if o["ignore_eos"]:
        argv += ["--extra-inputs", "ignore_eos:true"]
    return argv + o["args"]


# aiperf runs a dozen processes (workers, record processors): about 2 GB RSS
KINDS = (reference_kind("aiperf", tool_argv, _options, subcommand=["profile"], count_flag="--request-count",
                        stddev_ok=True, mem="3G"),)
