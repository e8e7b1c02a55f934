"""No import cycle between the modules of pipeline/ and web/ (no services needed).

Every module is parsed (not imported), and every import counts, including
those inside functions: an import moved into a function still makes the two
modules depend on each other, it only hides it from the interpreter.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipeline", "web")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue  # Alembic scripts, run by Alembic, imported by no module
            found[module_name(path)] = path
    return found


def imported_by(name: str, path: Path, known: set[str]) -> set[str]:
    """The known modules ``name`` imports (``from a import b`` counts a.b when b is a module, else a)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        for target in targets:
            # The nearest known module: ``import a.b.c`` of a function c counts a.b.
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imported_by(name, path, known) for name, path in found.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for other in sorted(edges.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_imports_inside_functions():
    # Given the graph of the tree
    edges = graph()
    # Then it has the modules of both packages and the imports of their top levels
    assert "pipeline.store.jobs" in edges and "web.app" in edges
    assert "pipeline.store.models" in edges["pipeline.store.jobs"]


def test_a_cycle_is_found_when_there_is_one():
    # Given a graph with a -> b -> c -> a
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    # Then the cycle is reported, and d (which only points into it) is not part of it
    assert cycles(edges) == [["a", "b", "c"]]


def test_no_import_cycles_between_modules():
    # Given every module of pipeline/ and web/, with the imports inside its functions
    edges = graph()
    # Then no module reaches itself through its imports
    found = cycles(edges)
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def reachable(edges: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        for other in edges.get(node, ()):
            if other not in seen:
                seen.add(other)
                todo.append(other)
    return seen


def test_the_worker_entry_does_not_reach_the_web_app():
    # Given the worker entry that the Procfile, beat and Flower name
    edges = graph()
    # Then nothing it imports, directly or not, is a module of web/ (its app is the pipeline's own)
    assert not {m for m in reachable(edges, "pipeline.worker.celery") if m.split(".")[0] == "web"}
    # And the pipeline's modules import no web module, except the operators' CLI and the tooling
    importers = {name for name, imported in edges.items() if name.startswith("pipeline")
                 and not name.startswith(("pipeline.cli", "pipeline.tooling"))
                 and any(m.split(".")[0] == "web" for m in imported)}
    assert not importers, importers
