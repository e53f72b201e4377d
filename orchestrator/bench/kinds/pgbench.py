"""PostgreSQL's own pgbench as the client (``oncluster/pgbenchload.py`` runs it; its ``-l`` log becomes
the records)."""

from __future__ import annotations

import urllib.parse

from orchestrator.bench.kinds import ClientKind
from orchestrator.errors import RecipeError
from orchestrator.schema import SchemaViolation, expect_int, expect_str
from orchestrator.services.recipes import mem_bytes

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


def _job_files(spec, beside) -> dict[str, str]:
    return {PGBENCH_SCRIPT: beside(spec.options["script"]).read_text()} if spec.options["script"] else {}


def _deploy_check(spec, where: str, beside, target_mem: str | None) -> None:
    """The script is there; the tables of this scale fit in the target's memory (when this session starts it)."""
    if spec.options["script"] and not beside(spec.options["script"]).is_file():
        raise RecipeError(f"{where}.script: {beside(spec.options['script'])}: no such file")
    need = pgbench_bytes(spec.options["scale"])
    if target_mem and need > mem_bytes(target_mem):
        raise RecipeError(
            f"{where}.scale: pgbench at scale {spec.options['scale']} needs about {need / 2**30:.1f} GiB of "
            f"tables and indexes, more than the {spec.target} job's memory ({target_mem}); lower the scale or "
            f"raise {spec.target}'s resources.mem")


# `clients` is pgbench's own word for its connections (the recipe parser maps it to concurrency)
KINDS = (ClientKind("pgbench", "pgbenchload.py", ("clients", "threads", "scale", "builtin", "script"), _options, _argv,
                    aliases=(("clients", "concurrency"),), job_files=_job_files, deploy_check=_deploy_check),)
