"""The pure modules stay pure: no sockets, threads, clocks or OS calls."""

from __future__ import annotations

import ast
import pathlib

import pytest

import pylocker

PURE = ["table.py", "holds.py", "watches.py", "protocol.py", "items.py", "mailbox.py", "server_core.py",
        "server_claims.py", "server_events.py", "client_core.py"]
FORBIDDEN = {"zmq", "socket", "threading", "time", "os", "asyncio", "pickle"}


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_nothing_impure(module: str) -> None:
    source = pathlib.Path(pylocker.__file__).with_name(module).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & FORBIDDEN


def test_only_the_transport_imports_zmq() -> None:
    root = pathlib.Path(pylocker.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        if "transport" in path.parts:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            if any(name.split(".")[0] == "zmq" for name in names):
                offenders.append(str(path.relative_to(root)))
    assert offenders == []


def test_seed_module_paths_still_import() -> None:
    from pylocker.Locker import Locker
    from pylocker.ServerLocker import FACTORY, LockersFactory, ServerLocker, SingleLocker

    assert pylocker.ServerLocker is ServerLocker and pylocker.Locker is Locker
    assert pylocker.SingleLocker is SingleLocker and pylocker.FACTORY is FACTORY
    assert pylocker.LockersFactory is LockersFactory


MAX_MODULE_LINES = 500


def _modules() -> dict[str, pathlib.Path]:
    root = pathlib.Path(pylocker.__file__).parent
    found = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _runtime_imports(name: str, path: pathlib.Path, modules: dict[str, pathlib.Path]) -> set[str]:
    """Modules of the package that ``name`` imports when it is loaded (not under TYPE_CHECKING)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    imported = set()
    for node in ast.parse(path.read_text()).body:  # module level: TYPE_CHECKING blocks are If nodes
        if isinstance(node, ast.ImportFrom) and node.level:
            base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            for alias in node.names:
                target = f"{base}.{alias.name}"
                imported.add(target if target in modules else base)
    return {m for m in imported if m in modules and m != name}


def test_no_module_is_over_the_size_limit() -> None:
    sizes = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
    assert {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_no_import_circle_between_modules() -> None:
    modules = _modules()
    graph = {name: _runtime_imports(name, path, modules) for name, path in modules.items()}
    packages = {name for name, path in modules.items() if path.name == "__init__.py"}

    def circle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        while stack:
            node, trail = stack.pop()
            for following in graph[node] - packages:  # a package's __init__ re-exports its children
                if following == start:
                    return trail
                if following not in trail:
                    stack.append((following, [*trail, following]))
        return None

    circles = [trail for trail in map(circle_from, sorted(set(graph) - packages)) if trail]
    assert circles == []
    assert graph["pylocker.lock"] == {"pylocker.errors", "pylocker.holds"}  # the pythonic Lock reaches the node by argument
