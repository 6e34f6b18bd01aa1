"""What the lock table holds and says: claim modes, held locks, crowds, and effects.

A *claim* is how a request wants its names:

* ``EXCLUSIVE``: alone (the classic lock, a writer, an election's leadership);
* ``SHARED``: beside other shared holders (readers, a group's members);
* ``SLOT``: one of at most ``limit`` holders (a semaphore).

Several holders of one name form a ``Crowd``, all of one mode (and, for slots, one
limit). A request may also ask for *any one* of its names (``any_of``): it is granted
the first of them, in the order asked, that it may take.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Final, NamedTuple, Union

Owner = Hashable

EXCLUSIVE: Final = 0
SHARED: Final = 1
SLOT: Final = 2
MODES: Final = (EXCLUSIVE, SHARED, SLOT)
MODE_NAMES: Final = {EXCLUSIVE: "exclusive", SHARED: "shared", SLOT: "slot"}
MAX_LIMIT: Final = 1_000_000


class Claim(NamedTuple):
    """How a request wants its names (the default: all of them, exclusively)."""

    mode: int = EXCLUSIVE
    limit: int = 0  # SLOT only: how many may hold the name at once
    any_of: bool = False  # granted the first of its names it may take, not all of them
    info: bytes | None = None  # opaque to the table (a group member's packed info)


# Leaderships and group memberships last until released or until their session's lease
# ends: maxLockTime, a bound on how long a lock may be kept, does not apply to them.
SEMAPHORE_PREFIX: Final = "\x00semaphore\x00"
ELECTION_PREFIX: Final = "\x00election\x00"
GROUP_PREFIX: Final = "\x00group\x00"
UNTIMED_PREFIXES: Final = (ELECTION_PREFIX, GROUP_PREFIX)
KINDS: Final = {SEMAPHORE_PREFIX: "semaphore", ELECTION_PREFIX: "election", GROUP_PREFIX: "group"}


def kind_of(name: str) -> tuple[str, str]:
    """(kind, name as its users know it): "lock", "semaphore", "election" or "group"."""
    if name.startswith("\x00"):
        for prefix, kind in KINDS.items():
            if name.startswith(prefix):
                return kind, name[len(prefix):]
    return "lock", name


def untimed(names: tuple[str, ...] | list[str]) -> bool:
    """Whether a lock on ``names`` is exempt from maxLockTime (every name an election's or a group's)."""
    return names[0].startswith("\x00") and all(name.startswith(UNTIMED_PREFIXES) for name in names)


PLAIN: Final = Claim()
SHARED_CLAIM: Final = Claim(SHARED)


class LimitConflict(ValueError):
    """A slot request whose limit differs from the one its name is in use with."""

    def __init__(self, name: str, limit: int, in_use: int) -> None:
        shown = name.rsplit("\x00", 1)[-1]  # a semaphore's name, without the prefix of its namespace
        super().__init__(f"{shown!r} is in use with a limit of {in_use}, not {limit}")
        self.name, self.limit, self.in_use = name, limit, in_use


class SlotLimits:
    """The limit each name is in use with by slot requests (waiting or held), and by how many."""

    def __init__(self) -> None:
        self._used: dict[str, list[int]] = {}  # name -> [limit, requests using it]

    def use(self, names: tuple[str, ...], limit: int) -> None:
        """Count a slot request on its names; LimitConflict (counting nothing) if one is in use with another."""
        used = self._used
        for name in names:
            entry = used.get(name)
            if entry is not None and entry[0] != limit:
                raise LimitConflict(name, limit, entry[0])
        for name in names:
            entry = used.get(name)
            if entry is None:
                used[name] = [limit, 1]
            else:
                entry[1] += 1

    def free(self, names: Iterable[str]) -> None:
        used = self._used
        for name in names:
            entry = used[name]
            entry[1] -= 1
            if not entry[1]:
                del used[name]

    def limit(self, name: str) -> int | None:
        entry = self._used.get(name)
        return None if entry is None else entry[0]


def check_claim(claim: Claim) -> None:
    """Raise ValueError for a claim no table can honour."""
    if claim.mode not in MODES:
        raise ValueError(f"unknown claim mode {claim.mode!r}")
    if claim.mode == SLOT and not 1 <= claim.limit <= MAX_LIMIT:
        raise ValueError(f"a slot limit must be between 1 and {MAX_LIMIT}, not {claim.limit!r}")
    if claim.mode != SLOT and claim.limit:
        raise ValueError("only slot claims have a limit")


class Granted(NamedTuple):
    lock_id: str
    owner: Owner
    tag: object
    names: tuple[str, ...]
    token: int


class TimedOut(NamedTuple):
    lock_id: str
    owner: Owner
    tag: object
    names: tuple[str, ...]


class Dropped(NamedTuple):
    """A waiting request removed because its owner went away."""

    lock_id: str
    owner: Owner
    tag: object
    names: tuple[str, ...]
    reason: str


class Expired(NamedTuple):
    """A held lock taken from its owner (``reason``: maxLockTime, lease, disconnected)."""

    lock_id: str
    owner: Owner
    names: tuple[str, ...]
    token: int
    reason: str


Effect = Union[Granted, TimedOut, Dropped, Expired]


class Request:
    """A waiting request, as the table keeps it."""

    __slots__ = ("claim", "deadline", "lock_id", "names", "owner", "tag")

    def __init__(self, lock_id: str, owner: Owner, names: tuple[str, ...], deadline: float | None, tag: object,
                 claim: Claim = PLAIN) -> None:
        self.lock_id = lock_id
        self.owner = owner
        self.names = names
        self.deadline = deadline
        self.tag = tag
        self.claim = claim


class HeldLock:
    """A granted lock, as the table keeps it (read-only for callers)."""

    __slots__ = ("claim", "expires_at", "granted_at", "lock_id", "names", "owner", "token")

    def __init__(self, lock_id: str, owner: Owner, names: tuple[str, ...], token: int, granted_at: float,
                 expires_at: float | None, claim: Claim = PLAIN) -> None:
        self.lock_id = lock_id
        self.owner = owner
        self.names = names  # for an any-of request: the one name it was granted
        self.token = token
        self.granted_at = granted_at
        self.expires_at = expires_at
        self.claim = claim

    @property
    def mode(self) -> int:
        return self.claim.mode


class Crowd:
    """The holders of one name that share it (all SHARED, or all SLOT with one limit)."""

    __slots__ = ("limit", "members", "mode")

    def __init__(self, mode: int, limit: int) -> None:
        self.mode = mode
        self.limit = limit
        self.members: dict[str, HeldLock] = {}  # lock id -> held lock, in grant order


def admits(holder: HeldLock | Crowd | None, claim: Claim) -> bool:
    """Whether a name with this holder (or crowd) may be granted to ``claim`` now."""
    if holder is None:
        return True
    if claim.mode == EXCLUSIVE or type(holder) is not Crowd or holder.mode != claim.mode:
        return False
    return claim.mode == SHARED or len(holder.members) < holder.limit
