"""The connecting driver: one I/O thread moves frames between a transport and the ClientCore.

A user thread asks the core for a request under the driver's lock, queues the
frame, wakes the I/O thread and waits on its own Event; the I/O thread sends,
receives, feeds the core and sets the Event when the reply (or, for a queued
acquire, the server's later grant) arrives. Nothing polls: the I/O thread sleeps
until input, a wake, or the core's next deadline (heartbeat or lease).
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable, Final, cast

from . import protocol as p
from .client_core import BadFrame, ClientCore, ClientEvent, LeaseLapsed, LockExpired, Publications, Refused, Reply
from .errors import (
    AuthenticationError,
    LockTimeout,
    NotConnected,
    PylockerError,
    RemoteProtocolError,
    error_for,
)
from .flow import BATCH_BYTES, BATCH_ITEMS, PUBLISH_WAIT
from .transport import connect
from .transport.address import Address
from .transport.base import ClientTransport, Security

MAX_PENDING: Final = 100_000  # queued publish calls before publish() waits for the window
MAX_PENDING_BYTES: Final = 16 * 2**20  # ... or queued bytes of publications
REPLY_SLACK: Final = 5.0  # how long past its own deadline a call waits for the server
STOP_TIMEOUT: Final = 5.0
READY_TIMEOUT: Final = 10.0

log = logging.getLogger(__name__)

LostCallback = Callable[[str, str], None]
PublicationsCallback = Callable[[str, str, list[Any]], int]  # sender, name, raw items -> malformed
ConnectionLostCallback = Callable[[bool], None]  # lapsed: the lease ran out (every lock is lost)


class _Publication:
    """Packed publications waiting to leave; ``key`` groups those for the same receivers, alike lossy."""

    __slots__ = ("items", "key", "lossy", "receivers")

    def __init__(self, key: object, receivers: list[str] | None, items: bytes | list[bytes], lossy: bool) -> None:
        self.key = key
        self.receivers = receivers
        self.items = items
        self.lossy = lossy


class _Call:
    __slots__ = ("event", "reply")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reply: p.Message | PylockerError | None = None


class Client:
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
        self._peer_timeout = peer_timeout
        self.address = address
        self._security = security
        self.name = name
        self.unique_name = unique_name
        self._on_lost = on_lost
        self._on_publications = on_publications
        self._on_connection_lost = on_connection_lost
        self._wants_publications = subscribe
        self._clock = clock
        self._routing_id = routing_id if routing_id is not None else p.new_routing_id()
        self._core = ClientCore(name=name, unique_name=unique_name, pid=os.getpid(), now=clock(),
                                request_ids=request_ids)
        self._lock = threading.Lock()  # guards the core and the calls
        self._calls: dict[int, _Call] = {}
        self._outbox: collections.deque[bytes] = collections.deque()  # requests: they never wait
        # Publications wait here while the server has PUBLISH_WINDOW of ours unacknowledged.
        self._pubbox: collections.deque[_Publication] = collections.deque()
        self._pubbox_bytes = 0
        self._lapsed = False  # the lease lapsed: to tell the locker outside our lock
        self._drained = threading.Event()
        self._running = False
        self._failure: PylockerError | None = None
        self._transport: ClientTransport | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self.welcome: p.Welcome | None = None

    # --------------------------------------------------------------- lifecycle
    def connect(self, timeout: float, *, fresh: bool = False) -> p.Welcome:
        """Open the connection and say hello; raises NotConnected/AuthenticationError.

        ``fresh``: say goodbye first, so the server drops whatever an earlier connection
        of this locker still held (its locks were reported lost when its lease lapsed).
        """
        if fresh:
            self._outbox.append(p.encode(p.Bye(0)))
        self._running = True
        self._thread = threading.Thread(target=self._run, name=f"pylocker-client-{self.name}", daemon=True)
        self._thread.start()
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
            self._outbox.append(p.encode(p.Bye(0)))
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
        request_id, call = self._start(lambda rid: p.Acquire(rid, names, timeout), is_acquire=True)
        reply = self._finish(request_id, call, wait)
        if reply is None:
            raise NotConnected(f"no answer from the serving locker within {wait} s")
        if isinstance(reply, p.Grant):
            return reply.lock_id, reply.token
        if isinstance(reply, p.Timeout):
            raise LockTimeout(names, timeout)
        raise _as_error(reply)

    def release(self, lock_id: str, *, held: bool = False, timeout: float = 20.0) -> int:
        """Release ``lock_id``: 1 released, 0 not held by us. Raises on failure.

        With ``held`` (we know we hold it) nothing waits for the server: requests leave
        in order, so nothing this locker sends later can overtake the release.
        """
        if held:
            self._send_now(p.Release(0, lock_id))
            return 1
        reply = self._call(lambda rid: p.Release(rid, lock_id), timeout)
        if isinstance(reply, p.Released):
            return reply.code
        raise _as_error(reply)

    def reclaim(self, lock_id: str, names: list[str], token: int, expires_at: float | None = None,
                timeout: float = 20.0) -> bool:
        """After a failover: ask the (new) server to give back a lock we held.

        ``expires_at``: the lock's maxLockTime clock from its first grant, kept.
        """
        reply = self._call(lambda rid: p.Reclaim(rid, lock_id, names, token), timeout)
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
        """Queue packed publications (one, or a list); the I/O thread batches and sends them.

        Waits while MAX_PENDING are queued: the server acknowledges our batches as its
        receivers take them, so a slow receiver slows us down rather than losing messages.
        """
        self._check_usable()
        pubbox = self._pubbox
        while len(pubbox) > MAX_PENDING or self._pubbox_bytes > MAX_PENDING_BYTES:
            self._drained.clear()
            if len(pubbox) <= MAX_PENDING and self._pubbox_bytes <= MAX_PENDING_BYTES:
                break
            self._check_usable()  # failed since: _fail_all set the event before we cleared it
            self._wake()
            if not self._drained.wait(PUBLISH_WAIT):
                raise NotConnected(f"receivers have taken no publication for {PUBLISH_WAIT:.0f} s "
                                   "(frozen, and still within their lease)")
            self._check_usable()
        key = None if receivers is None else receivers[0] if len(receivers) == 1 else tuple(receivers)
        size = len(items) if isinstance(items, bytes) else sum(map(len, items))
        with self._lock:  # the I/O thread takes from the other end
            self._pubbox_bytes += size
        pubbox.append(_Publication((key, lossy), receivers, items, lossy))
        self._wake()

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

    # ---------------------------------------------------------------- requests
    def _check_usable(self) -> None:
        if self._failure is not None:
            raise self._failure
        if not self._running:
            raise NotConnected("not connected")

    def _call(self, build: Callable[[int], p.Message], timeout: float) -> p.Message:
        request_id, call = self._start(build)
        reply = self._finish(request_id, call, timeout)
        if reply is None:
            raise NotConnected(f"no answer from the serving locker within {timeout} s")
        return reply

    def _start(self, build: Callable[[int], p.Message], is_acquire: bool = False) -> tuple[int, _Call]:
        self._check_usable()
        call = _Call()
        with self._lock:
            request_id = self._core.request(build, self._clock(), is_acquire=is_acquire)
            self._calls[request_id] = call
            sends, _ = self._core.take()
            self._outbox.extend(sends)
        self._wake()
        return request_id, call

    def _finish(self, request_id: int, call: _Call, timeout: float | None) -> p.Message | None:
        call.event.wait(timeout)
        with self._lock:
            self._calls.pop(request_id, None)
            if call.reply is None:
                # The server did not answer in time: withdraw (a late grant is then released).
                self._core.abandon(request_id)
                sends, _ = self._core.take()
                self._outbox.extend(sends)
        if call.reply is None:
            self._wake()
        reply = call.reply
        if isinstance(reply, PylockerError):
            raise reply
        return reply

    def _send_now(self, message: p.Message) -> None:
        self._check_usable()
        with self._lock:
            self._core.send(message)
            sends, _ = self._core.take()
            self._outbox.extend(sends)
        self._wake()

    def _wake(self) -> None:
        transport = self._transport
        if transport is not None:
            transport.wake()

    # ---------------------------------------------------------------- I/O loop
    def _run(self) -> None:
        try:
            transport = connect(self.address, self._security, self._routing_id, log,
                                self._auth_failed, self._disconnected, peer_timeout=self._peer_timeout)
        except PylockerError as exc:
            self._failure = exc if isinstance(exc, NotConnected) else NotConnected(str(exc))
            self._ready.set()
            return
        self._transport = transport
        self._ready.set()
        clock, core = self._clock, self._core
        try:
            while self._running or self._outbox:
                with self._lock:
                    deadline = core.next_deadline()
                now = clock()
                busy = self._outbox or (self._pubbox and core.can_publish)
                timeout = 0.0 if busy or not self._running else (
                    None if deadline is None else max(0.0, deadline - now))
                readable = transport.poll(timeout)
                frames = list(transport.receive()) if readable else ()
                now = clock()
                due = self._running and deadline is not None and now >= deadline
                if frames or due:
                    with self._lock:
                        for frame in frames:
                            core.receive(frame, now)
                        if due:  # heartbeats and the lease clock: only when their time has come
                            core.tick(now)
                        sends, events = core.take()
                        if sends:
                            self._outbox.extend(sends)
                        if events:
                            self._deliver(events)
                    if self._lapsed:
                        self._lapsed = False
                        if self._on_connection_lost is not None:
                            self._on_connection_lost(True)
                self._flush(transport)
                if not self._running and not self._outbox:
                    break
        except PylockerError as exc:
            self._fail_all(exc)
        except Exception:
            log.exception("the client loop failed")
            self._fail_all(NotConnected("the client loop failed"))
        finally:
            self._running = False
            self._transport = None
            transport.close()

    def _deliver(self, events: list[ClientEvent]) -> None:
        """Act on the core's events (caller holds the lock; callbacks only queue work)."""
        for event in events:
            if isinstance(event, Reply):
                call = self._calls.get(event.request_id)
                if call is not None:
                    call.reply = event.message
                    call.event.set()
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
                # The locker hears of it once our lock is released (_run): it takes its own
                # locks, and its failover thread may be waiting for ours (a deadlock, seen).
                self._fail_all(NotConnected(event.reason))
                self._running = False
                self._lapsed = True
            elif isinstance(event, Refused):
                log.warning("the serving locker refused a request (code %d): %s", event.code, event.detail)
            elif isinstance(event, BadFrame):
                log.warning("bad frame from the serving locker: %s", event.reason)

    def _flush(self, transport: ClientTransport) -> None:
        outbox = self._outbox
        while outbox:
            transport.send(outbox.popleft())
        if self._pubbox and self._core.can_publish:
            self._send_publications(transport)
        if len(self._pubbox) <= MAX_PENDING and self._pubbox_bytes <= MAX_PENDING_BYTES:
            self._drained.set()

    def _send_publications(self, transport: ClientTransport) -> None:
        # Consecutive publications to the same receivers travel together, in batches of at
        # most BATCH_ITEMS items or about BATCH_BYTES bytes, while the window allows.
        pubbox, core, lock = self._pubbox, self._core, self._lock
        while pubbox and core.can_publish:
            first = pubbox[0]
            batch: list[bytes] = []
            size = 0
            while pubbox and pubbox[0].key == first.key and len(batch) < BATCH_ITEMS and size < BATCH_BYTES:
                entry = pubbox[0]
                queued = entry.items
                if type(queued) is bytes:
                    batch.append(queued)
                    size += len(queued)
                    pubbox.popleft()
                    continue
                many = cast("list[bytes]", queued)
                room = BATCH_ITEMS - len(batch)
                taken, rest = many[:room], many[room:]
                batch.extend(taken)
                size += sum(map(len, taken))
                if rest:
                    entry.items = rest
                    break
                pubbox.popleft()
            with lock:
                frame = core.publish(first.receivers, len(batch), p.join_items(batch), first.lossy)
                self._pubbox_bytes -= size
            transport.send(frame)

    def _disconnected(self) -> None:
        if self.welcome is not None and self._failure is None and self._running:
            log.warning("the serving locker at %s closed the connection", self.address)
            self._lose_connection("the serving locker closed the connection", lapsed=False)

    def _lose_connection(self, reason: str, *, lapsed: bool) -> None:
        self._fail_all(NotConnected(reason))
        self._running = False  # the I/O thread ends; the locker decides whether to reconnect
        if self._on_connection_lost is not None:
            self._on_connection_lost(lapsed)

    def _auth_failed(self) -> None:
        self._fail_all(AuthenticationError("the serving locker refused our credentials (wrong password?)"))

    def _fail_all(self, error: PylockerError) -> None:
        if self._failure is None:
            self._failure = error
        self._drained.set()  # a publisher waiting for room hears of the failure at once
        calls = list(self._calls.values())
        for call in calls:
            if call.reply is None:
                call.reply = error
            call.event.set()


def _as_error(reply: p.Message) -> PylockerError:
    if isinstance(reply, p.Error):
        return error_for(reply.code, reply.detail)
    return RemoteProtocolError(f"unexpected reply {type(reply).__name__}")
