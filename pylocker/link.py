"""What a locker node is made of: its roles, its configuration, and the Link it talks through."""

from __future__ import annotations

import contextlib
import enum
import threading
from dataclasses import dataclass
from typing import Any, Callable, Final, Protocol

from .election.base import ElectionBackend
from .holds import PLAIN, Claim
from .transport.address import Address
from .transport.base import Security
from .transport.keys import DEFAULT_REALM, KeyPair, derive_keys
from .watches import HoldersCallback, Rows

DEFAULT_LEASE: Final = 5.0


class Role(enum.Enum):
    """Where a locker stands (see ``node``'s module docstring for the moves between them)."""

    STOPPED = "stopped"
    STARTING = "starting"
    SERVING = "serving"
    CONNECTED = "connected"
    FAILING_OVER = "failing over"


class Beacon(threading.Event):
    """An Event that also calls hooks, for waiters without a thread of their own (asyncio).

    A hook is called once, on the thread that sets (or pokes) the beacon: it must only schedule work.
    """

    def __init__(self) -> None:
        super().__init__()
        self._hooks: list[Callable[[], None]] = []
        self._hooks_lock = threading.Lock()

    def set(self) -> None:
        super().set()
        self.poke()

    def poke(self) -> None:
        """Call (and drop) the hooks: something their waiters look at changed."""
        with self._hooks_lock:
            hooks, self._hooks = self._hooks, []
        for hook in hooks:
            hook()

    def hook(self, hook: Callable[[], None]) -> bool:
        """True if set now; else ``hook()`` is called when it is set or poked."""
        with self._hooks_lock:
            if self.is_set():
                return True
            self._hooks.append(hook)
            return False

    def unhook(self, hook: Callable[[], None]) -> None:
        with self._hooks_lock, contextlib.suppress(ValueError):
            self._hooks.remove(hook)


class Link(Protocol):
    """The lock service as the node sees it: the in-process server or a client connection."""

    @property
    def alive(self) -> bool: ...

    @property
    def max_lock_time(self) -> float | None: ...

    @property
    def valid_until(self) -> float | None:
        """Until when this link's locks are certainly ours (None: no limit of its own)."""

    @property
    def dropped_publications(self) -> int: ...

    def acquire(self, names: list[str], timeout: float | None) -> tuple[str, int]: ...

    def release(self, lock_id: str, *, held: bool = False) -> int: ...

    def claim(self, names: list[str], timeout: float | None, claim: Claim) -> tuple[str, int, tuple[str, ...]]:
        """Lock ``names`` as ``claim`` says: (lock id, fencing token, the names granted)."""

    def status(self) -> dict[str, Any]:
        """The serving locker's status (``status.py``)."""

    def inspect(self, name: str) -> Rows:
        """Who holds ``name`` and who waits for it."""

    def watch(self, name: str, on: bool) -> Rows | None:
        """Start (or stop) ``on_holders`` calls for ``name``; its rows now.

        None while the serving locker recovers from a failover: it pushes the whole view after.
        """

    on_holders: HoldersCallback | None

    def reclaim(self, lock_id: str, names: list[str], token: int, expires_at: float | None = None,
                claim: Claim = PLAIN) -> bool: ...

    def reclaim_done(self) -> None: ...

    def publish(self, receivers: list[str] | None, items: list[bytes], lossy: bool = False) -> None: ...

    def expiry(self, lock_id: str) -> float | None:
        """When this locker's own maxLockTime clock takes ``lock_id`` (None: no such clock)."""

    def holds(self, lock_id: str) -> bool:
        """Whether a lock held through this link may still be taken as ours (its clocks)."""

    def close(self, say_bye: bool = True) -> None:
        """Stop serving, or close the connection (``say_bye``: the server frees our locks)."""


DEFAULT_LISTEN: Final = Address("tcp", "127.0.0.1", 3000)  # immutable: safe to share as a default


@dataclass
class NodeConfig:
    """Everything a node needs to serve or connect (the facade builds it from the seed's arguments)."""

    password: str
    name: str
    election: ElectionBackend | None  # None: never serve, connect by address only
    max_lock_time: float | None = 120
    listen: Address = DEFAULT_LISTEN
    allow_serving: bool = True
    reconnect: bool = False
    connect_timeout: float = 20
    lease: float | None = DEFAULT_LEASE
    client_pair: KeyPair | None = None
    realm: str = DEFAULT_REALM
    server_pair: KeyPair | None = None  # from server_key_file: the server's own key (its secret, if serving)
    admitted: frozenset[bytes] | None = None
    receive_messages: bool = True
    advertise: Address | None = None  # where clients reach us when we serve, if not where we listen

    def security(self) -> Security:
        """The keys this locker encrypts with, and the client keys it admits when serving."""
        keys = derive_keys(self.password, self.realm)
        if self.client_pair is not None:
            keys = keys._replace(client=self.client_pair)
        if self.server_pair is not None:
            # The server's key from its key file: a machine that knows the password (or a
            # revoked one) cannot pose as the server to clients that name this key.
            keys = keys._replace(server=self.server_pair)
        return Security(keys, self.admitted)
