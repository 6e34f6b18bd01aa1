"""pylocker: locks and messages between threads, processes and machines."""

from __future__ import annotations

from . import Locker as _seed_locker_module  # noqa: F401  (seed path pylocker.Locker.Locker)
from . import ServerLocker as _seed_server_module  # noqa: F401  (seed path pylocker.ServerLocker.*)
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
from .legacy import Locker
from .lock import Lock
from .lockers import FACTORY, LockersFactory, ServerLocker, SingleLocker

# The two imports above made the seed's module paths importable; the names below
# rebind the package attributes to the classes, as pylocker 3.1 did.

__all__ = [
    "FACTORY",
    "AuthenticationError",
    "LocalProtocolError",
    "Lock",
    "LockLost",
    "LockNotHeld",
    "LockTimeout",
    "Locker",
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
