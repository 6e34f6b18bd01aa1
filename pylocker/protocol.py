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
from typing import Any, Callable, Final, NamedTuple, Union

import msgpack

from .errors import LocalProtocolError, RemoteProtocolError

VERSION: Final = 1
MAX_FRAME: Final = 4 * 1024 * 1024
MAX_NAMES: Final = 1024
MAX_NAME_LEN: Final = 4096
MAX_TEXT: Final = 1024
MAX_ID: Final = 2**63 - 1
MAX_TIMEOUT: Final = 10.0**9


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
    pub_port: int
    epoch: int


class Grant(NamedTuple):
    request_id: int
    lock_id: str
    token: int


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
    request_id: int
    message: str


class Pong(NamedTuple):
    request_id: int


Message = Union[Hello, Acquire, Release, Cancel, Heartbeat, Bye,
                Welcome, Grant, Timeout, Released, Expire, Error, Pong]


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


def _code(value: Any) -> bool:
    return type(value) is int and 0 <= value <= 255


_SCHEMAS: Final[dict[int, tuple[type, tuple[Callable[[Any], bool], ...]]]] = {
    1: (Hello, (_uint, _text(MAX_TEXT), _text(MAX_TEXT), _uint)),
    2: (Acquire, (_uint, _names, _optional_seconds)),
    3: (Release, (_uint, _text(MAX_TEXT))),
    4: (Cancel, (_uint,)),
    5: (Heartbeat, (_uint,)),
    6: (Bye, (_uint,)),
    64: (Welcome, (_uint, _text(MAX_TEXT), _text(MAX_TEXT), _optional_seconds,
                   _optional_seconds, _uint, _uint)),
    65: (Grant, (_uint, _text(MAX_TEXT), _uint)),
    66: (Timeout, (_uint,)),
    67: (Released, (_uint, _code)),
    68: (Expire, (_uint, _text(MAX_TEXT), _text(MAX_TEXT))),
    69: (Error, (_uint, _text(MAX_TEXT))),
    70: (Pong, (_uint,)),
}
_TYPE_CODES: Final = {cls: code for code, (cls, _) in _SCHEMAS.items()}

REQUESTS: Final = (Hello, Acquire, Release, Cancel, Heartbeat, Bye)

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
    except Exception as exc:  # msgpack raises many unrelated types for bad input
        raise RemoteProtocolError(f"undecodable frame: {exc.__class__.__name__}") from None
    if type(frame) is not list or len(frame) < 3:
        raise RemoteProtocolError("a frame must be an array [version, type, request_id, ...]")
    if frame[0] != VERSION or type(frame[0]) is not int:
        raise RemoteProtocolError(f"unsupported protocol version {frame[0]!r}")
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
    return cls(*fields)  # type: ignore[no-any-return]
