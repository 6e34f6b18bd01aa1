"""The serving role: one I/O thread owns the sockets and drives the lock table.

Remote lockers talk to the table through the ROUTER socket; the serving locker's
own threads call ``acquire``/``release`` here directly (under the table mutex, no
socket crossed) and are woken by their own Event. Replies that must leave through
a socket are queued in an outbox and sent by the I/O thread only.
"""

from __future__ import annotations

import collections
import itertools
import logging
import secrets
import threading
import time
from typing import Callable, Final, NamedTuple

from . import protocol as p
from .errors import LockTimeout, NotStarted, PylockerError, RemoteProtocolError
from .table import Dropped, Effect, Expired, Granted, LockTable, TimedOut
from .transport.keys import CurveKeys
from .transport.sockets import ServerEndpoint

LOCAL: Final = b""  # the owner id of the serving locker's own requests
TICK: Final = 1.0  # housekeeping period of the I/O thread, seconds
START_TIMEOUT: Final = 10.0
BAD_FRAMES_LOGGED: Final = 5  # bad frames logged one by one per peer, before summaries
MAX_TRACKED_PEERS: Final = 10_000
LOCAL_SLACK: Final = 1.0  # how long a local waiter trusts the I/O thread past its deadline

LostCallback = Callable[[str, str], None]
PublicationsCallback = Callable[[str, str, int, bytes], None]  # sender, sender name, count, items
BROADCAST: Final = b"*\0"


def topic_for(unique_name: bytes) -> bytes:
    """The PUB topic of one locker (NUL-terminated: SUB filters match prefixes)."""
    return b"U" + unique_name + b"\0"


class ClientInfo(NamedTuple):
    name: str
    unique_name: str
    pid: int


class _Waiter:
    __slots__ = ("error", "event", "token")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.token = 0
        self.error: PylockerError | None = None


class Server:
    """Serves the lock table on a ROUTER socket; also the in-process lock API."""

    def __init__(self, keys: CurveKeys, host: str, port: int, *, name: str, unique_name: str,
                 max_lock_time: float | None, lease: float | None, logger: logging.Logger,
                 first_token: int = 1, epoch: int = 0,
                 client_keys: set[bytes] | None = None,
                 on_local_lost: LostCallback | None = None,
                 on_publications: PublicationsCallback | None = None,
                 on_tick: Callable[[], None] | None = None,
                 on_clients_changed: Callable[[list[str]], None] | None = None,
                 recover_from: set[str] | None = None, grace: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._keys = keys
        self._host = host
        self._requested_port = port
        self.name = name
        self.unique_name = unique_name
        self.epoch = epoch
        self._log = logger
        self._client_keys = client_keys if client_keys is not None else {keys.client.public}
        self._on_local_lost = on_local_lost
        self._on_publications = on_publications
        self._pub_lock = threading.Lock()
        self._pub_outbox: collections.deque[tuple[bytes, bytes, bytes] | tuple[bytes, bytes]] = \
            collections.deque()
        self._pub_counts: dict[bytes, int] = {}
        self._bad_frames: dict[bytes, int] = {}
        self._on_tick = on_tick
        self._clock = clock
        self._on_clients_changed = on_clients_changed
        # After a failover: the clients of the previous server that may still hold locks.
        self._expected = set(recover_from) if recover_from is not None else set()
        recover_until = clock() + grace if recover_from is not None else None
        self._table = LockTable(max_lock_time=max_lock_time, lease=lease, first_token=first_token,
                                recover_until=recover_until)
        self._mutex = threading.Lock()
        self._waiters: dict[str, _Waiter] = {}
        self._queued: dict[tuple[bytes, int], str] = {}  # (peer, request id) -> waiting lock id
        self._clients: dict[bytes, ClientInfo] = {}
        self._outbox: collections.deque[tuple[bytes, bytes]] = collections.deque()
        self._id_prefix = secrets.token_hex(4) + "-"
        self._ids = itertools.count(1)
        self._planned_wake = 0.0
        self._running = False
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._endpoint: ServerEndpoint | None = None
        self.port = 0
        self.pub_port = 0

    # --------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Bind and serve from a new I/O thread; raises if binding fails."""
        self._running = True
        self._thread = threading.Thread(target=self._run, name=f"pylocker-server-{self.name}", daemon=True)
        self._thread.start()
        if not self._started.wait(START_TIMEOUT):
            self._running = False
            raise NotStarted()
        if self._start_error is not None:
            self._running = False
            raise self._start_error

    def stop(self) -> None:
        """Stop serving: close the sockets and fail every local waiter."""
        self._running = False
        endpoint = self._endpoint
        if endpoint is not None:
            endpoint.waker.wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(START_TIMEOUT)
        with self._mutex:
            for waiter in self._waiters.values():
                waiter.error = NotStarted()
                waiter.event.set()
            self._waiters.clear()

    @property
    def running(self) -> bool:
        return self._running and self._thread is not None and self._thread.is_alive()

    # ---------------------------------------------------------- in-process API
    def acquire(self, names: list[str], timeout: float | None) -> tuple[str, int]:
        """Lock ``names`` for the serving locker itself; returns (lock id, fencing token)."""
        if not self._running:
            raise NotStarted()
        lock_id = self._new_id()
        with self._mutex:
            now = self._clock()
            effects = self._table.acquire(lock_id, LOCAL, names, timeout, now)
            self._wake_if_due_sooner()
            if effects:
                effect = effects[0]
                if isinstance(effect, Granted):
                    return lock_id, effect.token
                raise LockTimeout(names, timeout)
            waiter = self._waiters[lock_id] = _Waiter()
        if waiter.event.wait(None if timeout is None else timeout + LOCAL_SLACK):
            return self._outcome(lock_id, names, timeout, waiter)
        with self._mutex:  # the I/O thread is late or gone: decide here
            cancelled, effects = self._table.cancel(lock_id, self._clock())
            self._dispatch(effects)
            if cancelled:
                del self._waiters[lock_id]
                raise LockTimeout(names, timeout)
        waiter.event.wait()
        return self._outcome(lock_id, names, timeout, waiter)

    def _wake_if_due_sooner(self) -> None:
        # The I/O thread sleeps until its planned wake; a new, earlier deadline must wake it.
        deadline = self._table.next_deadline()
        if deadline is not None and deadline < self._planned_wake and self._endpoint is not None:
            self._endpoint.waker.wake()

    @staticmethod
    def _outcome(lock_id: str, names: list[str], timeout: float | None, waiter: _Waiter) -> tuple[str, int]:
        if waiter.error is not None:
            raise waiter.error
        if waiter.token == 0:
            raise LockTimeout(names, timeout)
        return lock_id, waiter.token

    def release(self, lock_id: str) -> bool:
        """Release a lock of the serving locker; False when it does not hold ``lock_id``."""
        with self._mutex:
            released, effects = self._table.release(lock_id, self._clock(), LOCAL)
            if effects:
                self._dispatch(effects)
        return released

    def reclaim(self, lock_id: str, names: list[str], token: int) -> bool:
        """Take back one of the serving locker's own locks after a failover."""
        with self._mutex:
            return self._table.reclaim(lock_id, LOCAL, names, token, self._clock())

    def reclaim_done(self, unique_name: str) -> None:
        """``unique_name`` has re-claimed all it held; recovery ends when nobody is left."""
        with self._mutex:
            self._expected.discard(unique_name)
            if not self._expected and self._table.recover_until is not None:
                self._dispatch(self._table.end_recovery(self._clock()))
        self._wake_io()

    @property
    def recovering(self) -> bool:
        return self._table.recover_until is not None

    def client_names(self) -> list[str]:
        with self._mutex:
            return [info.unique_name for info in self._clients.values()]

    def _clients_changed(self) -> None:
        # Caller holds the mutex. The facade records the names in the server file, so a
        # successor knows whose locks to wait for after a failover.
        if self._on_clients_changed is not None:
            self._on_clients_changed([info.unique_name for info in self._clients.values()])

    def _wake_io(self) -> None:
        endpoint = self._endpoint
        if endpoint is not None and threading.current_thread() is not self._thread:
            endpoint.waker.wake()

    def snapshot(self) -> list[tuple[str, tuple[str, ...], ClientInfo | None, int]]:
        """Every held lock: (lock id, names, holder (None for the server), token)."""
        with self._mutex:
            return [(h.lock_id, h.names, self._clients.get(h.owner) if h.owner != LOCAL else None, h.token)
                    for h in self._table.held_locks()]

    def set_max_lock_time(self, seconds: float | None) -> None:
        with self._mutex:
            self._table.max_lock_time = seconds

    @property
    def max_lock_time(self) -> float | None:
        return self._table.max_lock_time

    @property
    def last_token(self) -> int:
        return self._table.last_token

    @property
    def lease(self) -> float | None:
        return self._table.lease

    def publish(self, receivers: list[str] | None, count: int, items: bytes) -> None:
        """Fan a batch of the serving locker's own publications out to the others."""
        if not self._running:
            raise NotStarted()
        self._route(self.unique_name, self.name, receivers, count, items, deliver_locally=False)
        endpoint = self._endpoint
        if endpoint is not None:
            endpoint.waker.wake()

    def _route(self, sender: str, sender_name: str, receivers: list[str] | None, count: int,
               items: bytes, deliver_locally: bool = True) -> None:
        """Queue a batch for every receiving topic; hand it to the serving locker if it is one."""
        if receivers is None:
            topics = [BROADCAST]
            local = sender != self.unique_name
        else:
            local = self.unique_name in receivers
            clients = self._clients
            topics = [topic_for(peer) for peer in {r.encode() for r in receivers if r != sender}
                      if peer in clients]  # unknown receivers are nobody's business
        with self._pub_lock:
            counts = self._pub_counts
            for topic in topics:
                before = counts.get(topic, 0)
                counts[topic] = before + count
                header = p.encode(p.Published(0, sender, sender_name, before, count))
                self._pub_outbox.append((topic, header, items))
        if local and deliver_locally and self._on_publications is not None:
            self._on_publications(sender, sender_name, count, items)

    def clients(self) -> dict[bytes, ClientInfo]:
        with self._mutex:
            return dict(self._clients)

    # ---------------------------------------------------------------- internals
    def _new_id(self) -> str:
        return f"{self._id_prefix}{next(self._ids):x}"

    def _dispatch(self, effects: list[Effect]) -> None:
        """Turn table effects into wake-ups and outgoing frames. Caller holds the mutex."""
        outbox = self._outbox
        for effect in effects:
            owner = effect.owner
            if owner == LOCAL:
                if isinstance(effect, Expired):
                    if self._on_local_lost is not None:
                        self._on_local_lost(effect.lock_id, effect.reason)
                    continue
                waiter = self._waiters.pop(effect.lock_id, None)
                if waiter is not None:
                    if isinstance(effect, Granted):
                        waiter.token = effect.token
                    waiter.event.set()
                continue
            if isinstance(effect, Granted):
                self._queued.pop((owner, effect.tag), None)  # type: ignore[arg-type]
                frame = p.encode(p.Grant(effect.tag, effect.lock_id, effect.token))  # type: ignore[arg-type]
            elif isinstance(effect, TimedOut):
                self._queued.pop((owner, effect.tag), None)  # type: ignore[arg-type]
                frame = p.encode(p.Timeout(effect.tag))  # type: ignore[arg-type]
            elif isinstance(effect, Dropped):
                self._queued.pop((owner, effect.tag), None)  # type: ignore[arg-type]
                frame = p.encode(p.Error(effect.tag, f"request dropped: {effect.reason}"))  # type: ignore[arg-type]
            else:
                self._log.info("lock %s of %r expired (%s)", effect.lock_id, owner, effect.reason)
                frame = p.encode(p.Expire(0, effect.lock_id, effect.reason))
            outbox.append((owner, frame))  # type: ignore[arg-type]
        if outbox and self._endpoint is not None and threading.current_thread() is not self._thread:
            self._endpoint.waker.wake()

    def _run(self) -> None:
        try:
            endpoint = ServerEndpoint(self._keys, self._host, self._requested_port, self._log,
                                      self._client_keys)
        except BaseException as exc:  # reported to start()'s caller
            self._start_error = exc
            self._started.set()
            return
        self._endpoint = endpoint
        self.port, self.pub_port = endpoint.port, endpoint.pub_port
        self._started.set()
        next_tick = self._clock() + TICK
        try:
            while self._running:
                now = self._clock()
                with self._mutex:  # one visit per loop: expire what is due, learn the next deadline
                    if self._table.next_deadline() is not None:
                        effects = self._table.expire(now)
                        if effects:
                            self._dispatch(effects)
                    deadline = self._table.next_deadline()
                    wake_at = next_tick if deadline is None else min(deadline, next_tick)
                    self._planned_wake = wake_at
                self._flush(endpoint)
                if self._outbox or self._pub_outbox:
                    wake_at = now
                if endpoint.poll(max(0.0, wake_at - now)):
                    for peer, frames in endpoint.receive():
                        self._handle(peer, frames)
                    self._flush(endpoint)  # replies leave before the next deadline bookkeeping
                now = self._clock()
                if now >= next_tick:
                    next_tick = now + TICK
                    self._forget_lapsed_clients()
                    if self._on_tick is not None:
                        self._on_tick()
        except Exception:
            self._log.exception("the serving loop failed")
        finally:
            self._running = False
            self._endpoint = None
            endpoint.close()

    def _forget_lapsed_clients(self) -> None:
        with self._mutex:
            if self._table.lease is None:
                return
            lapsed = [peer for peer in self._clients if not self._table.is_leased(peer)]
            for peer in lapsed:
                del self._clients[peer]
                with self._pub_lock:
                    self._pub_counts.pop(topic_for(peer), None)
            if lapsed:
                self._clients_changed()

    def _flush(self, endpoint: ServerEndpoint) -> None:
        outbox = self._outbox
        while outbox:
            peer, frame = outbox.popleft()
            endpoint.send(peer, frame)
        publications = self._pub_outbox
        while publications:
            endpoint.publish(publications.popleft())

    def _handle(self, peer: bytes, frames: list[bytes]) -> None:
        if len(frames) != 1:
            self._note_bad_frame(peer, f"a {len(frames)}-part message (dropped)")
            return
        try:
            message = p.decode(frames[0])
        except RemoteProtocolError as exc:
            self._note_bad_frame(peer, str(exc))
            self._outbox.append((peer, p.encode(p.Error(0, f"bad frame: {exc}"))))
            return
        kind = type(message)
        info = self._clients.get(peer)
        if info is None and kind is not p.Hello and kind is not p.Bye:
            # A client we had forgotten (its lease lapsed while it was frozen) is back.
            info = ClientInfo("", peer.decode("utf-8", "replace"), 0)
            with self._mutex:
                self._clients[peer] = info
                self._clients_changed()
        if kind is p.Publish:
            # Outside the table mutex: publications never touch locks, and local delivery
            # must not hold up lock traffic.
            self._route(info.unique_name, info.name, message.receivers, message.item_count,  # type: ignore[union-attr]
                        message.items)
            return
        if kind is p.SubscribeCheck:
            with self._pub_lock:
                self._pub_outbox.append((topic_for(peer), p.encode(p.Probe(message.request_id))))
            return
        with self._mutex:
            now = self._clock()
            table = self._table
            table.touch(peer, now)
            if kind is p.Acquire:
                self._on_acquire(peer, message, now)  # type: ignore[arg-type]
            elif kind is p.Release:
                self._on_release(peer, message, now)  # type: ignore[arg-type]
            elif kind is p.Cancel:
                lock_id = self._queued.pop((peer, message.request_id), None)
                if lock_id is not None:
                    cancelled, effects = table.cancel(lock_id, now, peer)
                    self._dispatch(effects)
            elif kind is p.Heartbeat:
                self._outbox.append((peer, p.encode(p.Pong(message.request_id))))
            elif kind is p.Reclaim:
                reclaim: p.Reclaim = message  # type: ignore[assignment]
                granted = table.reclaim(reclaim.lock_id, peer, reclaim.names, reclaim.token, now)
                self._outbox.append((peer, p.encode(p.Reclaimed(reclaim.request_id, granted))))
            elif kind is p.ReclaimDone:
                info = self._clients.get(peer)
                if info is not None:
                    self._expected.discard(info.unique_name)
                if not self._expected and table.recover_until is not None:
                    self._dispatch(table.end_recovery(now))
            elif kind is p.Hello:
                hello: p.Hello = message  # type: ignore[assignment]
                changed = peer not in self._clients
                self._clients[peer] = ClientInfo(hello.name, hello.unique_name, hello.pid)
                if changed:
                    self._clients_changed()
                self._log.debug("client %s (%s) connected", hello.unique_name, hello.name)
                self._outbox.append((peer, p.encode(p.Welcome(
                    hello.request_id, self.unique_name, self.name, table.max_lock_time, table.lease,
                    self.pub_port, self.epoch))))
            elif kind is p.Bye:
                self._forget(peer, now)
            else:
                self._outbox.append((peer, p.encode(p.Error(message.request_id,
                                                            f"{kind.__name__} is not a request"))))

    def _note_bad_frame(self, peer: bytes, reason: str) -> None:
        # Log the first few bad frames of a peer, then one line per thousand: a misbehaving
        # peer must not be able to flood the log (and the disk) through us.
        counts = self._bad_frames
        if peer not in counts and len(counts) >= MAX_TRACKED_PEERS:
            counts.clear()
        count = counts[peer] = counts.get(peer, 0) + 1
        if count <= BAD_FRAMES_LOGGED:
            self._log.warning("bad frame from %r: %s", peer, reason)
        elif count % 1000 == 0:
            self._log.warning("%d bad frames from %r so far (latest: %s)", count, peer, reason)

    def _on_acquire(self, peer: bytes, message: p.Acquire, now: float) -> None:
        lock_id = self._new_id()
        key = (peer, message.request_id)
        if key in self._queued:
            self._outbox.append((peer, p.encode(p.Error(message.request_id, "request id in use"))))
            return
        effects = self._table.acquire(lock_id, peer, message.names, message.timeout, now,
                                      tag=message.request_id)
        if effects:
            self._dispatch(effects)
        else:
            self._queued[key] = lock_id

    def _on_release(self, peer: bytes, message: p.Release, now: float) -> None:
        held = self._table.get(message.lock_id)
        if held is not None and held.owner != peer:
            reply: p.Message = p.Error(message.request_id, "lock is held by another locker")
        else:
            released, effects = self._table.release(message.lock_id, now, peer)
            if effects:
                self._dispatch(effects)
            if message.request_id == 0:
                return  # a release sent without waiting: only an error is worth an answer
            reply = p.Released(message.request_id, 1 if released else 0)
        self._outbox.append((peer, p.encode(reply)))

    def _forget(self, peer: bytes, now: float) -> None:
        if self._clients.pop(peer, None) is not None:
            self._clients_changed()
        with self._pub_lock:
            self._pub_counts.pop(topic_for(peer), None)
        for key in [k for k in self._queued if k[0] == peer]:
            del self._queued[key]
        effects = self._table.drop_owner(peer, now)
        self._dispatch([e for e in effects if not isinstance(e, (Expired, Dropped))])
