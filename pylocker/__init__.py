"""pylocker: locks and messages between threads, processes and machines."""

from __future__ import annotations

# Importing the seed's modules makes ``pylocker.Locker.Locker`` and ``pylocker.ServerLocker.*``
# importable; the class imports further down then rebind the package attributes to the
# classes, as pylocker 3.1 did.
from . import Locker as _seed_locker_module  # noqa: F401
from . import ServerLocker as _seed_server_module  # noqa: F401
from ._meta import get_author, get_doc, get_email, get_pypi, get_repository, get_version
from .errors import (
    AddressError,
    AuthenticationError,
    LimitMismatch,
    ListenError,
    LocalProtocolError,
    LockLost,
    LockNotHeld,
    LockTimeout,
    NotConnected,
    NotLockHolder,
    NotStarted,
    ProtocolError,
    PylockerError,
    RemoteProtocolError,
    RequestDropped,
    ServerFileError,
    TooManyWatches,
)
from .factory import FACTORY, LockersFactory, SingleLocker
from .legacy import Locker
from .lock import Lock
from .lockers import ServerLocker
from .primitives import Election, Group, Holder, LockInfo, Semaphore, Slot, Waiter

__all__ = [
    "FACTORY",
    "AddressError",
    "AuthenticationError",
    "Election",
    "Group",
    "Holder",
    "LimitMismatch",
    "ListenError",
    "LocalProtocolError",
    "Lock",
    "LockInfo",
    "LockLost",
    "LockNotHeld",
    "LockTimeout",
    "Locker",
    "LockersFactory",
    "NotConnected",
    "NotLockHolder",
    "NotStarted",
    "ProtocolError",
    "PylockerError",
    "RemoteProtocolError",
    "RequestDropped",
    "Semaphore",
    "ServerFileError",
    "ServerLocker",
    "SingleLocker",
    "Slot",
    "TooManyWatches",
    "Waiter",
    "get_author",
    "get_doc",
    "get_email",
    "get_pypi",
    "get_repository",
    "get_version",
]
