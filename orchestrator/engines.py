"""Inference engines name their metrics differently: one table of what each one's counters are.

The report cross-checks the client's requests and tokens against the engine's
own counters over the same session, names the engine and the metrics it used,
and says "absent" where an engine has no such counter (Ollama has no /metrics).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Engine:
    """Metric names, optionally with label matchers (``name{label="v"}``); queries add the service's."""
    name: str
    requests: str | None = None          # counter of finished requests
    requests_summed_over: str | None = None  # a label of that counter whose series the count adds together
    output_tokens: str | None = None     # counter of generated tokens
    input_tokens: str | None = None      # counter of prompt tokens
    input_tokens_cached: str | None = None  # prompt tokens served from the cache, where counted apart
    running: str | None = None           # gauge: requests being processed
    waiting: str | None = None           # gauge: requests queued
    latency_histogram: str | None = None  # e2e request latency (seconds)
    ttft_histogram: str | None = None
    queue_histogram: str | None = None    # time a request waited before it was scheduled
    itl_histogram: str | None = None      # gaps between generated tokens
    tpot_histogram: str | None = None     # per request: (latency - TTFT) / (output tokens - 1)
    cache_usage: str | None = None        # gauge: the KV cache's fill (0-1)
    # the prompt-token counter already counts the prompt tokens served from the cache (a part of it)
    input_tokens_cached_within: str | None = None
    # a counter whose series appears at its first increment (Redis lists a command once it was
    # called): absent reads as 0 while this metric says the exporter is up
    up: str | None = None
    # the cross-check reads the counters at the scrapes that bound the measured window; an engine whose
    # counters are published late (PostgreSQL flushes its statistics up to a second after a commit) is
    # read over the whole session instead, where the lag falls before the load and after it
    window_counts: bool = True
    # the prefix cache: prompt tokens found in it, and prompt tokens looked up (counters); where the
    # engine counts only the misses apart (llama.cpp), the lookups are the misses plus the hits
    prefix_cache_hits: str | None = None
    prefix_cache_queries: str | None = None
    prefix_cache_queries_plus_hits: bool = False
    # an HTTP route (POST) that empties the prefix cache (cache: cold); None: the service is restarted
    reset_prefix_cache: str | None = None


_VLLM = dict(requests="vllm:request_success_total", requests_summed_over="finished_reason", output_tokens="vllm:generation_tokens_total",
             input_tokens="vllm:prompt_tokens_total", running="vllm:num_requests_running",
             waiting="vllm:num_requests_waiting", latency_histogram="vllm:e2e_request_latency_seconds",
             ttft_histogram="vllm:time_to_first_token_seconds")
# vLLM's V1 engine (0.32 seen on the sandbox): its own latency histograms, and a prompt-token counter that
# includes the prefix-cache hits (vllm:prompt_tokens_total = local_compute + local_cache_hit by source)
_VLLM_V1 = dict(_VLLM, queue_histogram="vllm:request_queue_time_seconds",
                itl_histogram="vllm:inter_token_latency_seconds",
                tpot_histogram="vllm:request_time_per_output_token_seconds",
                input_tokens_cached_within="vllm:prompt_tokens_cached_total", cache_usage="vllm:kv_cache_usage_perc",
                prefix_cache_hits="vllm:prefix_cache_hits_total", prefix_cache_queries="vllm:prefix_cache_queries_total",
                # a development route (VLLM_SERVER_DEV_MODE=1); answered 404 otherwise
                reset_prefix_cache="/reset_prefix_cache")

ENGINES: dict[str, Engine] = {
    "vllm": Engine("vLLM", **_VLLM_V1),
    # the stand-in exposes vLLM's names (it is a stand-in, not an engine)
    "standin": Engine("stand-in (vLLM metric names)", **_VLLM),
    # llama.cpp counts the prompt tokens it processed and those it found in its cache apart;
    # together they are the prompt tokens of the requests (what `usage` reports)
    "llamacpp": Engine("llama.cpp server", output_tokens="llamacpp:tokens_predicted_total",
                       input_tokens="llamacpp:prompt_tokens_total",
                       input_tokens_cached="llamacpp:prompt_tokens_cached_total",
                       running="llamacpp:requests_processing", waiting="llamacpp:requests_deferred",
                       prefix_cache_hits="llamacpp:prompt_tokens_cached_total",
                       prefix_cache_queries="llamacpp:prompt_tokens_total", prefix_cache_queries_plus_hits=True),
    "ollama": Engine("Ollama (no metrics endpoint)"),
    # data services: an operation is a request (the load client's GETs and SETs; its preload is MSET)
    "redis": Engine("Redis (redis_exporter)", requests='redis_commands_total{cmd=~"get|set"}',
                    running="redis_connected_clients", up="redis_up"),
    # pgbench's TPC-B-like and simple-update transactions insert one history row each: the rows
    # the server counted inserted in the benchmark's database are its count of committed transactions
    # (xact_commit also counts pgbench's own queries, one per connection and a few at its start)
    "postgres": Engine("PostgreSQL (postgres_exporter)", requests='pg_stat_database_tup_inserted{datname="bench"}',
                       running='pg_stat_activity_count{datname="bench",state="active"}', up="pg_up",
                       window_counts=False),
    # vector databases: the client asks for the collection's count after the load (report: items stored)
    "chroma": Engine("Chroma (no Prometheus metrics)"),
    "qdrant": Engine("Qdrant"),
    # MinIO's cluster metrics (v2), public with MINIO_PROMETHEUS_AUTH_TYPE=public (recipes/services/minio.yaml)
    "minio": Engine("MinIO", requests='minio_s3_requests_total{api=~"putobject|getobject"}'),
}
NONE = Engine("none declared")


def engine_named(name: str | None) -> Engine:
    """The engine a recipe's ``engine:`` names; NONE for none or one not in the table."""
    return ENGINES.get(name or "", NONE)
