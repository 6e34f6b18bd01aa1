"""Who watches which names, and how a name's holders are described (pure bookkeeping).

A watcher is told a name's holders and waiters each time its holders change (a
grant, a release, an expiry): elections and groups are built on that. Every
watcher's list is bounded (``MAX_WATCHES``), and changes are collected per call
so that a burst of grants on one name costs one description per watcher.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Callable, Final

from .protocol import MAX_LISTED
from .table import LockTable

MAX_WATCHES: Final = 1024  # names one session may watch at once

Rows = tuple[list[list[Any]], list[list[Any]]]  # a name's holders and waiters, as ``protocol.Holders`` has them
HoldersCallback = Callable[[str, list[list[Any]], list[list[Any]]], None]  # name, holders, waiters


class Watches:
    """name -> its watchers, and the names whose holders changed since the last ``take_changed``."""

    def __init__(self, per_watcher: int = MAX_WATCHES) -> None:
        self._per_watcher = per_watcher
        self._by_name: dict[str, dict[Hashable, None]] = {}
        self._by_watcher: dict[Hashable, dict[str, None]] = {}
        self._changed: dict[str, None] = {}

    def __bool__(self) -> bool:
        return bool(self._by_name)

    def watch(self, watcher: Hashable, name: str) -> bool:
        """Start watching; False (nothing changed) when the watcher has too many names already."""
        names = self._by_watcher.setdefault(watcher, {})
        if name not in names and len(names) >= self._per_watcher:
            if not names:
                del self._by_watcher[watcher]
            return False
        names[name] = None
        self._by_name.setdefault(name, {})[watcher] = None
        return True

    def unwatch(self, watcher: Hashable, name: str) -> None:
        names = self._by_watcher.get(watcher)
        if names is None or name not in names:
            return
        del names[name]
        if not names:
            del self._by_watcher[watcher]
        watchers = self._by_name[name]
        del watchers[watcher]
        if not watchers:
            del self._by_name[name]

    def forget(self, watcher: Hashable) -> None:
        """The watcher is gone: stop every watch of its."""
        for name in list(self._by_watcher.get(watcher, ())):
            self.unwatch(watcher, name)

    def watched(self, watcher: Hashable) -> list[str]:
        return list(self._by_watcher.get(watcher, ()))

    @property
    def has_changes(self) -> bool:
        return bool(self._changed)

    def changed_all(self) -> None:
        """Every watched name is to be pushed (a failover's recovery ended)."""
        self._changed.update(dict.fromkeys(self._by_name))

    def changed(self, names: tuple[str, ...]) -> None:
        """The holders of ``names`` changed (called only while somebody watches something)."""
        by_name = self._by_name
        for name in names:
            if name in by_name:
                self._changed[name] = None

    def take_changed(self) -> list[tuple[str, list[Hashable]]]:
        """Each changed name with its watchers, in the order they changed; forgets them."""
        if not self._changed:
            return []
        changed, self._changed = self._changed, {}
        return [(name, list(self._by_name[name])) for name in changed if name in self._by_name]


def describe(table: LockTable, name: str, who: Callable[[Hashable], str], now: float) -> Rows:
    """``name``'s holders ([unique name, mode, seconds held, token, info]) and waiters ([unique name, mode])."""
    holders = [[who(held.owner), held.claim.mode, max(0.0, now - held.granted_at), held.token, held.claim.info]
               for held in table.holders(name)[:MAX_LISTED]]
    waiters = [[who(request.owner), request.claim.mode] for request in table.waiting(name)[:MAX_LISTED]]
    return holders, waiters
