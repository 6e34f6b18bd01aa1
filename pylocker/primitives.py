"""Coordination on top of the lock table: semaphores, elections, groups, and who holds what.

Each is a claim in the serving locker's table, so each has what an exclusive lock has:
FIFO order, deadlines judged by the server, leases, fencing tokens, re-claim after a
failover. Semaphores, elections and groups live in names of their own (a prefix no
path starts with), so ``lock("api")`` and ``semaphore("api", 5)`` never meet.
"""

from __future__ import annotations

import contextlib
import threading
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

import msgpack

from .errors import LockTimeout, NotStarted
from .holds import ELECTION_PREFIX, GROUP_PREFIX, MODE_NAMES, SEMAPHORE_PREFIX, SHARED, SLOT, Claim
from .items import unpack_payload
from .lock import Lock
from .protocol import MAX_INFO, MAX_LIMIT, MAX_NAME_LEN

if TYPE_CHECKING:
    from .node import LockerNode
    from .watches import Rows




class Holder(NamedTuple):
    """One holder of a name: its locker's unique name, how it holds it, for how long, its token."""

    unique_name: str
    mode: str  # "exclusive", "shared" or "slot"
    held_for: float  # seconds, by the serving locker's clock
    token: int
    info: Any = None  # what a group member joined with


class Waiter(NamedTuple):
    unique_name: str
    mode: str


class LockInfo(NamedTuple):
    """Who holds a name (in grant order) and who waits for it (in the order they will be served)."""

    name: str
    holders: list[Holder]
    waiters: list[Waiter]


def lock_info(name: str, holders: list[list[Any]], waiters: list[list[Any]], prefix: str = "") -> LockInfo:
    return LockInfo(name[len(prefix):],
                    [Holder(row[0], MODE_NAMES[row[1]], row[2], row[3], unpack_payload(row[4])) for row in holders],
                    [Waiter(row[0], MODE_NAMES[row[1]]) for row in waiters])


def internal_name(prefix: str, name: str, what: str) -> str:
    if not isinstance(name, str) or not name:
        raise TypeError(f"{what} name must be a non-empty string, not {name!r}")
    if len(prefix) + len(name) > MAX_NAME_LEN:
        raise ValueError(f"{what} name may have at most {MAX_NAME_LEN - len(prefix)} characters")
    return prefix + name


class Slot(Lock):
    """One semaphore slot, held since ``Semaphore.acquire`` returned it (a context manager)."""

    def __enter__(self) -> Slot:
        if self.lock_id is None and not self.acquire():
            raise LockTimeout(self.display or self.candidates, self.timeout)
        return self


class Semaphore:
    """At most ``limit`` holders of ``name`` at once, served in FIFO order."""

    def __init__(self, node: LockerNode, name: str, limit: int, timeout: float) -> None:
        if type(limit) is not int or not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"a semaphore limit must be an int between 1 and {MAX_LIMIT}, not {limit!r}")
        self._node = node
        self.name = name
        self.limit = limit
        self._internal = internal_name(SEMAPHORE_PREFIX, name, "a semaphore")
        self._timeout = timeout
        self._held = threading.local()  # the slots ``with semaphore:`` blocks hold, per thread

    def acquire(self, timeout: float | None = None) -> Slot:
        """Wait up to ``timeout`` s (default: the locker's) for a slot; raises LockTimeout.

        Raises LimitMismatch when ``name`` is in use with another limit.
        """
        slot = Slot(self._node, [self._internal], self._timeout if timeout is None else timeout,
                    Claim(SLOT, self.limit))
        slot.display = [self.name]
        if not slot.acquire():
            raise LockTimeout([self.name], slot.timeout)
        return slot

    def info(self) -> LockInfo:
        """The slots' holders and waiters."""
        return lock_info(self._internal, *self._node.on_link(lambda link: link.inspect(self._internal)),
                         prefix=SEMAPHORE_PREFIX)

    def __enter__(self) -> Slot:
        """``with semaphore:`` holds a slot (default timeout) for the block; each thread its own."""
        slot = self.acquire()
        stack = getattr(self._held, "slots", None)
        if stack is None:
            stack = self._held.slots = []
        stack.append(slot)
        return slot

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._held.slots.pop().__exit__(exc_type, exc, tb)

    def __repr__(self) -> str:
        return f"<Semaphore {self.name!r} limit={self.limit}>"


_UNSEEN = object()


class LatestView:
    """What ``view`` makes of a watched name's holders, as last told: only a change is told again."""

    def __init__(self, view: Callable[[list[list[Any]]], Any]) -> None:
        self._view = view
        self._last: Any = _UNSEEN

    def seed(self, rows: Rows | None) -> None:
        """The view a watch's first answer gives, unless a change pushed since is newer."""
        if self._last is _UNSEEN and rows is not None:
            self._last = self._view(rows[0])

    def changed(self, holders: list[list[Any]]) -> tuple[bool, Any]:
        """(whether the view differs from the last one told, the view); remembered as told."""
        view = self._view(holders)
        if view == self._last:
            return False, view
        self._last = view
        return True, view

    def forget(self) -> None:
        self._last = _UNSEEN


class _Watcher:
    """Follows one internal name's holders; calls its callbacks with what ``view`` makes of them."""

    def __init__(self, node: LockerNode, internal: str, view: Callable[[list[list[Any]]], Any]) -> None:
        self._node = node
        self._internal = internal
        self._latest = LatestView(view)
        self._callbacks: list[Callable[[Any], None]] = []
        self._lock = threading.Lock()
        self._watching = False

    def add(self, callback: Callable[[Any], None]) -> None:
        if not callable(callback):
            raise TypeError("callback must be callable")
        with self._lock:
            self._callbacks.append(callback)
            start = not self._watching
            self._watching = True
        if start:
            try:
                rows = self._node.watch(self._internal, self._changed)
            except BaseException:
                with self._lock:
                    self._watching = False
                    self._callbacks.remove(callback)
                raise
            with self._lock:
                self._latest.seed(rows)

    def close(self) -> None:
        with self._lock:
            watching, self._watching = self._watching, False
            self._callbacks.clear()
            self._latest.forget()
        if watching:
            self._node.unwatch(self._internal, self._changed)  # no link: nothing to tell

    def _changed(self, holders: list[list[Any]], waiters: list[list[Any]]) -> None:
        # On the locker's dispatcher thread: one call at a time, in the order they changed.
        with self._lock:
            changed, view = self._latest.changed(holders)
            callbacks = list(self._callbacks) if changed else []
        for callback in callbacks:
            callback(view)


class _Held:
    """What an election and a group share: one claim on an internal name, and a watch on it."""

    def __init__(self, node: LockerNode, prefix: str, name: str, view: Callable[[list[list[Any]]], Any],
                 what: str) -> None:
        self._node = node
        self._internal = internal_name(prefix, name, what)
        self._prefix = prefix
        self._lock: Lock | None = None
        self._watcher = _Watcher(node, self._internal, view)

    def _take(self, lock: Lock, shown: str, timeout: float | None) -> None:
        lock.display = [shown]
        if not lock.acquire():
            raise LockTimeout([shown], timeout)
        self._let_go()
        self._lock = lock

    def _let_go(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None and lock.lock_id is not None:
            lock_id, lock.lock_id, lock.token = lock.lock_id, None, None
            with contextlib.suppress(NotStarted):  # a stopped locker let go of everything already
                self._node.release(lock_id)

    def _held(self) -> Lock | None:
        lock = self._lock
        return lock if lock is not None and lock.is_acquired else None

    def _holders(self) -> list[list[Any]]:
        return self._node.on_link(lambda link: link.inspect(self._internal))[0]

    def info(self) -> LockInfo:
        """Who holds it (the leader, or the members) and who waits (the other candidates), in order."""
        return lock_info(self._internal, *self._node.on_link(lambda link: link.inspect(self._internal)),
                         prefix=self._prefix)

    def close(self) -> None:
        """Let go (resign, or leave) and stop the callbacks."""
        self._let_go()
        self._watcher.close()


def leader_of(holders: list[list[Any]]) -> str | None:
    """The leader's unique name from an election's holders (None: nobody leads)."""
    return holders[0][0] if holders else None


class Election(_Held):
    """One leader among the lockers that campaign for ``group``; leadership ends with the leader's lease."""

    def __init__(self, node: LockerNode, group: str) -> None:
        super().__init__(node, ELECTION_PREFIX, group, leader_of, "an election")
        self.group = group

    def campaign(self, timeout: float | None = None) -> int:
        """Wait (up to ``timeout`` s; None: as long as it takes) to lead; returns the leadership's fencing token.

        Raises LockTimeout when not elected in time. Leading already: returns at once.
        """
        held = self._held()
        if held is None:
            self._take(Lock(self._node, [self._internal], timeout), self.group, timeout)
            held = self._lock
        return held.token if held is not None and held.token is not None else 0

    def resign(self) -> None:
        """Stop leading (nothing happens if this locker does not lead)."""
        self._let_go()

    @property
    def is_leader(self) -> bool:
        return self._held() is not None

    @property
    def token(self) -> int | None:
        """The fencing token of this locker's leadership (None when it does not lead)."""
        held = self._held()
        return held.token if held is not None else None

    @property
    def leader(self) -> str | None:
        """The unique name of the current leader, as the serving locker sees it (None: nobody leads)."""
        return leader_of(self._holders())

    def on_change(self, callback: Callable[[str | None], None]) -> None:
        """Call ``callback(leader unique name or None)`` on every change of leader."""
        self._watcher.add(callback)

    def __repr__(self) -> str:
        return f"<Election {self.group!r} leader={self.is_leader}>"


def pack_info(info: Any) -> bytes | None:
    """A group member's info as it travels: TypeError if msgpack cannot carry it, ValueError past 64 KiB."""
    try:
        packed = None if info is None else msgpack.packb(info, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"group info cannot be sent: {exc}") from None
    if packed is not None and len(packed) > MAX_INFO:
        raise ValueError(f"group info is {len(packed)} bytes packed; at most {MAX_INFO}")
    return packed


def members_of(holders: list[list[Any]]) -> dict[str, Any]:
    return {row[0]: unpack_payload(row[4]) for row in holders}


class Group(_Held):
    """A membership group: who joined ``name`` and is alive (a member leaves with its lease)."""

    def __init__(self, node: LockerNode, name: str) -> None:
        super().__init__(node, GROUP_PREFIX, name, members_of, "a group")
        self.name = name

    def join(self, info: Any = None, timeout: float | None = None) -> None:
        """Join with ``info`` (anything msgpack carries, up to 64 KiB packed); joined already: info replaced."""
        self._take(Lock(self._node, [self._internal], timeout, Claim(SHARED, info=pack_info(info))), self.name,
                   timeout)

    def leave(self) -> None:
        """Leave the group (nothing happens if this locker is not a member)."""
        self._let_go()

    @property
    def joined(self) -> bool:
        return self._held() is not None

    @property
    def members(self) -> dict[str, Any]:
        """unique name -> info of every member, as the serving locker sees them now."""
        return members_of(self._holders())

    def on_change(self, callback: Callable[[dict[str, Any]], None]) -> None:
        """Call ``callback(members)`` on every join or leave, including members whose lease ran out."""
        self._watcher.add(callback)

    def __repr__(self) -> str:
        return f"<Group {self.name!r} joined={self.joined}>"
