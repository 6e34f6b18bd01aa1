"""A locker's watches: the names it follows, the callbacks told of their changes.

The serving locker pushes a watched name's holders each time they change; the
link's I/O thread hands them here, and the callbacks run on the locker's
dispatcher thread (where they may call back into the locker). A new link (after
a failover) is told the whole list again, and every callback hears the name's
state on it, so nobody misses a change made while the serving locker changed.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable

from .dispatch import Dispatcher

if TYPE_CHECKING:
    from .link import Link

HoldersListener = Callable[[list[list[Any]], list[list[Any]]], None]  # holders, waiters


class WatchList:
    """name -> listeners; thread-safe."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher
        self._lock = threading.Lock()
        self._listeners: dict[str, list[HoldersListener]] = {}

    def add(self, name: str, listener: HoldersListener) -> bool:
        """Register ``listener``; True when ``name`` was not watched before (the link must be told)."""
        with self._lock:
            listeners = self._listeners.setdefault(name, [])
            listeners.append(listener)
            return len(listeners) == 1

    def remove(self, name: str, listener: HoldersListener) -> bool:
        """Unregister ``listener``; True when nobody watches ``name`` any more."""
        with self._lock:
            listeners = self._listeners.get(name)
            if listeners is None or listener not in listeners:
                return False
            listeners.remove(listener)
            if listeners:
                return False
            del self._listeners[name]
            return True

    def notify(self, name: str, holders: list[list[Any]], waiters: list[list[Any]]) -> None:
        """A change of ``name`` (on an I/O thread): queue each listener's call on the dispatcher."""
        with self._lock:
            listeners = list(self._listeners.get(name, ()))
        for listener in listeners:
            self._dispatcher.submit(listener, holders, waiters)

    def attach(self, link: Link) -> None:
        """Watch every name on a new link, and tell the listeners what it says now."""
        with self._lock:
            names = list(self._listeners)
        for name in names:
            rows = link.watch(name, True)
            if rows is not None:  # else the serving locker is recovering: it pushes the whole view after
                self.notify(name, *rows)
