"""The connecting role: one I/O thread owns the DEALER socket; user threads wait on Events.

A user thread registers a call under a fresh request id, queues its frame and wakes
the I/O thread; the I/O thread sends it, and sets the call's Event when the reply
(or, for a queued acquire, the server's later push) arrives. Nothing polls.
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import threading
import time
from typing import Any, Callable, Final

from . import protocol as p
from .errors import (
    AuthenticationError,
    LockTimeout,
    NotConnected,
    PylockerError,
    RemoteProtocolError,
)
from .transport.keys import CurveKeys
from .transport.sockets import ClientEndpoint

HEARTBEAT: Final = 1.0  # seconds between heartbeats when otherwise idle (at most)
FROZEN: Final = 0.5  # a poll that returns this much later than asked means we were frozen
HEARTBEATS_PER_LEASE: Final = 4  # so that a late answer or two never looks like a dead server
PROBE_INTERVAL: Final = 0.02  # seconds between checks that our subscription is live
BATCH_ITEMS: Final = 4096  # publications per frame at most
BATCH_BYTES: Final = 64 * 1024
MAX_PENDING: Final = 100_000  # queued publications before publish() waits for the I/O thread
PENDING_WAIT: Final = 30.0
REPLY_SLACK: Final = 5.0  # how long past its own deadline a call waits for the server
STOP_TIMEOUT: Final = 5.0

LostCallback = Callable[[str, str], None]
PublicationsCallback = Callable[[str, str, list[Any]], int]  # sender, name, raw items -> malformed
_PUBLICATION = object()  # marks outbox entries that are publications
_SUBSCRIBE = object()  # marks the outbox entry that connects the SUB socket
BROADCAST: Final = b"*\0"


class _Call:
    __slots__ = ("event", "reply")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reply: p.Message | PylockerError | None = None


class Client:
    """A connection to one serving locker, shared by every thread of this locker."""

    def __init__(self, keys: CurveKeys, host: str, port: int, *, name: str, unique_name: str,
                 logger: logging.Logger, on_lost: LostCallback | None = None,
                 on_publications: PublicationsCallback | None = None,
                 on_connection_lost: Callable[[], None] | None = None,
                 subscribe: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._keys = keys
        self.host = host
        self.port = port
        self.name = name
        self.unique_name = unique_name
        self._log = logger
        self._on_lost = on_lost
        self._on_publications = on_publications
        self._on_connection_lost = on_connection_lost
        self._wants_publications = subscribe
        self._topic = b"U" + unique_name.encode() + b"\0"
        self._seen: dict[bytes, int] = {}
        self._drained = threading.Event()
        self.dropped_publications = 0
        self.malformed_publications = 0
        self._clock = clock
        self._calls: dict[int, _Call] = {}
        self._calls_lock = threading.Lock()
        self._outbox: collections.deque[Any] = collections.deque()
        self._ids = itertools.count(1)
        self._running = False
        self._failure: PylockerError | None = None
        self._last_heard = 0.0
        self._lease: float | None = None
        self._endpoint: ClientEndpoint | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self.welcome: p.Welcome | None = None

    # --------------------------------------------------------------- lifecycle
    def connect(self, timeout: float) -> p.Welcome:
        """Open the connection and say hello; raises NotConnected/AuthenticationError."""
        self._running = True
        self._thread = threading.Thread(target=self._run, name=f"pylocker-client-{self.name}", daemon=True)
        self._thread.start()
        self._ready.wait()
        try:
            reply = self._call(p.Hello(0, self.name, self.unique_name, os.getpid()), timeout)
        except PylockerError:
            self.close(say_bye=False)
            raise
        if not isinstance(reply, p.Welcome):
            self.close(say_bye=False)
            raise NotConnected(f"unexpected answer to hello: {reply!r}")
        self.welcome = reply
        self._lease = reply.lease
        try:
            if self._wants_publications:
                self._subscribe(reply.pub_port, timeout)
        except PylockerError:
            self.close()
            raise
        return reply

    def _subscribe(self, pub_port: int, timeout: float) -> None:
        """Connect the SUB socket and wait until the server's probe comes through it."""
        self._outbox.append((_SUBSCRIBE, pub_port))
        deadline = self._clock() + timeout
        while True:
            try:
                self._call(p.SubscribeCheck(0), min(PROBE_INTERVAL, max(0.0, deadline - self._clock())))
                return
            except NotConnected:
                if self._failure is not None or self._clock() >= deadline:
                    raise

    def publish(self, receivers: list[str] | None, items: bytes | list[bytes]) -> None:
        """Queue packed publications (one, or a list); the I/O thread batches and sends them."""
        if self._failure is not None:
            raise self._failure
        if not self._running:
            raise NotConnected("not connected")
        outbox = self._outbox
        while len(outbox) > MAX_PENDING:  # back-pressure: a fast publisher waits, nothing is lost
            self._drained.clear()
            if len(outbox) <= MAX_PENDING:
                break
            self._wake()
            if not self._drained.wait(PENDING_WAIT):
                raise NotConnected("the connection to the serving locker is not draining")
        # The key groups consecutive publications to the same receivers into one frame.
        key = None if receivers is None else receivers[0] if len(receivers) == 1 else tuple(receivers)
        outbox.append((_PUBLICATION, key, receivers, items))
        self._wake()

    def close(self, say_bye: bool = True) -> None:
        """Say goodbye (the server frees our locks) and stop the I/O thread."""
        if not self._running:
            return
        if say_bye and self._failure is None:
            self._outbox.append(p.encode(p.Bye(0)))
        self._running = False
        endpoint = self._endpoint
        if endpoint is not None:
            endpoint.waker.wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(STOP_TIMEOUT)
        self._fail_all(NotConnected("the connection was closed"))

    @property
    def connected(self) -> bool:
        return self._running and self._failure is None and self.welcome is not None

    # ---------------------------------------------------------------- requests
    def acquire(self, names: list[str], timeout: float | None) -> tuple[str, int]:
        """Lock ``names``; returns (lock id, fencing token) or raises LockTimeout."""
        wait = None if timeout is None else timeout + REPLY_SLACK
        request_id, call = self._send(lambda rid: p.Acquire(rid, names, timeout))
        reply = self._wait(request_id, call, wait)
        if reply is None:
            # The server did not answer in time: withdraw, and release a late grant (see _deliver).
            self._outbox.append(p.encode(p.Cancel(request_id)))
            self._wake()
            raise NotConnected(f"no answer from the serving locker within {wait} s")
        if isinstance(reply, p.Grant):
            return reply.lock_id, reply.token
        if isinstance(reply, p.Timeout):
            raise LockTimeout(names, timeout)
        raise _as_error(reply)

    def release(self, lock_id: str, timeout: float) -> int:
        """Release ``lock_id``; 1 released, 0 not held by us. Raises on failure."""
        reply = self._call(p.Release(0, lock_id), timeout)
        if isinstance(reply, p.Released):
            return reply.code
        raise _as_error(reply)

    def release_nowait(self, lock_id: str) -> None:
        """Release ``lock_id`` without waiting: the server answers only if it refuses."""
        if self._failure is not None:
            raise self._failure
        if not self._running:
            raise NotConnected("not connected")
        self._outbox.append(p.encode(p.Release(0, lock_id)))
        self._wake()

    def _call(self, message: p.Message, timeout: float) -> p.Message:
        request_id, call = self._send(lambda rid: message._replace(request_id=rid))  # type: ignore[union-attr]
        reply = self._wait(request_id, call, timeout)
        if reply is None:
            raise NotConnected(f"no answer from the serving locker within {timeout} s")
        return reply

    def _send(self, build: Callable[[int], p.Message]) -> tuple[int, _Call]:
        if self._failure is not None:
            raise self._failure
        if not self._running:
            raise NotConnected("not connected")
        request_id = next(self._ids)
        call = _Call()
        with self._calls_lock:
            self._calls[request_id] = call
        self._outbox.append(p.encode(build(request_id)))
        self._wake()
        return request_id, call

    def _wait(self, request_id: int, call: _Call, timeout: float | None) -> p.Message | None:
        call.event.wait(timeout)
        with self._calls_lock:
            self._calls.pop(request_id, None)
        reply = call.reply
        if isinstance(reply, PylockerError):
            raise reply
        return reply

    def _wake(self) -> None:
        endpoint = self._endpoint
        if endpoint is not None:
            endpoint.waker.wake()

    # ---------------------------------------------------------------- I/O loop
    def _run(self) -> None:
        try:
            endpoint = ClientEndpoint(self._keys, self.host, self.port, self.unique_name.encode(),
                                      self._log, self._auth_failed, self._disconnected)
        except Exception as exc:
            self._failure = NotConnected(f"cannot open a connection: {exc}")
            self._ready.set()
            return
        self._endpoint = endpoint
        self._ready.set()
        self._last_heard = last_sent = self._clock()
        try:
            while self._running or self._outbox:
                now = self._clock()
                heartbeat = self._heartbeat_interval()
                timeout = max(0.0, last_sent + heartbeat - now) if not self._outbox else 0.0
                if not self._running:
                    timeout = 0.0
                readable, sub_readable = endpoint.poll(timeout)
                if self._clock() - now > timeout + FROZEN:
                    # This process was frozen (SIGSTOP, a debugger, swapping): the silence was ours.
                    self._last_heard = self._clock()
                if readable:
                    for data in endpoint.receive():
                        self._deliver(data)
                if sub_readable:
                    for frames in endpoint.receive_published():
                        self._deliver_published(frames)
                if self._outbox:
                    last_sent = self._clock()
                    self._flush(endpoint)
                elif not self._running:
                    break
                now = self._clock()
                if self.welcome is not None and now - last_sent >= heartbeat:
                    endpoint.send(p.encode(p.Heartbeat(0)))
                    last_sent = now
                if self._lease is not None and now - self._last_heard > self._lease and self._failure is None:
                    self._log.error("the serving locker at %s:%s stopped answering", self.host, self.port)
                    self._lose_connection("the serving locker stopped answering")
        except PylockerError as exc:
            self._fail_all(exc)
        except Exception:
            self._log.exception("the client loop failed")
            self._fail_all(NotConnected("the client loop failed"))
        finally:
            self._running = False
            self._endpoint = None
            endpoint.close()

    def _flush(self, endpoint: ClientEndpoint) -> None:
        outbox = self._outbox
        while outbox:
            entry = outbox.popleft()
            if type(entry) is bytes:
                endpoint.send(entry)
                continue
            if entry[0] is _SUBSCRIBE:
                endpoint.subscribe(entry[1], [BROADCAST, self._topic])
                continue
            # Consecutive publications to the same receivers travel together, in frames of
            # at most BATCH_ITEMS items or about BATCH_BYTES bytes.
            _, key, receivers, queued = entry
            batch: list[bytes] = []
            size = 0
            while True:
                for item in ((queued,) if type(queued) is bytes else queued):
                    batch.append(item)
                    size += len(item)
                    if len(batch) >= BATCH_ITEMS or size >= BATCH_BYTES:
                        endpoint.send(p.encode(p.Publish(0, receivers, len(batch), p.join_items(batch))))
                        batch, size = [], 0
                following = outbox[0] if outbox else None
                if (following is None or type(following) is bytes or following[0] is not _PUBLICATION
                        or following[1] != key):
                    break
                queued = outbox.popleft()[3]
            if batch:
                endpoint.send(p.encode(p.Publish(0, receivers, len(batch), p.join_items(batch))))
        self._drained.set()

    def _deliver_published(self, frames: list[bytes]) -> None:
        if len(frames) < 2 or frames[0] not in (BROADCAST, self._topic):
            return
        try:
            header = p.decode(frames[1])
        except RemoteProtocolError as exc:
            self._log.warning("bad publication header from the serving locker: %s", exc)
            return
        if isinstance(header, p.Probe):
            self._deliver(frames[1])
            return
        if not isinstance(header, p.Published) or len(frames) != 3:
            return
        topic = frames[0]
        expected = self._seen.get(topic)
        if expected is not None and header.before > expected:
            self.dropped_publications += header.before - expected
        self._seen[topic] = header.before + header.item_count
        if header.sender == self.unique_name:
            return  # our own broadcast: delivered to ourselves when published, if asked
        try:
            items = p.decode_items(frames[2], header.item_count)
        except RemoteProtocolError as exc:
            self.malformed_publications += header.item_count
            self._log.warning("bad publication batch from %s: %s", header.sender, exc)
            return
        if self._on_publications is not None:
            self.malformed_publications += self._on_publications(header.sender, header.sender_name, items)

    def _deliver(self, data: bytes) -> None:
        self._last_heard = self._clock()
        try:
            message = p.decode(data)
        except RemoteProtocolError as exc:
            self._log.warning("bad frame from the serving locker: %s", exc)
            return
        if isinstance(message, p.Expire):
            self._log.warning("lock %s was taken from us (%s)", message.lock_id, message.reason)
            if self._on_lost is not None:
                self._on_lost(message.lock_id, message.reason)
            return
        with self._calls_lock:
            call = self._calls.get(message.request_id)
        if call is None:
            if isinstance(message, p.Grant):  # granted after its caller gave up
                self._outbox.append(p.encode(p.Release(0, message.lock_id)))
            elif isinstance(message, p.Error):
                self._log.warning("the serving locker said: %s", message.message)
            return
        call.reply = message
        call.event.set()

    def _heartbeat_interval(self) -> float:
        lease = self._lease
        return HEARTBEAT if lease is None else max(0.02, min(HEARTBEAT, lease / HEARTBEATS_PER_LEASE))

    def _disconnected(self) -> None:
        if self.welcome is not None and self._failure is None and self._running:
            self._log.warning("the serving locker at %s:%s closed the connection", self.host, self.port)
            self._lose_connection("the serving locker closed the connection")

    def _lose_connection(self, reason: str) -> None:
        self._fail_all(NotConnected(reason))
        self._running = False  # the I/O thread ends; the facade decides whether to reconnect
        if self._on_connection_lost is not None:
            self._on_connection_lost()

    def reclaim(self, lock_id: str, names: list[str], token: int, timeout: float) -> bool:
        """After a failover: ask the (new) server to give back a lock we held."""
        reply = self._call(p.Reclaim(0, lock_id, names, token), timeout)
        if isinstance(reply, p.Reclaimed):
            return reply.granted
        raise _as_error(reply)

    def reclaim_done(self) -> None:
        self._outbox.append(p.encode(p.ReclaimDone(0)))
        self._wake()

    def _auth_failed(self) -> None:
        self._fail_all(AuthenticationError("the serving locker refused our credentials (wrong password?)"))

    def _fail_all(self, error: PylockerError) -> None:
        if self._failure is None:
            self._failure = error
        with self._calls_lock:
            calls = list(self._calls.values())
        for call in calls:
            if call.reply is None:
                call.reply = error
            call.event.set()


def _as_error(reply: p.Message) -> PylockerError:
    if isinstance(reply, p.Error):
        return PylockerError(reply.message)
    return RemoteProtocolError(f"unexpected reply {type(reply).__name__}")
