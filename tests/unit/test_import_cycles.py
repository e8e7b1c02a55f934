"""No import cycle between the modules of pipeline/ and web/, and no import inside a
function without a reason (no services needed).

Every module is parsed (not imported), and every import counts, including
those inside functions: an import moved into a function still makes the two
modules depend on each other, it only hides it from the interpreter.
"""
from __future__ import annotations

import ast
import re
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


LAZY_REASONS = {
    "optional": "a heavy optional dependency (an extra: torch, diffusers, opentelemetry, matplotlib, ...)",
}
"""Why an import may sit inside a function: ``# lazy: <reason> ...`` on its line or above its block.
One reason only (issue 16): a cycle is broken by moving code, and start-up time is no reason."""
LAZY_MARKER = re.compile(r"#\s*lazy:\s*(\w+)")


def function_level_imports(path: Path) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement inside a function (or a class or block within one) of ``path``."""
    found: list[ast.Import | ast.ImportFrom] = []

    def walk(node: ast.AST, inside: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if inside and isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append(child)
            walk(child, inside or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    walk(ast.parse(path.read_text(), str(path)), False)
    return found


def lazy_reason(lines: list[str], node: ast.stmt, import_lines: set[int]) -> str | None:
    """The reason word of the marker on ``node``'s lines, or on the comment line above its block of imports."""
    for number in range(node.lineno, (node.end_lineno or node.lineno) + 1):
        marker = LAZY_MARKER.search(lines[number - 1])
        if marker:
            return marker.group(1)
    above = node.lineno - 1
    while above >= 1 and (above in import_lines or not lines[above - 1].strip()):  # a block under one comment
        above -= 1
    if above >= 1 and lines[above - 1].strip().startswith("#"):
        marker = LAZY_MARKER.search(lines[above - 1])
        if marker:
            return marker.group(1)
    return None


def unexplained_lazy_imports(name: str, path: Path) -> list[str]:
    """``module:line: statement`` of each function-level import without an accepted reason."""
    lines = path.read_text().splitlines()
    nodes = function_level_imports(path)
    import_lines = {n for node in nodes for n in range(node.lineno, (node.end_lineno or node.lineno) + 1)}
    bad = []
    for node in nodes:
        reason = lazy_reason(lines, node, import_lines)
        if reason not in LAZY_REASONS:
            bad.append(f"{name}:{node.lineno}: {lines[node.lineno - 1].strip()} (reason: {reason})")
    return bad


def test_a_function_level_import_without_a_reason_is_found(tmp_path):
    # Given a module with one import at the top, three inside functions of which two say why
    module = tmp_path / "m.py"
    module.write_text(
        "import os\n\n"
        "def f():\n    import torch  # lazy: optional genline[diffusers]\n\n"
        "def g():\n    # lazy: optional genline[otel]\n    from opentelemetry import trace\n    import opentelemetry.sdk\n\n"
        "def h():\n    import json\n\n"
        "def k():\n    import flask  # lazy: because\n")
    # Then the top-level import is not counted, and only the two without an accepted reason are reported
    assert len(function_level_imports(module)) == 5
    found = [line.split(": ", 1)[1] for line in unexplained_lazy_imports("m", module)]
    assert found == ["import json (reason: None)", "import flask  # lazy: because (reason: because)"]


def test_every_function_level_import_says_why():
    # Given every module of pipeline/ and web/
    # Then an import inside a function is there for a heavy optional dependency, and says so;
    # anything else belongs at the top of its module
    bad = [line for name, path in sorted(modules().items()) for line in unexplained_lazy_imports(name, path)]
    assert not bad, "imports inside functions without a `# lazy: <reason>` marker (" + ", ".join(
        LAZY_REASONS) + "); move them to the top of the module:\n" + "\n".join(bad)
