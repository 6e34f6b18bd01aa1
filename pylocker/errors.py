"""The exceptions pylocker raises, and the registry of the wire's refusal codes.

Every exception is a ``PylockerError``. A refusal crosses the wire as a numeric
code (``Error(request_id, code, detail)``); ``error_for`` turns it back into the
class registered for that code, so nobody parses error strings (kazoo does the same
with ZooKeeper's codes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable, Final, TypeVar

_E = TypeVar("_E", bound="type[PylockerError]")
_BY_CODE: dict[int, type[PylockerError]] = {}


def _wire_code(code: int) -> Callable[[_E], _E]:
    """Register a class as what the wire's refusal ``code`` means."""

    def register(cls: _E) -> _E:
        if code in _BY_CODE:
            raise RuntimeError(f"wire code {code} is already {_BY_CODE[code].__name__}")
        cls.code = code
        _BY_CODE[code] = cls
        return cls

    return register


class PylockerError(Exception):
    """Base class of everything pylocker raises on purpose."""

    code: int = 0  # the wire's refusal code, for the classes registered with one

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuild from the constructor arguments so errors cross process boundaries.
        return self.__class__, self.args


class LockTimeout(PylockerError, TimeoutError):
    """The lock was not granted within its timeout."""

    def __init__(self, names: Sequence[str] = (), timeout: float | None = None) -> None:
        super().__init__(tuple(names), timeout)
        self.names = tuple(names)
        self.timeout = timeout

    def __str__(self) -> str:
        return f"lock on {list(self.names)!r} not granted within {self.timeout} s"


class LockNotHeld(PylockerError):
    """The lock id names no lock this locker holds."""

    def __init__(self, lock_id: str = "") -> None:
        super().__init__(lock_id)
        self.lock_id = lock_id

    def __str__(self) -> str:
        return f"lock {self.lock_id!r} is not held"


class LockLost(LockNotHeld):
    """A lock this locker held was taken from it (maxLockTime, lease lapsed, revoked)."""

    def __init__(self, lock_id: str = "", reason: str = "") -> None:
        PylockerError.__init__(self, lock_id, reason)
        self.lock_id = lock_id
        self.reason = reason

    def __str__(self) -> str:
        return f"lock {self.lock_id!r} was lost: {self.reason}"


class NotStarted(PylockerError):
    """The locker is neither serving nor connected to a serving locker."""

    def __str__(self) -> str:
        return "this locker is neither a server nor a client"


class NotConnected(PylockerError, ConnectionError):
    """The connection to the serving locker is lost or was never made."""


class AuthenticationError(NotConnected):
    """The serving locker refused this locker's credentials."""


class ServerFileError(PylockerError):
    """The server file cannot be used safely (symlink, foreign owner, bad content)."""


class AddressError(PylockerError, ValueError):
    """An address is malformed or names a transport pylocker does not have."""


class ListenError(PylockerError, OSError):
    """A serving locker could not listen at its address (in use, no permission, bad interface)."""


class ProtocolError(PylockerError):
    """A frame broke the wire protocol."""


@_wire_code(1)
class LocalProtocolError(ProtocolError):
    """This side sent something the protocol does not allow (the peer refused it)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow."""


@_wire_code(2)
class NotLockHolder(PylockerError):
    """The lock is held, by another locker: only its holder may release it."""


@_wire_code(3)
class RequestDropped(NotConnected):
    """The serving locker dropped a waiting request because its session ended."""


@_wire_code(4)
class NotWelcomed(NotConnected):
    """The serving locker does not know this connection (it never said hello, or was forgotten)."""


@_wire_code(5)
class LimitMismatch(PylockerError, ValueError):
    """A semaphore was asked for with a limit other than the one its name is in use with."""


@_wire_code(6)
class TooManyWatches(PylockerError):
    """This locker watches as many names as one session may."""


BAD_FRAME: Final = LocalProtocolError.code
LIMIT_MISMATCH: Final = LimitMismatch.code
TOO_MANY_WATCHES: Final = TooManyWatches.code
NOT_HOLDER: Final = NotLockHolder.code
DROPPED: Final = RequestDropped.code
NOT_WELCOMED: Final = NotWelcomed.code


def error_for(code: int, detail: str) -> PylockerError:
    """The exception a refusal ``code`` stands for (a plain PylockerError for unknown codes)."""
    cls = _BY_CODE.get(code)
    if cls is None:
        return PylockerError(f"refused (code {code}): {detail}")
    return cls(detail)


def registered_codes() -> dict[int, type[PylockerError]]:
    """Every wire code and its class (for documentation and tests)."""
    return dict(_BY_CODE)
