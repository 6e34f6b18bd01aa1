"""The pure modules stay pure: no sockets, threads, clocks or OS calls."""

from __future__ import annotations

import ast
import pathlib

import pytest

import pylocker

PURE = ["table.py", "protocol.py", "mailbox.py"]
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
