"""Who holds what, counted in a shared file: catches a writer that overlaps and a slot too many.

Each process maps the same file and updates it under ``flock`` on its own descriptor,
so the counts are exact across processes. A holder enters the gauge after its grant
and leaves it before its release: with a correct lock service no overlap can be seen.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
from pathlib import Path

_FIELDS = ("readers", "writers", "violations", "max_readers", "max_writers", "enters")
_LAYOUT = struct.Struct(f"<{len(_FIELDS)}q")


def create(path: Path) -> None:
    """A fresh gauge file: every count zero."""
    path.write_bytes(bytes(_LAYOUT.size))


class Gauge:
    """A process's view of the gauge file ``path``; ``limit`` is the semaphore's (for role "slot")."""

    def __init__(self, path: str, limit: int = 1) -> None:
        self._fd = os.open(path, os.O_RDWR)
        self._map = mmap.mmap(self._fd, _LAYOUT.size)
        self._limit = limit

    def enter(self, role: str) -> None:
        """Count one more holder in ``role`` ("reader", "writer" or "slot"); note any overlap it makes."""
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            readers, writers, violations, max_readers, max_writers, enters = _LAYOUT.unpack_from(self._map)
            if role == "writer":
                writers += 1
                violations += readers > 0 or writers > 1
            else:
                readers += 1
                violations += writers > 0 if role == "reader" else readers > self._limit
            _LAYOUT.pack_into(self._map, 0, readers, writers, violations, max(max_readers, readers),
                              max(max_writers, writers), enters + 1)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def leave(self, role: str) -> None:
        """Count one holder in ``role`` fewer (before its release)."""
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            values = list(_LAYOUT.unpack_from(self._map))
            values[1 if role == "writer" else 0] -= 1
            _LAYOUT.pack_into(self._map, 0, *values)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)


def read(path: Path) -> dict[str, int]:
    """The gauge's counts (read by the orchestrator once every holder is done)."""
    return dict(zip(_FIELDS, _LAYOUT.unpack(path.read_bytes()[:_LAYOUT.size])))
