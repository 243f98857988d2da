"""The package's shape (DESIGN.md "Module map"), read from the source with `ast`: listener/store/
is the only owner of SQL, no import cycle, and no import from a lower layer to a higher one.

Imports under `if TYPE_CHECKING:` are left out (they never run); imports inside functions count.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import listener

PACKAGE = Path(listener.__file__).parent

# Where SQL may still run outside listener/store/, and why. Each is a module name or a package
# prefix ("listener.web" also covers a listener/web/ package).
# None left: the dashboard's queries moved into listener/store/dashboard.py. Keep it empty.
SQL_EXCEPTIONS: dict[str, str] = {}

# Import cycles that remain, each owned by another change in flight: none now. A new cycle fails
# the test.
KNOWN_CYCLES: list[set[str]] = []

SQL_CALLS = {"execute", "executemany", "executescript"}
SQL_MODULES = {"sqlite3", "sqlite_utils"}


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    tree: ast.Module

    @property
    def is_package(self) -> bool:
        return self.path.name == "__init__.py"


def _modules() -> dict[str, Module]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        name = ".".join(parts)
        out[name] = Module(name, path, ast.parse(path.read_text(encoding="utf-8")))
    return out


MODULES = _modules()


def _imports(module: Module) -> Iterator[tuple[str, int]]:
    """(imported module name, line) for each import, relative ones resolved."""
    # Type-only imports (`if TYPE_CHECKING:`) count too: a layer is a layer for its types.
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.name.split(".")
                if not module.is_package:
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                yield (sub if sub in MODULES else target), node.lineno


def _graph() -> dict[str, set[str]]:
    return {
        m.name: {t for t, _ in _imports(m) if t in MODULES and t != m.name}
        for m in MODULES.values()
    }


def _within(name: str, prefixes: set[str] | dict[str, str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_only_the_store_executes_sql_or_imports_a_database_driver() -> None:
    offences = []
    for m in MODULES.values():
        if _within(m.name, {"listener.store"}) or _within(m.name, SQL_EXCEPTIONS):
            continue
        for node in ast.walk(m.tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in SQL_CALLS
            ):
                offences.append(f"{m.name}:{node.lineno} calls .{node.func.attr}()")
            elif isinstance(node, ast.Attribute) and node.attr == "conn":
                offences.append(f"{m.name}:{node.lineno} reaches for a connection (.conn)")
        for target, line in _imports(m):
            if target.split(".")[0] in SQL_MODULES:
                offences.append(f"{m.name}:{line} imports {target}")
    assert offences == [], "SQL outside listener/store/ (add a Store method):\n" + "\n".join(
        offences
    )


def test_no_import_cycle_among_listener_modules_but_the_known_ones() -> None:
    new = [sorted(c) for c in _cycles(_graph()) if not any(c <= k for k in KNOWN_CYCLES)]
    assert new == [], f"import cycles: {new}"


# DESIGN.md's module map, the rows that can be checked today: what a module may not import.
# (alerts still imports config's option models and sentiment's wording helpers: the config
# change hands it frozen dataclasses instead; neither is a higher layer than alerts.)
LOWER_LAYERS = {
    "listener.models": "stdlib only (and units)",
    "listener.units": "stdlib only (and models)",
}
STORE_MAY_IMPORT = {"listener.store", "listener.models", "listener.units", "listener.secrets"}
STORE_MAY_IMPORT_NOW = {"listener.views"}  # the view declarations, until they move in
ABOVE_ALERTS = {
    "listener.pipeline",
    "listener.cli",
    "listener.daemon",
    "listener.runtime",
    "listener.web",
    "listener.datasette_plugin",
    "listener.demo",
}


def _listener_imports(prefix: str) -> list[tuple[str, str, int]]:
    return [
        (m.name, target, line)
        for m in MODULES.values()
        if _within(m.name, {prefix})
        for target, line in _imports(m)
        if _within(target, {"listener"})
    ]


def test_models_and_units_import_nothing_from_listener_but_each_other() -> None:
    wrong = [
        f"{name}:{line} imports {target}"
        for low in LOWER_LAYERS
        for name, target, line in _listener_imports(low)
        if not _within(target, set(LOWER_LAYERS))
    ]
    assert wrong == []


def test_the_store_imports_only_models_units_and_secrets() -> None:
    wrong = [
        f"{name}:{line} imports {target}"
        for name, target, line in _listener_imports("listener.store")
        if not _within(target, STORE_MAY_IMPORT | STORE_MAY_IMPORT_NOW)
    ]
    # Above all: never sources, alerts or the pipeline.
    assert wrong == []


def test_alerts_never_import_the_pipeline_or_the_command_line() -> None:
    wrong = [
        f"{name}:{line} imports {target}"
        for name, target, line in _listener_imports("listener.alerts")
        if _within(target, ABOVE_ALERTS)
    ]
    assert wrong == []
