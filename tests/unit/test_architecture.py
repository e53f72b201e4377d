"""The package's shape: no import cycles, the cluster reached only through cluster/, reports pure."""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "orchestrator"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports() -> dict[str, set[str]]:
    """Every orchestrator module -> the orchestrator modules it imports, at any depth of the code
    (an import inside a function is still a dependency)."""
    modules = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".")[: -node.level + (1 if path.name == "__init__.py" else 0) or None]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                candidates = [target] + [f"{target}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            else:
                continue
            deps |= {c for c in candidates if c in modules and c != name}
        graph[name] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state, stack = [], {}, []

    def visit(n):
        state[n] = "open"
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == "open":
                found.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = "done"

    for n in sorted(graph):
        if n not in state:
            visit(n)
    return found


def test_cycle_finder_finds_a_planted_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_back_through_others():
    graph = _imports()
    # package __init__ files re-export (orchestrator/__init__ -> api); only modules' own edges count
    graph = {n: {d for d in deps if not n.startswith(d + ".") and d != "orchestrator"} for n, deps in graph.items()}
    assert _cycles(graph) == []


def test_only_cluster_package_opens_connections():
    graph = _imports()
    ssh_users = {n for n, deps in graph.items() if "orchestrator.cluster.ssh" in deps}
    # connect picks a transport (paramiko's, OpenSSH's or the local shell)
    assert ssh_users <= {"orchestrator.cluster.connect", "orchestrator.cluster.ssh"}, ssh_users
    openssh_users = {n for n, deps in graph.items() if "orchestrator.cluster.openssh" in deps}
    assert openssh_users <= {"orchestrator.cluster.connect", "orchestrator.cli.services"}, openssh_users


def test_reports_never_talk_to_the_cluster():
    graph = _imports()
    for name, deps in graph.items():
        if name.startswith("orchestrator.reports"):
            assert not {d for d in deps if d.startswith(("orchestrator.cluster", "orchestrator.services",
                                                          "orchestrator.monitoring.monitors"))}, name


def test_analysis_is_downstream_of_nothing_that_acts_and_reports_never_import_bench():
    """analysis/ (what measurements mean) has no effects: bench/ (which runs things) and reports/
    (which renders) import it, it imports neither; reports/ never import bench/."""
    graph = _imports()
    acting = ("orchestrator.bench", "orchestrator.reports", "orchestrator.monitoring", "orchestrator.services",
              "orchestrator.cluster", "orchestrator.watch", "orchestrator.cli", "orchestrator.api")
    for name, deps in graph.items():
        if name.startswith("orchestrator.analysis"):
            # oncluster/ holds the programs shipped to the nodes (standard library, pure): a reference
            # tool's result is read with the very code that converts it on the node
            bad = {d for d in deps if d.startswith(acting) and not d.startswith("orchestrator.oncluster")}
            assert not bad, (name, bad)
        if name.startswith("orchestrator.reports"):
            assert not {d for d in deps if d.startswith("orchestrator.bench")}, name
    # the dashboard and the report draw with one charts module; job-state causes are SLURM's
    assert "orchestrator.charts" in graph["orchestrator.monitoring.dashboard"]
    assert "orchestrator.cluster.slurm" in graph["orchestrator.watch.attribution"]
    assert not any(d.startswith("orchestrator.watch") for d in graph["orchestrator.bench.session"])


def test_the_session_asks_the_modules_never_their_stores():
    source = (Path(__file__).resolve().parents[2] / "orchestrator" / "bench" / "session.py").read_text()
    assert ".store." not in source and ".attempted" not in source
    # nor does any other code reach into ServersModule's services.json: it asks for typed records
    for path in (Path(__file__).resolve().parents[2] / "orchestrator").rglob("*.py"):
        if path.name != "servers.py":
            assert "servers.store" not in path.read_text(), path


# the vector client runs in the cluster's client venv (remote.venv), which has numpy
OPTIONAL_ON_NODES = {"numpy"}


def test_programs_for_the_nodes_live_apart_and_need_nothing_of_the_laptop_code():
    """oncluster/ is what a job bundle ships: each program runs on a node with the standard library
    (and its siblings there), so it imports nothing else of the package and nothing from PyPI."""
    import sys
    root = Path(__file__).resolve().parents[2] / "orchestrator" / "oncluster"
    siblings = {p.stem for p in root.glob("*.py")}
    for path in root.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
            for name in names:
                top = name.split(".")[0]
                ok = (top in sys.stdlib_module_names or top in siblings
                      or name.startswith("orchestrator.oncluster") or top in OPTIONAL_ON_NODES)
                assert ok, f"{path.name} imports {name}"
    # and nothing that runs on a node is kept elsewhere in the package
    for path in (Path(__file__).resolve().parents[2] / "orchestrator").rglob("*.py"):
        if "oncluster" not in path.parts:
            assert "if __name__ == \"__main__\"" not in path.read_text() or path.name == "__main__.py", path


# The layers, lowest first: a module may import its own package and any layer below its own, never one
# above it nor another package of its own layer. foundation: the top-level modules (config, errors,
# fileio, schema, engines, charts, ...). What has no effects comes first: analysis (what measurements
# mean) and reports (data in, files out) need nothing that acts; then what acts, from the connection up:
# cluster, services, monitoring and the watcher, the benchmark session (which writes its report), the API
# and the CLI. oncluster/ stands apart: programs shipped to the nodes, standard library only; the laptop
# reads what both sides share through oncluster/formats.py alone. (README's Layout states this order.)
LAYERS = [("foundation",), ("analysis",), ("reports",), ("cluster",), ("services",), ("monitoring", "watch"),
          ("bench",), ("api",), ("cli",)]
SHARED_WITH_NODES = "orchestrator.oncluster.formats"


def _layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and any(parts[1] in layer for layer in LAYERS) or parts[1:2] == ["oncluster"]:
        return parts[1]
    return "foundation"


def layering_violations(graph: dict[str, set[str]]) -> list[str]:
    rank = {name: i for i, layer in enumerate(LAYERS) for name in layer}
    bad = []
    for module, deps in sorted(graph.items()):
        if module == "orchestrator":
            continue   # the package's __init__ re-exports the API
        mine = _layer_of(module)
        for dep in sorted(deps):
            theirs = _layer_of(dep)
            if dep == "orchestrator" or theirs == mine:
                continue
            if mine == "oncluster":
                bad.append(f"{module} -> {dep}: a node program imports the laptop's code")
            elif theirs == "oncluster":
                if dep != SHARED_WITH_NODES:
                    bad.append(f"{module} -> {dep}: the laptop imports a node program (only {SHARED_WITH_NODES})")
            elif rank[theirs] > rank[mine]:
                bad.append(f"{module} -> {dep}: upward ({mine} imports {theirs})")
            elif rank[theirs] == rank[mine]:
                bad.append(f"{module} -> {dep}: sideways ({mine} imports {theirs})")
    return bad


def test_every_import_points_down_the_layers():
    assert layering_violations(_imports()) == []
    internals = (PKG.parent / "docs" / "internals.md").read_text()
    stated = " -> ".join(", ".join(layer) for layer in LAYERS)
    assert f"Layers, lowest first: {stated}" in internals, stated


def test_the_layering_check_fails_on_imports_that_point_up_or_sideways():
    graph = _imports()
    for module, dep in [("orchestrator.cluster.slurm", "orchestrator.monitoring.promql"),
                        ("orchestrator.reports.html", "orchestrator.watch.watcher"),
                        ("orchestrator.cluster.shell", "orchestrator.bench.kinds"),
                        ("orchestrator.services.probe", "orchestrator.watch.attribution"),
                        ("orchestrator.monitoring.queries", "orchestrator.watch.attribution"),
                        ("orchestrator.bench.recipe", "orchestrator.oncluster.loadgen"),
                        ("orchestrator.oncluster.loadgen", "orchestrator.config")]:
        planted = {**graph, module: graph[module] | {dep}}
        assert any(v.startswith(f"{module} -> {dep}:") for v in layering_violations(planted)), (module, dep)


def test_client_kinds_are_branched_on_only_in_their_own_modules():
    """A client kind is one module of bench/kinds/ and one node program: the rest of the code asks the
    kind's hooks (aliases, job_files, deploy_check, takes_messages...), never compares its name."""
    import re
    from orchestrator.bench.kinds import CLIENT_KINDS
    names = "|".join(re.escape(k) for k in CLIENT_KINDS)
    pattern = re.compile(rf"kind\s*(==|!=|in)\s*[(\[]?\s*[\"']({names})[\"']")
    for path in PKG.rglob("*.py"):
        if "kinds" in path.parts or "oncluster" in path.parts:
            continue
        found = pattern.search(path.read_text())
        assert found is None, f"{path.relative_to(PKG)}: {found.group(0)}"


def test_no_class_in_services_or_monitoring_grows_past_300_lines():
    """Split a module's class by job (records, submission, files, queries) before it carries everything."""
    for package in ("services", "monitoring"):
        for path in (PKG / package).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ClassDef):
                    length = node.end_lineno - node.lineno + 1
                    assert length <= 300, f"{path.relative_to(PKG)}: class {node.name} has {length} lines"


def test_every_module_path_the_readme_and_pyproject_name_exists():
    """A module moved is a README line to change: a path in the docs that names no file is stale."""
    import re
    root = PKG.parent
    for doc in ("README.md", "docs/internals.md", "pyproject.toml"):
        for path in set(re.findall(r"\b(?:orchestrator/)?(?:[a-z_]+/)+[a-z_]+\.py\b", (root / doc).read_text())):
            assert (root / path).exists() or (PKG / path).exists(), f"{doc} names {path}, which does not exist"


def test_monitoring_prints_nothing_and_imports_no_terminal_code():
    """What a terminal shows is the CLI's or the API facade's (api.result_text, show_metrics' table)."""
    graph = _imports()
    for path in (PKG / "monitoring").glob("*.py"):
        tree = ast.parse(path.read_text())
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "print"]
        assert not calls, f"{path.name} prints"
        module = "orchestrator.monitoring" + ("" if path.stem == "__init__" else f".{path.stem}")
        assert "orchestrator.terminal" not in graph[module], path.name


PHASES = {"deploy.py": "Deploy", "loading.py": "Load", "gathering.py": "Gather", "cleanup.py": "Cleanup"}


def _phase_uses(source: str, cls: str) -> tuple[set, set, set]:
    """A phase class's own methods, what it reads as ``self.X`` and what it reads as ``self.ctx.X``."""
    node = next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == cls)
    own = {f.name for f in node.body if isinstance(f, ast.FunctionDef)}
    targets = [t for n in ast.walk(node) if isinstance(n, ast.Assign) for t in n.targets]
    targets += [n.target for n in ast.walk(node) if isinstance(n, ast.AnnAssign)]
    own |= {t.attr for t in targets if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name)
            and t.value.id == "self"}
    on_self, on_ctx = set(), set()
    for n in ast.walk(node):
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "self":
            on_self.add(n.attr)
        if (isinstance(n, ast.Attribute) and isinstance(n.value, ast.Attribute) and n.value.attr == "ctx"
                and isinstance(n.value.value, ast.Name) and n.value.value.id == "self"):
            on_ctx.add(n.attr)
    return own, on_self, on_ctx


def _check_phases(sources: dict[str, str]) -> list[str]:
    from orchestrator.bench.context import SessionContext
    import dataclasses
    declared = {f.name for f in dataclasses.fields(SessionContext)} | {
        k for k in vars(SessionContext) if not k.startswith("__")}
    problems = []
    for fname, cls in PHASES.items():
        own, on_self, on_ctx = _phase_uses(sources[fname], cls)
        problems += [f"{cls} reads self.{a}, which it does not define" for a in sorted(on_self - own - {"ctx"})]
        problems += [f"{cls} reads self.ctx.{a}, which SessionContext does not declare" for a in sorted(on_ctx - declared)]
    return problems


def test_session_phases_share_only_what_their_context_declares():
    """Each phase of a session is an object handed a SessionContext: what it reads of another phase or of
    the session is a declared field of the context, never an attribute someone else happened to set."""
    sources = {f: (PKG / "bench" / f).read_text() for f in PHASES}
    assert _check_phases(sources) == []
    planted = dict(sources, **{"loading.py": sources["loading.py"].replace(
        "self.ctx = ctx", "self.ctx = ctx\n        self.ctx.say(str(self._rows) + str(self.ctx.spare))")})
    assert _check_phases(planted) == ["Load reads self._rows, which it does not define",
                                      "Load reads self.ctx.spare, which SessionContext does not declare"]
