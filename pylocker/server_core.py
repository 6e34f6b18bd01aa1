"""The serving side's protocol logic, sans I/O: frames and the time in, frames and events out.

Theory of operation
-------------------
``ServerCore`` is what a serving locker *is*, minus sockets, threads and clocks.
The I/O driver (``server.py``) feeds it what arrives (``receive(peer, frames,
now)``), calls for the serving locker's own threads (``local_acquire`` and its
siblings) and the passing of time (``tick(now)``); after each call it collects
the output with ``take()``:

* ``sends``: (peer, frame) pairs, in order (everything travels on the request channel);
* ``events``: what the serving locker itself must hear about (its own grants,
  time-outs and lost locks, publications addressed to it, a changed client list).

Rules kept here (the lock rules themselves live in ``table.py``):

* **Dispatch by message type.** Each request type has one handler in a table;
  anything else is refused with a numeric code (``errors.BAD_FRAME``), never
  with a free string. A malformed frame costs its sender an error reply and a
  log line at most; it never raises out of ``receive``.
* **Any traffic renews a client's lease**, publications included, so a client
  that publishes continuously keeps its locks.
* **Recovery after a failover.** A core started with ``recover_from`` (the
  previous server's clients) grants nothing new until each of them has said it
  re-claimed what it held, or until ``grace`` has passed.
* **Routing.** A publication goes to the receivers it names (unknown ones are
  ignored), or to every receiver but its sender, as each one's credit allows
  (``flow.py``): a slow receiver slows its publishers instead of losing messages.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Final, cast

from . import protocol as p
from .errors import BAD_FRAME, DROPPED, NOT_HOLDER, NOT_WELCOMED, RemoteProtocolError
from .flow import Flow
from .server_claims import LOCAL, ClaimsMixin
from .server_events import (
    BadFrame,
    ClientInfo,
    ClientsChanged,
    LocalGranted,
    LocalLost,
    LocalPublications,
    LocalPublishAcked,
    LocalTimedOut,
    LockExpired,
    Output,
    ServerEvent,
)
from .server_recovery import RecoveryMixin
from .stats import ServerStats
from .table import Dropped, Effect, Expired, Granted, LockTable, TimedOut
from .watches import Watches

MAX_DETAIL: Final = 200  # characters of a refusal's detail: never echo a peer's input at length
BAD_FRAMES_LOGGED: Final = 5  # bad frames reported one by one per peer, before summaries
MAX_TRACKED_PEERS: Final = 10_000


_NOTHING: Final = Output([], [])


class ServerCore(ClaimsMixin, RecoveryMixin):
    """One serving locker's sessions, dispatch, routing and recovery, around a LockTable."""

    def __init__(self, *, name: str, unique_name: str, now: float, max_lock_time: float | None = None,
                 lease: float | None = None, epoch: int = 0, first_token: int = 1,
                 recover_from: set[str] | None = None, grace: float = 5.0, id_prefix: str = "") -> None:
        self.name = name
        self.unique_name = unique_name
        self.epoch = epoch
        self._first_token = first_token
        # After a failover: the clients of the previous server that may still hold locks.
        self._expected = set(recover_from) if recover_from is not None else set()
        self.table = LockTable(max_lock_time=max_lock_time, lease=lease, first_token=first_token,
                               recover_until=now + grace if recover_from is not None else None)
        self._clients: dict[bytes, ClientInfo] = {}
        # unique name -> the connection that speaks for it. Names are public (the server file
        # lists them); connections are known by their routing id, a secret of each locker.
        self._names: dict[str, bytes] = {}
        self._queued: dict[tuple[bytes, int], str] = {}  # (peer, request id) -> waiting lock id
        self.flow = Flow()  # publications on their way to the receivers, as their credit allows
        self._bad_frames: dict[bytes, int] = {}
        self._ids = itertools.count(1)
        self._foreign_ids = False  # a re-claim was granted: ids of a previous server are in the table
        self._id_prefix = id_prefix
        self._clients_dirty = recover_from is not None  # the server file must name whom we wait for
        self.watches = Watches()  # names whose holders are pushed to their watchers on every change
        self._any_of: set[str] = set()  # lock ids of any-of claims: granted with the name they got
        self._now = now  # the time of the latest call, for descriptions pushed from take()
        self._unsettled = False
        self.stats = ServerStats(now)  # what it granted, refused and expired, and how long each waited and held
        self._asked_at: dict[str, float] = {}  # lock id of a waiting request -> when it was asked for
        self._sends: list[tuple[bytes, bytes]] = []
        self._events: list[ServerEvent] = []
        # Each handler takes the decoded message of its own type (Any here: the table is keyed on that type).
        # What any peer may send: a hello, a goodbye, a withdrawal.
        self._greetings: dict[type, Callable[[bytes, ClientInfo | None, Any, float], None]] = {
            p.Hello: self._on_hello,
            p.Bye: self._on_bye,
            p.Cancel: self._on_cancel,
        }
        # What only a peer that said hello may send (others are refused NOT_WELCOMED, and
        # never reach the client list, so they cannot inflate the server file).
        self._handlers: dict[type, Callable[[bytes, ClientInfo, Any, float], None]] = {
            p.Acquire: self._on_acquire,
            p.Release: self._on_release,
            p.Heartbeat: self._on_heartbeat,
            p.Publish: self._on_publish,
            p.SubscribeCheck: self._on_subscribe_check,
            p.Credit: self._on_credit,
            p.Reclaim: self._on_reclaim,
            p.ReclaimDone: self._on_reclaim_done,
            p.Claim: self._on_claim,
            p.Inspect: self._on_inspect,
            p.Watch: self._on_watch,
            p.Status: self._on_status,
        }

    # ------------------------------------------------------------------ output
    def take(self) -> Output:
        """Everything produced since the last ``take``, in order; the core forgets it.

        The lists returned are the caller's to read, not to change (nothing produced:
        one shared empty Output, so that the lock hot path allocates nothing here).
        """
        if self.flow.has_output:
            self._take_flow()
        if self.watches and (self._unsettled or self.watches.has_changes):
            self._push_changes()
        if not (self._sends or self._events or self._clients_dirty):
            return _NOTHING
        if self._clients_dirty:
            self._clients_dirty = False
            self._events.append(ClientsChanged(self.successor_must_wait_for()))
        out = Output(self._sends, self._events)
        self._sends, self._events = [], []
        return out

    @property
    def has_output(self) -> bool:
        return bool(self._sends or self._events or self._clients_dirty or self.flow.has_output)

    # ----------------------------------------------------------- remote input
    def receive(self, peer: bytes, frames: list[bytes], now: float) -> None:
        """One message from ``peer`` (its frames after the routing id)."""
        if len(frames) != 1:
            self._bad_frame(peer, f"a {len(frames)}-part message (dropped)")
            return
        try:
            message = p.decode(frames[0])
        except RemoteProtocolError as exc:
            self._bad_frame(peer, str(exc))
            self._refuse(peer, 0, BAD_FRAME, f"bad frame: {exc}")
            return
        info = self._clients.get(peer)
        self._now = now
        if info is not None:
            self.table.touch(peer, now)  # any traffic renews the lease
        kind = type(message)
        handler = self._handlers.get(kind)
        if handler is not None:
            if info is None:
                self._refuse(peer, message.request_id, NOT_WELCOMED, "this connection is not known here: say hello")
            else:
                handler(peer, info, message, now)
            return
        greeting = self._greetings.get(kind)
        if greeting is None:
            self._refuse(peer, message.request_id, BAD_FRAME, f"{kind.__name__} is not a request")
            return
        greeting(peer, info, message, now)

    def _on_hello(self, peer: bytes, info: ClientInfo | None, hello: p.Hello, now: float) -> None:
        speaker = self._names.get(hello.unique_name)
        if speaker is not None and speaker != peer:
            # A name is public; a connection is not: a peer that names itself after another
            # locker gets nothing of that locker's (its locks, its messages). The name is free
            # again once its connection says goodbye or its lease lapses (``tick``).
            self._refuse(peer, hello.request_id, NOT_WELCOMED, "another connection speaks for this locker")
            return
        if info is None or info.unique_name != hello.unique_name or info.name != hello.name:
            if info is not None and self._names.get(info.unique_name) == peer:
                del self._names[info.unique_name]
            self._clients[peer] = ClientInfo(hello.name, hello.unique_name, hello.pid)
            self._names[hello.unique_name] = peer
            self._clients_dirty = True
        self.table.touch(peer, now)
        table = self.table
        self._sends.append((peer, p.encode(p.Welcome(hello.request_id, self.unique_name, self.name,
                                                     table.max_lock_time, table.lease,
                                                     self.epoch))))

    def _on_acquire(self, peer: bytes, info: ClientInfo, acquire: p.Acquire, now: float) -> None:
        key = (peer, acquire.request_id)
        if key in self._queued:
            self._refuse(peer, acquire.request_id, BAD_FRAME, "request id in use")
            return
        lock_id = self.new_lock_id()
        effects = self.table.acquire(lock_id, peer, acquire.names, acquire.timeout, now, tag=acquire.request_id)
        if effects:
            self._apply(effects)
        else:
            self._queued[key] = lock_id
            self._asked_at[lock_id] = now

    def _on_release(self, peer: bytes, info: ClientInfo, release: p.Release, now: float) -> None:
        held = self.table.get(release.lock_id)
        if held is not None and held.owner != peer:
            self._refuse(peer, release.request_id, NOT_HOLDER, "lock is held by another locker")
            return
        if held is not None:
            kept = now - held.granted_at
            mine = self.stats.owner(peer).hold
            mine.counts[self.stats.released(held.names, kept)] += 1
            mine.total += kept
            if self.watches:
                self.watches.changed(held.names)
        released, effects = self.table.release(release.lock_id, now, peer)
        if effects:
            self._apply(effects)
        if release.request_id:  # 0: sent without waiting; only a refusal is worth an answer
            self._sends.append((peer, p.encode(p.Released(release.request_id, 1 if released else 0))))

    def _on_cancel(self, peer: bytes, info: ClientInfo | None, message: p.Cancel, now: float) -> None:
        lock_id = self._queued.pop((peer, message.request_id), None)
        if lock_id is not None:
            _, effects = self.table.cancel(lock_id, now, peer)
            self._any_of.discard(lock_id)
            self._asked_at.pop(lock_id, None)
            self._apply(effects)

    def _on_heartbeat(self, peer: bytes, info: ClientInfo, message: p.Message, now: float) -> None:
        self._sends.append((peer, p.encode(p.Pong(message.request_id))))

    def _on_bye(self, peer: bytes, info: ClientInfo | None, message: p.Message, now: float) -> None:
        self.forget(peer, now)

    def _on_publish(self, peer: bytes, info: ClientInfo, publish: p.Publish, now: float) -> None:
        self._route(peer, info.unique_name, info.name, publish.receivers, publish.item_count, publish.items,
                    publish.lossy)

    def _on_subscribe_check(self, peer: bytes, info: ClientInfo, message: p.Message, now: float) -> None:
        self.flow.add_receiver(peer)  # from now on, publications come to this locker
        self._sends.append((peer, p.encode(p.Probe(message.request_id))))

    def _on_credit(self, peer: bytes, info: ClientInfo, credit: p.Credit, now: float) -> None:
        self.flow.credit(peer, credit.batches)

    def new_lock_id(self) -> str:
        """A lock id in use nowhere in the table (re-claims bring ids of their own)."""
        if not self._foreign_ids:  # every id in the table is one of ours, all distinct
            return f"{self._id_prefix}{next(self._ids):x}"
        in_use = self.table.in_use
        while True:
            lock_id = f"{self._id_prefix}{next(self._ids):x}"
            if not in_use(lock_id):
                return lock_id

    def local_acquire(self, lock_id: str, names: list[str], timeout: float | None, now: float) -> Effect | None:
        """The serving locker asks for ``names``: Granted or TimedOut now, or None (queued).

        A queued request is answered later by a ``LocalGranted`` or ``LocalTimedOut`` event.
        """
        self._now = now
        effects = self.table.acquire(lock_id, LOCAL, names, timeout, now)
        if not effects:
            self._asked_at[lock_id] = now
            return None
        first = effects[0]
        if type(first) is Granted:
            self.stats.granted(first.names, 0.0)
            if self.watches:
                self.watches.changed(first.names)
        else:
            self.stats.timed_out(first.names)
        if len(effects) > 1:
            self._apply(effects[1:])
        return first

    def local_release(self, lock_id: str, now: float) -> bool:
        held = self.table.get(lock_id)
        self._now = now
        if held is not None and held.owner == LOCAL:
            self.stats.released(held.names, now - held.granted_at)
            if self.watches:
                self.watches.changed(held.names)
        released, effects = self.table.release(lock_id, now, LOCAL)
        if effects:
            self._apply(effects)
        return released

    def local_cancel(self, lock_id: str, now: float) -> bool:
        """Withdraw a queued local request; False when it is no longer waiting (answered already)."""
        cancelled, effects = self.table.cancel(lock_id, now, LOCAL)
        if cancelled:
            self._any_of.discard(lock_id)
            self._asked_at.pop(lock_id, None)
        self._apply(effects)
        return cancelled

    def publish(self, receivers: list[str] | None, count: int, items: bytes, lossy: bool = False) -> None:
        """Fan a batch of the serving locker's own publications out; acknowledged by ``LocalPublishAcked``."""
        self._route(LOCAL, self.unique_name, self.name, receivers, count, items, lossy)

    # -------------------------------------------------------------------- time
    def tick(self, now: float) -> None:
        """Apply every deadline due at ``now``, and forget clients whose lease lapsed."""
        table = self.table
        deadline = table.next_deadline()
        if deadline is None or deadline > now:
            return  # the cheap answer to every wake-up: nothing is due
        self._now = now
        effects = table.expire(now)
        if effects:
            self._apply(effects)
        if table.lapsed:  # only the table's lease clock ends a lease (forget() unbinds itself)
            lapsed, table.lapsed = table.lapsed, []
            for peer in lapsed:
                self._unbind(cast(bytes, peer))
            self._clients_dirty = True

    def next_deadline(self) -> float | None:
        return self.table.next_deadline()

    def undeliverable(self, peer: bytes, frame: bytes, now: float) -> None:
        """The transport could not send ``frame`` to ``peer`` (its queue full, or it is gone).

        A grant it never receives must not stay held by nobody who knows it: it is undone,
        and the name goes to the next waiter. Other frames need nothing: the peer's own
        clocks (lease, maxLockTime) and call timeouts cover their loss.
        """
        message = p.decode(frame)
        if isinstance(message, (p.Grant, p.GrantNames)):
            released, effects = self.table.release(message.lock_id, now, peer)
            if released:
                self._apply(effects)

    def forget(self, peer: bytes, now: float) -> None:
        """``peer`` said goodbye (or is gone for sure): free everything it held or waited for."""
        if self._unbind(peer):
            self._clients_dirty = True
        for key in [k for k in self._queued if k[0] == peer]:
            del self._queued[key]
        effects = self.table.drop_owner(peer, now)
        for effect in effects:  # its own locks and requests: nobody to tell but the watchers
            if isinstance(effect, Dropped):
                self._any_of.discard(effect.lock_id)
                self._asked_at.pop(effect.lock_id, None)
            elif isinstance(effect, Expired) and self.watches:
                self.watches.changed(effect.names)
        self._apply([e for e in effects if not isinstance(e, (Expired, Dropped))])

    # ----------------------------------------------------------------- queries
    @property
    def recovering(self) -> bool:
        return self.table.recover_until is not None

    def clients(self) -> dict[bytes, ClientInfo]:
        return dict(self._clients)

    def holder_info(self, owner: object) -> ClientInfo | None:
        """Who ``owner`` (a table owner) is; None for the serving locker itself."""
        if owner == LOCAL or not isinstance(owner, bytes):
            return None
        return self._clients.get(owner)

    # --------------------------------------------------------------- internals
    def _unbind(self, peer: bytes) -> bool:
        """Forget who ``peer`` is (not what it holds); False if it never said hello."""
        info = self._clients.pop(peer, None)
        self.flow.remove_receiver(peer)
        self.watches.forget(peer)
        self.stats.forget(peer)
        if info is None:
            return False
        if self._names.get(info.unique_name) == peer:
            del self._names[info.unique_name]
        return True

    def _refuse(self, peer: bytes, request_id: int, code: int, detail: str) -> None:
        self._sends.append((peer, p.encode(p.Error(request_id, code, detail[:MAX_DETAIL]))))

    def _bad_frame(self, peer: bytes, reason: str) -> None:
        counts = self._bad_frames
        if peer not in counts and len(counts) >= MAX_TRACKED_PEERS:
            counts.clear()  # bounded memory beats perfect accounting under a flood
        count = counts[peer] = counts.get(peer, 0) + 1
        if count <= BAD_FRAMES_LOGGED or count % 1000 == 0:
            self._events.append(BadFrame(peer, reason[:MAX_DETAIL], count))

    def _route(self, publisher: bytes, sender: str, sender_name: str, receivers: list[str] | None, count: int,
               items: bytes, lossy: bool = False) -> None:
        """Pass a batch on: to every receiver but its publisher, or to the named ones we know."""
        if receivers is None:
            targets = [peer for peer in self.flow.receivers() if peer != publisher]
            local = publisher != LOCAL
        else:
            speakers = self._names
            # An ordered set, so that routing does not depend on the interpreter's hash seed.
            targets = [peer for peer in (speakers.get(r) for r in dict.fromkeys(receivers) if r != sender)
                       if peer is not None]
            local = publisher != LOCAL and self.unique_name in receivers  # toSelf is the sender's choice
        self.stats.publications += count
        self.flow.publish(publisher, sender, sender_name, count, items, targets, lossy)
        if local:
            self._events.append(LocalPublications(sender, sender_name, count, items))

    def _take_flow(self) -> None:
        flow = self.flow
        self._sends.extend(flow.take_sends())
        for publisher, batches in flow.take_acks().items():
            if publisher == LOCAL:
                self._events.append(LocalPublishAcked(batches))
            elif publisher in self._clients:
                self._sends.append((publisher, p.encode(p.PubAck(0, batches))))

    def _apply(self, effects: list[Effect]) -> None:
        """Turn table effects into frames for clients and events for the serving locker."""
        sends, events, watches, any_of = self._sends, self._events, self.watches, self._any_of
        stats, asked_at = self.stats, self._asked_at
        for effect in effects:
            owner = effect.owner
            kind = type(effect)
            if kind is Granted:
                asked = asked_at.pop(effect.lock_id, None) if asked_at else None
                waited = 0.0 if asked is None else self._now - asked
                mine = stats.owner(owner).wait
                mine.counts[stats.granted(effect.names, waited)] += 1
                mine.total += waited
            elif kind is Expired:
                stats.expired(effect.names)
                stats.owner(owner).expiries += 1
            else:
                asked_at.pop(effect.lock_id, None)
                if kind is TimedOut:
                    stats.timed_out(effect.names)
                    stats.owner(owner).timeouts += 1
            if watches and isinstance(effect, (Granted, Expired)):
                watches.changed(effect.names)
            if any_of and not isinstance(effect, Expired) and effect.lock_id in any_of:
                any_of.discard(effect.lock_id)
                if isinstance(effect, Granted) and owner != LOCAL and isinstance(owner, bytes):
                    tag = effect.tag if isinstance(effect.tag, int) else 0
                    self._queued.pop((owner, tag), None)
                    sends.append((owner, p.encode(p.GrantNames(tag, effect.lock_id, effect.token,
                                                               list(effect.names)))))
                    continue
            if owner == LOCAL:
                if isinstance(effect, Granted):
                    events.append(LocalGranted(effect.lock_id, effect.token))
                elif isinstance(effect, Expired):
                    events.append(LocalLost(effect.lock_id, effect.reason))
                else:
                    events.append(LocalTimedOut(effect.lock_id))
                continue
            if not isinstance(owner, bytes):
                continue
            if isinstance(effect, Expired):
                events.append(LockExpired(owner, effect.lock_id, effect.reason))
                sends.append((owner, p.encode(p.Expire(0, effect.lock_id, effect.reason))))
                continue
            tag = effect.tag if isinstance(effect.tag, int) else 0
            self._queued.pop((owner, tag), None)
            if isinstance(effect, Granted):
                frame = p.encode(p.Grant(tag, effect.lock_id, effect.token))
            elif isinstance(effect, TimedOut):
                frame = p.encode(p.Timeout(tag))
            else:
                frame = p.encode(p.Error(tag, DROPPED, f"request dropped: {effect.reason}"))
            sends.append((owner, frame))
