"""The wire protocol: one NamedTuple per message, a strict msgpack codec.

A frame is a msgpack array ``[VERSION, TYPE, request_id, *fields]``. Requests go
from a client's DEALER to the server's ROUTER; replies and pushes come back the
same way, carrying the request id they answer (0 for unsolicited pushes).
``decode`` checks the version, the type, and the type and size of every field,
and raises ``RemoteProtocolError`` for anything else: nothing read from a socket
is used before it has been checked.
"""

from __future__ import annotations

import math
import secrets
from typing import Any, Callable, Final, NamedTuple, Union

import msgpack

from .errors import LocalProtocolError, RemoteProtocolError

VERSION: Final = 4  # 4: claims (shared, slots, any-of), inspection and watches; 3: secret routing ids
MAX_FRAME: Final = 4 * 1024 * 1024
MAX_NAMES: Final = 1024
MAX_NAME_LEN: Final = 4096
MAX_TEXT: Final = 1024
MAX_ID: Final = 2**63 - 1
MAX_TIMEOUT: Final = 10.0**9
MAX_RECEIVERS: Final = 1024
MAX_BATCH: Final = 65536
MAX_MESSAGE: Final = 65536
MAX_INFO: Final = 65536  # bytes of a claim's packed info (a group member's)
MAX_LIMIT: Final = 1_000_000
MAX_LISTED: Final = 100_000  # holders or waiters of one name in a Holders frame


def new_routing_id() -> bytes:
    """A routing id for one locker's connections: 128 random bits, known only to it and its server.

    The server binds a session's locks to it, so it must not be guessable or derived
    from anything public (the unique name is in the server file). The first byte is
    never zero: ZeroMQ keeps those ids for itself.
    """
    return b"S" + secrets.token_bytes(16)


# ----------------------------------------------------------------- requests
class Hello(NamedTuple):
    request_id: int
    name: str
    unique_name: str
    pid: int


class Acquire(NamedTuple):
    request_id: int
    names: list[str]
    timeout: float | None


class Claim(NamedTuple):
    """Acquire as ``mode`` says (0 exclusive, 1 shared, 2 one of ``limit`` slots), all names or ``any_of``.

    Answered with ``GrantNames`` (which says the names granted), ``Timeout`` or ``Error``.
    """

    request_id: int
    names: list[str]
    timeout: float | None
    mode: int
    limit: int
    any_of: bool
    info: bytes | None


class Inspect(NamedTuple):
    """Who holds ``name`` and who waits for it; answered with ``Holders``."""

    request_id: int
    name: str


class Watch(NamedTuple):
    """Start (``on``) or stop pushes of ``Holders`` for ``name`` on every change; answered with ``Holders``."""

    request_id: int
    name: str
    on: bool


class Status(NamedTuple):
    """Ask for the serving locker's status (``status.py``); answered with ``StatusReply``."""

    request_id: int


class Release(NamedTuple):
    request_id: int
    lock_id: str


class Cancel(NamedTuple):
    """Withdraw the acquire sent with ``request_id`` (the caller gave up on it)."""

    request_id: int


class Heartbeat(NamedTuple):
    request_id: int


class Bye(NamedTuple):
    request_id: int


# ---------------------------------------------------------- replies, pushes
class Welcome(NamedTuple):
    request_id: int
    server_unique_name: str
    server_name: str
    max_lock_time: float | None
    lease: float | None
    epoch: int


class Grant(NamedTuple):
    request_id: int
    lock_id: str
    token: int


class GrantNames(NamedTuple):
    """The answer to a ``Claim``: the lock and the names it holds (one, for an any-of claim)."""

    request_id: int
    lock_id: str
    token: int
    names: list[str]


class Holders(NamedTuple):
    """Who holds ``name`` and who waits for it (a reply, or a push with request id 0 to a watcher).

    ``holders``: [unique name, mode, seconds held, token, info] in grant order;
    ``waiters``: [unique name, mode] in the order they will be considered.
    """

    request_id: int
    name: str
    holders: list[list[Any]]
    waiters: list[list[Any]]
    settled: bool = True  # False while the server recovers from a failover: the whole view is pushed after


class StatusReply(NamedTuple):
    """The serving locker's status: a msgpack map (see ``status.py``)."""

    request_id: int
    status: bytes


class Timeout(NamedTuple):
    request_id: int


class Released(NamedTuple):
    request_id: int
    code: int


class Expire(NamedTuple):
    """Push: a lock this client held was taken from it."""

    request_id: int
    lock_id: str
    reason: str


class Error(NamedTuple):
    """A refusal: ``code`` is registered in ``errors`` (``error_for``); ``detail`` is for people."""

    request_id: int
    code: int
    detail: str


class Pong(NamedTuple):
    request_id: int


class Publish(NamedTuple):
    """A batch of ``item_count`` publications (packed items in ``items``) for ``receivers`` (None: all).

    The server acknowledges it with ``PubAck`` once it has left for every receiver;
    ``lossy``: a receiver without credit misses it rather than slowing the publisher.
    """

    request_id: int
    receivers: list[str] | None
    item_count: int  # not "count": that would shadow tuple.count
    items: bytes
    lossy: bool = False


class Credit(NamedTuple):
    """The receiver stored ``batches`` more batches: the server may send that many more."""

    request_id: int
    batches: int


class Reclaim(NamedTuple):
    """After a failover: take back a lock held under the previous server."""

    request_id: int
    lock_id: str
    names: list[str]
    token: int
    mode: int = 0
    limit: int = 0
    any_of: bool = False
    info: bytes | None = None


class ReclaimDone(NamedTuple):
    """After a failover: this client has re-claimed everything it held."""

    request_id: int


class Reclaimed(NamedTuple):
    request_id: int
    granted: bool


class SubscribeCheck(NamedTuple):
    """Ask the server for publications (this locker is a receiver); answered with a ``Probe``."""

    request_id: int


# ------------------------------------------------------- publications' flow
class Probe(NamedTuple):
    """The answer to ``SubscribeCheck``: from now on, publications come to this locker."""

    request_id: int


class PubAck(NamedTuple):
    """``batches`` more of this locker's ``Publish`` frames have left for all their receivers."""

    request_id: int
    batches: int


class Deliver(NamedTuple):
    """A batch of publications for this locker, on its own connection, as its credit allows.

    ``before`` counts what this locker was sent earlier: a gap is what it missed
    (lossy batches only). It credits what it stored back with ``Credit``.
    """

    request_id: int
    sender: str
    sender_name: str
    before: int
    item_count: int
    items: bytes


Message = Union[Hello, Acquire, Release, Cancel, Heartbeat, Bye,
                Welcome, Grant, Timeout, Released, Expire, Error, Pong, Publish, SubscribeCheck,
                Probe, Reclaim, ReclaimDone, Reclaimed, Deliver, Credit, PubAck,
                Claim, Inspect, Watch, GrantNames, Holders, Status, StatusReply]


# --------------------------------------------------------------- validators
def _uint(value: Any) -> bool:
    return type(value) is int and 0 <= value <= MAX_ID


def _text(limit: int) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        return type(value) is str and len(value) <= limit
    return check


def _name(value: Any) -> bool:
    return type(value) is str and 0 < len(value) <= MAX_NAME_LEN


def _names(value: Any) -> bool:
    return type(value) is list and 0 < len(value) <= MAX_NAMES and all(map(_name, value))


def _seconds(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value) and 0 <= value <= MAX_TIMEOUT


def _optional_seconds(value: Any) -> bool:
    return value is None or _seconds(value)


def _receivers(value: Any) -> bool:
    return value is None or (type(value) is list and len(value) <= MAX_RECEIVERS
                             and all(type(v) is str and len(v) <= MAX_TEXT for v in value))


def _count(value: Any) -> bool:
    return type(value) is int and 0 < value <= MAX_BATCH


def _blob(value: Any) -> bool:
    return type(value) is bytes and len(value) <= MAX_FRAME


def _bool(value: Any) -> bool:
    return type(value) is bool


def _code(value: Any) -> bool:
    return type(value) is int and 0 <= value <= 255


def _mode(value: Any) -> bool:
    return type(value) is int and 0 <= value <= 2


def _limit(value: Any) -> bool:
    return type(value) is int and 0 <= value <= MAX_LIMIT


def _info(value: Any) -> bool:
    return value is None or (type(value) is bytes and len(value) <= MAX_INFO)


def _holder_rows(value: Any) -> bool:
    return type(value) is list and len(value) <= MAX_LISTED and all(
        type(row) is list and len(row) == 5 and _text(MAX_TEXT)(row[0]) and _mode(row[1])
        and _seconds(row[2]) and _uint(row[3]) and _info(row[4]) for row in value)


def _waiter_rows(value: Any) -> bool:
    return type(value) is list and len(value) <= MAX_LISTED and all(
        type(row) is list and len(row) == 2 and _text(MAX_TEXT)(row[0]) and _mode(row[1]) for row in value)


_SCHEMAS: Final[dict[int, tuple[type[Message], tuple[Callable[[Any], bool], ...]]]] = {
    1: (Hello, (_uint, _text(MAX_TEXT), _text(MAX_TEXT), _uint)),
    2: (Acquire, (_uint, _names, _optional_seconds)),
    3: (Release, (_uint, _text(MAX_TEXT))),
    4: (Cancel, (_uint,)),
    5: (Heartbeat, (_uint,)),
    6: (Bye, (_uint,)),
    64: (Welcome, (_uint, _text(MAX_TEXT), _text(MAX_TEXT), _optional_seconds, _optional_seconds, _uint)),
    65: (Grant, (_uint, _text(MAX_TEXT), _uint)),
    66: (Timeout, (_uint,)),
    67: (Released, (_uint, _code)),
    68: (Expire, (_uint, _text(MAX_TEXT), _text(MAX_TEXT))),
    69: (Error, (_uint, _code, _text(MAX_TEXT))),
    70: (Pong, (_uint,)),
    7: (Publish, (_uint, _receivers, _count, _blob, _bool)),
    11: (Credit, (_uint, _count)),
    8: (SubscribeCheck, (_uint,)),
    9: (Reclaim, (_uint, _text(MAX_TEXT), _names, _uint, _mode, _limit, _bool, _info)),
    12: (Claim, (_uint, _names, _optional_seconds, _mode, _limit, _bool, _info)),
    13: (Inspect, (_uint, _name)),
    14: (Watch, (_uint, _name, _bool)),
    15: (Status, (_uint,)),
    76: (StatusReply, (_uint, _blob)),
    74: (GrantNames, (_uint, _text(MAX_TEXT), _uint, _names)),
    75: (Holders, (_uint, _name, _holder_rows, _waiter_rows, _bool)),
    10: (ReclaimDone, (_uint,)),
    71: (Reclaimed, (_uint, _bool)),
    97: (Probe, (_uint,)),
    72: (Deliver, (_uint, _text(MAX_TEXT), _text(MAX_TEXT), _uint, _count, _blob)),
    73: (PubAck, (_uint, _count)),
}
_TYPE_CODES: Final = {cls: code for code, (cls, _) in _SCHEMAS.items()}

REQUESTS: Final = (Hello, Acquire, Release, Cancel, Heartbeat, Bye, Publish, SubscribeCheck, Reclaim,
                   ReclaimDone, Credit, Claim, Inspect, Watch, Status)

def _fast_acquire(frame: list[Any]) -> Acquire | None:
    # The same checks as the schema's, inlined: acquire and release are most of the traffic.
    if len(frame) != 5:
        return None
    _, _, request_id, names, timeout = frame
    if not (type(request_id) is int and 0 <= request_id <= MAX_ID and type(names) is list
            and 0 < len(names) <= MAX_NAMES and (timeout is None or _seconds(timeout))):
        return None
    for name in names:
        if not (type(name) is str and 0 < len(name) <= MAX_NAME_LEN):
            return None
    return Acquire(request_id, names, timeout)


def _fast_release(frame: list[Any]) -> Release | None:
    if len(frame) != 4:
        return None
    _, _, request_id, lock_id = frame
    if type(request_id) is int and 0 <= request_id <= MAX_ID and type(lock_id) is str and len(lock_id) <= MAX_TEXT:
        return Release(request_id, lock_id)
    return None


def _fast_grant(frame: list[Any]) -> Grant | None:
    if len(frame) != 5:
        return None
    _, _, request_id, lock_id, token = frame
    if (type(request_id) is int and 0 <= request_id <= MAX_ID and type(lock_id) is str
            and len(lock_id) <= MAX_TEXT and type(token) is int and 0 <= token <= MAX_ID):
        return Grant(request_id, lock_id, token)
    return None


_FAST: Final[dict[Any, Callable[[list[Any]], Message | None]]] = {
    2: _fast_acquire, 3: _fast_release, 65: _fast_grant,
}


def encode(message: Message) -> bytes:
    """Serialise one message; raises LocalProtocolError for a type not on the wire."""
    code = _TYPE_CODES.get(type(message))
    if code is None:
        raise LocalProtocolError(f"{type(message).__name__} is not a wire message")
    return msgpack.packb([VERSION, code, *message], use_bin_type=True)


def decode(data: bytes) -> Message:
    """Parse and check one frame; anything malformed raises RemoteProtocolError."""
    if len(data) > MAX_FRAME:
        raise RemoteProtocolError(f"frame of {len(data)} bytes exceeds {MAX_FRAME}")
    try:
        frame = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # noqa: BLE001  msgpack raises many unrelated types for bad input
        raise RemoteProtocolError(f"undecodable frame: {exc.__class__.__name__}") from None
    if type(frame) is not list or len(frame) < 3:
        raise RemoteProtocolError("a frame must be an array [version, type, request_id, ...]")
    if frame[0] != VERSION or type(frame[0]) is not int:
        raise RemoteProtocolError(f"unsupported protocol version {frame[0]!r}")
    fast = _FAST.get(frame[1]) if type(frame[1]) is int else None
    if fast is not None:
        message = fast(frame)
        if message is not None:
            return message  # else: the generic checks below say what is wrong
    schema = _SCHEMAS.get(frame[1]) if type(frame[1]) is int else None
    if schema is None:
        raise RemoteProtocolError(f"unknown message type {frame[1]!r}")
    cls, checks = schema
    fields = frame[2:]
    if len(fields) != len(checks):
        raise RemoteProtocolError(f"{cls.__name__} takes {len(checks)} fields, got {len(fields)}")
    for index, (check, value) in enumerate(zip(checks, fields)):
        if not check(value):
            raise RemoteProtocolError(f"{cls.__name__} field {cls._fields[index]} is invalid")
    return cls(*fields)


def valid_seconds(value: Any) -> bool:
    """A duration the wire accepts: a finite, non-negative number."""
    return _seconds(value)
