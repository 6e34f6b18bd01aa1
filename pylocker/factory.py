"""SingleLocker and LockersFactory/FACTORY: the seed's ways to share one locker in a process."""

from __future__ import annotations

import os
import threading
from typing import Any

from .lockers import ServerLocker
from .validation import check_bool


class SingleLocker(ServerLocker):
    """Singleton ServerLocker: one per process (a forked child gets its own)."""

    _instance: SingleLocker | None = None
    _instance_pid = 0
    _guard = threading.Lock()

    def __new__(cls, *args: Any, **kwargs: Any) -> SingleLocker:
        with cls._guard:
            if cls._instance is None or cls._instance_pid != os.getpid():
                instance = super().__new__(cls)
                instance._single_ready = False
                cls._instance, cls._instance_pid = instance, os.getpid()
            return cls._instance

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if getattr(self, "_single_ready", False):
            return
        self._single_ready = True
        super().__init__(*args, **kwargs)


class LockersFactory:
    """Lockers by key: the same key always gives back the same locker (one factory per process)."""

    _instance: LockersFactory | None = None
    _guard = threading.Lock()
    _lockers: dict[str, ServerLocker]  # set in __new__, once per process
    _lock: threading.RLock

    def __new__(cls, *args: Any, **kwargs: Any) -> LockersFactory:
        with cls._guard:
            if cls._instance is None:
                instance = super().__new__(cls)
                instance._lockers = {}
                instance._lock = threading.RLock()
                cls._instance = instance
            return cls._instance

    def __call__(self, key: str, *args: Any, **kwargs: Any) -> ServerLocker:
        return self.get(key, *args, **kwargs)

    def get(self, key: str, restart: bool = False, regenerate: bool = False, *args: Any,
            **kwargs: Any) -> ServerLocker:
        """The locker under ``key``, created from ``*args, **kwargs`` if there is none.

        restart: start it again if it is not running; regenerate: replace it with a
        new instance if it is not running.
        """
        if not isinstance(key, str):
            raise TypeError(f"key must be a string, not {type(key).__name__}")
        check_bool(restart, "restart")
        check_bool(regenerate, "regenerate")
        with self._lock:
            locker = self._lockers.get(key)
            running = locker is not None and (locker.isServer or locker.isClient)
            if locker is None or (regenerate and not running):
                locker = self._lockers[key] = ServerLocker(*args, **kwargs)
            elif restart and not running:
                locker.start()
            return locker

    def pop(self, key: str, restart: bool = False, regenerate: bool = False, *args: Any,
            **kwargs: Any) -> ServerLocker:
        """Like ``get``, and the locker leaves the factory."""
        with self._lock:
            locker = self.get(key, restart, regenerate, *args, **kwargs)
            del self._lockers[key]
            return locker

    def __contains__(self, key: object) -> bool:
        return key in self._lockers

    def keys(self) -> list[str]:
        return list(self._lockers)


FACTORY = LockersFactory()
