"""The shape of the package: no import cycles, leaves that stay leaves, arrows down the flow.

Imports are read from the source (module level and inside functions alike: a lazy import is
still a dependency), except those under `if TYPE_CHECKING:`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "anxin"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in modules else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {name for name in found if name in modules}


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(path, modules) - {name} for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                connect(target)
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
            connect(node)
    return found


def test_no_import_cycles_outside_the_care_layer():
    outside = [
        c for c in cycles(import_graph()) if not all(m.startswith("anxin.safety") for m in c)
    ]
    assert outside == []


@pytest.mark.parametrize(
    "leaf, allowed",
    [("anxin.errors", set()), ("anxin.generation", set()), ("anxin.atomic", {"anxin.errors"})],
)
def test_leaves_import_nothing_from_anxin(leaf, allowed):
    assert import_graph()[leaf] <= allowed


@pytest.mark.parametrize(
    "lower, higher",
    [
        ("anxin.data", "anxin.train"),  # data knows nothing of training
        ("anxin.engine", "anxin.serve"),  # the engine knows nothing of HTTP
        ("anxin.backends", "anxin.engine"),  # backends generate; the engine cares
        ("anxin.backends", "anxin.evaluate"),
        ("anxin.template", "anxin.engine"),
    ],
)
def test_arrows_point_down_the_flow(lower, higher):
    graph = import_graph()
    upward = {
        (name, target)
        for name, targets in graph.items()
        if name == lower or name.startswith(lower + ".")
        for target in targets
        if target == higher or target.startswith(higher + ".")
    }
    assert upward == set()


def test_the_graph_sees_lazy_imports():
    # The check above is only worth something if imports inside functions are read.
    assert "anxin.backends.hf" in import_graph()["anxin.backends"]
