"""The exceptions pylocker raises. Every one of them is a PylockerError."""

from __future__ import annotations

from typing import Any, Sequence


class PylockerError(Exception):
    """Base class of everything pylocker raises on purpose."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuild from the constructor arguments so errors cross process boundaries.
        return self.__class__, self.args


class LockTimeout(PylockerError, TimeoutError):
    """The lock was not granted within its timeout."""

    def __init__(self, names: Sequence[str] = (), timeout: float | None = None) -> None:
        super().__init__(names, timeout)
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


class ProtocolError(PylockerError):
    """A frame broke the wire protocol."""


class LocalProtocolError(ProtocolError):
    """This side tried to send something the protocol does not allow."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow."""
