"""The fenced store: a register shared by processes that refuses operations with a stale token.

The store is its append-only log (one JSON line per attempt, each written with a
single ``write`` to an ``O_APPEND`` file, so a writer killed with -9 leaves whole
lines). The state (value, highest token) is the fold of the log, recomputed under
an ``flock`` for every operation. Reads are fenced too: a read with token T raises
the highest token to T, so a holder whose lock was taken away (and granted to a
higher token that has read) can no longer write: fencing a read-modify-write needs
both ends fenced, otherwise the store itself would lose increments.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from typing import Any


@dataclass
class State:
    value: int = 0
    highest: int = 0
    accepted_writes: int = 0


def read_log(path: str) -> list[dict[str, Any]]:
    """Every whole entry of the log at ``path`` (a torn last line is skipped)."""
    if not os.path.exists(path):
        return []
    entries = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.endswith("\n"):
                entries.append(json.loads(line))
    return entries


def fold(entries: list[dict[str, Any]]) -> State:
    """The register's state after ``entries``."""
    state = State()
    for entry in entries:
        if entry["accepted"]:
            state.highest = max(state.highest, entry["token"])
            if entry["op"] == "write":
                state.value = entry["value"]
                state.accepted_writes += 1
    return state


class FencedRegister:
    """A fenced integer register kept in the log file ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def read(self, token: int, client: str) -> tuple[bool, int]:
        """(accepted, value): refused if ``token`` is below the highest seen; else it becomes the highest."""
        with self._locked() as state:
            accepted = token >= state.highest
            self._append({"op": "read", "token": token, "client": client, "value": state.value,
                          "accepted": accepted})
            return accepted, state.value

    def write(self, token: int, client: str, read_value: int, new_value: int) -> bool:
        """Store ``new_value`` if ``token`` is at least the highest seen; log the attempt either way."""
        with self._locked() as state:
            accepted = token >= state.highest
            self._append({"op": "write", "token": token, "client": client, "read": read_value,
                          "before": state.value, "value": new_value, "accepted": accepted})
            return accepted

    def state(self) -> State:
        with self._locked() as state:
            return state

    def _append(self, entry: dict[str, Any]) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (json.dumps(entry) + "\n").encode())
        finally:
            os.close(fd)

    def _locked(self) -> _Guard:
        return _Guard(self.path)


class _Guard:
    """Hold the register's flock; yields the state folded from the log."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._handle: Any = None

    def __enter__(self) -> State:
        self._handle = open(self._path + ".flock", "a")
        fcntl.flock(self._handle, fcntl.LOCK_EX)
        return fold(read_log(self._path))

    def __exit__(self, *exc: object) -> None:
        self._handle.close()  # closing drops the flock
