"""PostgreSQL's own pgbench as the client (``oncluster/pgbenchload.py`` runs it; its ``-l`` log becomes
the records)."""

from __future__ import annotations

import urllib.parse

from orchestrator.bench.kinds import ClientKind
from orchestrator.schema import SchemaViolation, expect_int, expect_str

PGBENCH_BUILTINS = ("tpcb-like", "simple-update", "select-only")
PGBENCH_SCRIPT = "pgbench_script.sql"  # a custom pgbench script, shipped under this name


def _options(raw, path: str) -> dict:
    builtin = raw.get("builtin", "tpcb-like")
    if builtin not in PGBENCH_BUILTINS:
        raise SchemaViolation(f"{path}.builtin", f"expected one of {', '.join(PGBENCH_BUILTINS)}, got {builtin!r}")
    if "builtin" in raw and "script" in raw:
        raise SchemaViolation(path, "expected builtin or script (a pgbench script file), not both")
    return {"scale": expect_int(raw.get("scale", 10), f"{path}.scale", 1, 100_000),
            "threads": expect_int(raw.get("threads", 1), f"{path}.threads", 1, 256), "builtin": builtin,
            "script": expect_str(raw.get("script"), f"{path}.script", optional=True)}


def _argv(spec, url: str, node_index: int, context: dict) -> list[str]:
    o = spec.options
    u = urllib.parse.urlsplit(url)
    return ["--address", f"{u.hostname}:{u.port}", "--scale", str(o["scale"]), "--threads", str(o["threads"]),
            *(["--script", PGBENCH_SCRIPT] if o["script"] else ["--builtin", o["builtin"]])]


def pgbench_bytes(scale: int) -> int:
    """pgbench's tables and indexes at a scale (measured with PostgreSQL 15: 86 MB at 5)."""
    return int((7.5 + 15.1 * scale) * 2**20)


# `clients` is pgbench's own word for its connections (the recipe parser maps it to concurrency)
KINDS = (ClientKind("pgbench", "pgbenchload.py", ("clients", "threads", "scale", "builtin", "script"), _options, _argv),)
