"""ServerLocker, SingleLocker and FACTORY: pylocker 3.1's API, a thin layer over the locker node.

Names, arguments, defaults and return codes are the seed's (camelCase kept). The
work is done by ``node.LockerNode``; errors it raises are turned into the seed's
codes in one place per method (``ACQUIRE_CODES``, ``RELEASE_CODES``). The
pythonic API (``lock.py``) raises them instead.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterable
from typing import Any, Callable

from .coordination import CoordinationMixin
from .dispatch import Dispatcher
from .election import ElectionBackend, backend_for, is_zookeeper_url, read_fingerprint, serverfile
from .errors import LockTimeout, NotConnected, NotStarted, PylockerError, ServerFileError
from .inbox import Inbox
from .link import DEFAULT_LEASE, NodeConfig
from .lock import Lock
from .mailbox import DEFAULT_CAPACITY_BYTES
from .messaging import MessagingMixin
from .metrics import start_metrics
from .node import LockerNode
from .transport import address as addresses
from .transport.keys import DEFAULT_REALM, load_authorized_keys, load_key_pair, load_public_key
from .validation import check_bool, check_locker_arguments, check_number, code_for, lock_request

ACQUIRE_CODES: dict[type[PylockerError], int] = {LockTimeout: 0, NotConnected: 1, NotStarted: 2}
RELEASE_CODES: dict[type[PylockerError], int] = {NotConnected: 2, NotStarted: 3}
_PACKAGE_LOGGER = "pylocker"


class ServerLocker(MessagingMixin, CoordinationMixin):
    """Lock (and message) server and client between threads, processes and machines.

    Once instantiated with ``autoconnect`` True, it connects to the serving locker
    named in ``serverFile`` if there is one, and otherwise (if ``allowServing``)
    serves itself. See the seed documentation for every argument; beyond it:

    Args:
        listen_address: where a serving locker listens: a host (tcp, with ``port``;
            default loopback only) or a URL (``tcp://host:port``, ``ipc:///path``,
            ``inproc://name``). Remote lockers then use ``start(address, port)``.
        lease: seconds a client may stay silent before the server frees its locks.
        key_file: a zmq.auth secret certificate (``.key_secret``) this locker presents
            as a client, instead of the client key derived from the password.
        authorized_keys: a folder of zmq.auth certificates; when serving, admit only
            clients presenting one of those public keys (one key pair per machine).
        mailbox_size, mailbox_bytes: received publications kept at most, in number and in bytes
            (payloads as sent, plus ~400 each); past that the oldest go (``dropped_messages``).
        receive_messages: False for a lock-only locker: it can still publish, but is
            sent no publication (a serving one stores none it receives).
        realm: salts the keys derived from the password (default ``"pylocker"``): one per deployment.
        server_key_file: a zmq.auth certificate naming the serving locker's own key, for
            per-machine keys: the server's secret file when serving, its public file (or
            either) as a client, which then trusts no other server, whatever the password.
        advertise_address: where clients reach this locker when it serves, if not where it
            listens (a host, or ``tcp://host:port``: behind NAT, port forwarding or a proxy).
        metrics_port: serve the serving locker's figures for Prometheus on 127.0.0.1 at this
            port (0: any free one; ``pylocker[metrics]``), until ``stop``.
    """

    def __init__(self, password: str, name: str | None = None, serverFile: bool | str = True,
                 defaultTimeout: float = 20, maxLockTime: float | None = 120, port: int = 3000,
                 allowServing: bool = True, autoconnect: bool = True, reconnect: bool = False,
                 connectTimeout: float = 20, logger: logging.Logger | bool | None = False,
                 blocking: bool = False, debugMode: bool = False, *,
                 listen_address: str = "127.0.0.1", lease: float | None = DEFAULT_LEASE,
                 key_file: str | None = None, authorized_keys: str | None = None,
                 mailbox_size: int = 100_000, receive_messages: bool = True, realm: str = DEFAULT_REALM,
                 server_key_file: str | None = None, advertise_address: str | None = None,
                 mailbox_bytes: int = DEFAULT_CAPACITY_BYTES, metrics_port: int | None = None) -> None:
        check_locker_arguments(password=password, name=name, port=port, allowServing=allowServing,
                               autoconnect=autoconnect, reconnect=reconnect, blocking=blocking,
                               debugMode=debugMode, connectTimeout=connectTimeout, lease=lease, logger=logger,
                               realm=realm, key_file=key_file, authorized_keys=authorized_keys,
                               server_key_file=server_key_file, mailbox_size=mailbox_size,
                               mailbox_bytes=mailbox_bytes,
                               receive_messages=receive_messages)
        if not isinstance(listen_address, str) or not listen_address:
            raise TypeError("listen_address must be a non-empty string")
        listen = addresses.parse(listen_address, port)
        advertise = None if advertise_address is None else addresses.parse(advertise_address, listen.port)
        self._key_file, self._server_key_file, self._authorized_keys = key_file, server_key_file, authorized_keys
        self._name = name if name is not None else f"locker-{os.getpid()}"
        self._unique_name = uuid.uuid4().hex
        self._serverFile: str | bool = False
        self._defaultTimeout: float = 20
        self._maxLockTime: float | None = 120
        self._port = port
        self._listen_address = listen_address
        self._mailbox_size, self._mailbox_bytes = mailbox_size, mailbox_bytes
        self._user_logger = logger if isinstance(logger, logging.Logger) else None
        self._log = self._user_logger or logging.getLogger(__name__)
        self._node: LockerNode | None = None
        self.set_server_file(serverFile)
        self.set_default_timeout(defaultTimeout)
        self.set_maximum_lock_time(maxLockTime)
        self._debugMode = False
        self.debugMode = debugMode
        admitted = load_authorized_keys(authorized_keys) if authorized_keys is not None else None
        config = NodeConfig(
            password=password, name=self._name,
            election=self._election_backend(),
            max_lock_time=self._maxLockTime, listen=listen, allow_serving=allowServing, reconnect=reconnect,
            connect_timeout=connectTimeout, lease=lease,
            client_pair=load_key_pair(key_file) if key_file is not None else None,
            realm=realm, server_pair=load_public_key(server_key_file) if server_key_file is not None else None,
            admitted=frozenset(admitted) if admitted is not None else None,
            receive_messages=receive_messages, advertise=advertise)
        self._advertise_address = advertise_address
        self._dispatcher = Dispatcher(f"pylocker-callbacks-{self._name}", self._log)
        self._node = LockerNode(config, self._unique_name, Inbox(mailbox_size, self._dispatcher, mailbox_bytes),
                                self._dispatcher, self._user_logger)
        self._init_messaging()
        self._metrics = None if metrics_port is None else start_metrics(self, metrics_port)
        if autoconnect:
            self.start()
            if blocking:
                self.wait_stopped()

    # ------------------------------------------------------------- pickling
    def _config(self) -> dict[str, Any]:
        config = self.node.config
        return {
            "password": config.password, "name": self._name, "serverFile": self._serverFile,
            "defaultTimeout": self._defaultTimeout, "maxLockTime": self._maxLockTime,
            "port": self._port, "allowServing": config.allow_serving, "reconnect": config.reconnect,
            "connectTimeout": config.connect_timeout, "debugMode": self._debugMode,
            "listen_address": self._listen_address, "lease": config.lease,
            "key_file": self._key_file, "authorized_keys": self._authorized_keys,
            "mailbox_size": self._mailbox_size, "mailbox_bytes": self._mailbox_bytes,
            "receive_messages": config.receive_messages,
            "realm": config.realm, "server_key_file": self._server_key_file,
            "advertise_address": self._advertise_address,
            "logger": self._user_logger if self._user_logger is not None else False,
        }

    def __getstate__(self) -> dict[str, Any]:
        return self._config()

    def __setstate__(self, state: dict[str, Any]) -> None:
        ServerLocker.__init__(self, **state, autoconnect=False)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._name!r} ({self.node.role.value}) {self._unique_name}>"

    @property
    def node(self) -> LockerNode:
        """The locker node doing the work (roles, election, failover, owned locks)."""
        if self._node is None:
            raise NotStarted()
        return self._node

    # ----------------------------------------------------------- properties
    @property
    def debugMode(self) -> bool:
        """debug mode flag"""
        return self._debugMode

    @debugMode.setter
    def debugMode(self, value: bool) -> None:
        check_bool(value, "debugMode")
        self._debugMode = value
        # Only pylocker's own logger is ours to change: a user's logger keeps its level,
        # and turning debug off leaves the level as the application configured it.
        if value:
            logging.getLogger(_PACKAGE_LOGGER).setLevel(logging.DEBUG)

    @property
    def name(self) -> str:
        """locker user given name"""
        return self._name

    @property
    def fingerprint(self) -> tuple[Any, ...] | None:
        """server locker fingerprint (uniqueName, timestamp, address, port, pid)"""
        fp = self.node.fingerprint
        if fp is None:
            return None
        return (fp.unique_name, str(fp.timestamp), fp.address, str(fp.port), fp.pid)

    @property
    def canServe(self) -> bool:
        """whether this instance can serve"""
        return self.node.can_serve

    @property
    def uniqueName(self) -> str:
        """locker unique name"""
        return self._unique_name

    @property
    def serverFile(self) -> str | bool:
        """serverlocker server file"""
        return self._serverFile

    @property
    def pid(self) -> int:
        """python process pid"""
        return os.getpid()

    @property
    def serverAddress(self) -> str | None:
        """address of the serving locker this instance serves as or is connected to"""
        fp = self.node.fingerprint
        return fp.address if fp else None

    @property
    def serverPort(self) -> int | None:
        """port of the serving locker this instance serves as or is connected to"""
        fp = self.node.fingerprint
        return fp.port if fp else None

    @property
    def serverUniqueName(self) -> str | None:
        """server unique name"""
        fp = self.node.fingerprint
        return fp.unique_name if fp else None

    @property
    def serverName(self) -> str | None:
        """server user given name"""
        fp = self.node.fingerprint
        return fp.name if fp else None

    @property
    def serverMaxLockTime(self) -> float | None:
        """server maximum allowed lock time"""
        link = self.node.link
        return link.max_lock_time if link is not None and link.alive else None

    @property
    def address(self) -> str:
        """locker instance machine address (the address a serving locker listens on)"""
        return self._listen_address

    @property
    def port(self) -> int:
        """locker instance port (the bound port while serving)"""
        server = self.node.server
        return server.port if server is not None else self._port

    @property
    def password(self) -> str:
        """locker password"""
        return self.node.config.password

    @property
    def defaultTimeout(self) -> float:
        """locker timeout in seconds"""
        return self._defaultTimeout

    @property
    def maxLockTime(self) -> float | None:
        """locker maximum locking time in seconds"""
        return self._maxLockTime

    @property
    def lease(self) -> float | None:
        """seconds a silent client keeps its locks (served by this locker)"""
        return self.node.config.lease

    @property
    def isServer(self) -> bool:
        """Whether this instance is being the lock server"""
        return self.node.server is not None

    @property
    def isClient(self) -> bool:
        """Whether this instance is being the lock client to a running server"""
        return self.node.client is not None

    @property
    def lockedPaths(self) -> dict[str, dict[str, Any]] | None:
        """copy of every locked path -> {lockId, clientName, clientUniqueName}; None unless serving"""
        server = self.node.server
        if server is None:
            return None
        result: dict[str, dict[str, Any]] = {}
        for lock_id, names, holder, _ in server.snapshot():
            entry = {"lockId": lock_id,
                     "clientName": holder.name if holder else self._name,
                     "clientUniqueName": holder.unique_name if holder else self._unique_name}
            for name in names:
                result[name] = dict(entry)
        return result

    @property
    def ownedLocks(self) -> dict[str, list[str]]:
        """copy of the locks this locker holds: lock id -> paths"""
        return self.node.owned.snapshot()

    @property
    def clientLocks(self) -> dict[str, list[str]] | None:
        """copy of every held lock: lock id -> paths; None unless serving"""
        server = self.node.server
        if server is None:
            return None
        return {lock_id: list(names) for lock_id, names, _, _ in server.snapshot()}

    @property
    def reconnect(self) -> bool:
        """Whether this locker finds the serving locker again (or becomes it) when it is lost."""
        return self.node.config.reconnect

    # ------------------------------------------------------------- settings
    def set_maximum_lock_time(self, maxLockTime: float | None) -> None:
        """Set maximum allowed time for a lock to be acquired (None or 0: no limit)."""
        check_number(maxLockTime, "maxLockTime", allow_none=True)
        self._maxLockTime = maxLockTime
        if self._node is not None:
            self._node.config.max_lock_time = maxLockTime
            server = self._node.server
            if server is not None:
                server.set_max_lock_time(maxLockTime or None)

    def set_default_timeout(self, defaultTimeout: float) -> None:
        """Set default timeout to acquire a lock."""
        check_number(defaultTimeout, "defaultTimeout")
        self._defaultTimeout = defaultTimeout

    def set_server_file(self, serverFile: bool | str) -> None:
        """Set server file path (True: ~/.pylocker.serverlocker; False: never serve)."""
        if serverFile is True:
            serverFile = serverfile.default_path()
        elif serverFile is not False and not isinstance(serverFile, str):
            raise TypeError(f"serverFile must be True, False or a path, not {type(serverFile).__name__}")
        elif isinstance(serverFile, str) and not serverFile:
            raise ValueError("serverFile must not be an empty path")
        if self._node is not None and self._node.link is not None:
            raise RuntimeError("stop the locker before changing its server file")
        if isinstance(serverFile, str) and not is_zookeeper_url(serverFile):
            serverFile = os.path.abspath(serverFile)  # a URL names no folder of ours
        self._serverFile = serverFile
        if self._node is not None:
            self._node.config.election = self._election_backend()

    def _election_backend(self) -> ElectionBackend | None:  # own method: mypy narrows _serverFile in __init__
        return backend_for(self._serverFile) if isinstance(self._serverFile, str) else None

    # ---------------------------------------------------------- fingerprint
    def get_running_server_fingerprint(self, serverFile: str | None = None, raiseNotFound: bool = False,
                                       raiseError: bool = True) -> tuple[Any, ...]:
        """(uniqueName, timestamp, address, port, pid) of the server in ``serverFile``; Nones if none."""
        path = serverFile if serverFile is not None else self._serverFile
        if not isinstance(path, str):
            raise ValueError("no server file is given and this locker has none")
        try:
            fp = read_fingerprint(path)
        except (ServerFileError, OSError):
            if raiseError:
                raise
            return (None, None, None, None, None)
        if fp is None:
            if raiseNotFound:
                raise FileNotFoundError(f"server file {path!r} was not found")
            return (None, None, None, None, None)
        return (fp.unique_name, str(fp.timestamp), fp.address, str(fp.port), fp.pid)

    # ------------------------------------------------------------- lifecycle
    def start(self, address: str | None = None, port: int | None = None, password: str | None = None,
              ntrials: int = 3) -> bool:
        """Serve (if allowed and nobody serves) or connect to the serving locker; True on success.

        With ``address`` (a host with ``port``, or a URL) it connects to that serving locker directly.
        """
        if address is not None and (port is not None or addresses.is_url(address)):
            return self.connect(address, port, password, ntrials)
        return self.node.start()

    def connect(self, address: str, port: int | None = None, password: str | None = None,
                ntrials: int = 3) -> bool:
        """Connect to a serving locker, local or remote; True on success.

        ``address`` is a host (with ``port``) or a URL (``tcp://host:port``, ``ipc:///path``,
        ``inproc://name``; ``port`` is then ignored).
        """
        if not isinstance(address, str) or not address:
            raise TypeError("address must be a non-empty string")
        if not addresses.is_url(address) and (
                isinstance(port, bool) or not isinstance(port, int) or not 0 < port <= 65535):
            raise ValueError(f"port must be an integer from 1 to 65535, got {port!r}")
        if password is not None and not isinstance(password, str):
            raise TypeError("password must be a string")
        if isinstance(ntrials, bool) or not isinstance(ntrials, int) or ntrials < 1:
            raise ValueError(f"ntrials must be a positive integer, got {ntrials!r}")
        return self.node.connect(addresses.parse(address, port), password, ntrials)

    def stop(self) -> None:
        """Stop server and client connections (and metrics). Locks held through this locker are released."""
        self.node.stop()
        self._dispatcher.stop()
        if self._metrics is not None:
            self._metrics.close()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Block until this locker is stopped (what ``blocking=True`` does); True if it was."""
        return self.node.wait_stopped(timeout)

    def reset(self, raiseError: bool = False) -> tuple[bool, str | None]:
        """Recycle a stopped locker into a fresh one (a new unique name, no locks)."""
        if self.isServer or self.isClient:
            reason = "locker is still serving or connected; stop it first"
            if raiseError:
                raise RuntimeError(reason)
            return False, reason
        self.stop()
        self._unique_name = uuid.uuid4().hex
        self._node = self.node.renewed(self._unique_name)
        self._init_messaging()
        return True, None

    # ------------------------------------------------------------------ locks
    def acquire_lock(self, path: str | Iterable[str], timeout: float | None = None,
                     lockGlobal: bool = False, shared: bool = False) -> tuple[bool, Any]:
        """Acquire a lock on a path or list of paths: (True, lockId) or (False, 0|1|2|message).

        0: not granted before timeout; 1: connection to the serving locker lost;
        2: this locker is neither a client nor a server. ``shared``: a read lock (see ``lock``).
        """
        names, timeout, claim = lock_request(path, timeout, self._defaultTimeout, shared)
        check_bool(lockGlobal, "lockGlobal")
        node = self.node
        if lockGlobal:
            existing = node.owned.shared_lock(names, claim)
            if existing is not None:
                return True, existing
        try:
            lock_id, _ = node.acquire(names, timeout, claim)
        except PylockerError as exc:
            return False, code_for(exc, ACQUIRE_CODES)
        if lockGlobal:
            node.owned.share(names, lock_id, claim)
        return True, lock_id

    def acquire(self, *args: Any, **kwargs: Any) -> tuple[bool, Any]:
        """alias to acquire_lock"""
        return self.acquire_lock(*args, **kwargs)

    def release_lock(self, lockId: str) -> tuple[bool, int | str]:
        """Release an acquired lock: (True, 0|1) or (False, 2|3|message).

        0: lock not found (so released); 1: found, owned by this locker and released;
        2: connection to the serving locker lost; 3: neither a client nor a server.
        """
        if not isinstance(lockId, str):
            raise TypeError(f"lockId must be a string, not {type(lockId).__name__}")
        try:
            code = self.node.release(lockId)
        except PylockerError as exc:
            return False, code_for(exc, RELEASE_CODES)
        return True, code

    def release(self, *args: Any, **kwargs: Any) -> tuple[bool, int | str]:
        """alias to release_lock"""
        return self.release_lock(*args, **kwargs)

    def lock(self, path: str | Iterable[str], timeout: float | None = None, shared: bool = False) -> Lock:
        """A context manager holding ``path`` (one or many names) for the with-block.

        Raises LockTimeout on entry when not granted within ``timeout`` (default:
        defaultTimeout), and LockLost on exit when the lock was taken away during the
        block (maxLockTime, lease). Not re-entrant: a second lock on a held name waits.
        ``shared``: a read lock; shared holders coexist, and once an exclusive request
        waits, later shared requests wait behind it.
        """
        return Lock(self.node, *lock_request(path, timeout, self._defaultTimeout, shared))

    def fencing_token(self, lockId: str) -> int:
        """The fencing token granted with ``lockId``: larger than every earlier grant's."""
        try:
            return self.node.owned.token(lockId)
        except KeyError:
            raise KeyError(f"lock {lockId!r} is not held by this locker") from None

    def lost_reason(self, lockId: str) -> str | None:
        """Why a lock this locker held was taken away (None if it was not, as far as it remembers)."""
        return self.node.owned.lost_reason(lockId)

    def on_lock_lost(self, callback: Callable[[str, str], None]) -> None:
        """Call ``callback(lockId, reason)`` when a held lock is taken away (e.g. maxLockTime)."""
        if not callable(callback):
            raise TypeError("callback must be callable")
        self.node.on_lock_lost(callback)
