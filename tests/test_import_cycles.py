"""No import cycle between the packages of agegender: every import statement (at module level or inside a
function, where the heavy ones live) is an edge between two units, a subpackage (agegender.deploy) or a
top-level module (agegender.evaluate); the graph of units must have no cycle."""
from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "agegender"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


def unit(module: str) -> str:
    """agegender.deploy.compile -> agegender.deploy; agegender.evaluate -> agegender.evaluate."""
    return ".".join(module.split(".")[:2])


def imported(path: Path, known: set[str]) -> set[str]:
    """The agegender modules ``path`` imports, anywhere in it (``from agegender import images`` included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names} & known
    return {name for name in found if name == "agegender" or name.startswith("agegender.")}


def unit_graph() -> dict[str, set[str]]:
    known = set(modules())
    graph: dict[str, set[str]] = {}
    for name, path in modules().items():
        edges = {unit(target) for target in imported(path, known) if target != "agegender"} - {unit(name)}
        graph.setdefault(unit(name), set()).update(edges)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one unit (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_between_packages():
    graph = unit_graph()
    packages = {"agegender.caffe", "agegender.layers", "agegender.train", "agegender.deploy", "agegender.dataset"}
    assert packages <= set(graph)
    assert cycles(graph) == []


def test_the_walker_sees_function_level_imports_and_finds_a_cycle():
    graph = unit_graph()
    assert "agegender.deploy" in graph["agegender.evaluate"]  # imported inside a function
    assert "agegender.images" in graph["agegender.infer"]     # ``from agegender import images``
    assert cycles(graph | {"agegender.caffe": graph["agegender.caffe"] | {"agegender.layers"}}) == [
        ["agegender.caffe", "agegender.layers"]]


def test_the_moved_pieces_live_where_they_belong():
    graph = unit_graph()
    assert "agegender.train" not in graph["agegender.layers"]      # fillers are layers/fillers.py
    assert "agegender.evaluate" not in graph["agegender.deploy"]   # scoring is agegender/scoring.py
    assert "agegender.dataset" not in graph["agegender.infer"]     # image reading is agegender/images.py
    assert "agegender.cli" not in graph["agegender.infer"] | graph["agegender.pipeline"]  # run_guarded: errors
