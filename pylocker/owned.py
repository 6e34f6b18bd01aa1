"""The locks one locker holds, and why the lost ones were lost (thread-safe bookkeeping)."""

from __future__ import annotations

import threading
from typing import Final, NamedTuple

from .holds import PLAIN, Claim

LOST_REMEMBERED: Final = 10_000  # lost lock ids kept to explain later operations on them


class OwnedLock(NamedTuple):
    lock_id: str
    names: tuple[str, ...]
    token: int
    expires_at: float | None = None  # this locker's own maxLockTime clock (monotonic), if any
    claim: Claim = PLAIN  # how it was asked for (re-claimed the same way after a failover)


class OwnedLocks:
    """Lock id -> names and fencing token, for every lock this locker believes it holds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owned: dict[str, OwnedLock] = {}
        self._lost: dict[str, str] = {}  # recently lost lock id -> reason, oldest first
        self._global: dict[tuple[frozenset[str], Claim], str] = {}  # lockGlobal: (names, claim) -> its lock id

    def add(self, lock_id: str, names: list[str] | tuple[str, ...], token: int,
            expires_at: float | None = None, claim: Claim = PLAIN) -> None:
        with self._lock:
            self._owned[lock_id] = OwnedLock(lock_id, tuple(names), token, expires_at, claim)

    def get(self, lock_id: str) -> OwnedLock | None:
        with self._lock:
            return self._owned.get(lock_id)

    def forget(self, lock_id: str) -> bool:
        """Drop ``lock_id`` (released); False if it was not held."""
        with self._lock:
            return self._drop(lock_id) is not None

    def lose(self, lock_id: str, reason: str) -> bool:
        """Drop ``lock_id`` and remember why; False if it was not held."""
        with self._lock:
            if self._drop(lock_id) is None:
                return False
            self._remember(lock_id, reason)
            return True

    def lose_all(self, reason: str) -> list[str]:
        """Drop every lock (the lease lapsed, say); returns their ids."""
        with self._lock:
            lost = list(self._owned)
            for lock_id in lost:
                self._drop(lock_id)
                self._remember(lock_id, reason)
            return lost

    def held(self) -> list[OwnedLock]:
        with self._lock:
            return list(self._owned.values())

    def token(self, lock_id: str) -> int:
        """The fencing token of a held lock; KeyError if it is not held."""
        with self._lock:
            return self._owned[lock_id].token

    def lost_reason(self, lock_id: str) -> str | None:
        with self._lock:
            return self._lost.get(lock_id)

    def snapshot(self) -> dict[str, list[str]]:
        with self._lock:
            return {lock_id: list(lock.names) for lock_id, lock in self._owned.items()}

    def shared_lock(self, names: list[str], claim: Claim = PLAIN) -> str | None:
        """The held lock id registered for exactly these names, asked for the same way, with ``lockGlobal``."""
        with self._lock:
            lock_id = self._global.get((frozenset(names), claim))
            return lock_id if lock_id in self._owned else None

    def share(self, names: list[str], lock_id: str, claim: Claim = PLAIN) -> None:
        with self._lock:
            self._global[(frozenset(names), claim)] = lock_id

    def clear(self) -> None:
        with self._lock:
            self._owned.clear()
            self._global.clear()

    def __contains__(self, lock_id: object) -> bool:
        return lock_id in self._owned

    def __len__(self) -> int:
        return len(self._owned)

    def _drop(self, lock_id: str) -> OwnedLock | None:
        lock = self._owned.pop(lock_id, None)
        if lock is not None and self._global:  # lockGlobal is rare: no set built without it
            key = (frozenset(lock.names), lock.claim)
            if self._global.get(key) == lock_id:
                del self._global[key]
        return lock

    def _remember(self, lock_id: str, reason: str) -> None:
        self._lost[lock_id] = reason
        while len(self._lost) > LOST_REMEMBERED:
            del self._lost[next(iter(self._lost))]
