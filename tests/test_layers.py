"""The package floors hold: the kernel and the IO packages never import the CLI,
the operator tools or the simulator, and no modules import each other in a circle.

Read from the source (every import statement, also those inside functions
and under TYPE_CHECKING), so a lazy import cannot hide a dependency.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("mediation", "gateway", "dataflows", "sinks", "storage", "replay")
UPPER_FLOORS = ("mediation.cli", "mediation.ops", "mediation.sim")
LOWER_FLOORS = ("mediation.rules", "gateway", "dataflows", "sinks", "storage", "replay")
KERNEL = (
    "mediation.rules",
    "mediation.wire",
    "mediation.settings",
    "mediation.clock",
    "mediation.topics",
    "mediation.tables",
    "mediation.membership",
    "mediation.text_table",
    "mediation.errors",
    "mediation.extras",
    "mediation.native",
    "mediation.label_cap",
    "mediation.resources",
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports() -> dict[str, set[str]]:
    """Each project module and the project modules it imports."""
    modules = {
        _module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
            for imported in targets:
                target = imported
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    found.add(target)
        graph[name] = found
    return graph


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_lower_floors_never_import_the_cli_the_operator_tools_or_the_simulator() -> None:
    graph = _imports()
    wrong = sorted(
        f"{name} imports {target}"
        for name, targets in graph.items()
        if _within(name, LOWER_FLOORS) or _within(name, KERNEL)
        for target in targets
        if _within(target, UPPER_FLOORS)
    )
    assert wrong == []


def test_the_kernel_imports_only_the_kernel() -> None:
    graph = _imports()
    wrong = sorted(
        f"{name} imports {target}"
        for name, targets in graph.items()
        if _within(name, KERNEL)
        for target in targets
        if not _within(target, KERNEL) and target != "mediation"
    )
    assert wrong == []


def test_no_modules_import_each_other_in_a_circle() -> None:
    graph = _imports()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            # A package's __init__ re-exporting its own modules is not a circle.
            if node.startswith(target + "."):
                continue
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert cycles == []


# Statements, not words: a docstring may name them; a string the code runs may not.
_SQL = re.compile(
    r"\b(SELECT|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|LOCK\s+TABLE|CREATE\s+\w+)\b"
)
# Where SQL may live: storage/ (every read and maintenance statement) and
# sinks/ (the worker's write path, its statements built from mediation/tables.py).
SQL_PACKAGES = ("storage", "sinks")


def _strings_but_docstrings(tree: ast.AST) -> Iterator[ast.Constant]:
    documented = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, documented)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
        ):
            yield node


def test_sql_lives_in_storage_and_the_sink_only() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for package in PACKAGES
        if package not in SQL_PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        for node in _strings_but_docstrings(ast.parse(path.read_text()))
        if _SQL.search(str(node.value))
    ]
    assert found == [], "queries belong in storage/"
