"""Semaphores, elections and groups for asyncio: the claims of ``primitives.py``, awaited.

They use the same internal names as the threaded ones, so both kinds of locker meet in
one semaphore, election or group. Reading the serving locker's view (``leader``,
``members``, ``info()``) is a round trip: awaitable. ``on_change`` callbacks run on the
event loop of the task that registered the first one, in order; a callback that returns
an awaitable is run as a task.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Generator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable

from . import async_link
from .async_lock import AsyncLock, LostLocks
from .errors import LockTimeout, NotStarted
from .holds import ELECTION_PREFIX, GROUP_PREFIX, SEMAPHORE_PREFIX, SHARED, SLOT, Claim
from .primitives import (
    LatestView,
    LockInfo,
    internal_name,
    leader_of,
    lock_info,
    members_of,
    pack_info,
)
from .protocol import MAX_LIMIT

if TYPE_CHECKING:
    from .node import LockerNode

log = logging.getLogger(__name__)


class AsyncSlot(AsyncLock):
    """One semaphore slot: ``async with semaphore.acquire(timeout=...) as slot:`` or ``slot = await ...``."""

    async def _held(self) -> AsyncSlot:
        if self.lock_id is None and not await self.acquire():
            raise LockTimeout(self.display or self.candidates, self.timeout)
        return self

    def __await__(self) -> Generator[Any, None, AsyncSlot]:
        return self._held().__await__()

    async def __aenter__(self) -> AsyncSlot:
        return await self._held()


class AsyncSemaphore:
    """At most ``limit`` holders of ``name`` at once, served in FIFO order."""

    def __init__(self, node: LockerNode, tracker: LostLocks, name: str, limit: int, timeout: float) -> None:
        if type(limit) is not int or not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"a semaphore limit must be an int between 1 and {MAX_LIMIT}, not {limit!r}")
        self._node = node
        self._tracker = tracker
        self.name = name
        self.limit = limit
        self._internal = internal_name(SEMAPHORE_PREFIX, name, "a semaphore")
        self._timeout = timeout
        self._held: dict[asyncio.Task[Any] | None, list[AsyncSlot]] = {}  # ``async with semaphore:``, per task

    def acquire(self, timeout: float | None = None) -> AsyncSlot:
        """A slot, taken by ``await`` or ``async with`` (waiting ``timeout`` s, default: the locker's).

        Raises LockTimeout when none was free in time, LimitMismatch when ``name`` is in
        use with another limit.
        """
        slot = AsyncSlot(self._node, self._tracker, [self._internal], self._timeout if timeout is None else timeout,
                         Claim(SLOT, self.limit))
        slot.display = [self.name]
        return slot

    async def info(self) -> LockInfo:
        """The slots' holders and waiters."""
        return lock_info(self._internal, *await async_link.inspect(self._node, self._internal),
                         prefix=SEMAPHORE_PREFIX)

    async def __aenter__(self) -> AsyncSlot:
        """``async with semaphore:`` holds a slot (default timeout) for the block; each task its own."""
        slot = await self.acquire()
        self._held.setdefault(asyncio.current_task(), []).append(slot)
        return slot

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        task = asyncio.current_task()
        slots = self._held[task]
        slot = slots.pop()
        if not slots:
            del self._held[task]
        await slot.__aexit__(exc_type, exc, tb)

    def __repr__(self) -> str:
        return f"<AsyncSemaphore {self.name!r} limit={self.limit}>"


class _Watcher:
    """Follows one internal name's holders; calls its callbacks on the loop with what ``view`` makes of them."""

    def __init__(self, node: LockerNode, internal: str, view: Callable[[list[list[Any]]], Any]) -> None:
        self._node = node
        self._internal = internal
        self._latest = LatestView(view)
        self._callbacks: list[Callable[[Any], Any]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Future[Any]] = set()

    async def add(self, callback: Callable[[Any], Any]) -> None:
        if not callable(callback):
            raise TypeError("callback must be callable")
        self._callbacks.append(callback)
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            try:
                rows = await async_link.watch(self._node, self._internal, self._changed)
            except BaseException:
                self._loop = None
                self._callbacks.remove(callback)
                raise
            self._latest.seed(rows)

    async def close(self) -> None:
        watching, self._loop = self._loop is not None, None
        self._callbacks.clear()
        self._latest.forget()
        if watching:
            await async_link.unwatch(self._node, self._internal, self._changed)

    def _changed(self, holders: list[list[Any]], waiters: list[list[Any]]) -> None:
        # On the locker's callback thread, in the order of the changes: on to the loop, in that order.
        loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._tell, holders)
            except RuntimeError:  # the loop is closed
                self._loop = None

    def _tell(self, holders: list[list[Any]]) -> None:
        if self._loop is None:
            return
        changed, view = self._latest.changed(holders)
        if not changed:
            return
        for callback in list(self._callbacks):
            try:
                result = callback(view)
            except Exception:  # a failing user callback is logged; the others are still told
                log.exception("callback %r failed", callback)
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)


class _Held:
    """What an election and a group share: one claim on an internal name, and a watch on it."""

    def __init__(self, node: LockerNode, tracker: LostLocks, prefix: str, name: str,
                 view: Callable[[list[list[Any]]], Any], what: str) -> None:
        self._node = node
        self._tracker = tracker
        self._internal = internal_name(prefix, name, what)
        self._prefix = prefix
        self._lock: AsyncLock | None = None
        self._watcher = _Watcher(node, self._internal, view)

    async def _take(self, lock: AsyncLock, shown: str, timeout: float | None) -> None:
        lock.display = [shown]
        if not await lock.acquire():
            raise LockTimeout([shown], timeout)
        await self._let_go()
        self._lock = lock

    async def _let_go(self) -> None:
        lock, self._lock = self._lock, None
        lock_id = lock.let_go() if lock is not None else None
        if lock_id is not None:
            with contextlib.suppress(NotStarted):  # a stopped locker let go of everything already
                await async_link.release(self._node, lock_id)

    def _held(self) -> AsyncLock | None:
        lock = self._lock
        return lock if lock is not None and lock.is_acquired else None

    async def _holders(self) -> list[list[Any]]:
        return (await async_link.inspect(self._node, self._internal))[0]

    @property
    def lost(self) -> asyncio.Event | None:
        """Set when the leadership or membership held now is taken away (None when none is held)."""
        return self._lock.lost if self._lock is not None else None

    async def info(self) -> LockInfo:
        """Who holds it (the leader, or the members) and who waits (the other candidates), in order."""
        return lock_info(self._internal, *await async_link.inspect(self._node, self._internal),
                         prefix=self._prefix)

    async def close(self) -> None:
        """Let go (resign, or leave) and stop the callbacks."""
        await self._let_go()
        await self._watcher.close()


class AsyncElection(_Held):
    """One leader among the lockers that campaign for ``group``; leadership ends with the leader's lease."""

    def __init__(self, node: LockerNode, tracker: LostLocks, group: str) -> None:
        super().__init__(node, tracker, ELECTION_PREFIX, group, leader_of, "an election")
        self.group = group

    async def campaign(self, timeout: float | None = None) -> int:
        """Wait (up to ``timeout`` s; None: as long as it takes) to lead; returns the leadership's fencing token.

        Raises LockTimeout when not elected in time. Leading already: returns at once.
        Cancelled, the candidacy is withdrawn.
        """
        held = self._held()
        if held is None:
            await self._take(AsyncLock(self._node, self._tracker, [self._internal], timeout), self.group, timeout)
            held = self._lock
        return held.token if held is not None and held.token is not None else 0

    async def resign(self) -> None:
        """Stop leading (nothing happens if this locker does not lead)."""
        await self._let_go()

    @property
    def is_leader(self) -> bool:
        return self._held() is not None

    @property
    def token(self) -> int | None:
        """The fencing token of this locker's leadership (None when it does not lead)."""
        held = self._held()
        return held.token if held is not None else None

    @property
    def leader(self) -> Awaitable[str | None]:
        """``await election.leader``: the current leader's unique name, as the serving locker sees it (None: nobody)."""
        return self._leader()

    async def _leader(self) -> str | None:
        return leader_of(await self._holders())

    async def on_change(self, callback: Callable[[str | None], Any]) -> None:
        """Call ``callback(leader unique name or None)`` on every change of leader (on this loop)."""
        await self._watcher.add(callback)

    def __repr__(self) -> str:
        return f"<AsyncElection {self.group!r} leader={self.is_leader}>"


class AsyncGroup(_Held):
    """A membership group: who joined ``name`` and is alive (a member leaves with its lease)."""

    def __init__(self, node: LockerNode, tracker: LostLocks, name: str) -> None:
        super().__init__(node, tracker, GROUP_PREFIX, name, members_of, "a group")
        self.name = name

    async def join(self, info: Any = None, timeout: float | None = None) -> None:
        """Join with ``info`` (anything msgpack carries, up to 64 KiB packed); joined already: info replaced."""
        claim = Claim(SHARED, info=pack_info(info))
        await self._take(AsyncLock(self._node, self._tracker, [self._internal], timeout, claim), self.name, timeout)

    async def leave(self) -> None:
        """Leave the group (nothing happens if this locker is not a member)."""
        await self._let_go()

    @property
    def joined(self) -> bool:
        return self._held() is not None

    @property
    def members(self) -> Awaitable[dict[str, Any]]:
        """``await group.members``: unique name -> info of every member, as the serving locker sees them now."""
        return self._members()

    async def _members(self) -> dict[str, Any]:
        return members_of(await self._holders())

    async def on_change(self, callback: Callable[[dict[str, Any]], Any]) -> None:
        """Call ``callback(members)`` on every join or leave, including members whose lease ran out (on this loop)."""
        await self._watcher.add(callback)

    def __repr__(self) -> str:
        return f"<AsyncGroup {self.name!r} joined={self.joined}>"
