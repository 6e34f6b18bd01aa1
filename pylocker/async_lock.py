"""The asyncio lock: ``async with locker.lock(names) as lock``, and how its holder hears of a loss.

Like the threaded ``Lock``, it raises LockTimeout on entry and LockLost on exit; its
waits are ``async_link``'s, so a waiting acquire costs no thread. A lock taken away
while held (maxLockTime, a lapsed lease, a failover that could not re-claim it) sets
``lock.lost`` (an ``asyncio.Event``) and ``lock.lost_reason`` on the holder's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from types import TracebackType
from typing import TYPE_CHECKING

from . import async_link
from .errors import LockLost, LockNotHeld, LockTimeout
from .holds import PLAIN, Claim
from .lock import HeldNames

if TYPE_CHECKING:
    from .node import LockerNode


class LostLocks:
    """The held asyncio locks of one locker, by lock id, told when the node reports one lost."""

    def __init__(self, node: LockerNode) -> None:
        self._locks: dict[str, AsyncLock] = {}
        self._mutex = threading.Lock()
        node.on_lock_lost(self.lost)

    def track(self, lock: AsyncLock, node: LockerNode) -> None:
        lock_id = lock.lock_id
        if lock_id is None:
            return
        with self._mutex:
            self._locks[lock_id] = lock
        if lock_id not in node.owned:  # lost before it was tracked: its report may have gone by
            reason = node.owned.lost_reason(lock_id)
            if reason is not None:
                self.lost(lock_id, reason)

    def untrack(self, lock_id: str) -> None:
        with self._mutex:
            self._locks.pop(lock_id, None)

    def lost(self, lock_id: str, reason: str) -> None:
        """On the locker's callback thread (or the loop's): tell the holder's loop."""
        with self._mutex:
            lock = self._locks.pop(lock_id, None)
        loop = lock.loop if lock is not None else None
        if lock is not None and loop is not None:
            with contextlib.suppress(RuntimeError):  # its loop is closed: nobody is told any more
                loop.call_soon_threadsafe(lock.mark_lost, lock_id, reason)


class AsyncLock(HeldNames):
    """Names held together for an ``async with`` block (or between ``acquire`` and ``release``).

    Not re-entrant. ``acquire`` returns False only when the lock was not granted in time;
    connection and protocol failures raise. Cancelling a waiting ``acquire`` withdraws the
    request at the serving locker (a grant that arrives meanwhile is released).
    """

    def __init__(self, node: LockerNode, tracker: LostLocks, names: list[str], timeout: float | None,
                 claim: Claim = PLAIN) -> None:
        super().__init__(node, names, timeout, claim)
        self._tracker = tracker
        self.lost_reason: str | None = None  # why it was taken away, once it was
        self.loop: asyncio.AbstractEventLoop | None = None  # the holder's (set by acquire)
        self._lost: asyncio.Event | None = None

    @property
    def lost(self) -> asyncio.Event:
        """Set when the lock is taken away while held (``lost_reason`` says why); cleared by ``acquire``."""
        if self._lost is None:
            self._lost = asyncio.Event()
        return self._lost

    def mark_lost(self, lock_id: str, reason: str) -> None:
        if lock_id == self.lock_id:
            self.lost_reason = reason
            self.lost.set()

    async def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` (default: the lock's) for every name; False if not granted.

        Raises:
            RuntimeError: this lock is already acquired (it is not re-entrant).
            NotConnected, NotStarted: the lock service cannot be reached; nothing is held.
        """
        if self.lock_id is not None:
            raise RuntimeError(f"{self!r} is already acquired")
        wait = 0.0 if not blocking else (self.timeout if timeout is None else timeout)
        self.loop = asyncio.get_running_loop()
        try:
            lock_id, token, granted = await async_link.acquire(self._node, list(self.candidates), wait, self.claim)
        except LockTimeout:
            return False
        self.lock_id, self.token, self.lost_reason = lock_id, token, None
        self.lost.clear()
        if self.claim.any_of:
            self.names = granted
        self._tracker.track(self, self._node)
        return True

    async def release(self) -> None:
        """Release the names; raises LockLost if they were taken away, LockNotHeld if never held."""
        lock_id = self.let_go()
        if lock_id is None:
            raise LockNotHeld(f"{self.display or list(self.names)} (released already, or never acquired)")
        if await async_link.release(self._node, lock_id) == 0:
            reason = self._node.owned.lost_reason(lock_id)
            if reason is not None:
                raise LockLost(lock_id, reason)
            raise LockNotHeld(lock_id)

    def let_go(self) -> str | None:
        """Stop holding, without telling the serving locker; the lock id it held (None: none)."""
        lock_id, self.lock_id, self.token = self.lock_id, None, None
        if lock_id is not None:
            self._tracker.untrack(lock_id)
        return lock_id

    async def __aenter__(self) -> AsyncLock:
        if not await self.acquire():
            raise LockTimeout(self.display or self.candidates, self.timeout)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        # A lock taken away during the block is reported, unless the block already failed.
        if self.lock_id is not None:
            if exc_type is None:
                await self.release()
            else:
                lock_id = self.let_go()
                if lock_id is not None:
                    await async_link.release(self._node, lock_id)
