"""The lock table: every lock rule of pylocker, with no sockets, threads or clock.

Theory of operation
-------------------
A *request* asks for one or many names at once, on behalf of an *owner* (one
connected locker), under a *lock id* chosen by the caller. It is granted all of
its names or none of them, or with ``any_of`` the first of them it may take. Its
``Claim`` says how (``holds.py``): exclusively, shared with other shared holders,
or as one of at most ``limit`` slot holders.

* **FIFO per name.** A request that cannot be granted at once enters the queue of
  every name it asks for, in one step. It is granted when it is at the head of all
  of those queues and none of its names is held. Requests therefore keep their
  place: a later single-name request never overtakes an earlier multi-name one,
  even when its own name happens to be free, and a shared request never overtakes
  an exclusive one queued before it (writers do not starve).
* **Compatible holders.** Shared holders of a name coexist; slot holders coexist up
  to their limit, and every request for a name in use by slots must ask for the
  same limit (``LimitConflict`` otherwise); an exclusive holder is alone.
* **No deadlock among waiters.** Arrival order is one total order, and every queue
  is a slice of it, so the oldest waiting request is at the head of each of its
  queues and is granted as soon as its names are released.
* **Deadlines are the caller's clock.** ``now`` is passed in to every call. A
  request whose deadline has passed is answered ``TimedOut`` and never granted,
  even if its names free up in the same instant.
* **maxLockTime.** A grant made while ``max_lock_time`` is set expires that many
  seconds later (``Expired``), unless it is a leadership or a membership (``untimed``).
* **Leases.** An owner registered with a lease must ``touch`` the table before the
  lease runs out; otherwise all its grants expire and its requests are dropped.
* **Fencing tokens.** Every grant carries an integer token larger than any token
  granted before by this table (``first_token`` lets a successor table continue a
  predecessor's sequence).
* **Recovery after a failover.** A table created with ``recover_until`` grants
  nothing new before that time (or before ``end_recovery``): requests queue as
  usual, while ``reclaim`` lets the holders of the previous server's locks take
  them back, with their lock ids and fencing tokens. A name can never be reclaimed
  twice, so a failover grants no lock twice.

Calls return *effects* (``Granted``, ``TimedOut``, ``Expired``, ``Dropped``) for the caller
to answer with; the table never logs, sleeps or reads a clock (``next_deadline()``).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Sequence
from typing import cast

from .holds import (
    EXCLUSIVE,
    PLAIN,
    SLOT,
    Claim,
    Crowd,
    Dropped,
    Effect,
    Expired,
    Granted,
    HeldLock,
    LimitConflict,
    Owner,
    Request,
    SlotLimits,
    TimedOut,
    admits,
    untimed,
)

__all__ = ["REASON_DISCONNECTED", "REASON_LEASE", "REASON_MAX_LOCK_TIME", "Claim", "Dropped", "Effect", "Expired",
           "Granted", "HeldLock", "LimitConflict", "LockTable", "Owner", "TimedOut"]  # re-exported from holds

REASON_MAX_LOCK_TIME = "maxLockTime"
REASON_LEASE = "lease"
REASON_DISCONNECTED = "disconnected"

_PENDING, _HELD, _LEASE = 0, 1, 2


class LockTable:
    """Grants, queues, expires and releases exclusive locks on names."""

    def __init__(self, max_lock_time: float | None = None, lease: float | None = None, first_token: int = 1,
                 recover_until: float | None = None) -> None:
        self.max_lock_time = max_lock_time
        self.lease = lease
        self.recover_until = recover_until
        self._next_token = first_token
        self._holders: dict[str, HeldLock | Crowd] = {}
        self._limits = SlotLimits()  # the limit each name is in use with by slot requests
        self._held: dict[str, HeldLock] = {}
        self._queues: dict[str, deque[str]] = {}
        self._pending: dict[str, Request] = {}
        # owner -> its lock ids, an ordered set (a dict): dropping an owner frees its locks in
        # the order they were taken, whatever the interpreter's hash seed.
        self._by_owner: dict[Owner, dict[str, None]] = {}
        self._lease_expiry: dict[Owner, float] = {}
        self.lapsed: list[Owner] = []  # owners whose lease ran out, for the caller to take
        self._heap: list[tuple[float, int, int, object]] = []
        self._heap_seq = 0

    # ------------------------------------------------------------------ inputs
    def acquire(
        self, lock_id: str, owner: Owner, names: Sequence[str], timeout: float | None, now: float, tag: object = None,
        claim: Claim = PLAIN,
    ) -> list[Effect]:
        """Ask for every name in ``names`` (or, ``claim.any_of``, for one of them) as ``claim`` says.

        ``timeout`` None waits forever, 0 never waits. Returns ``[Granted]``, ``[TimedOut]``
        (timeout 0 and not free), or ``[]`` (queued: a later call's effects answer it).
        Raises ValueError for a lock id in use or no names, LimitConflict for a slot
        limit other than the one a name is in use with.
        """
        if lock_id in self._held or lock_id in self._pending:
            raise ValueError(f"lock id {lock_id!r} is already in use")
        unique = (names[0],) if len(names) == 1 else tuple(dict.fromkeys(names))
        if not unique:
            raise ValueError("a lock request needs at least one name")
        holders, queues = self._holders, self._queues
        if claim is PLAIN:
            if self.recover_until is None and all(n not in holders and n not in queues for n in unique):
                token = self._next_token  # free: granted at once (what _grant does, without a Request)
                self._next_token = token + 1
                self._hold(lock_id, owner, unique, token, now)
                return [Granted(lock_id, owner, tag, unique, token)]
        else:
            if claim.mode == SLOT:
                self._limits.use(unique, claim.limit)
            if self.recover_until is None:
                fits = [n for n in unique if n not in queues and admits(holders.get(n), claim)]
                if (claim.any_of and fits) or len(fits) == len(unique):
                    taken = (fits[0],) if claim.any_of else unique
                    if claim.mode == SLOT and claim.any_of:
                        self._limits.free([n for n in unique if n != fits[0]])
                    token = self._next_token
                    self._next_token = token + 1
                    self._hold(lock_id, owner, taken, token, now, claim)
                    return [Granted(lock_id, owner, tag, taken, token)]
        if timeout is not None and timeout <= 0:
            if claim.mode == SLOT:
                self._limits.free(unique)
            return [TimedOut(lock_id, owner, tag, unique)]
        deadline = None if timeout is None else now + timeout
        request = Request(lock_id, owner, unique, deadline, tag, claim)
        self._pending[lock_id] = request
        for name in unique:
            queue = queues.get(name)
            if queue is None:
                queues[name] = queue = deque()
            queue.append(lock_id)
        self._owned(owner)[lock_id] = None
        if deadline is not None:
            self._schedule(deadline, _PENDING, lock_id)
        return []

    def release(self, lock_id: str, now: float, owner: Owner | None = None) -> tuple[bool, list[Effect]]:
        """Release a held lock. False when ``lock_id`` is not held (by ``owner``, if given)."""
        held = self._held.get(lock_id)
        if held is None or (owner is not None and held.owner != owner):
            return False, []
        out: list[Effect] = []
        self._unhold(held)
        heap = self._heap
        if heap and heap[0][3] == lock_id:
            # Its expiry is next (a lock taken and released before any other): drop it now,
            # rather than let released locks pile up in the heap until a compaction.
            heapq.heappop(heap)
        self._promote(held.names, now, out)
        return True, out

    def cancel(self, lock_id: str, now: float, owner: Owner | None = None) -> tuple[bool, list[Effect]]:
        """Withdraw a waiting request. False when it is not waiting (any more)."""
        request = self._pending.get(lock_id)
        if request is None or (owner is not None and request.owner != owner):
            return False, []
        out: list[Effect] = []
        self._unqueue(request, now, out)
        return True, out

    def reclaim(self, lock_id: str, owner: Owner, names: Sequence[str], token: int, now: float,
                claim: Claim = PLAIN) -> bool:
        """Take back a lock held under the previous server; only while recovering.

        Granted (True) when recovery is on, the lock id is unused and every name may
        be held as ``claim`` says (an any-of lock comes back with the one name it had),
        or when ``owner`` still holds exactly this lock (it reconnected to the same server).
        """
        unique = tuple(dict.fromkeys(names))
        mine = self._held.get(lock_id)
        if mine is not None and mine.owner == owner and mine.names == unique and mine.claim == claim:
            return True  # the same server after all: the lock never left its holder
        holders = self._holders
        if (self.recover_until is None or not unique or (claim.any_of and len(unique) != 1)
                or lock_id in self._held or lock_id in self._pending
                or not all(admits(holders.get(n), claim) for n in unique)):
            return False
        if claim.mode == SLOT:
            try:
                self._limits.use(unique, claim.limit)
            except LimitConflict:
                return False
        self._hold(lock_id, owner, unique, token, now, claim)
        if token >= self._next_token:
            self._next_token = token + 1
        return True

    def end_recovery(self, now: float) -> list[Effect]:
        """Stop recovering: grant what waited for it."""
        if self.recover_until is None:
            return []
        self.recover_until = None
        out: list[Effect] = []
        self._promote(list(self._queues), now, out)
        return out

    def register(self, owner: Owner, now: float) -> None:
        """Start ``owner``'s lease (when the table has one); ``touch`` keeps it alive."""
        if self.lease is None or owner in self._lease_expiry:
            return
        self._lease_expiry[owner] = now + self.lease
        self._schedule(now + self.lease, _LEASE, owner)

    def touch(self, owner: Owner, now: float) -> None:
        """Renew ``owner``'s lease; unknown owners are registered."""
        if self.lease is None:
            return
        if owner in self._lease_expiry:
            # The heap entry is not moved: when it comes due it is re-armed (see expire).
            self._lease_expiry[owner] = now + self.lease
        else:
            self.register(owner, now)

    def drop_owner(self, owner: Owner, now: float, reason: str = REASON_DISCONNECTED) -> list[Effect]:
        """Remove everything ``owner`` holds or waits for, and grant what that frees."""
        out: list[Effect] = []
        self._lease_expiry.pop(owner, None)
        freed: list[str] = []
        for lock_id in list(self._by_owner.get(owner, ())):
            held = self._held.get(lock_id)
            if held is not None:
                self._unhold(held)
                freed.extend(held.names)
                out.append(Expired(lock_id, owner, held.names, held.token, reason))
            else:
                request = self._pending[lock_id]
                out.append(Dropped(lock_id, owner, request.tag, request.names, reason))
                self._unqueue(request, now, out, promote=False)
                freed.extend(request.names)
        self._by_owner.pop(owner, None)
        self._promote(freed, now, out)
        return out

    def expire(self, now: float) -> list[Effect]:
        """Apply every deadline, maxLockTime and lease that is due at ``now``."""
        out: list[Effect] = []
        if self.recover_until is not None and self.recover_until <= now:
            out.extend(self.end_recovery(now))
        # Not a local alias: granting below may schedule, and scheduling may compact (replace) the heap.
        while self._heap and self._heap[0][0] <= now:
            when, _, kind, key = heapq.heappop(self._heap)
            if kind == _PENDING:
                request = self._pending.get(cast(str, key))  # a _PENDING entry's key is a lock id
                if request is not None and request.deadline == when:
                    out.append(TimedOut(request.lock_id, request.owner, request.tag, request.names))
                    self._unqueue(request, now, out)
            elif kind == _HELD:
                held = self._held.get(cast(str, key))  # a _HELD entry's key is a lock id
                if held is not None and held.expires_at == when:
                    self._unhold(held)
                    out.append(Expired(held.lock_id, held.owner, held.names, held.token, REASON_MAX_LOCK_TIME))
                    self._promote(held.names, now, out)
            else:
                expiry = self._lease_expiry.get(key)
                if expiry is None:
                    continue
                if expiry > now:
                    self._schedule(expiry, _LEASE, key)
                else:
                    self.lapsed.append(key)
                    out.extend(self.drop_owner(key, now, REASON_LEASE))
        return out

    def next_deadline(self) -> float | None:
        """The earliest time at which ``expire`` may have work to do, or None."""
        first = self._next_heap_deadline()
        if self.recover_until is not None and (first is None or self.recover_until < first):
            return self.recover_until
        return first

    def _next_heap_deadline(self) -> float | None:
        heap = self._heap
        while heap:
            if self._is_live(heap[0]):
                return heap[0][0]
            heapq.heappop(heap)
        return None

    # ----------------------------------------------------------------- queries
    def holder(self, name: str) -> HeldLock | None:
        """The lock that holds ``name`` now, if any (the first granted, when several share it)."""
        holder = self._holders.get(name)
        if type(holder) is Crowd:
            return next(iter(holder.members.values()))
        return cast("HeldLock | None", holder)

    def holders(self, name: str) -> list[HeldLock]:
        """Every lock that holds ``name`` now, in the order they were granted."""
        holder = self._holders.get(name)
        if holder is None:
            return []
        return list(holder.members.values()) if type(holder) is Crowd else [cast(HeldLock, holder)]

    def waiting(self, name: str) -> list[Request]:
        """The requests waiting for ``name``, in the order they will be considered."""
        return [self._pending[i] for i in self._queues.get(name, ())]

    def get(self, lock_id: str) -> HeldLock | None:
        """The held lock with this id, if any."""
        return self._held.get(lock_id)

    def is_leased(self, owner: Owner) -> bool:
        """Whether ``owner`` has a running lease."""
        return owner in self._lease_expiry

    def in_use(self, lock_id: str) -> bool:
        """Whether ``lock_id`` names a held lock or a waiting request."""
        return lock_id in self._held or lock_id in self._pending

    def is_waiting(self, lock_id: str) -> bool:
        return lock_id in self._pending

    def names_in_use(self) -> list[str]:  # every name held or waited for
        return list(dict.fromkeys([*self._holders, *self._queues]))

    def waiters(self, name: str) -> list[str]:
        """Lock ids waiting for ``name``, in the order they will be granted."""
        return list(self._queues.get(name, ()))

    def held_locks(self) -> list[HeldLock]:
        return list(self._held.values())

    def locks_of(self, owner: Owner) -> list[HeldLock]:
        return [self._held[i] for i in self._by_owner.get(owner, ()) if i in self._held]

    def owners(self) -> list[Owner]:
        return list(self._by_owner)

    @property
    def last_token(self) -> int:
        """The largest fencing token granted so far (first_token - 1 before any grant)."""
        return self._next_token - 1

    def __len__(self) -> int:
        return len(self._held)

    # --------------------------------------------------------------- internals
    def _owned(self, owner: Owner) -> dict[str, None]:
        return self._by_owner.setdefault(owner, {})

    def _schedule(self, when: float, kind: int, key: object) -> None:
        self._heap_seq += 1
        heapq.heappush(self._heap, (when, self._heap_seq, kind, key))
        size = len(self._heap)
        if size > 1024 and size > 4 * (len(self._held) + len(self._pending) + len(self._lease_expiry)):
            self._compact_heap()

    def _compact_heap(self) -> None:
        # Released locks leave their expiry entries behind; rebuild once they dominate.
        entries = [e for e in self._heap if self._is_live(e)]
        heapq.heapify(entries)
        self._heap = entries

    def _is_live(self, entry: tuple[float, int, int, object]) -> bool:
        when, _, kind, key = entry
        if kind == _PENDING:
            request = self._pending.get(cast(str, key))  # a _PENDING entry's key is a lock id
            return request is not None and request.deadline == when
        if kind == _HELD:
            held = self._held.get(cast(str, key))  # a _HELD entry's key is a lock id
            return held is not None and held.expires_at == when
        return key in self._lease_expiry

    def _grant(self, request: Request, now: float, out: list[Effect], names: tuple[str, ...] | None = None) -> None:
        token = self._next_token
        self._next_token = token + 1
        taken = request.names if names is None else names
        self._hold(request.lock_id, request.owner, taken, token, now, request.claim)
        out.append(Granted(request.lock_id, request.owner, request.tag, taken, token))

    def _hold(self, lock_id: str, owner: Owner, names: tuple[str, ...], token: int, now: float,
              claim: Claim = PLAIN) -> None:
        """Record a held lock (a grant, or a reclaim after a failover) and schedule its expiry."""
        expires_at = None if not self.max_lock_time or untimed(names) else now + self.max_lock_time
        held = HeldLock(lock_id, owner, names, token, now, expires_at, claim)
        holders = self._holders
        if claim.mode == EXCLUSIVE:
            for name in names:
                holders[name] = held
        else:
            for name in names:
                crowd = holders.get(name)
                if crowd is None:
                    holders[name] = crowd = Crowd(claim.mode, claim.limit)
                cast(Crowd, crowd).members[lock_id] = held
        self._held[lock_id] = held
        self._owned(owner)[lock_id] = None
        if expires_at is not None:
            self._schedule(expires_at, _HELD, lock_id)

    def _unhold(self, held: HeldLock) -> None:
        del self._held[held.lock_id]
        holders = self._holders
        if held.claim.mode == EXCLUSIVE:
            for name in held.names:
                if holders.get(name) is held:
                    del holders[name]
        else:
            for name in held.names:
                crowd = holders.get(name)
                if type(crowd) is Crowd:
                    crowd.members.pop(held.lock_id, None)
                    if not crowd.members:
                        del holders[name]
            if held.claim.mode == SLOT:
                self._limits.free(held.names)
        ids = self._by_owner.get(held.owner)
        if ids is not None:
            ids.pop(held.lock_id, None)
            if not ids:
                del self._by_owner[held.owner]

    def _unqueue(self, request: Request, now: float, out: list[Effect], promote: bool = True) -> None:
        if request.claim.mode == SLOT:
            self._limits.free(request.names)
        del self._pending[request.lock_id]
        queues = self._queues
        was_head: list[str] = []
        for name in request.names:
            queue = queues[name]
            if queue[0] == request.lock_id:
                queue.popleft()
                was_head.append(name)
            else:
                queue.remove(request.lock_id)
            if not queue:
                del queues[name]
        ids = self._by_owner.get(request.owner)
        if ids is not None:
            ids.pop(request.lock_id, None)
            if not ids:
                del self._by_owner[request.owner]
        if promote:
            self._promote(was_head, now, out)

    def _promote(self, names: Iterable[str], now: float, out: list[Effect]) -> None:
        """Grant the heads of these names' queues that have become grantable."""
        work = list(names)
        holders, queues, pending = self._holders, self._queues, self._pending
        while work:
            name = work.pop()
            queue = queues.get(name)
            if not queue:
                continue
            holder = holders.get(name)
            if type(holder) is HeldLock:
                continue  # held alone: nothing queued on it can go
            request = pending[queue[0]]
            if request.deadline is not None and request.deadline <= now:
                # Too late: answer it as timed out and look again at what it queued on.
                out.append(TimedOut(request.lock_id, request.owner, request.tag, request.names))
                self._unqueue(request, now, out, promote=False)
                work.extend(request.names)
                continue
            if self.recover_until is not None or not admits(holder, request.claim):
                continue  # deadlines still apply while recovering; grants wait
            lock_id = request.lock_id
            if request.claim.any_of:
                # The first of its names, in the order asked, where it is first in line and may hold.
                taken = next(n for n in request.names
                             if queues[n][0] == lock_id and admits(holders.get(n), request.claim))
            elif not all(queues[n][0] == lock_id and admits(holders.get(n), request.claim) for n in request.names):
                continue
            else:
                taken = None
            del pending[lock_id]
            for n in request.names:
                queue = queues[n]
                if queue[0] == lock_id:
                    queue.popleft()
                else:
                    queue.remove(lock_id)  # an any-of request leaves the queues of the names it did not take
                if not queue:
                    del queues[n]
            if taken is None:
                self._grant(request, now, out)
            else:
                if request.claim.mode == SLOT:
                    self._limits.free([n for n in request.names if n != taken])
                self._grant(request, now, out, (taken,))
            work.extend(request.names)  # the next in line may share what it was granted, or take what it left
