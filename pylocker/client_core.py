"""The connecting side's protocol logic, sans I/O: frames and the time in, frames and events out.

Theory of operation
-------------------
``ClientCore`` is one connection to a serving locker, minus sockets, threads and
clocks. The driver (``client.py``) asks it for requests (``request``), feeds it
what arrives (``receive``) and the passing of time
(``tick``), and collects with ``take()`` the frames to send and the events for
the locker: replies to requests, locks taken away, publications, and a lapsed
lease.

The lease clock (the rule Chubby and ZooKeeper sessions keep)
-------------------------------------------------------------
The server frees a client's locks once it has heard nothing from it for
``lease`` seconds. The client cannot know when the server last heard from it,
but it knows a lower bound: the moment it *sent* the latest request that the
server has answered. So the client considers its locks valid only until::

    valid_until = acked_send + lease * (1 - LEASE_DRIFT)

and reports ``LeaseLapsed`` when that passes without a newer answer. A lock
granted under a ``maxLockTime`` is likewise given up (``LockExpired``) at the
acquire's *send* time plus maxLockTime, less the same margin, not when the
server's ``Expire`` arrives, which may come after the name is granted again. Because
the server's "last heard" is never earlier than that send, the client stops
believing in its locks before the server can re-grant them, provided its clock
does not run more than ``LEASE_DRIFT`` slower than the server's. Heartbeats go
out on the same clock (every ``lease / HEARTBEATS_PER_LEASE`` without an
answered request), so a client busy publishing still renews its lease.

Publications flow by credit (``flow.py``): the core credits what it received back to
the server, ``CREDIT_EVERY`` batches at a time, and counts its own batches the server
has not acknowledged yet (``can_publish``: fewer than ``PUBLISH_WINDOW``).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterator
from typing import Any, Callable, Final, NamedTuple, Union

from . import protocol as p
from .errors import NOT_WELCOMED, RemoteProtocolError
from .flow import CREDIT_EVERY, PUBLISH_WINDOW
from .holds import untimed
from .items import decode_items

HEARTBEAT_MAX: Final = 1.0  # seconds between heartbeats at most
HEARTBEAT_MIN: Final = 0.02
HEARTBEATS_PER_LEASE: Final = 4  # so that a late answer or two never lapses the lease
LEASE_DRIFT: Final = 0.1  # the client's clock may run up to 10 % slower than the server's
_GRANTS: Final = (p.Grant, p.GrantNames, p.Reclaimed)  # answers that hand us a lock, which the lease must vouch for


class Reply(NamedTuple):
    """The answer to the request ``request_id``."""

    request_id: int
    message: p.Message


class LockExpired(NamedTuple):
    """The server took a lock away (maxLockTime, lease)."""

    lock_id: str
    reason: str


class Refused(NamedTuple):
    """A refusal that answers no waiting request (for the log)."""

    code: int
    detail: str


class Publications(NamedTuple):
    """Raw publication items (checked one by one by the mailbox) from one sender."""

    sender: str
    sender_name: str
    items: list[Any]


class LeaseLapsed(NamedTuple):
    """No answer for a lease: every lock of this connection must be considered lost."""

    reason: str


class BadFrame(NamedTuple):
    reason: str


class HoldersChanged(NamedTuple):
    """A name this client watches has new holders (a ``Holders`` push)."""

    holders: p.Holders


ClientEvent = Union[Reply, LockExpired, Refused, Publications, LeaseLapsed, BadFrame, HoldersChanged]


_NOTHING: Final[tuple[list[bytes], list[ClientEvent]]] = ([], [])  # shared: nothing produced


class _Pending:
    __slots__ = ("is_acquire", "sent_at", "timed")

    def __init__(self, sent_at: float, is_acquire: bool, timed: bool = True) -> None:
        self.sent_at = sent_at
        self.is_acquire = is_acquire
        self.timed = timed  # its grant runs out at maxLockTime (not a leadership or membership)


class ClientCore:
    """One connection's calls, replies, heartbeats and lease clock."""

    def __init__(self, *, name: str, unique_name: str, pid: int, now: float,
                 request_ids: Iterator[int] | None = None) -> None:
        """``request_ids``: shared by every connection of one locker, so that an id never
        repeats under its identity and a late answer meant for an earlier connection can
        never be taken for the answer to a new request."""
        self.name = name
        self.unique_name = unique_name
        self.pid = pid
        self.welcome: p.Welcome | None = None
        self.lapsed = False
        self.unacked_publications = 0  # our Publish frames the server has not acknowledged
        self._uncredited = 0  # batches received and not credited back yet
        self.dropped_publications = 0
        self.malformed_publications = 0
        self._ids = request_ids if request_ids is not None else itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._acked_send = now  # when the latest answered request left
        self._last_heartbeat = now
        self._next_before = 0  # what the server has sent us so far (Deliver.before): gaps are misses
        # Every lock held through this connection -> when our maxLockTime clock gives it up
        # (infinity without one). A lock leaves it when released, expired or taken away.
        self._held: dict[str, float] = {}
        self._expiry_heap: list[tuple[float, str]] = []  # (give-up time, lock id); stale entries skipped
        self._sends: list[bytes] = []
        self._events: list[ClientEvent] = []

    # ------------------------------------------------------------------ output
    def take(self) -> tuple[list[bytes], list[ClientEvent]]:
        """Frames to send and events, in order, since the last ``take`` (the caller's to read only)."""
        if not self._sends and not self._events:
            return _NOTHING
        out = self._sends, self._events
        self._sends, self._events = [], []
        return out

    # ---------------------------------------------------------------- requests
    def hello(self, now: float) -> int:
        """Say who we are; the answer is a ``Welcome``."""
        return self.request(lambda rid: p.Hello(rid, self.name, self.unique_name, self.pid), now)

    def request(self, build: Callable[[int], p.Message], now: float, *, is_acquire: bool = False) -> int:
        """Send the message ``build(request_id)``; its answer comes as a ``Reply`` event."""
        request_id = next(self._ids)
        message = build(request_id)
        timed = not (is_acquire and isinstance(message, (p.Acquire, p.Claim)) and untimed(message.names))
        self._pending[request_id] = _Pending(now, is_acquire, timed)
        self._sends.append(self._encode(message))
        return request_id

    def send(self, message: p.Message) -> None:
        """Send a message nobody waits an answer for (request id 0)."""
        self._sends.append(self._encode(message))

    def _encode(self, message: p.Message) -> bytes:
        if type(message) is p.Release:
            self._held.pop(message.lock_id, None)  # from its sending on, the lock is not ours
        return p.encode(message)

    def abandon(self, request_id: int) -> None:
        """The caller stopped waiting: withdraw a queued acquire; a late grant is released."""
        pending = self._pending.pop(request_id, None)
        if pending is not None and pending.is_acquire:
            self._sends.append(p.encode(p.Cancel(request_id)))

    @property
    def waiting(self) -> int:
        """Requests sent and not answered yet."""
        return len(self._pending)

    # ------------------------------------------------------------------- input
    def receive(self, frame: bytes, now: float) -> None:
        """One frame from the server's request channel."""
        try:
            message = p.decode(frame)
        except RemoteProtocolError as exc:
            self._events.append(BadFrame(str(exc)))
            return
        if type(message) is p.Deliver:
            self._publications(message.sender, message.sender_name, message.before, message.item_count,
                               message.items)
            self._uncredited += 1
            if self._uncredited >= CREDIT_EVERY:
                self._sends.append(p.encode(p.Credit(0, self._uncredited)))
                self._uncredited = 0
            return
        if type(message) is p.PubAck:
            self.unacked_publications = max(0, self.unacked_publications - message.batches)
            return
        if type(message) is p.Holders and not message.request_id:
            self._events.append(HoldersChanged(message))
            return
        if isinstance(message, p.Expire):
            # maxLockTime: unless our own clock has told already (or we let go first).
            if self._held.pop(message.lock_id, None) is not None or message.reason != "maxLockTime":
                self._events.append(LockExpired(message.lock_id, message.reason))
            return
        self._answer(message, now)

    def _answer(self, message: p.Message, now: float) -> None:
        if type(message) is p.Error and message.code == NOT_WELCOMED and not self.lapsed:
            # The server has forgotten this connection, and every lock it held here with it.
            self.lapsed = True
            self._events.append(LeaseLapsed("the serving locker no longer knows this connection"))
        request_id = message.request_id
        pending = self._pending.pop(request_id, None) if request_id else None
        if pending is None:
            if isinstance(message, (p.Grant, p.GrantNames)):
                # Granted after its caller gave up: give it back at once.
                self._sends.append(p.encode(p.Release(0, message.lock_id)))
            elif isinstance(message, p.Error):
                self._events.append(Refused(message.code, message.detail))
            return
        if pending.sent_at > self._acked_send:
            self._acked_send = pending.sent_at
        if type(message) in _GRANTS and not self._vouched_for(now):
            message = self._too_late(message)
        if isinstance(message, p.Welcome):
            self.welcome = message
        elif isinstance(message, (p.Grant, p.GrantNames)):
            max_lock_time = self.welcome.max_lock_time if self.welcome is not None and pending.timed else None
            # The server's clock for maxLockTime starts at the grant, never before our send.
            self.keep_expiry(message.lock_id,
                             pending.sent_at + max_lock_time * (1 - LEASE_DRIFT) if max_lock_time else None)
        self._events.append(Reply(request_id, message))

    def _publications(self, sender: str, sender_name: str, before: int, count: int, packed: bytes) -> None:
        """A batch the server passed on to us; counts what it could not (lossy batches)."""
        if before > self._next_before:
            self.dropped_publications += before - self._next_before
        self._next_before = before + count
        try:
            items = decode_items(packed, count)
        except RemoteProtocolError as exc:
            self.malformed_publications += count
            self._events.append(BadFrame(f"publication batch from {sender}: {exc}"))
            return
        self._events.append(Publications(sender, sender_name, items))

    def _vouched_for(self, now: float) -> bool:
        """Whether the lease still vouches, at ``now``, for what the server granted us."""
        valid_until = self.valid_until
        return not self.lapsed and (valid_until is None or now < valid_until)

    def _too_late(self, message: p.Message) -> p.Message:
        """A grant that arrives once our lease ran out (we were frozen, or the network was).

        The server may have freed the name on the lapse and granted it to another: it is
        not ours to use. Give it back (in case it still was) and tell the caller no.
        """
        if not self.lapsed:
            self.lapsed = True
            self._events.append(LeaseLapsed("a grant arrived after our lease ran out"))
        if isinstance(message, (p.Grant, p.GrantNames)):
            self._sends.append(p.encode(p.Release(0, message.lock_id)))
            return p.Error(message.request_id, NOT_WELCOMED, "granted after our lease ran out")
        return p.Reclaimed(message.request_id, False)

    @property
    def can_publish(self) -> bool:
        """Whether another batch may leave now (fewer than PUBLISH_WINDOW unacknowledged)."""
        return self.unacked_publications < PUBLISH_WINDOW

    def publish(self, receivers: list[str] | None, count: int, items: bytes, lossy: bool = False) -> bytes:
        """The frame of one batch of our publications; counted until the server acknowledges it."""
        self.unacked_publications += 1
        return p.encode(p.Publish(0, receivers, count, items, lossy))

    # -------------------------------------------------------------------- time
    @property
    def lease(self) -> float | None:
        return self.welcome.lease if self.welcome is not None else None

    @property
    def valid_until(self) -> float | None:
        """Until when this connection's locks are certainly still ours (None: no lease)."""
        lease = self.lease
        if lease is None:
            return None
        return self._acked_send + lease * (1 - LEASE_DRIFT)

    def expiry(self, lock_id: str) -> float | None:
        """When this client gives up ``lock_id`` by its maxLockTime clock (None: no limit, or not held)."""
        expires_at = self._held.get(lock_id, math.inf)
        return None if expires_at == math.inf else expires_at

    def keep_expiry(self, lock_id: str, expires_at: float | None) -> None:
        """Hold ``lock_id`` through this connection until ``expires_at`` (None: no maxLockTime clock).

        Grants call it; a lock re-claimed on a new connection keeps its first grant's clock.
        """
        self._held[lock_id] = math.inf if expires_at is None else expires_at
        if expires_at is not None:
            heapq.heappush(self._expiry_heap, (expires_at, lock_id))

    def holds(self, lock_id: str, now: float) -> bool:
        """Whether a lock granted on this connection may still be taken as ours at ``now``."""
        valid_until = self.valid_until
        if self.lapsed or (valid_until is not None and now >= valid_until):
            return False
        return now < self._held.get(lock_id, -math.inf)

    def heartbeat_interval(self) -> float:
        lease = self.lease
        if lease is None:
            return HEARTBEAT_MAX
        return max(HEARTBEAT_MIN, min(HEARTBEAT_MAX, lease / HEARTBEATS_PER_LEASE))

    def tick(self, now: float) -> None:
        """Send a heartbeat when one is due; report a lapsed lease once, expired locks once."""
        if self.welcome is None or self.lapsed:
            return
        heap = self._expiry_heap
        while heap and heap[0][0] <= now:
            expires_at, lock_id = heapq.heappop(heap)
            if self._held.get(lock_id) == expires_at:
                del self._held[lock_id]
                self._events.append(LockExpired(lock_id, "maxLockTime"))
                self._sends.append(p.encode(p.Release(0, lock_id)))  # we let go: free the name now
        valid_until = self.valid_until
        if valid_until is not None and now >= valid_until:
            self.lapsed = True
            self._events.append(LeaseLapsed("the serving locker has not answered for a lease"))
            return
        if now >= self._heartbeat_due():
            self._last_heartbeat = now
            self.request(p.Heartbeat, now)

    def _heartbeat_due(self) -> float:
        return max(self._acked_send, self._last_heartbeat) + self.heartbeat_interval()

    def next_deadline(self) -> float | None:
        """When ``tick`` has work to do next (None before the Welcome or after a lapse)."""
        if self.welcome is None or self.lapsed:
            return None
        due = self._heartbeat_due()
        heap = self._expiry_heap
        while heap and self._held.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)  # released or told already
        if heap:
            due = min(due, heap[0][0])
        valid_until = self.valid_until
        return due if valid_until is None else min(due, valid_until)
