"""Client kinds: what a benchmark's ``clients[].kind`` runs on the cluster, one module each.

A kind's module holds all that is its own: the recipe keys it takes and their
validation, the program shipped to the node and its argv, and, for kinds that
wrap another tool, the checks run on the login node before any job is
submitted. Every kind's program writes the same request records
(``requests.jsonl``: start, latency_s, ok, ...), so KPIs, the cross-check, the
bottleneck verdict and the report are the same for all. Adding a kind is
adding a module here and naming it in ``_MODULES``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

_MODULES = ("llm", "redis", "pgbench", "vector", "s3", "vllm_bench", "aiperf")


@dataclass(frozen=True)
class Preflight:
    """A check run on the login node before any job is submitted: a shell command whose failure
    (non-zero exit) stops the session with ``what`` and the command's own output."""
    what: str
    command: str


@dataclass(frozen=True)
class ClientKind:
    name: str
    program: str                                   # a file of oncluster/, run on the node
    keys: tuple[str, ...] = ()                     # recipe keys besides the common ones
    parse: Callable[[dict, str], dict] = lambda raw, path: {}   # the kind's options, validated
    # argv of the program, before the job options every client takes (concurrency, warm-up, go file...)
    argv: Callable[..., list[str]] = lambda spec, url, node_index, context: []
    tokens: bool = False                           # an LLM client: token counts, TTFT/TPOT SLOs, payloads
    venv_python: bool = False                      # runs with the cluster venv's python (numpy), not python3
    needs_requests: bool = False                   # bounded by a request count (the tool has no duration)
    files: tuple[str, ...] = ()                    # more workload files it imports, shipped beside it
    preflight: Callable[..., list[Preflight]] = lambda spec: []
    check: Callable[..., None] = lambda spec, path: None    # checks of the whole parsed spec (SchemaViolation)
    duration_free: bool = False                    # bounded by its own counts (vectors and queries)
    ships_payload: bool = False                    # payload.json and dataset.jsonl go to its job dir
    mem: str = "256M"                              # the job's memory unless the recipe's resources say
    aliases: tuple[tuple[str, str], ...] = ()      # (the tool's own word, ours): pgbench's clients = concurrency
    takes_messages: bool = False                   # its requests carry chat messages (a dataset's rows may)
    # the files a job of it gets from beside the recipe, {name in the job dir: text}; beside(path) -> Path
    job_files: Callable[..., dict[str, str]] = lambda spec, beside: {}
    # checks before any job that need the recipe's folder or the target's memory (raise RecipeError)
    deploy_check: Callable[..., None] = lambda spec, where, beside, target_mem: None
    # one request as the load will send it, (method, path, JSON body or None), sent once before the load:
    # a model the server does not serve or a wrong path stops the session there; None: nothing to send
    first_request: Callable[..., tuple[str, str, dict | None] | None] = lambda spec: None
    # the same load as ``vllm bench serve`` argv against url (the dry-run's plan shows it); None: not its kind
    reference: Callable[..., list[str] | None] = lambda spec, url: None


def _load() -> dict[str, ClientKind]:
    out: dict[str, ClientKind] = {}
    for name in _MODULES:
        for kind in importlib.import_module(f"{__name__}.{name}").KINDS:
            out[kind.name] = kind
    return out


KINDS: dict[str, ClientKind] = _load()
LLM_KINDS = tuple(k for k, v in KINDS.items() if v.tokens)
CLIENT_KINDS = tuple(KINDS)
