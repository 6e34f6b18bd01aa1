"""An election held in memory: for the simulation and for tests (one process, no files).

Lockers that share one ``MemoryElectionStore`` share one election. Terms end when
resigned, or when the store is told that their holder died (``kill``), which is
how the simulation models a crashed serving process.
"""

from __future__ import annotations

import threading
from typing import Callable

from .base import Fingerprint


class MemoryTerm:
    """A won in-memory election."""

    def __init__(self, store: MemoryElectionStore, epoch: int) -> None:
        self._store = store
        self.epoch = epoch
        self.held = True

    def resign(self) -> None:
        self._store._end(self)

    def valid(self) -> bool:
        return self.held


class MemoryElectionStore:
    """One election: the current term, its epoch counter and the published fingerprint."""

    def __init__(self, name: str = "memory") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._term: MemoryTerm | None = None
        self._epoch = 0
        self._fingerprint: Fingerprint | None = None
        self._followers: list[Callable[[Fingerprint | None], None]] = []

    @property
    def description(self) -> str:
        return f"memory://{self.name}"

    def campaign(self) -> MemoryTerm | None:
        with self._lock:
            if self._term is not None:
                return None
            self._epoch += 1
            self._term = MemoryTerm(self, self._epoch)
            return self._term

    def read(self) -> Fingerprint | None:
        return self._fingerprint

    def publish(self, fingerprint: Fingerprint) -> None:
        self._fingerprint = fingerprint
        self._tell(fingerprint)

    def _tell(self, fingerprint: Fingerprint | None) -> None:
        for on_change in list(self._followers):  # on the caller's thread: followers never block
            on_change(fingerprint)

    def follow(self, on_change: Callable[[Fingerprint | None], None]) -> Callable[[], None]:
        with self._lock:
            self._followers.append(on_change)

        def unfollow() -> None:
            with self._lock:
                if on_change in self._followers:
                    self._followers.remove(on_change)

        return unfollow

    def close(self) -> None:
        """Nothing is held open between calls."""

    def looks_alive(self, fingerprint: Fingerprint) -> bool:
        term = self._term
        return term is not None and term.epoch == fingerprint.epoch

    def kill(self) -> None:
        """The holder of the current term died: the term ends, the fingerprint stays."""
        term = self._term
        if term is not None:
            self._end(term)

    @property
    def epoch(self) -> int:
        return self._epoch

    def _end(self, term: MemoryTerm) -> None:
        with self._lock:
            term.held = False
            vacant = self._term is term
            if vacant:
                self._term = None
        if vacant:
            self._tell(None)
