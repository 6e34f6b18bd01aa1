"""Waiting on the lock service from asyncio, without a thread per call.

Every wait here is a future on the caller's event loop, resolved by a hook that the
thread bringing the answer calls, through ``loop.call_soon_threadsafe``: the client
connection's I/O thread, or another caller leading its socket (``InFlight``); the
serving locker's I/O thread (the waiter of ``Server.submit``); the node's ``online``
beacon during a failover; the inbox's arrival listeners; the publication queues' room.

The rules are the node's (``LockerNode.took``, ``outlasts``, ``releasing``,
``may_wait``): what the threaded calls do, these do, with ``await`` where those block.
A cancelled wait withdraws its request at the server (a client's ``Cancel``, the serving
locker's ``give_up``), and a grant that arrives as it is given up is released.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Protocol, TypeVar

from . import protocol as p
from .client import REPLY_SLACK, Client, claimed, holders, released
from .connection import InFlight
from .errors import LockTimeout, NotConnected, NotStarted, PylockerError
from .flow import PUBLISH_WAIT
from .holds import PLAIN, Claim
from .inbox import Inbox
from .server import LOCAL_SLACK, Server
from .watches import Rows
from .watching import HoldersListener

if TYPE_CHECKING:
    from .link import Link
    from .node import LockerNode

T = TypeVar("T")
Granted = tuple[str, int, tuple[str, ...]]  # lock id, fencing token, the names granted
CALL_PATIENCE = 20.0  # seconds a short call (inspect, watch, release) waits for its answer, as threaded ones do


def _resolve(future: asyncio.Future[bool], value: bool = True) -> None:
    if not future.done():
        future.set_result(value)


def hook_for(future: asyncio.Future[bool]) -> Callable[[], None]:
    """A hook any thread may call (once or more): resolves ``future`` with True on its loop."""
    loop = future.get_loop()
    fired = False

    def hook() -> None:
        nonlocal fired
        if not fired:
            fired = True
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(_resolve, future)

    return hook


async def resolved(future: asyncio.Future[bool], timeout: float | None) -> bool:
    """Wait for a hook to resolve ``future``, ``timeout`` s at most; False if the time ran out."""
    timer = None if timeout is None else future.get_loop().call_later(max(0.0, timeout), _resolve, future, False)
    try:
        return await future
    finally:
        if timer is not None:
            timer.cancel()


def _future() -> asyncio.Future[bool]:
    return asyncio.get_running_loop().create_future()


# ------------------------------------------------------------------ claims
class _LocalClaim:
    """A claim of the serving locker on its own server, answered on its waiter."""

    def __init__(self, server: Server, names: list[str], timeout: float | None, claim: Claim,
                 hook: Callable[[], None]) -> None:
        self._server, self._names, self._timeout, self._claim = server, names, timeout, claim
        self.lock_id, self._token, self._waiter = server.submit(names, timeout, claim, hook)
        self.patience = None if timeout is None else timeout + LOCAL_SLACK
        self._withdrawn = False

    def done(self) -> bool:
        return self._waiter is None or self._withdrawn or self._waiter.event.is_set()

    def withdraw(self) -> bool:
        if not self.done():
            self._withdrawn = self._server.give_up(self.lock_id)
        return self._withdrawn

    def outcome(self) -> Granted:
        if self._withdrawn:
            raise LockTimeout(self._names, self._timeout)
        token = self._token
        if self._waiter is not None:
            _, token = Server.outcome(self.lock_id, self._names, self._timeout, self._waiter)
        if self._claim is PLAIN:
            return self.lock_id, token, tuple(self._names)
        return self.lock_id, token, self._server.granted_names(self.lock_id, self._names)


class _RemoteClaim:
    """A claim sent to the serving locker, answered through the connection."""

    def __init__(self, client: Client, names: list[str], timeout: float | None, claim: Claim,
                 hook: Callable[[], None]) -> None:
        self._names, self._timeout = names, timeout
        self._flight = client.send_claim(names, timeout, claim, hook)
        self.patience = None if timeout is None else timeout + REPLY_SLACK

    def done(self) -> bool:
        return self._flight.done()

    def withdraw(self) -> bool:
        return self._flight.withdraw()

    def outcome(self) -> Granted:
        return claimed(self._flight.reply(), self._names, self._timeout)


class _Pending(Protocol):
    patience: float | None

    def done(self) -> bool: ...

    def withdraw(self) -> bool: ...

    def outcome(self) -> Granted: ...


async def claim_on(link: Link, names: list[str], timeout: float | None, claim: Claim) -> Granted:
    """One claim on ``link``, as ``Link.claim`` does it, awaited."""
    future = _future()
    pending: _Pending
    if isinstance(link, Server):
        pending = _LocalClaim(link, names, timeout, claim, hook_for(future))
    elif isinstance(link, Client):
        pending = _RemoteClaim(link, names, timeout, claim, hook_for(future))
    else:
        raise TypeError(f"no asyncio driver for {type(link).__name__}")
    if not pending.done():
        try:
            await resolved(future, pending.patience)
        except asyncio.CancelledError:
            if not pending.withdraw():  # answered as we gave up: a grant goes back
                with contextlib.suppress(PylockerError):
                    link.release(pending.outcome()[0], held=True)
            raise
        if not pending.done():
            pending.withdraw()  # no answer in time (the I/O thread is late or gone): withdrawn
    return pending.outcome()


async def acquire(node: LockerNode, names: list[str], timeout: float | None, claim: Claim = PLAIN) -> Granted:
    """``LockerNode.acquire``, awaited: waits out a failover (on the node's beacon)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        link = node.link
        try:
            if link is None:
                if not node.may_wait():
                    raise NotStarted()
            else:
                lock_id, token, granted = await claim_on(link, names, timeout, claim)
                node.took(link, lock_id, granted, token, claim)
                return lock_id, token, granted
        except (NotConnected, NotStarted) as exc:
            if not node.outlasts(exc, link):
                raise
        remaining = None if deadline is None else deadline - time.monotonic()
        if (remaining is not None and remaining <= 0) or not await online(node, remaining):
            raise LockTimeout(names, timeout)
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())


async def online(node: LockerNode, timeout: float | None) -> bool:
    """Wait until the locker serves, connects or stops, ``timeout`` s at most; False if the time ran out."""
    future = _future()
    hook = hook_for(future)
    if node.online.hook(hook):
        return True
    try:
        return await resolved(future, timeout)
    finally:
        node.online.unhook(hook)


# ------------------------------------------------------------- short calls
Send = Callable[[Client, Callable[[], None]], InFlight]


async def _round_trip(client: Client, send: Send) -> p.Message:
    future = _future()
    flight = send(client, hook_for(future))
    if not flight.done():
        try:
            if not await resolved(future, CALL_PATIENCE):
                flight.withdraw()
        except asyncio.CancelledError:
            flight.withdraw()
            raise
    return flight.reply()


async def on_link(node: LockerNode, local: Callable[[Server], T], send: Send, read: Callable[[p.Message], T]) -> T:
    """``LockerNode.on_link``, awaited: ``local(server)`` inline, or a round trip read with ``read``."""
    for attempt in (1, 2):
        link = node.link
        try:
            if link is None:
                raise NotStarted()
            if isinstance(link, Server):
                return local(link)
            if not isinstance(link, Client):
                raise TypeError(f"no asyncio driver for {type(link).__name__}")
            return read(await _round_trip(link, send))
        except (NotConnected, NotStarted):
            if attempt == 2 or not node.may_wait() or not await online(node, node.config.connect_timeout):
                raise
    raise NotConnected("the serving locker could not be reached")


def _rows(reply: p.Message) -> Rows:
    found = holders(reply)
    return found.holders, found.waiters


def _watched(reply: p.Message) -> Rows | None:
    found = holders(reply)
    return (found.holders, found.waiters) if found.settled else None


async def inspect(node: LockerNode, name: str) -> Rows:
    return await on_link(node, lambda server: server.inspect(name),
                         lambda client, hook: client.send_inspect(name, hook), _rows)


async def watch(node: LockerNode, name: str, listener: HoldersListener) -> Rows | None:
    """``LockerNode.watch``, awaited."""
    if node.watching.add(name, listener):
        try:
            return await on_link(node, lambda server: server.watch(name, True),
                                 lambda client, hook: client.send_watch(name, True, hook), _watched)
        except BaseException:
            node.watching.remove(name, listener)
            raise
    return await inspect(node, name)


async def unwatch(node: LockerNode, name: str, listener: HoldersListener) -> None:
    if node.watching.remove(name, listener):
        link = node.link
        with contextlib.suppress(NotConnected, NotStarted):  # a new link is told only what is watched
            if isinstance(link, Server):
                link.watch(name, False)
            elif isinstance(link, Client):
                await _round_trip(link, lambda client, hook: client.send_watch(name, False, hook))


async def release(node: LockerNode, lock_id: str) -> int:
    """``LockerNode.release``, awaited: inline when held (nothing waits for the server), else a round trip."""
    state = node.releasing(lock_id)
    if state is None:
        return 0
    held, lost = state
    for attempt in (1, 2):
        link = node.link
        try:
            if link is None:
                raise NotStarted()
            if held or isinstance(link, Server):
                code = link.release(lock_id, held=held)
            elif isinstance(link, Client):
                code = released(await _round_trip(link, lambda client, hook: client.send_release(lock_id, hook)))
            else:
                raise TypeError(f"no asyncio driver for {type(link).__name__}")
        except (NotConnected, NotStarted):
            # During a failover the lock is re-claimed first, then released.
            if attempt == 2 or not node.may_wait() or not await online(node, node.config.connect_timeout):
                raise
            continue
        node.owned.forget(lock_id)
        return 0 if lost else code
    raise NotConnected("the serving locker could not be reached")


async def publish_room(node: LockerNode, lossy: bool) -> None:
    """Wait until a publication would leave without waiting (``PUBLISH_WAIT`` s at most, as threaded)."""
    deadline = time.monotonic() + PUBLISH_WAIT
    while True:
        link = node.link
        if not isinstance(link, (Server, Client)) or (lossy and isinstance(link, Server)):
            return  # no link: the publication fails at once; a lossy one never waits at the server
        future = _future()
        if link.publish_room(hook_for(future)):
            return
        if not await resolved(future, deadline - time.monotonic()):
            raise NotConnected(f"receivers have taken no publication for {PUBLISH_WAIT:.0f} s "
                               "(frozen, and still within their lease)")


# ----------------------------------------------------------------- messages
async def wait_message(inbox: Inbox, message: str | None, timeout: float | None, pop: bool) -> dict[str, Any] | None:
    """``Inbox.wait``, awaited: woken by each delivery (an arrival listener)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        future = _future()
        hook = hook_for(future)

        def listener(arrived: list[dict[str, Any]], hook: Callable[[], None] = hook) -> None:
            hook()

        inbox.listen(listener)
        try:
            found = inbox.find(message, pop)
            if found is not None:
                return found
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            await resolved(future, remaining)
        finally:
            inbox.unlisten(listener)


class MessageStream:
    """``async for publication in stream``: every publication (of ``message``, if given) that arrives
    once the stream is open, in order; the mailbox keeps them too (read it, or ``remove_message``).

    At most ``buffer`` wait to be read: past that the oldest are dropped (counted in ``dropped``).
    It ends when closed (``aclose``), or once it yielded what arrived before its locker stopped.
    Use it on its loop only.
    """

    def __init__(self, inbox: Inbox, message: str | None, buffer: int = 100_000) -> None:
        self._inbox = inbox
        self._message = message
        self._loop = asyncio.get_running_loop()
        self._queue: deque[dict[str, Any]] = deque()
        self._buffer = buffer
        self._waiter: asyncio.Future[bool] | None = None
        self.closed = False
        self._listening = True
        self._ended = False  # closed without draining: nothing more is yielded
        self.dropped = 0
        inbox.listen(self._arrived, publications=True)

    def _arrived(self, publications: list[dict[str, Any]]) -> None:  # on the delivering thread
        message = self._message
        wanted = publications if message is None else [pub for pub in publications if pub["message"] == message]
        if wanted:
            with contextlib.suppress(RuntimeError):  # the loop is closed
                self._loop.call_soon_threadsafe(self._push, wanted)

    def _push(self, publications: list[dict[str, Any]]) -> None:
        if self._ended:  # (after a draining close, deliveries from before it still come in here)
            return
        queue = self._queue
        queue.extend(publications)
        while len(queue) > self._buffer:
            queue.popleft()
            self.dropped += 1
        if self._waiter is not None:
            _resolve(self._waiter)

    def __aiter__(self) -> MessageStream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        while not self._queue:
            if self.closed:
                raise StopAsyncIteration
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._queue.popleft()

    def close(self, drain: bool = False) -> None:
        """End the stream: now, or (``drain``) once what arrived until now is yielded.

        What it does not yield stays in the mailbox only.
        """
        if self._listening:
            self._listening = False
            self._inbox.unlisten(self._arrived)
        if not drain:
            self._end(discard=True)
        elif not self.closed:
            self._loop.call_soon(self._end, False)  # after the deliveries already on their way here

    def _end(self, discard: bool) -> None:
        self.closed = True
        if discard:
            self._ended = True
            self._queue.clear()
        if self._waiter is not None:
            _resolve(self._waiter)

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> MessageStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
