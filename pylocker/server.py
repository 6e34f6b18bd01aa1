"""The serving driver: one I/O thread moves frames between a transport and the ServerCore.

The serving locker's own threads call ``acquire``/``release`` here directly
(under the core's mutex, no socket crossed) and wait on their own Event. Frames
that must leave through the transport are queued and sent by the I/O thread
only, since sockets belong to one thread. Callbacks into the locker (lost locks,
publications, a changed client list) run outside the mutex.
"""

from __future__ import annotations

import collections
import logging
import secrets
import threading
import time
from typing import Any, Callable, Final

from .badframes import BadFrameLog
from .errors import LimitMismatch, LockTimeout, NotConnected, NotStarted, PylockerError, TooManyWatches
from .flow import BATCH_ITEMS, PUBLISH_WAIT, PUBLISH_WINDOW
from .holds import PLAIN, Claim, LimitConflict
from .items import join_items
from .server_core import ServerCore
from .server_events import (
    BadFrame,
    ClientInfo,
    ClientsChanged,
    LocalGranted,
    LocalHolders,
    LocalLost,
    LocalPublications,
    LocalPublishAcked,
    LocalTimedOut,
    LockExpired,
    ServerEvent,
)
from .table import Granted
from .transport import listen
from .transport.address import Address
from .transport.base import Security, ServerTransport
from .watches import HoldersCallback, Rows

TICK: Final = 1.0  # housekeeping period of the I/O thread, seconds
START_TIMEOUT: Final = 10.0
LOCAL_SLACK: Final = 1.0  # how long a local waiter trusts the I/O thread past its deadline

log = logging.getLogger(__name__)

LostCallback = Callable[[str, str], None]
PublicationsCallback = Callable[[str, str, int, bytes], None]  # sender, sender name, count, items


_NO_EVENTS: Final[list[ServerEvent]] = []  # shared, never changed: nothing for the locker


Hook = Callable[[], None]  # tells a caller that does not wait on an Event (asyncio); must only schedule work


class _Waiter:
    __slots__ = ("error", "event", "hook", "token")

    def __init__(self, hook: Hook | None = None) -> None:
        self.event = threading.Event()
        self.token = 0
        self.error: PylockerError | None = None
        self.hook = hook

    def wake(self) -> None:
        self.event.set()
        if self.hook is not None:
            self.hook()


class Server:
    """Serves the lock table at an address; also the serving locker's in-process link to it."""

    def __init__(self, address: Address, security: Security, *, name: str, unique_name: str,
                 max_lock_time: float | None, lease: float | None, epoch: int = 0, first_token: int = 1,
                 recover_from: set[str] | None = None, grace: float = 5.0,
                 on_lost: LostCallback | None = None,
                 on_publications: PublicationsCallback | None = None,
                 on_clients_changed: Callable[[list[str]], None] | None = None,
                 on_tick: Callable[[], None] | None = None,
                 on_failure: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``on_failure(reason)``: the serving loop died (a bug): the locker must give up serving."""
        self._requested = address
        self._security = security
        self.name = name
        self.unique_name = unique_name
        self.epoch = epoch
        self._on_lost = on_lost
        self._on_publications = on_publications
        self._on_clients_changed = on_clients_changed
        self._on_tick = on_tick
        self._on_failure = on_failure
        self._clock = clock
        self._log_bad_frame = BadFrameLog(log, clock)
        self._core = ServerCore(name=name, unique_name=unique_name, now=clock(), max_lock_time=max_lock_time,
                                lease=lease, epoch=epoch, first_token=first_token, recover_from=recover_from,
                                grace=grace, id_prefix=secrets.token_hex(4) + "-")
        self._mutex = threading.Lock()
        # The serving locker's own publications not yet passed on to all their receivers:
        # at most PUBLISH_WINDOW, like a client's, so that a slow receiver slows it too.
        self._unacked_publications = 0
        self._acked = threading.Condition(self._mutex)
        self._waiters: dict[str, _Waiter] = {}
        self._room_hooks: list[Hook] = []  # publishers that wait for acknowledgements without a thread
        self._outbox: collections.deque[tuple[bytes, bytes]] = collections.deque()
        self._planned_wake = 0.0
        self._running = False
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._transport: ServerTransport | None = None
        self.address = address
        self.on_holders: HoldersCallback | None = None  # a name the serving locker watches changed

    # --------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Listen and serve from a new I/O thread; raises if listening fails."""
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
        """Stop serving: close the transport and fail every local waiter."""
        self._running = False
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(START_TIMEOUT)
        with self._mutex:
            for waiter in self._waiters.values():
                waiter.error = NotStarted()
                waiter.wake()
            self._waiters.clear()
            self._acked.notify_all()  # publishers waiting for acknowledgements: stopped now
            self._room()

    @property
    def running(self) -> bool:
        return self._running and self._thread is not None and self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self.running

    # ------------------------------------------------------- the locker's link
    def acquire(self, names: list[str], timeout: float | None) -> tuple[str, int]:
        """Lock ``names`` for the serving locker itself; returns (lock id, fencing token)."""
        return self._acquire(names, timeout, PLAIN)

    def claim(self, names: list[str], timeout: float | None, claim: Claim) -> tuple[str, int, tuple[str, ...]]:
        """Lock ``names`` as ``claim`` says; (lock id, fencing token, the names granted)."""
        lock_id, token = self._acquire(names, timeout, claim)
        return lock_id, token, self.granted_names(lock_id, names)

    def granted_names(self, lock_id: str, names: list[str]) -> tuple[str, ...]:
        """The names a claim was granted (one, for an any-of claim)."""
        with self._mutex:
            held = self._core.table.get(lock_id)
        return held.names if held is not None else tuple(dict.fromkeys(names))

    def status(self) -> dict[str, Any]:
        """The serving locker's status (``status.py``)."""
        with self._mutex:
            return self._core.status(self._clock())

    def inspect(self, name: str) -> Rows:
        """Who holds ``name`` and who waits for it (rows as in ``protocol.Holders``)."""
        with self._mutex:
            return self._core.describe(name, self._clock())

    def watch(self, name: str, on: bool) -> Rows | None:
        """Start (or stop) ``on_holders`` calls for ``name``; its rows now (None while recovering)."""
        with self._mutex:
            try:
                return self._core.local_watch(name, on, self._clock())
            except ValueError as exc:
                raise TooManyWatches(str(exc)) from None

    def _acquire(self, names: list[str], timeout: float | None, claim: Claim) -> tuple[str, int]:
        lock_id, token, waiter = self.submit(names, timeout, claim)
        if waiter is None:
            return lock_id, token
        return self._wait(lock_id, names, timeout, waiter)

    def submit(self, names: list[str], timeout: float | None, claim: Claim,
               hook: Hook | None = None) -> tuple[str, int, _Waiter | None]:
        """Ask for ``names`` without waiting: (lock id, token, None) if granted now, or (lock id, 0,
        waiter) if queued: ``waiter.wake()`` (and so ``hook()``) tells the answer. LockTimeout if neither."""
        if not self._running:
            raise NotStarted()
        waiter: _Waiter | None = None
        with self._mutex:
            core = self._core
            lock_id = core.new_lock_id()
            now = self._clock()
            if claim is PLAIN:
                first = core.local_acquire(lock_id, names, timeout, now)
            else:
                try:
                    first = core.local_claim(lock_id, names, timeout, claim, now)
                except LimitConflict as exc:
                    raise LimitMismatch(str(exc)) from None
            if first is None:
                waiter = self._waiters[lock_id] = _Waiter(hook)
            events = self._collect()
            # The I/O thread sleeps until its planned wake: a deadline this call added
            # (the grant's maxLockTime, the waiter's timeout) may need it sooner.
            grant = first if isinstance(first, Granted) else None
            max_lock_time = core.table.max_lock_time
            due = now + max_lock_time if grant is not None and max_lock_time else None
            if waiter is not None and timeout is not None:
                due = now + timeout
            if due is not None and due < self._planned_wake:
                self._wake()
        if events:
            self._after(events)
        if grant is not None:
            return lock_id, grant.token, None
        if waiter is not None:
            return lock_id, 0, waiter
        raise LockTimeout(names, timeout)

    def _wait(self, lock_id: str, names: list[str], timeout: float | None, waiter: _Waiter) -> tuple[str, int]:
        if waiter.event.wait(None if timeout is None else timeout + LOCAL_SLACK):
            return self.outcome(lock_id, names, timeout, waiter)
        if self.give_up(lock_id):  # the I/O thread is late or gone: decide here
            raise LockTimeout(names, timeout)
        waiter.event.wait()
        return self.outcome(lock_id, names, timeout, waiter)

    def give_up(self, lock_id: str) -> bool:
        """Withdraw a queued request of the serving locker; False if it was answered already."""
        with self._mutex:
            cancelled = self._core.local_cancel(lock_id, self._clock())
            if cancelled:
                self._waiters.pop(lock_id, None)
            events = self._collect()
        self._after(events)
        return cancelled

    @staticmethod
    def outcome(lock_id: str, names: list[str], timeout: float | None, waiter: _Waiter) -> tuple[str, int]:
        if waiter.error is not None:
            raise waiter.error
        if waiter.token == 0:
            raise LockTimeout(names, timeout)
        return lock_id, waiter.token

    def release(self, lock_id: str, *, held: bool = False) -> int:
        """Release a lock of the serving locker: 1 released, 0 not held by it."""
        if not self._running:
            raise NotStarted()
        with self._mutex:
            released = self._core.local_release(lock_id, self._clock())
            events = self._collect()
        if events:
            self._after(events)
        return 1 if released else 0

    def reclaim(self, lock_id: str, names: list[str], token: int, expires_at: float | None = None,
                claim: Claim = PLAIN) -> bool:
        """Take back one of the serving locker's own locks after a failover.

        ``expires_at`` is ignored: this table's own maxLockTime clock applies.
        """
        with self._mutex:
            return self._core.local_reclaim(lock_id, names, token, self._clock(), claim)

    def reclaim_done(self) -> None:
        """The serving locker has re-claimed all it held."""
        with self._mutex:
            self._core.reclaim_done(self.unique_name, self._clock())
            events = self._collect()
        self._after(events)

    def publish(self, receivers: list[str] | None, items: list[bytes], lossy: bool = False) -> None:
        """Fan the serving locker's own publications out to the others (waits while receivers lag)."""
        if not self._running:
            raise NotStarted()
        for start in range(0, len(items), BATCH_ITEMS):
            batch = items[start:start + BATCH_ITEMS]
            deadline = time.monotonic() + PUBLISH_WAIT
            with self._mutex:
                while self._unacked_publications >= PUBLISH_WINDOW and not lossy:
                    remaining = deadline - time.monotonic()
                    if not self._running:
                        raise NotStarted()
                    if remaining <= 0:
                        raise NotConnected("receivers have taken no publication for "
                                           f"{PUBLISH_WAIT:.0f} s (frozen, and still within their lease)")
                    self._acked.wait(remaining)
                self._unacked_publications += 1
                self._core.publish(receivers, len(batch), join_items(batch), lossy)
                events = self._collect()
            self._after(events)

    def publish_room(self, hook: Hook) -> bool:
        """Whether ``publish`` would not wait now; if it would, ``hook()`` is called (once) when it may not."""
        with self._mutex:
            if self._unacked_publications < PUBLISH_WINDOW or not self._running:
                return True
            self._room_hooks.append(hook)
            return False

    def _room(self) -> None:
        hooks, self._room_hooks = self._room_hooks, []
        for hook in hooks:
            hook()

    @property
    def dropped_publications(self) -> int:
        return 0  # the serving locker's mailbox is fed in process: nothing is dropped on the way

    @property
    def valid_until(self) -> float | None:
        return None  # the serving locker is the authority on its own locks

    def expiry(self, lock_id: str) -> float | None:
        return None  # its maxLockTime is applied by its own table, which tells it (LocalLost)

    def holds(self, lock_id: str) -> bool:
        return True  # nothing lapses between the serving locker and its own table

    def close(self, say_bye: bool = True) -> None:
        """Stop serving (``say_bye`` is for client links)."""
        self.stop()

    # ------------------------------------------------------------------ queries
    @property
    def recovering(self) -> bool:
        return self._core.recovering

    def snapshot(self) -> list[tuple[str, tuple[str, ...], ClientInfo | None, int]]:
        """Every held lock: (lock id, names, holder (None for the server), token)."""
        with self._mutex:
            core = self._core
            return [(h.lock_id, h.names, core.holder_info(h.owner), h.token) for h in core.table.held_locks()]

    def waiters(self, name: str) -> list[str]:
        """Lock ids waiting for ``name``, in the order they will be granted."""
        with self._mutex:
            return self._core.table.waiters(name)

    def clients(self) -> dict[bytes, ClientInfo]:
        with self._mutex:
            return self._core.clients()

    def client_names(self) -> list[str]:
        return [info.unique_name for info in self.clients().values()]

    def set_max_lock_time(self, seconds: float | None) -> None:
        with self._mutex:
            self._core.table.max_lock_time = seconds

    @property
    def max_lock_time(self) -> float | None:
        return self._core.table.max_lock_time

    @property
    def lease(self) -> float | None:
        return self._core.table.lease

    @property
    def last_token(self) -> int:
        return self._core.table.last_token

    @property
    def port(self) -> int:
        return self.address.port

    # ---------------------------------------------------------------- internals
    def _collect(self) -> list[ServerEvent]:
        """Take the core's output (caller holds the mutex): frames to the I/O thread, waiters woken.

        Returns the events that call back into the locker, to run once the mutex is released.
        """
        out = self._core.take()
        if not (out.sends or out.events):
            return _NO_EVENTS
        if out.sends:
            self._outbox.extend(out.sends)
        later: list[ServerEvent] = []
        for event in out.events:
            if isinstance(event, LocalPublishAcked):
                self._unacked_publications -= event.batches
                self._acked.notify_all()
                if self._room_hooks:
                    self._room()
            elif isinstance(event, (LocalGranted, LocalTimedOut)):
                waiter = self._waiters.pop(event.lock_id, None)
                if waiter is not None:
                    if isinstance(event, LocalGranted):
                        waiter.token = event.token
                    waiter.wake()
            else:
                later.append(event)
        if out.sends and threading.current_thread() is not self._thread:
            self._wake()
        return later

    def _after(self, events: list[ServerEvent]) -> None:
        for event in events:
            if isinstance(event, LocalPublications):
                if self._on_publications is not None:
                    self._on_publications(event.sender, event.sender_name, event.item_count, event.items)
            elif isinstance(event, LocalLost):
                if self._on_lost is not None:
                    self._on_lost(event.lock_id, event.reason)
            elif isinstance(event, ClientsChanged):
                if self._on_clients_changed is not None:
                    self._on_clients_changed(list(event.clients))
            elif isinstance(event, LockExpired):
                log.info("lock %s of %r expired (%s)", event.lock_id, event.peer, event.reason)
            elif isinstance(event, BadFrame):
                self._log_bad_frame(event)
            elif isinstance(event, LocalHolders) and self.on_holders is not None:
                self.on_holders(event.name, event.holders, event.waiters)

    def _wake(self) -> None:
        if (transport := self._transport) is not None:
            transport.wake()

    def _run(self) -> None:
        try:
            transport = listen(self._requested, self._security, log, peer_timeout=self.lease)
        except BaseException as exc:  # noqa: BLE001  reported to start()'s caller, who re-raises it
            self._start_error = exc
            self._started.set()
            return
        self._transport, self.address = transport, transport.address
        self._started.set()
        clock, core = self._clock, self._core
        next_tick = clock() + TICK
        batch: list[tuple[bytes, list[bytes]]] = []
        try:
            while self._running:
                now = clock()
                if now >= next_tick:  # first: woken from a long pause, the term check may end serving
                    next_tick = now + TICK
                    if self._on_tick is not None:
                        self._on_tick()
                    if not self.running:  # the term check ended serving: nothing in the batch is answered
                        break
                # One visit per wake-up: what came (it renews leases first), what is due, the
                # next deadline; then every reply of the batch leaves in one flush.
                with self._mutex:
                    if batch:
                        receive = core.receive
                        for peer, frames in batch:
                            receive(peer, frames, now)
                    core.tick(now)
                    events = self._collect()
                    deadline = core.next_deadline()
                    wake_at = next_tick if deadline is None else min(deadline, next_tick)
                    self._planned_wake = wake_at
                if events:
                    self._after(events)
                self._flush(transport)
                batch = list(transport.receive()) if transport.poll(max(0.0, wake_at - now)) else []
        except Exception as exc:
            log.exception("the serving loop failed")
            failed: Exception | None = exc
        else:
            failed = None
        finally:
            self._running = False
            self._transport = None
            transport.close()
        if failed is not None and self._on_failure is not None:
            # Fail-stop: a locker whose serving loop is dead must not keep the election.
            self._on_failure(f"its serving loop failed ({type(failed).__name__}: {failed})")

    def _flush(self, transport: ServerTransport) -> None:
        outbox = self._outbox
        while outbox:
            unsent: list[tuple[bytes, bytes]] = []
            while outbox:
                peer, frame = outbox.popleft()
                if not transport.send(peer, frame):
                    unsent.append((peer, frame))
            if not unsent:
                break
            with self._mutex:  # an undone grant goes to the next waiter: its frame is sent here too
                now = self._clock()
                for peer, frame in unsent:
                    self._core.undeliverable(peer, frame, now)
                events = self._collect()
            if events:
                self._after(events)

