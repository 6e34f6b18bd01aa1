"""The connecting driver: a locker's requests over one ``Connection`` (see ``connection.py``).

``Client`` is what a locker's link to a remote serving locker does: say hello, acquire,
release, re-claim after a failover, publish; and what it does with the core's events
(replies to their callers, publications to the mailbox, lost locks and lapses to the
locker). Who holds the socket, and when, is ``Connection``'s business.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable, Final, cast

from . import protocol as p
from .client_core import (
    BadFrame,
    ClientCore,
    ClientEvent,
    HoldersChanged,
    LeaseLapsed,
    LockExpired,
    Publications,
    Refused,
    Reply,
)
from .connection import Connection, ConnectionLostCallback, Hook, InFlight
from .errors import (
    LockTimeout,
    NotConnected,
    PylockerError,
    RemoteProtocolError,
    error_for,
)
from .holds import PLAIN, Claim
from .items import unpack_payload
from .transport.address import Address
from .transport.base import Security
from .watches import HoldersCallback, Rows

REPLY_SLACK: Final = 5.0  # how long past its own deadline a call waits for the server
STOP_TIMEOUT: Final = 5.0
READY_TIMEOUT: Final = 10.0

log = logging.getLogger(__name__)

LostCallback = Callable[[str, str], None]
PublicationsCallback = Callable[[str, str, list[Any]], int]  # sender, name, raw items -> malformed


class Client(Connection):
    """A connection to one serving locker, shared by every thread of this locker."""

    def __init__(self, address: Address, security: Security, *, name: str, unique_name: str,
                 on_lost: LostCallback | None = None,
                 on_publications: PublicationsCallback | None = None,
                 on_connection_lost: ConnectionLostCallback | None = None,
                 subscribe: bool = True, request_ids: Iterator[int] | None = None,
                 routing_id: bytes | None = None, peer_timeout: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``request_ids``: the locker's request id counter, shared by all its connections.

        ``routing_id``: the locker's secret connection id (``protocol.new_routing_id``),
        the same for each of its connections so that a goodbye reaches what an earlier one held.
        ``peer_timeout``: the silence the connection survives (the lease; see ``survive_silence``).
        """
        super().__init__(address, security, routing_id=routing_id, peer_timeout=peer_timeout, clock=clock,
                         core=ClientCore(name=name, unique_name=unique_name, pid=os.getpid(), now=clock(),
                                         request_ids=request_ids),
                         on_connection_lost=on_connection_lost)
        self.name = name
        self.unique_name = unique_name
        self._on_lost = on_lost
        self._on_publications = on_publications
        self._wants_publications = subscribe
        self.welcome: p.Welcome | None = None
        self.on_holders: HoldersCallback | None = None  # a watched name's holders changed (I/O thread)

    # --------------------------------------------------------------- lifecycle
    def connect(self, timeout: float, *, fresh: bool = False) -> p.Welcome:
        """Open the connection and say hello; raises NotConnected/AuthenticationError.

        ``fresh``: say goodbye first, so the server drops whatever an earlier connection
        of this locker still held (its locks were reported lost when its lease lapsed).
        """
        if fresh:
            self._outbox.append(p.encode(p.Bye(0)))
        self._start_io(self.name)
        if not self._ready.wait(READY_TIMEOUT) and self._failure is None:
            self._failure = NotConnected("the connection's I/O thread did not start")
        try:
            reply = self._call(lambda rid: p.Hello(rid, self.name, self.unique_name, os.getpid()), timeout)
            if not isinstance(reply, p.Welcome):
                raise NotConnected(f"unexpected answer to hello: {type(reply).__name__}")
            self.welcome = reply
            if self._wants_publications:  # become a receiver: the answer comes after what precedes it
                self._call(p.SubscribeCheck, timeout)
        except PylockerError:
            self.close(say_bye=False)
            raise
        return reply

    def close(self, say_bye: bool = True) -> None:
        """Say goodbye (the server frees our locks) and stop the I/O thread."""
        if not self._running:
            return
        if say_bye and self._failure is None:
            if self._thread is not threading.current_thread():
                # What we published reaches the server before we leave: the goodbye could
                # not overtake it, but a socket closed at once drops what it has not sent yet.
                self.wait_published(STOP_TIMEOUT)
            self._farewell = p.encode(p.Bye(0))  # after what is queued
        self._running = False
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(STOP_TIMEOUT)
        self._fail_all(NotConnected("the connection was closed"))

    @property
    def connected(self) -> bool:
        return self._running and self._failure is None and self.welcome is not None

    @property
    def alive(self) -> bool:
        return self.connected

    # ------------------------------------------------------- the locker's link
    def acquire(self, names: list[str], timeout: float | None) -> tuple[str, int]:
        """Lock ``names``; returns (lock id, fencing token) or raises LockTimeout."""
        wait = None if timeout is None else timeout + REPLY_SLACK
        reply = self._exchange(lambda rid: p.Acquire(rid, names, timeout), wait, is_acquire=True)
        if reply is None:
            raise NotConnected(f"no answer from the serving locker within {wait} s")
        if isinstance(reply, p.Grant):
            return reply.lock_id, reply.token
        if isinstance(reply, p.Timeout):
            raise LockTimeout(names, timeout)
        raise _as_error(reply)

    def claim(self, names: list[str], timeout: float | None, claim: Claim) -> tuple[str, int, tuple[str, ...]]:
        """Lock ``names`` as ``claim`` says; (lock id, fencing token, the names granted)."""
        wait = None if timeout is None else timeout + REPLY_SLACK
        reply = self._exchange(_claim(names, timeout, claim), wait, is_acquire=True)
        if reply is None:
            raise NotConnected(f"no answer from the serving locker within {wait} s")
        return claimed(reply, names, timeout)

    def inspect(self, name: str, timeout: float = 20.0) -> Rows:
        """Who holds ``name`` and who waits for it (rows as in ``protocol.Holders``)."""
        reply = holders(self._call(lambda rid: p.Inspect(rid, name), timeout))
        return reply.holders, reply.waiters

    def watch(self, name: str, on: bool, timeout: float = 20.0) -> Rows | None:
        """Start (or stop) ``on_holders`` calls for ``name``; its rows now.

        None while the server recovers from a failover: the whole view is pushed when it ends.
        """
        reply = holders(self._call(lambda rid: p.Watch(rid, name, on), timeout))
        return (reply.holders, reply.waiters) if reply.settled else None

    def status(self, timeout: float = 20.0) -> dict[str, Any]:
        """The serving locker's status (``status.py``)."""
        reply = self._call(p.Status, timeout)
        if isinstance(reply, p.StatusReply):
            return cast("dict[str, Any]", unpack_payload(reply.status))
        raise _as_error(reply)

    def _holders(self, build: Callable[[int], p.Message], timeout: float) -> p.Holders:
        reply = self._call(build, timeout)
        if isinstance(reply, p.Holders):
            return reply
        raise _as_error(reply)

    # Without waiting (asyncio): ``hook()`` is called on whichever thread reads the answer;
    # the InFlight's reply is then read with ``claimed``, ``holders`` or ``released``.
    def send_claim(self, names: list[str], timeout: float | None, claim: Claim, hook: Hook) -> InFlight:
        """``acquire`` (PLAIN) or ``claim`` without waiting; wait ``timeout + REPLY_SLACK`` at most."""
        build = (lambda rid: p.Acquire(rid, names, timeout)) if claim is PLAIN else _claim(names, timeout, claim)
        return self.send_request(build, hook, is_acquire=True)

    def send_inspect(self, name: str, hook: Hook) -> InFlight:
        return self.send_request(lambda rid: p.Inspect(rid, name), hook)

    def send_watch(self, name: str, on: bool, hook: Hook) -> InFlight:
        return self.send_request(lambda rid: p.Watch(rid, name, on), hook)

    def send_release(self, lock_id: str, hook: Hook) -> InFlight:
        """``release`` of a lock we may not hold (else ``release(held=True)`` waits for nothing)."""
        return self.send_request(lambda rid: p.Release(rid, lock_id), hook)

    def publish_room(self, hook: Hook) -> bool:
        """Whether ``publish`` would not wait now; if it would, ``hook()`` is called once it may not."""
        return self._failure is not None or not self._running or self._pubbox.room(hook)

    def release(self, lock_id: str, *, held: bool = False, timeout: float = 20.0) -> int:
        """Release ``lock_id``: 1 released, 0 not held by us. Raises on failure.

        With ``held`` (we know we hold it) nothing waits for the server: requests leave
        in order, so nothing this locker sends later can overtake the release.
        """
        if held:
            self._send_now(p.Release(0, lock_id))
            return 1
        return released(self._call(lambda rid: p.Release(rid, lock_id), timeout))

    def reclaim(self, lock_id: str, names: list[str], token: int, expires_at: float | None = None,
                claim: Claim = PLAIN, timeout: float = 20.0) -> bool:
        """After a failover: ask the (new) server to give back a lock we held.

        ``expires_at``: the lock's maxLockTime clock from its first grant, kept.
        """
        reply = self._call(lambda rid: p.Reclaim(rid, lock_id, names, token, *claim), timeout)
        if isinstance(reply, p.Reclaimed):
            if reply.granted:
                with self._lock:
                    self._core.keep_expiry(lock_id, expires_at)
            return reply.granted
        raise _as_error(reply)

    def expiry(self, lock_id: str) -> float | None:
        with self._lock:
            return self._core.expiry(lock_id)

    def reclaim_done(self) -> None:
        self._send_now(p.ReclaimDone(0))

    def publish(self, receivers: list[str] | None, items: bytes | list[bytes], lossy: bool = False) -> None:
        """Queue packed publications (one, or a list); the socket's holder batches and sends them.

        Waits while the queue is full: the server acknowledges our batches as its receivers
        take them, so a slow receiver slows us down rather than losing messages.
        """
        self._check_usable()
        self._pubbox.put(receivers, items, lossy, self._check_usable, self._wake)
        self._wake()

    @property
    def _pubbox_bytes(self) -> int:
        return self._pubbox.pending_bytes

    @property
    def dropped_publications(self) -> int:
        return self._core.dropped_publications

    @property
    def malformed_publications(self) -> int:
        return self._core.malformed_publications

    def holds(self, lock_id: str) -> bool:
        """Whether a lock granted on this connection may still be taken as ours (lease and maxLockTime clocks)."""
        with self._lock:
            return self._core.holds(lock_id, self._clock())

    @property
    def valid_until(self) -> float | None:
        """Until when the locks of this connection are certainly ours (the client's lease clock)."""
        return self._core.valid_until

    @property
    def server_name(self) -> str:
        return self.welcome.server_name if self.welcome is not None else ""

    @property
    def server_unique_name(self) -> str:
        return self.welcome.server_unique_name if self.welcome is not None else ""

    @property
    def max_lock_time(self) -> float | None:
        return self.welcome.max_lock_time if self.welcome is not None else None

    @property
    def epoch(self) -> int:
        return self.welcome.epoch if self.welcome is not None else 0

    def _deliver(self, events: list[ClientEvent]) -> None:
        """Act on the core's events (caller holds the lock; callbacks only queue work)."""
        for event in events:
            if isinstance(event, Reply):
                call = self._calls.get(event.request_id)
                if call is not None:
                    call.complete(event.message)
            elif isinstance(event, Publications):
                if self._on_publications is not None:
                    self._core.malformed_publications += self._on_publications(
                        event.sender, event.sender_name, event.items)
            elif isinstance(event, LockExpired):
                log.warning("lock %s was taken from us (%s)", event.lock_id, event.reason)
                if self._on_lost is not None:
                    self._on_lost(event.lock_id, event.reason)
            elif isinstance(event, LeaseLapsed):
                log.error("the serving locker at %s has not answered for a lease: our locks are lost",
                          self.address)
                self._lose_connection(event.reason, lapsed=True)
            elif isinstance(event, Refused):
                log.warning("the serving locker refused a request (code %d): %s", event.code, event.detail)
            elif isinstance(event, BadFrame):
                log.warning("bad frame from the serving locker: %s", event.reason)
            elif isinstance(event, HoldersChanged) and self.on_holders is not None:
                holders = event.holders
                self.on_holders(holders.name, holders.holders, holders.waiters)

def _claim(names: list[str], timeout: float | None, claim: Claim) -> Callable[[int], p.Message]:
    return lambda rid: p.Claim(rid, names, timeout, claim.mode, claim.limit, claim.any_of, claim.info)


def claimed(reply: p.Message, names: list[str], timeout: float | None) -> tuple[str, int, tuple[str, ...]]:
    """(lock id, fencing token, the names granted) from the answer to a claim; raises its refusal."""
    if isinstance(reply, p.GrantNames):
        return reply.lock_id, reply.token, tuple(reply.names)
    if isinstance(reply, p.Grant):
        return reply.lock_id, reply.token, tuple(dict.fromkeys(names))
    if isinstance(reply, p.Timeout):
        raise LockTimeout(names, timeout)
    raise _as_error(reply)


def holders(reply: p.Message) -> p.Holders:
    """The answer to an inspection or a watch; raises its refusal."""
    if isinstance(reply, p.Holders):
        return reply
    raise _as_error(reply)


def released(reply: p.Message) -> int:
    """1 released, 0 not held by us, from the answer to a release; raises its refusal."""
    if isinstance(reply, p.Released):
        return reply.code
    raise _as_error(reply)


def _as_error(reply: p.Message) -> PylockerError:
    if isinstance(reply, p.Error):
        return error_for(reply.code, reply.detail)
    return RemoteProtocolError(f"unexpected reply {type(reply).__name__}")
