"""The decision core must stay pure: no I/O, clock, environment or process state.

A decision that depended on the wall clock or a file could differ between workers and
between a test run and production; the gateway passes `now` and everything else in.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

CORE = sorted((ROOT / "engine" / "decide").glob("*.py"))
FORBIDDEN_MODULES = {
    "asyncio", "http", "io", "logging", "os", "pathlib", "random", "requests",
    "secrets", "shutil", "socket", "subprocess", "sys", "tempfile", "threading", "time", "urllib",
}  # fmt: skip
FORBIDDEN_CALLS = {"open", "print", "input", "eval", "exec", "globals", "__import__"}
# `datetime` may turn the `now` it is given into a weekday; it may not read the clock.
FORBIDDEN_METHODS = {"now", "today", "utcnow", "time", "monotonic", "perf_counter", "getenv", "urandom"}


def _imports(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", CORE, ids=[p.name for p in CORE])
def test_core_module_imports_nothing_impure(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    assert not _imports(tree) & FORBIDDEN_MODULES


@pytest.mark.parametrize("path", CORE, ids=[p.name for p in CORE])
def test_core_module_calls_nothing_impure(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert not calls & FORBIDDEN_CALLS
    methods = {n.func.attr for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)}
    assert not methods & FORBIDDEN_METHODS
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Global | ast.Nonlocal)]


def test_the_checker_catches_an_impure_module() -> None:
    tree = ast.parse("import time\nfrom os import environ\nimport datetime\ndatetime.datetime.now()\n")
    assert _imports(tree) & FORBIDDEN_MODULES == {"time", "os"}
    methods = {n.func.attr for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)}
    assert methods & FORBIDDEN_METHODS == {"now"}


def test_the_core_is_found() -> None:
    assert {p.name for p in CORE} >= {"__init__.py", "access.py", "content.py", "tokens.py", "visibility.py"}
