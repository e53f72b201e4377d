"""`rerun`: the same benchmark again, from the recipe texts its MANIFEST.json recorded."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.bench.recipe import load_benchmark_text
from orchestrator.errors import OrchestratorError
from orchestrator.fileio import sha256_file
from orchestrator.schema import safe_load
from orchestrator.services.recipes import parse_recipe


def rerun_recipes(session_dir: Path):
    """The benchmark and service recipes exactly as MANIFEST.json recorded them."""
    path = session_dir / "MANIFEST.json"
    if not path.exists():
        raise OrchestratorError(f"{session_dir}: no MANIFEST.json: not a session directory")
    m = json.loads(path.read_text())
    br = m.get("benchmark_recipe") or {}
    if not br.get("text"):
        raise OrchestratorError(f"{path}: no benchmark recipe text recorded: cannot rerun exactly")
    bench = load_benchmark_text(br["text"], f"{br.get('source', '?')} (as recorded in {path})")
    services = {}
    warnings = []
    for name, entry in (m.get("service_recipes") or {}).items():
        services[name] = parse_recipe(safe_load(entry["text"]), source=entry["source"], text=entry["text"])
        for fname, sha in (entry.get("files") or {}).items():
            now = sha256_file(services[name].files.get(fname, ""))
            if sha and now != sha:
                warnings.append(f"{name}: shipped file {fname} changed since {m['session']} "
                                f"(sha256 {sha[:12]} then, {str(now)[:12]} now): the rerun ships the current one")
    return bench, services, m["session"], warnings
