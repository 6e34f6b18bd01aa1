"""AsyncServerLocker: the locker for asyncio code, where a waiting acquire costs no thread.

::

    from pylocker.asyncio import AsyncServerLocker

    async with AsyncServerLocker("password", serverFile=path) as L:
        async with L.lock("report.csv", timeout=5) as lock:
            ...

It takes ``ServerLocker``'s arguments and wraps one (``L.locker``, usable from threads
beside it). Its waits are futures on the event loop, resolved by hooks that the thread
bringing an answer calls (``async_link``): the client connection's I/O thread (or a
thread of the same locker leading its socket), the serving locker's I/O thread, the
node's failover, the inbox, the publication queues. Quick calls run inline: a release
of a held lock, a publication with room to leave, a look at the mailbox, and every
call of a serving locker that does not wait (its server is in the process).

What still uses a thread:

* ``start`` and ``stop`` (the election, the key derivation, the handshake, joining
  the I/O threads) run on one short-lived thread each;
* lost-lock notices and ``on_change`` calls come through the locker's callback
  thread (one per locker, as for threads) on their way to the loop;
* a publication checks for room without blocking, then is queued inline: if threads
  of the same locker take that room in between, it waits there, on the loop's thread.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import weakref
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Callable, TypeVar

from . import async_link
from .async_link import MessageStream
from .async_lock import AsyncLock, LostLocks
from .async_primitives import AsyncElection, AsyncGroup, AsyncSemaphore, AsyncSlot
from .errors import PylockerError
from .flow import BATCH_ITEMS
from .holds import Claim
from .lockers import ACQUIRE_CODES, RELEASE_CODES, ServerLocker
from .messaging import PUBLISH_CODES
from .node import LockerNode
from .primitives import LockInfo, lock_info
from .validation import check_bool, check_number, code_for, lock_request
from .validation import names as parse_names

__all__ = ["AsyncElection", "AsyncGroup", "AsyncLock", "AsyncSemaphore", "AsyncServerLocker", "AsyncSlot",
           "MessageStream"]

T = TypeVar("T")
_SIGNATURE = inspect.signature(ServerLocker.__init__)


async def _on_a_thread(function: Callable[..., T], *args: Any) -> T:
    """Run a blocking call on a thread of its own (which ends with it), awaited."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T) -> None:
        if not future.done():
            future.set_result(result)

    def fail(error: BaseException) -> None:
        if not future.done():
            future.set_exception(error)

    def run() -> None:
        try:
            result = function(*args)
        except BaseException as exc:  # noqa: BLE001  handed to the awaiting task
            loop.call_soon_threadsafe(fail, exc)
        else:
            loop.call_soon_threadsafe(settle, result)

    threading.Thread(target=run, name=f"pylocker-async-{getattr(function, '__name__', 'call')}",
                     daemon=True).start()
    return await future


class AsyncServerLocker:
    """``ServerLocker`` for asyncio: same arguments, same return codes, awaited.

    ``autoconnect`` (default True) says whether ``async with`` starts the locker (it
    never starts in the constructor; like ``ServerLocker``, a start that fails raises
    nothing: ``isServer`` and ``isClient`` stay False and calls return code 2);
    ``blocking=True`` has no asyncio form: await ``start()``, then whatever keeps the
    program alive. Use one locker from one event loop (and any threads).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        arguments = _SIGNATURE.bind(None, *args, **kwargs).arguments
        del arguments["self"]
        self._autostart = arguments.pop("autoconnect", True)
        if arguments.pop("blocking", False):
            raise ValueError("blocking=True has no asyncio form: await start() instead")
        self._adopt(ServerLocker(**arguments, autoconnect=False))

    @classmethod
    def wrapping(cls, locker: ServerLocker) -> AsyncServerLocker:
        """An asyncio face for a (threaded) ``ServerLocker``: both use the same locks and connection."""
        if not isinstance(locker, ServerLocker):
            raise TypeError(f"expected a ServerLocker, not {type(locker).__name__}")
        self = cls.__new__(cls)
        self._autostart = False
        self._adopt(locker)
        return self

    def _adopt(self, locker: ServerLocker) -> None:
        self.locker = locker
        self._tracker = LostLocks(locker.node)
        self._streams: weakref.WeakSet[MessageStream] = weakref.WeakSet()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.locker!r}>"

    # ------------------------------------------------------------ properties
    @property
    def node(self) -> LockerNode:
        return self.locker.node

    @property
    def name(self) -> str:
        return self.locker.name

    @property
    def uniqueName(self) -> str:
        return self.locker.uniqueName

    @property
    def isServer(self) -> bool:
        return self.locker.isServer

    @property
    def isClient(self) -> bool:
        return self.locker.isClient

    @property
    def defaultTimeout(self) -> float:
        return self.locker.defaultTimeout

    @property
    def ownedLocks(self) -> dict[str, list[str]]:
        return self.locker.ownedLocks

    # ------------------------------------------------------------- lifecycle
    async def start(self, address: str | None = None, port: int | None = None, password: str | None = None,
                    ntrials: int = 3) -> bool:
        """Serve or connect, as ``ServerLocker.start``; True on success (on a short-lived thread)."""
        return await _on_a_thread(self.locker.start, address, port, password, ntrials)

    async def stop(self) -> None:
        """Stop serving or connected; held locks are released, waiting calls fail, streams end."""
        for stream in list(self._streams):
            stream.close(drain=True)
        await _on_a_thread(self.locker.stop)

    async def __aenter__(self) -> AsyncServerLocker:
        if self._autostart:
            await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    # ------------------------------------------------------------------ locks
    async def acquire_lock(self, path: str | Iterable[str], timeout: float | None = None,
                           lockGlobal: bool = False, shared: bool = False) -> tuple[bool, Any]:
        """Acquire a lock on a path or list of paths: (True, lockId) or (False, 0|1|2|message).

        0: not granted before timeout; 1: connection to the serving locker lost; 2: neither
        client nor server. Cancelled while waiting, the request is withdrawn at the server.
        """
        names, timeout, claim = lock_request(path, timeout, self.locker.defaultTimeout, shared)
        check_bool(lockGlobal, "lockGlobal")
        node = self.node
        if lockGlobal:
            existing = node.owned.shared_lock(names, claim)
            if existing is not None:
                return True, existing
        try:
            lock_id, _, _ = await async_link.acquire(node, names, timeout, claim)
        except PylockerError as exc:
            return False, code_for(exc, ACQUIRE_CODES)
        if lockGlobal:
            node.owned.share(names, lock_id, claim)
        return True, lock_id

    async def acquire(self, *args: Any, **kwargs: Any) -> tuple[bool, Any]:
        """alias to acquire_lock"""
        return await self.acquire_lock(*args, **kwargs)

    async def release_lock(self, lockId: str) -> tuple[bool, int | str]:
        """Release an acquired lock: (True, 0|1) or (False, 2|3|message), as ``ServerLocker.release_lock``."""
        if not isinstance(lockId, str):
            raise TypeError(f"lockId must be a string, not {type(lockId).__name__}")
        self._tracker.untrack(lockId)
        try:
            code = await async_link.release(self.node, lockId)
        except PylockerError as exc:
            return False, code_for(exc, RELEASE_CODES)
        return True, code

    async def release(self, lockId: str) -> tuple[bool, int | str]:
        """alias to release_lock"""
        return await self.release_lock(lockId)

    def lock(self, path: str | Iterable[str], timeout: float | None = None, shared: bool = False) -> AsyncLock:
        """``async with L.lock(path, timeout=5) as lock:``; LockTimeout on entry, LockLost on exit.

        ``lock.lost`` (an asyncio.Event) is set if the lock is taken away during the block.
        """
        return self._lock(*lock_request(path, timeout, self.locker.defaultTimeout, shared))

    def _lock(self, names: list[str], timeout: float | None, claim: Claim) -> AsyncLock:
        return AsyncLock(self.node, self._tracker, names, self.locker.defaultTimeout if timeout is None else timeout,
                         claim)

    def fencing_token(self, lockId: str) -> int:
        return self.locker.fencing_token(lockId)

    def lost_reason(self, lockId: str) -> str | None:
        return self.locker.lost_reason(lockId)

    # ----------------------------------------------------------- coordination
    def semaphore(self, name: str, limit: int) -> AsyncSemaphore:
        """``async with L.semaphore("api", 5).acquire(timeout=10) as slot:`` (or ``slot = await ...``)."""
        return AsyncSemaphore(self.node, self._tracker, name, limit, self.locker.defaultTimeout)

    def lock_any(self, names: str | Iterable[str], timeout: float | None = None) -> AsyncLock:
        """``async with L.lock_any(names) as lock:`` holds exactly one of ``names`` (``lock.name``)."""
        parsed = parse_names(names)
        if timeout is not None:
            check_number(timeout, "timeout")
        return self._lock(parsed, timeout, Claim(any_of=True))

    def election(self, group: str) -> AsyncElection:
        return AsyncElection(self.node, self._tracker, group)

    def group(self, name: str) -> AsyncGroup:
        return AsyncGroup(self.node, self._tracker, name)

    async def lock_info(self, name: str) -> LockInfo:
        """Who holds the lock ``name`` and who waits, in order."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"a lock name must be a non-empty string, not {name!r}")
        return lock_info(name, *await async_link.inspect(self.node, name))

    # --------------------------------------------------------------- messages
    async def publish_message(self, message: str, receivers: Iterable[str] | None = None,
                              timeout: float | None = None, toSelf: bool = True, unique: bool = False,
                              replace: bool = True, *, payload: Any = None,
                              lossy: bool | None = None) -> tuple[bool, Any]:
        """``ServerLocker.publish_message``, awaited: waits (without a thread) while receivers lag."""
        failure = await self._room(lossy)
        if failure is not None:
            return False, failure
        return self.locker.publish_message(message, receivers, timeout, toSelf, unique, replace, payload=payload,
                                           lossy=lossy)

    async def publish(self, *args: Any, **kwargs: Any) -> tuple[bool, Any]:
        """alias to publish_message"""
        return await self.publish_message(*args, **kwargs)

    async def publish_messages(self, messages: Iterable[str], receivers: Iterable[str] | None = None,
                               timeout: float | None = None, toSelf: bool = True, unique: bool = False,
                               replace: bool = True, *, payloads: Iterable[Any] | None = None,
                               lossy: bool | None = None) -> tuple[bool, Any]:
        """``ServerLocker.publish_messages``, awaited, a batch (4,096 messages) at a time."""
        texts = list(messages)
        values = None if payloads is None else list(payloads)
        if values is not None and len(values) != len(texts):
            raise ValueError(f"{len(values)} payloads for {len(texts)} messages")
        ids: list[str] = []
        for start in range(0, max(1, len(texts)), BATCH_ITEMS):
            failure = await self._room(lossy)
            if failure is not None:
                return False, failure
            ok, result = self.locker.publish_messages(
                texts[start:start + BATCH_ITEMS], receivers, timeout, toSelf, unique, replace,
                payloads=None if values is None else values[start:start + BATCH_ITEMS], lossy=lossy)
            if not ok:
                return ok, result
            ids.extend(result)
        return True, ids

    async def _room(self, lossy: bool | None) -> int | str | None:
        try:
            await async_link.publish_room(self.node, self.locker.lossy_messages if lossy is None else lossy)
        except PylockerError as exc:
            return code_for(exc, PUBLISH_CODES)
        return None

    async def wait_message(self, message: str | None = None, timeout: float | None = None,
                           pop: bool = False) -> dict[str, Any] | None:
        """The oldest publication of ``message`` (None: any), once one is in the mailbox; None on timeout."""
        if timeout is not None:
            check_number(timeout, "timeout")
        return await async_link.wait_message(self.node.inbox, message, timeout, pop)

    def messages_stream(self, message: str | None = None, buffer: int = 100_000) -> MessageStream:
        """``async for publication in L.messages_stream("job-done"):`` every publication (of ``message``)
        arriving from now on, in order; they stay in the mailbox too. Ends with ``aclose()`` or ``stop()``."""
        if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 1:
            raise ValueError(f"buffer must be a positive int, not {buffer!r}")
        stream = MessageStream(self.node.inbox, message, buffer)
        self._streams.add(stream)
        return stream

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.locker.messages

    def has_message(self, message: str) -> bool:
        return self.locker.has_message(message)

    def get_message(self, message: str) -> dict[str, Any] | None:
        return self.locker.get_message(message)

    def pop_message(self, message: str) -> dict[str, Any] | None:
        return self.locker.pop_message(message)

    def remove_published_message(self, message: str, senders: Iterable[str] | None = None) -> int:
        return self.locker.remove_published_message(message, senders)
