"""Vector database load (``oncluster/vectorload.py``): upsert, then query phases, recall@k against
exact neighbours (numpy, from the cluster's client venv)."""

from __future__ import annotations

import re

from orchestrator.bench.kinds import ClientKind
from orchestrator.schema import SchemaViolation, expect_int, expect_pattern

VECTOR_ENGINES = ("chroma", "qdrant")


def _options(raw, path: str) -> dict:
    if "requests" in raw:
        raise SchemaViolation(f"{path}.requests", "a vector client is bounded by vectors and queries (duration caps "
                              "its time)")
    collection = expect_pattern(raw.get("collection", "orch-bench"), f"{path}.collection",
                                lambda v: bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{1,510}[A-Za-z0-9]", v)),
                                "3-512 letters, digits, '.', '_' or '-', starting and ending with a letter or digit")
    engine = raw.get("engine")
    if engine is not None and engine not in VECTOR_ENGINES:
        raise SchemaViolation(f"{path}.engine", f"expected one of {', '.join(VECTOR_ENGINES)}, got {engine!r}")
    vectors = expect_int(raw.get("vectors", 20_000), f"{path}.vectors", 1, 100_000_000)
    top_k = expect_int(raw.get("top_k", 10), f"{path}.top_k", 1, 10_000)
    if top_k > vectors:
        raise SchemaViolation(f"{path}.top_k", f"expected at most vectors ({vectors}), got {top_k}")
    return {"dim": expect_int(raw.get("dim", 128), f"{path}.dim", 1, 65_536), "vectors": vectors,
            "batch": expect_int(raw.get("batch", 256), f"{path}.batch", 1, 100_000),
            "queries": expect_int(raw.get("queries", 1000), f"{path}.queries", 0, 100_000_000), "top_k": top_k,
            "collection": collection, "engine": engine}


def _argv(spec, url: str, node_index: int, context: dict) -> list[str]:
    o = spec.options
    return ["--url", url, "--engine", o["engine"] or context.get("engine") or "chroma", "--collection",
            o["collection"], "--dim", str(o["dim"]), "--vectors", str(o["vectors"]), "--batch", str(o["batch"]),
            "--queries", str(o["queries"]), "--top-k", str(o["top_k"]), "--seed", str(node_index)]


KINDS = (ClientKind("vector", "vectorload.py", ("dim", "vectors", "batch", "queries", "top_k", "collection", "engine"),
                    _options, _argv, venv_python=True, duration_free=True),)
