"""The package's layout keeps its promises: two layers, no import circle.

docs/architecture.md draws two columns: modules that decide (no I/O) and
modules that move bytes. These tests read the imports of every module with
:mod:`ast` and check the rules the docstrings state.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "wspractice"

#: Modules that decide: they import no I/O module and read no clock.
PURE = (
    "config",
    "errors",
    "forwarded",
    "handshake",
    "protocol",
    "messages",
    "users",
    "ratelimit",
)
IO_MODULES = {"socket", "threading", "select", "selectors", "ssl", "http.server"}


def imports(module: str) -> tuple[set[str], set[str]]:
    """The package modules and the outside modules ``module`` imports."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    inside, outside = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                inside.add(node.module.split(".")[0])
            else:
                inside.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            outside.add(node.module)
        elif isinstance(node, ast.Import):
            outside.update(alias.name for alias in node.names)
    return inside, outside


def modules() -> list[str]:
    return sorted(path.stem for path in PACKAGE.glob("*.py"))


def test_no_module_imports_one_that_imports_it_back() -> None:
    graph = {module: imports(module)[0] for module in modules()}
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        for dependency in sorted(graph.get(module, ())):
            if dependency in path:
                cycles.append(path[path.index(dependency) :] + [dependency])
            else:
                visit(dependency, path + [dependency])

    for module in graph:
        visit(module, [module])
    assert cycles == []


@pytest.mark.parametrize("module", PURE)
def test_a_deciding_module_imports_no_io_and_reads_no_clock(module: str) -> None:
    inside, outside = imports(module)
    assert not outside & IO_MODULES
    assert "time" not in outside, f"{module} must take the time as an argument"
    assert all(dependency in PURE for dependency in inside), inside
