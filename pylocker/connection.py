"""One connection's socket, shared by the threads of a locker: who sends, who waits, who reads.

A calling thread does its own round trip when it can (the leader/follower pattern):
it takes the socket (``_io_lock``), sends its request, polls the socket itself and
hands replies that are not its own to their owners; it returns as soon as its own
reply is in. A thread that finds the socket taken queues its frame, wakes the holder
and waits on its own Event (a follower). The connection's I/O thread covers the
idle time: it waits on the socket's file descriptors without touching the socket,
and takes it only to read what arrived unasked (publications, expiry notices), for
heartbeats and the lease clock, or to serve followers nobody else is serving.
Nothing polls: every wait ends on input, a wake, or the core's next deadline.

``Connection`` moves frames and time through a ``ClientCore``; ``client.Client``
adds the locker's requests and acts on the core's events (``_deliver``).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Callable, Final

from . import protocol as p
from .client_core import ClientCore, ClientEvent
from .errors import AuthenticationError, NotConnected, PylockerError
from .items import join_items
from .pubbox import PublicationQueue
from .transport import connect
from .transport.address import Address
from .transport.base import ClientTransport, Security

# How long a caller waits for the I/O thread to finish a short pass over the socket before
# following instead of leading (the I/O thread takes the socket briefly after each wake-up).
HANDOFF_WAIT: Final = 0.002
RESTING: Final = 0.005  # how long the I/O thread stays off a socket a caller leads on
SETTLE_ROUNDS: Final = 8  # reads a leaving leader makes; what is left wakes the I/O thread

log = logging.getLogger("pylocker.client")

ConnectionLostCallback = Callable[[bool], None]  # lapsed: the lease ran out (every lock is lost)


Hook = Callable[[], None]  # told (on whichever thread brings it) that a call was answered


class _Call:
    __slots__ = ("event", "hook", "reply")

    def __init__(self, hook: Hook | None = None) -> None:
        self.event = threading.Event()
        self.reply: p.Message | PylockerError | None = None
        self.hook = hook  # for callers that do not wait on the Event (asyncio): must only schedule work

    def complete(self, reply: p.Message | PylockerError | None = None) -> None:
        if reply is not None:
            self.reply = reply
        self.event.set()
        if self.hook is not None:
            self.hook()


class InFlight:
    """A request sent without waiting for its reply (``Connection.send_request``)."""

    __slots__ = ("_call", "_connection", "request_id")

    def __init__(self, connection: Connection, request_id: int, call: _Call) -> None:
        self._connection = connection
        self.request_id = request_id
        self._call = call

    def done(self) -> bool:
        """Whether the reply (or the connection's failure) is in."""
        return self._call.reply is not None

    def withdraw(self) -> bool:
        """Stop waiting; True if no reply was in (an acquire is then withdrawn at the server, and a
        grant that comes late is released)."""
        return self._connection._withdraw(self.request_id, self._call)

    def reply(self) -> p.Message:
        """The reply; raises the connection's failure, or NotConnected if none came."""
        reply = self._call.reply
        if isinstance(reply, PylockerError):
            raise reply
        if reply is None:
            raise NotConnected("no answer from the serving locker in time")
        return reply


class Connection:
    """The socket, the I/O thread and the calls in flight of one connection (see the module docstring)."""

    def __init__(self, address: Address, security: Security, *, routing_id: bytes | None,
                 peer_timeout: float | None, clock: Callable[[], float], core: ClientCore,
                 on_connection_lost: ConnectionLostCallback | None) -> None:
        self._peer_timeout = peer_timeout
        self.address = address
        self._security = security
        self._on_connection_lost = on_connection_lost
        self._clock = clock
        self._routing_id = routing_id if routing_id is not None else p.new_routing_id()
        self._core = core
        self._lock = threading.Lock()  # guards the core and the calls
        # Whoever holds _io_lock may use the transport (send, poll, receive): the I/O thread or
        # a leading caller. Taken before _lock when both are needed, never the other way round.
        self._io_lock = threading.Lock()
        self._serving = False  # the I/O thread holds the socket to serve followers: do not wait for it
        self._followers = 0  # callers waiting on their Event for someone else to bring their reply
        # The deadline the idle I/O thread sleeps toward (None: none). A caller that moved the
        # core's deadline earlier (a Welcome read, a heartbeat due sooner) must wake it.
        self._idle_until: float | None = None
        self._calls: dict[int, _Call] = {}
        self._outbox: collections.deque[bytes] = collections.deque()  # requests: they never wait
        # Sent last as the connection closes, after the queued publications (a goodbye that
        # overtook them would leave them to a server that no longer knows us: they were lost).
        self._farewell: bytes | None = None
        # Publications wait here while the server has PUBLISH_WINDOW of ours unacknowledged.
        self._pubbox = PublicationQueue()
        # Told when acknowledgements come while somebody waits for them (wait_published); its own
        # lock, never held with _lock.
        self._acks = threading.Condition()
        self._ack_waiters = 0
        # The connection ended (True: the lease lapsed): the I/O thread tells the locker as it stops,
        # outside every lock (its failover thread may be waiting for ours: a deadlock, seen).
        self._loss: bool | None = None
        self._running = False
        self._failure: PylockerError | None = None
        self._transport: ClientTransport | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def _start_io(self, name: str) -> None:
        self._running = True
        self._thread = threading.Thread(target=self._run, name=f"pylocker-client-{name}", daemon=True)
        self._thread.start()

    def _deliver(self, events: list[ClientEvent]) -> None:
        """Act on the core's events (called holding ``_lock``: callbacks only queue work)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- requests
    def _check_usable(self) -> None:
        if self._failure is not None:
            raise self._failure
        if not self._running:
            raise NotConnected("not connected")

    def _call(self, build: Callable[[int], p.Message], timeout: float) -> p.Message:
        reply = self._exchange(build, timeout)
        if reply is None:
            raise NotConnected(f"no answer from the serving locker within {timeout} s")
        return reply

    def _exchange(self, build: Callable[[int], p.Message], timeout: float | None,
                  is_acquire: bool = False) -> p.Message | None:
        """Send a request and wait up to ``timeout`` s for its reply (None: none came)."""
        self._check_usable()
        call = _Call()
        with self._lock:
            request_id = self._core.request(build, self._clock(), is_acquire=is_acquire)
            self._calls[request_id] = call
            sends, _ = self._core.take()
            self._outbox.extend(sends)
        deadline = None if timeout is None else self._clock() + timeout
        transport = self._transport
        if transport is not None and self._take_socket():
            try:
                self._lead(transport, call, deadline)
            except PylockerError as exc:
                self._break(exc)
            finally:
                self._leave_socket(transport)
        if call.reply is None:  # someone else brings it (or we stopped leading: the connection ends)
            with self._lock:
                self._followers += 1
            failure = self._failure  # failed before our call was registered: nobody would tell it
            if failure is not None and call.reply is None:
                call.reply = failure
            try:
                self._wake()
                if call.reply is None:
                    call.event.wait(None if deadline is None else max(0.0, deadline - self._clock()))
            finally:
                with self._lock:
                    self._followers -= 1
                    last = not self._followers
                if last and self._serving:
                    self._wake()  # the I/O thread serves no one now: let it hand the socket back
        return self._finish(request_id, call)

    def wait_published(self, timeout: float) -> bool:
        """Wait until the server has acknowledged every publication queued so far: True, or False
        when ``timeout`` (real seconds) passed or the connection ended first."""
        deadline = time.monotonic() + timeout
        with self._acks:
            self._ack_waiters += 1
            try:
                while len(self._pubbox) or self._core.unacked_publications:
                    remaining = deadline - time.monotonic()
                    if self._failure is not None or not self._running or remaining <= 0:
                        return False
                    self._wake()  # the socket's holder sends what is queued, and reads the answers
                    self._acks.wait(remaining)
                return True
            finally:
                self._ack_waiters -= 1

    def send_request(self, build: Callable[[int], p.Message], hook: Hook, is_acquire: bool = False) -> InFlight:
        """Send a request without waiting: ``hook()`` is called (on any thread) once it is answered."""
        self._check_usable()
        call = _Call(hook)
        with self._lock:
            request_id = self._core.request(build, self._clock(), is_acquire=is_acquire)
            self._calls[request_id] = call
            sends, _ = self._core.take()
            self._outbox.extend(sends)
        failure = self._failure  # failed before our call was registered: nobody would tell it
        if failure is not None and call.reply is None:
            call.complete(failure)
        self._push()
        if call.reply is None:
            # The I/O thread reads the answer: wake it now, for after a caller held the socket
            # it rests a while (a leading caller reads its own answers; this one does not).
            self._wake()
        return InFlight(self, request_id, call)

    def _withdraw(self, request_id: int, call: _Call) -> bool:
        """Stop waiting for a call; True if it was unanswered (an acquire is withdrawn at the server,
        and a grant that comes late is released)."""
        with self._lock:
            self._calls.pop(request_id, None)
            withdrawn = call.reply is None
            if withdrawn:
                self._core.abandon(request_id)
                sends, _ = self._core.take()
                self._outbox.extend(sends)
        if withdrawn:
            self._wake()
        return withdrawn

    def _take_socket(self) -> bool:
        """Take the socket to lead a round trip: at once, or after a short pass of the I/O thread."""
        if self._io_lock.acquire(blocking=False):
            return True
        if self._serving:  # the I/O thread serves followers: be one of them
            return False
        return self._io_lock.acquire(timeout=HANDOFF_WAIT)

    def _lead(self, transport: ClientTransport, call: _Call, deadline: float | None) -> None:
        """Move frames until our reply is in (others' replies go to their owners on the way)."""
        clock = self._clock
        while call.reply is None and self._running:
            now = clock()
            if deadline is not None and now >= deadline:
                return
            self._pass(transport, None if deadline is None else deadline - now)

    def _leave_socket(self, transport: ClientTransport) -> None:
        """Read what is waiting and hand the socket back; wake the I/O thread if work is left."""
        try:
            settled = self._settle(transport)
        except PylockerError as exc:
            self._break(exc)
            settled = False
        finally:
            self._io_lock.release()
        if not settled or self._io_needed():
            self._wake()

    def _io_needed(self) -> bool:
        if self._followers or self._outbox or (len(self._pubbox) and self._core.can_publish) or not self._running:
            return True
        with self._lock:
            deadline, planned = self._core.next_deadline(), self._idle_until
        return deadline is not None and (planned is None or deadline < planned)

    def _finish(self, request_id: int, call: _Call) -> p.Message | None:
        self._withdraw(request_id, call)  # unanswered in time: withdrawn (a late grant is then released)
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
        self._push()

    def _push(self) -> None:
        """Send what is queued now if the socket is free (without waiting for it), else wake its holder."""
        transport = self._transport
        if transport is not None and self._io_lock.acquire(blocking=False):
            try:
                self._flush(transport)
            except PylockerError as exc:
                self._break(exc)
            finally:
                self._leave_socket(transport)
        else:
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
        try:
            self._io_lock.acquire()
            while True:
                try:
                    if not self._serve(transport):
                        break
                finally:
                    self._io_lock.release()
                self._idle(transport)
        except PylockerError as exc:
            self._fail_all(exc)
        except Exception:
            log.exception("the client loop failed")
            self._fail_all(NotConnected("the client loop failed"))
        finally:
            self._running = False
            with self._io_lock:  # a leader may still be on the socket: it leaves at once (not running)
                self._transport = None
                transport.close()
            loss, self._loss = self._loss, None
            if loss is not None and self._on_connection_lost is not None:
                self._on_connection_lost(loss)

    def _idle(self, transport: ClientTransport) -> None:
        """Wait without the socket (a caller may take it meanwhile) for input, a wake or a deadline.

        Returns holding the socket.
        """
        while True:
            with self._lock:  # under the lock a caller's feed moves the deadline: it sees this plan
                deadline = self._idle_until = self._core.next_deadline()
            transport.wait(None if deadline is None else max(0.0, deadline - self._clock()))
            if self._io_lock.acquire(blocking=False):
                return
            # A caller holds the socket and reads what came itself: stay out of its way for a
            # while rather than waking at each of its replies (and competing for the interpreter).
            if transport.wait(RESTING, data=False) and self._io_lock.acquire(timeout=RESTING):
                return

    def _serve(self, transport: ClientTransport) -> bool:
        """One turn of the I/O thread on the socket (held); False when the connection is done."""
        self._serving = True
        try:
            timeout: float | None = 0.0
            while True:
                self._pass(transport, timeout)
                if not self._running:
                    self._flush(transport)
                    farewell, self._farewell = self._farewell, None
                    if farewell is not None:  # the goodbye leaves last, before we close
                        transport.send(farewell)
                    return False
                if not self._followers:
                    break
                timeout = None  # serve the followers until none is left: their replies wake us
        finally:
            self._serving = False
        if not self._settle(transport):
            transport.wake()  # more came than one turn reads: the next wait returns at once
        return True

    def _pass(self, transport: ClientTransport, timeout: float | None) -> None:
        """Send what is queued, wait up to ``timeout`` s (capped by the core's deadline), act on what came."""
        clock, core = self._clock, self._core
        self._flush(transport)
        with self._lock:
            deadline = core.next_deadline()
        now = clock()
        if deadline is not None:
            timeout = max(0.0, deadline - now) if timeout is None else max(0.0, min(timeout, deadline - now))
        if self._outbox or (len(self._pubbox) and core.can_publish):
            timeout = 0.0
        frames = list(transport.receive()) if transport.poll(timeout) else []
        self._feed(transport, frames)

    def _feed(self, transport: ClientTransport, frames: list[bytes]) -> None:
        """Act on what came, frame by frame, and on the core's clock when it is due.

        A batch of publications can take long to store: the clock is looked at after each
        frame, and a heartbeat that falls due meanwhile leaves at once (a receiver busy with
        a backlog once sent none for 3.6 s, and its lease ran out).
        """
        core, clock = self._core, self._clock
        for frame in frames or (None,):  # no frame: the clock alone
            with self._lock:
                now = clock()
                if frame is not None:
                    core.receive(frame, now)
                deadline = core.next_deadline()
                if self._running and deadline is not None and now >= deadline:
                    core.tick(now)  # heartbeats and the lease clock: only when their time has come
                sends, events = core.take()
                if sends:
                    self._outbox.extend(sends)
                if events:
                    self._deliver(events)
            if self._ack_waiters:
                with self._acks:
                    self._acks.notify_all()
            self._flush(transport)  # what this frame or the clock called for leaves now

    def _settle(self, transport: ClientTransport) -> bool:
        """Read until the socket says nothing waits; False if SETTLE_ROUNDS were not enough.

        The socket's descriptor only signals *changes*: before it is left to the idle
        wait, the last thing done on it must be a read that found nothing (a send may
        consume the signal of a reply that arrived meanwhile).
        """
        for _ in range(SETTLE_ROUNDS):
            self._flush(transport)
            frames = list(transport.receive())
            if not frames:
                return True
            self._feed(transport, frames)
        return False

    def _flush(self, transport: ClientTransport) -> None:
        outbox = self._outbox
        while outbox:
            transport.send(outbox.popleft())
        pubbox = self._pubbox
        if len(pubbox):
            core, lock = self._core, self._lock
            # Consecutive publications to the same receivers travel together, while the window allows.
            for batch in pubbox.take_batches(lambda: core.can_publish):
                with lock:
                    frame = core.publish(batch.receivers, len(batch.items), join_items(batch.items), batch.lossy)
                transport.send(frame)
            pubbox.note_room()

    def _disconnected(self) -> None:
        if self._core.welcome is not None and self._failure is None and self._running:
            log.warning("the serving locker at %s closed the connection", self.address)
            self._lose_connection("the serving locker closed the connection", lapsed=False)

    def _lose_connection(self, reason: str, *, lapsed: bool) -> None:
        """The connection is over: calls fail now; the locker hears of it as the I/O thread stops."""
        self._fail_all(NotConnected(reason))
        self._loss = lapsed or bool(self._loss)
        self._running = False  # the I/O thread ends; the locker decides whether to reconnect
        self._wake()

    def _break(self, error: PylockerError) -> None:
        """The socket failed under a caller: the connection is over (as when the I/O thread fails)."""
        self._fail_all(error)
        self._running = False
        self._wake()

    def _auth_failed(self) -> None:
        self._fail_all(AuthenticationError("the serving locker refused our credentials (wrong password?)"))

    def _fail_all(self, error: PylockerError) -> None:
        if self._failure is None:
            self._failure = error
        self._pubbox.fail()  # a publisher waiting for room hears of the failure at once
        with self._acks:
            self._acks.notify_all()  # and one waiting for acknowledgements
        calls = list(self._calls.values())
        for call in calls:
            if call.reply is None:
                call.reply = error
            call.complete()
        self._wake()  # a leader polling for its reply sees it failed
