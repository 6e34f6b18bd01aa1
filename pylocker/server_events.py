"""What a serving locker's core reports: its clients, and the events for the serving locker itself."""

from __future__ import annotations

from typing import Any, NamedTuple, Union


class ClientInfo(NamedTuple):
    name: str
    unique_name: str
    pid: int


# ------------------------------------------------------------------ events
class LocalGranted(NamedTuple):
    """A queued request of the serving locker itself was granted."""

    lock_id: str
    token: int


class LocalTimedOut(NamedTuple):
    lock_id: str


class LocalLost(NamedTuple):
    """A lock of the serving locker itself was taken away (maxLockTime)."""

    lock_id: str
    reason: str


class LocalPublications(NamedTuple):
    """Publications addressed to the serving locker (``item_count`` packed items)."""

    sender: str
    sender_name: str
    item_count: int
    items: bytes


class LocalPublishAcked(NamedTuple):
    """``batches`` more of the serving locker's own publications left for all their receivers."""

    batches: int


class ClientsChanged(NamedTuple):
    """Who a successor must wait for changed (``successor_must_wait_for``), for the server file."""

    clients: tuple[str, ...]


class BadFrame(NamedTuple):
    """A peer sent something malformed; ``seen``: how many so far (for rate-limited logging)."""

    peer: bytes
    reason: str
    seen: int


class LockExpired(NamedTuple):
    """A client's lock was taken away (for the log)."""

    peer: bytes
    lock_id: str
    reason: str


class LocalHolders(NamedTuple):
    """The holders of a name the serving locker watches changed (rows as in ``protocol.Holders``)."""

    name: str
    holders: list[list[Any]]
    waiters: list[list[Any]]


ServerEvent = Union[LocalGranted, LocalTimedOut, LocalLost, LocalPublications, LocalPublishAcked, ClientsChanged,
                    BadFrame, LockExpired, LocalHolders]


class Output(NamedTuple):
    sends: list[tuple[bytes, bytes]]
    events: list[ServerEvent]
