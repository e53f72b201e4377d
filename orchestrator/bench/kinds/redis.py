"""Redis GET/SET load (``oncluster/redisload.py``: a selector-loop RESP client, standard library only)."""

from __future__ import annotations

import urllib.parse

from orchestrator.bench.kinds import ClientKind
from orchestrator.bench.kinds.options import ratio
from orchestrator.schema import SchemaViolation, expect_int

REDIS_OPS = ("get", "set")


def _options(raw, path: str) -> dict:
    shares = ratio(raw, path, REDIS_OPS, {"get": 0.9, "set": 0.1})
    preload = raw.get("preload", True)
    if not isinstance(preload, bool):
        raise SchemaViolation(f"{path}.preload", f"expected true or false, got {preload!r}")
    return {"ratio": shares, "keys": expect_int(raw.get("keys", 100_000), f"{path}.keys", 1, 100_000_000),
            "value_bytes": expect_int(raw.get("value_bytes", 1024), f"{path}.value_bytes", 1, 512 << 20),
            "pipeline": expect_int(raw.get("pipeline", 1), f"{path}.pipeline", 1, 10_000), "preload": preload}


def _argv(spec, url: str, node_index: int, context: dict) -> list[str]:
    o = spec.options
    u = urllib.parse.urlsplit(url)
    return ["--address", f"{u.hostname}:{u.port}",
            "--ratio", ",".join(f"{op}={share:g}" for op, share in o["ratio"].items()), "--keys", str(o["keys"]),
            "--value-bytes", str(o["value_bytes"]), "--pipeline", str(o["pipeline"]), "--seed", str(node_index),
            *([] if o["preload"] else ["--no-preload"])]


KINDS = (ClientKind("redis", "redisload.py", ("ratio", "keys", "value_bytes", "pipeline", "preload"), _options, _argv),)
