"""pylocker: locks and messages between threads, processes and machines."""

from __future__ import annotations

from ._meta import get_author, get_doc, get_email, get_pypi, get_repository, get_version
from .errors import (
    AuthenticationError,
    LocalProtocolError,
    LockLost,
    LockNotHeld,
    LockTimeout,
    NotConnected,
    NotStarted,
    ProtocolError,
    PylockerError,
    RemoteProtocolError,
    ServerFileError,
)
from .lock import Lock
from .locker import FACTORY, LockersFactory, ServerLocker, SingleLocker

__all__ = [
    "FACTORY",
    "AuthenticationError",
    "LocalProtocolError",
    "Lock",
    "LockLost",
    "LockNotHeld",
    "LockTimeout",
    "LockersFactory",
    "NotConnected",
    "NotStarted",
    "ProtocolError",
    "PylockerError",
    "RemoteProtocolError",
    "ServerFileError",
    "ServerLocker",
    "SingleLocker",
    "get_author",
    "get_doc",
    "get_email",
    "get_pypi",
    "get_repository",
    "get_version",
]
