"""The pythonic lock: a context manager that raises instead of returning codes."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from .errors import LockLost, LockNotHeld, LockTimeout

if TYPE_CHECKING:
    from .node import LockerNode


class Lock:
    """Names held together for a with-block (or between ``acquire`` and ``release``).

    Not re-entrant: acquiring a name this locker already holds waits like any other
    request. ``acquire`` returns False only when the lock was not granted in time;
    connection and protocol failures raise.
    """

    def __init__(self, node: LockerNode, names: list[str], timeout: float) -> None:
        self._node = node
        self.names = tuple(names)
        self.timeout = timeout
        self.lock_id: str | None = None
        self.token: int | None = None

    @property
    def is_acquired(self) -> bool:
        """True while this lock is held (False once released, lost, or past this locker's own lease clock)."""
        return self.lock_id is not None and self._node.holds(self.lock_id)

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` (default: the lock's) for every name; False if not granted.

        Raises:
            RuntimeError: this lock is already acquired (it is not re-entrant).
            NotConnected, NotStarted: the lock service cannot be reached; nothing is held.
        """
        if self.lock_id is not None:
            raise RuntimeError(f"{self!r} is already acquired")
        wait = 0.0 if not blocking else (self.timeout if timeout is None else timeout)
        try:
            self.lock_id, self.token = self._node.acquire(list(self.names), wait)
        except LockTimeout:
            return False
        return True

    def release(self) -> None:
        """Release the names; raises LockLost if they were taken away, LockNotHeld if never held."""
        lock_id, self.lock_id, self.token = self.lock_id, None, None
        if lock_id is None:
            raise LockNotHeld("")
        if self._node.release(lock_id) == 0:
            reason = self._node.owned.lost_reason(lock_id)
            if reason is not None:
                raise LockLost(lock_id, reason)
            raise LockNotHeld(lock_id)

    def __enter__(self) -> Lock:
        if not self.acquire():
            raise LockTimeout(self.names, self.timeout)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        # A lock taken away during the block is reported, unless the block already failed.
        if self.lock_id is not None:
            if exc_type is None:
                self.release()
            else:
                lock_id, self.lock_id, self.token = self.lock_id, None, None
                self._node.release(lock_id)

    def __repr__(self) -> str:
        return f"<Lock {list(self.names)!r} id={self.lock_id}>"
