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
    assert "orchestrator.analysis.charts" in graph["orchestrator.monitoring.dashboard"]
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
