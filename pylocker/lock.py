"""The pythonic lock: a context manager that raises instead of returning codes."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from .errors import LockLost, LockNotHeld, LockTimeout
from .holds import PLAIN, Claim

if TYPE_CHECKING:
    from .node import LockerNode


class HeldNames:
    """What a lock is, threaded or asyncio: the names asked for and held, its id and token once granted."""

    def __init__(self, node: LockerNode, names: list[str], timeout: float | None, claim: Claim = PLAIN) -> None:
        """``timeout`` None: wait as long as it takes. ``claim``: how (shared, one of them...)."""
        self._node = node
        self.candidates = tuple(names)  # what was asked for
        self.names = self.candidates  # what is held: for an any-of lock, the one name granted
        self.timeout = timeout
        self.claim = claim
        self.lock_id: str | None = None
        self.token: int | None = None
        self.display: list[str] | None = None  # how errors name it, when not by its names

    @property
    def name(self) -> str:
        """The (first) name held: for ``lock_any``, the one that was granted."""
        return self.names[0]

    @property
    def is_acquired(self) -> bool:
        """True while this lock is held (False once released, lost, or past this locker's own lease clock)."""
        return self.lock_id is not None and self._node.holds(self.lock_id)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.display or list(self.names)!r} id={self.lock_id}>"


class Lock(HeldNames):
    """Names held together for a with-block (or between ``acquire`` and ``release``).

    Not re-entrant: acquiring a name this locker already holds waits like any other
    request. ``acquire`` returns False only when the lock was not granted in time;
    connection and protocol failures raise.
    """

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
            self.lock_id, self.token = self._node.acquire(list(self.candidates), wait, self.claim)
        except LockTimeout:
            return False
        if self.claim.any_of:
            owned = self._node.owned.get(self.lock_id)
            if owned is not None:
                self.names = owned.names
        return True

    def release(self) -> None:
        """Release the names; raises LockLost if they were taken away, LockNotHeld if never held."""
        lock_id, self.lock_id, self.token = self.lock_id, None, None
        if lock_id is None:
            raise LockNotHeld(f"{self.display or list(self.names)} (released already, or never acquired)")
        if self._node.release(lock_id) == 0:
            reason = self._node.owned.lost_reason(lock_id)
            if reason is not None:
                raise LockLost(lock_id, reason)
            raise LockNotHeld(lock_id)

    def __enter__(self) -> Lock:
        if not self.acquire():
            raise LockTimeout(self.display or self.candidates, self.timeout)
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
