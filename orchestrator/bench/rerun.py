"""`rerun`: the same benchmark again, from the recipe texts its MANIFEST.json recorded."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.bench.recipe import load_benchmark_text
from orchestrator.errors import OrchestratorError
from orchestrator.fileio import sha256_file
from orchestrator.resources import packaged
from orchestrator.schema import SchemaViolation, safe_load
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
        # a recipe's own files are looked up in the session directory only (as if the recipe lay there):
        # a MANIFEST from elsewhere must not make a rerun ship ~/.bashrc or /etc/shadow to the cluster
        here = session_dir.resolve() / f"{name}.recipe.yaml"
        try:
            services[name] = parse_recipe(safe_load(entry["text"]), source=str(here), text=entry["text"])
        except SchemaViolation as exc:
            raise OrchestratorError(f"{path}: service_recipes.{name} (recorded from {entry.get('source', '?')}): "
                                    f"{exc.path}: {exc.message}; a rerun ships only the package's files and files "
                                    f"in {session_dir.resolve()}: copy them there") from None
        for fname, sha in (entry.get("files") or {}).items():
            local = services[name].files.get(fname, "")
            now = sha256_file(local)
            if sha and now != sha:
                if not Path(local).resolve().is_relative_to(packaged().resolve()):
                    raise OrchestratorError(f"{path}: {name}: {local} is not the file {fname} the session shipped "
                                            f"(sha256 {sha[:12]} then, {str(now)[:12]} now): refused")
                warnings.append(f"{name}: shipped file {fname} changed since {m['session']} "
                                f"(sha256 {sha[:12]} then, {str(now)[:12]} now): the rerun ships the current one")
    return bench, services, m["session"], warnings
