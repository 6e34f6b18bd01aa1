"""ServerLocker, SingleLocker and FACTORY: pylocker 3.1's API over the new engine.

Names, arguments, defaults and return codes are the seed's (camelCase kept). Errors
raised by the engine are turned into the seed's codes in one place per method
(``_ACQUIRE_CODES``, ``_RELEASE_CODES``); the pythonic API in ``lock.py`` raises
them instead.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Any, Callable, Iterable

import psutil

from . import serverfile
from .client import Client
from .dispatch import Dispatcher
from .errors import (
    AuthenticationError,
    LockTimeout,
    NotConnected,
    NotStarted,
    PylockerError,
    ServerFileError,
)
from .lock import Lock
from .messaging import MessagingMixin
from .server import Server
from .transport.keys import CurveKeys, derive_keys, load_authorized_keys, load_key_pair
from .validation import check_bool, check_number, code_for, names as parse_names

_ACQUIRE_CODES: dict[type[PylockerError], int] = {LockTimeout: 0, NotConnected: 1, NotStarted: 2}
_RELEASE_CODES: dict[type[PylockerError], int] = {NotConnected: 2, NotStarted: 3}

FRESH_FINGERPRINT = 10.0  # seconds; a fingerprint refreshed this recently names a live server
ELECTION_RETRY = 0.01  # seconds between looks at a server file that another locker is taking over
DEFAULT_LEASE = 5.0
SUCCESSOR_WAIT = 0.5  # seconds a failing-over client waits for a new fingerprint before retrying the old
MIN_GRACE = 2.0  # seconds a new server waits at least for the previous clients to re-claim their locks
LOST_REMEMBERED = 10_000  # lost lock ids kept to explain later operations on them
_DEFAULT_LOGGER = "pylocker"


def _advertised(host: str) -> str:
    if host in ("0.0.0.0", "*", "", "::"):
        try:
            return socket.gethostbyname(socket.gethostname())
        except OSError:
            return "127.0.0.1"
    return host


class ServerLocker(MessagingMixin):
    """Lock (and message) server and client between threads, processes and machines.

    Once instantiated with ``autoconnect`` True, it connects to the serving locker
    named in ``serverFile`` if there is one, and otherwise (if ``allowServing``)
    serves itself. See the seed documentation for every argument; beyond it:

    Args:
        listen_address: where a serving locker listens (default loopback only);
            remote lockers then use ``start(address, port)`` or ``connect``.
        lease: seconds a client may stay silent before the server frees its locks.
        key_file: a zmq.auth secret certificate (``.key_secret``) this locker presents
            as a client, instead of the client key derived from the password.
        authorized_keys: a folder of zmq.auth certificates; when serving, admit only
            clients presenting one of those public keys (one key pair per machine).
        mailbox_size: received publications kept at most; past that the oldest
            are dropped (and counted in ``dropped_messages``).
        receive_messages: False for a lock-only client: it can still publish, but
            opens no subscription (one connection per client instead of two).
    """

    def __init__(self, password: str, name: str | None = None, serverFile: bool | str = True,
                 defaultTimeout: float = 20, maxLockTime: float | None = 120, port: int = 3000,
                 allowServing: bool = True, autoconnect: bool = True, reconnect: bool = False,
                 connectTimeout: float = 20, logger: logging.Logger | bool | None = False,
                 blocking: bool = False, debugMode: bool = False, *,
                 listen_address: str = "127.0.0.1", lease: float | None = DEFAULT_LEASE,
                 key_file: str | None = None, authorized_keys: str | None = None,
                 mailbox_size: int = 100_000, receive_messages: bool = True) -> None:
        if not isinstance(password, str):
            raise TypeError(f"password must be a string, not {type(password).__name__}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be None or a string, not {type(name).__name__}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an integer from 0 to 65535, got {port!r}")
        for value, argument in ((allowServing, "allowServing"), (autoconnect, "autoconnect"),
                                (reconnect, "reconnect"), (blocking, "blocking"), (debugMode, "debugMode")):
            check_bool(value, argument)
        check_number(connectTimeout, "connectTimeout", positive=True)
        check_number(lease, "lease", allow_none=True, positive=True)
        if not isinstance(listen_address, str) or not listen_address:
            raise TypeError("listen_address must be a non-empty string")
        if logger is not False and logger is not None and not isinstance(logger, (logging.Logger, logging.LoggerAdapter)):
            raise TypeError("logger must be a logging.Logger (or False for pylocker's own)")
        for value, argument in ((key_file, "key_file"), (authorized_keys, "authorized_keys")):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{argument} must be None or a path, not {type(value).__name__}")
        self._key_file = key_file
        self._authorized_keys = authorized_keys
        self._client_pair = load_key_pair(key_file) if key_file is not None else None
        self._admitted = load_authorized_keys(authorized_keys) if authorized_keys is not None else None
        self._password = password
        self._name = name if name is not None else f"locker-{os.getpid()}"
        self._unique_name = uuid.uuid4().hex
        self._serverFile: str | bool = False
        self.set_server_file(serverFile)
        self._defaultTimeout: float = 20
        self.set_default_timeout(defaultTimeout)
        self._maxLockTime: float | None = 120
        self.set_maximum_lock_time(maxLockTime)
        self._port = port
        self._allowServing = allowServing
        self._autoconnect = autoconnect
        self._reconnect = reconnect
        self._connectTimeout = connectTimeout
        self._listen_address = listen_address
        self._lease = lease
        self._user_logger = logger if logger not in (False, None) else None
        self._log: logging.Logger = logger if isinstance(logger, logging.Logger) else logging.getLogger(_DEFAULT_LOGGER)
        self._debugMode = False
        self.debugMode = debugMode
        self._state_lock = threading.RLock()
        self._owned: dict[str, list[str]] = {}
        self._tokens: dict[str, int] = {}
        self._global_locks: dict[frozenset[str], str] = {}
        self._lost_locks: dict[str, str] = {}  # recently lost lock id -> reason, oldest first
        self._lost_callbacks: list[Callable[[str, str], None]] = []
        self._dispatcher = Dispatcher(f"pylocker-callbacks-{self._name}", self._log)
        self._init_messaging(mailbox_size, receive_messages)
        self._server: Server | None = None
        self._client: Client | None = None
        self._election: serverfile.ElectionLock | None = None
        self._fingerprint: serverfile.Fingerprint | None = None
        self._stopped = threading.Event()
        self._online = threading.Event()  # set while serving or connected
        self._role_lock = threading.RLock()
        self._closing = False
        self._connected_to: tuple[str, int] | None = None
        self._failover_thread: threading.Thread | None = None
        if autoconnect:
            self.start()
            if blocking:
                self.wait_stopped()

    # ------------------------------------------------------------- pickling
    def _config(self) -> dict[str, Any]:
        return {
            "password": self._password, "name": self._name, "serverFile": self._serverFile,
            "defaultTimeout": self._defaultTimeout, "maxLockTime": self._maxLockTime,
            "port": self._port, "allowServing": self._allowServing, "reconnect": self._reconnect,
            "connectTimeout": self._connectTimeout, "debugMode": self._debugMode,
            "listen_address": self._listen_address, "lease": self._lease,
            "key_file": self._key_file, "authorized_keys": self._authorized_keys,
            "mailbox_size": self._mailbox_size, "receive_messages": self._receive_messages,
            "logger": self._user_logger if isinstance(self._user_logger, logging.Logger) else False,
        }

    def __getstate__(self) -> dict[str, Any]:
        return self._config()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state, autoconnect=False)  # type: ignore[misc]

    def __repr__(self) -> str:
        role = "server" if self.isServer else "client" if self.isClient else "stopped"
        return f"<{type(self).__name__} {self._name!r} ({role}) {self._unique_name}>"

    # ----------------------------------------------------------- properties
    @property
    def debugMode(self) -> bool:
        """debug mode flag"""
        return self._debugMode

    @debugMode.setter
    def debugMode(self, value: bool) -> None:
        check_bool(value, "debugMode")
        self._debugMode = value
        self._log.setLevel(logging.DEBUG if value else logging.NOTSET)

    @property
    def name(self) -> str:
        """locker user given name"""
        return self._name

    @property
    def fingerprint(self) -> tuple[Any, ...] | None:
        """server locker fingerprint (uniqueName, timestamp, address, port, pid)"""
        fp = self._fingerprint
        if fp is None:
            return None
        return (fp.unique_name, str(fp.timestamp), fp.address, str(fp.port), fp.pid)

    @property
    def canServe(self) -> bool:
        """whether this instance can serve"""
        return self._allowServing and self._serverFile is not False

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
        return self._fingerprint.address if self._fingerprint else None

    @property
    def serverPort(self) -> int | None:
        """port of the serving locker this instance serves as or is connected to"""
        return self._fingerprint.port if self._fingerprint else None

    @property
    def serverUniqueName(self) -> str | None:
        """server unique name"""
        return self._fingerprint.unique_name if self._fingerprint else None

    @property
    def serverName(self) -> str | None:
        """server user given name"""
        return self._fingerprint.name if self._fingerprint else None

    @property
    def serverMaxLockTime(self) -> float | None:
        """server maximum allowed lock time"""
        if self._server is not None:
            return self._server.max_lock_time
        client = self._client
        if client is not None and client.welcome is not None:
            return client.welcome.max_lock_time
        return None

    @property
    def address(self) -> str:
        """locker instance machine address (the address a serving locker listens on)"""
        return self._listen_address

    @property
    def port(self) -> int:
        """locker instance port (the bound port while serving)"""
        return self._server.port if self._server is not None else self._port

    @property
    def password(self) -> str:
        """locker password"""
        return self._password

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
        return self._lease

    @property
    def isServer(self) -> bool:
        """Whether this instance is being the lock server"""
        return self._server is not None and self._server.running

    @property
    def isClient(self) -> bool:
        """Whether this instance is being the lock client to a running server"""
        return self._client is not None and self._client.connected

    @property
    def lockedPaths(self) -> dict[str, dict[str, Any]] | None:
        """copy of every locked path -> {lockId, clientName, clientUniqueName}; None unless serving"""
        if not self.isServer:
            return None
        result: dict[str, dict[str, Any]] = {}
        for lock_id, names, holder, _ in self._server.snapshot():  # type: ignore[union-attr]
            entry = {"lockId": lock_id,
                     "clientName": holder.name if holder else self._name,
                     "clientUniqueName": holder.unique_name if holder else self._unique_name}
            for name in names:
                result[name] = dict(entry)
        return result

    @property
    def ownedLocks(self) -> dict[str, list[str]]:
        """copy of the locks this locker holds: lock id -> paths"""
        with self._state_lock:
            return {lock_id: list(names) for lock_id, names in self._owned.items()}

    @property
    def clientLocks(self) -> dict[str, list[str]] | None:
        """copy of every held lock: lock id -> paths; None unless serving"""
        if not self.isServer:
            return None
        return {lock_id: list(names) for lock_id, names, _, _ in self._server.snapshot()}  # type: ignore[union-attr]

    # ------------------------------------------------------------- settings
    def set_maximum_lock_time(self, maxLockTime: float | None) -> None:
        """Set maximum allowed time for a lock to be acquired (None or 0: no limit)."""
        check_number(maxLockTime, "maxLockTime", allow_none=True)
        self._maxLockTime = maxLockTime
        server = getattr(self, "_server", None)
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
        if getattr(self, "_server", None) is not None or getattr(self, "_client", None) is not None:
            raise RuntimeError("stop the locker before changing its server file")
        self._serverFile = os.path.abspath(serverFile) if isinstance(serverFile, str) else False

    # ---------------------------------------------------------- fingerprint
    def get_running_server_fingerprint(self, serverFile: str | None = None, raiseNotFound: bool = False,
                                       raiseError: bool = True) -> tuple[Any, ...]:
        """(uniqueName, timestamp, address, port, pid) of the server in ``serverFile``; Nones if none."""
        path = serverFile if serverFile is not None else self._serverFile
        if not isinstance(path, str):
            raise ValueError("no server file is given and this locker has none")
        try:
            fp = serverfile.read(path)
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

        With ``address`` and ``port`` it connects to that serving locker directly.
        """
        if address is not None and port is not None:
            return self.connect(address, port, password, ntrials)
        if self.isServer or self.isClient:
            return True
        self._stopped.clear()
        self._closing = False
        self._connected_to = None
        if not isinstance(self._serverFile, str):
            self._log.warning("%s has no server file and no address to connect to", self._name)
            return False
        deadline = time.monotonic() + self._connectTimeout
        path = self._serverFile
        while True:
            try:
                if self.canServe and self._try_serve(path):
                    self._online.set()
                    return True
                fp = serverfile.read(path)
            except (ServerFileError, OSError) as exc:
                self._log.error("cannot use server file %r: %s", path, exc)
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._log.error("no serving locker found through %r within %s s", path, self._connectTimeout)
                return False
            if fp is not None and self._looks_alive(fp):
                try:
                    self._open_client(fp.address, fp.port, self._password, min(remaining, 5.0))
                    self._online.set()
                    return True
                except AuthenticationError as exc:
                    self._log.error("%s", exc)
                    return False
                except NotConnected as exc:
                    self._log.debug("serving locker %s did not answer: %s", fp.unique_name, exc)
            time.sleep(ELECTION_RETRY)  # bounded by deadline: the elected server is writing its file

    def _looks_alive(self, fp: serverfile.Fingerprint) -> bool:
        if fp.host == serverfile.this_host():
            # On this host the election lock tells for sure: a serving locker holds it.
            if not isinstance(self._serverFile, str) or not serverfile.someone_serves(self._serverFile):
                return False
            try:
                return psutil.Process(fp.pid).status() != psutil.STATUS_ZOMBIE
            except psutil.Error:
                return False
        return serverfile.is_fresh(fp, FRESH_FINGERPRINT)

    def _try_serve(self, path: str) -> bool:
        election = serverfile.ElectionLock(path)
        if not election.try_acquire():
            return False
        try:
            previous = serverfile.read(path)
        except ServerFileError:
            previous = None
        lease = self._lease or DEFAULT_LEASE
        recover_from = None
        if (previous is not None and previous.unique_name != self._unique_name and previous.clients
                and serverfile.is_fresh(previous, 2 * lease + 2)):
            # The previous server died recently with clients: give them a grace period to
            # re-claim their locks before anything new is granted.
            recover_from = set(previous.clients) - {self._unique_name}
        server = Server(self._keys(self._password), self._listen_address, self._port,
                        name=self._name, unique_name=self._unique_name,
                        max_lock_time=self._maxLockTime or None, lease=self._lease, logger=self._log,
                        epoch=election.epoch, first_token=serverfile.first_token(election.epoch),
                        on_local_lost=self._lost, client_keys=self._admitted,
                        on_publications=self._on_served_publications, on_tick=self._refresh_fingerprint,
                        on_clients_changed=self._clients_changed, recover_from=recover_from,
                        grace=max(lease, MIN_GRACE))
        try:
            server.start()
            fingerprint = serverfile.Fingerprint(
                self._unique_name, time.time(), _advertised(self._listen_address), server.port,
                os.getpid(), self._name, election.epoch, (), serverfile.this_host())
            serverfile.write(path, fingerprint)
        except BaseException:
            server.stop()
            election.release()
            raise
        self._server, self._election, self._fingerprint = server, election, fingerprint
        self._log.info("%s serves on %s:%s (server file %s, epoch %d%s)", self._name, self._listen_address,
                       server.port, path, election.epoch, ", recovering" if recover_from else "")
        for lock_id, names, token in self._held_locks():
            if not server.reclaim(lock_id, names, token):
                self._lost(lock_id, "failover")
        server.reclaim_done(self._unique_name)
        return True

    def _held_locks(self) -> list[tuple[str, list[str], int]]:
        with self._state_lock:
            return [(lock_id, list(names), self._tokens.get(lock_id, 0)) for lock_id, names in self._owned.items()]

    def _refresh_fingerprint(self) -> None:
        fp = self._fingerprint
        if self._server is None or fp is None:
            return
        self._write_fingerprint(fp._replace(timestamp=time.time()))

    def _clients_changed(self, clients: list[str]) -> None:
        fp = self._fingerprint
        if self._server is None or fp is None:
            return
        self._write_fingerprint(fp._replace(timestamp=time.time(), clients=tuple(clients)))

    def _write_fingerprint(self, fingerprint: serverfile.Fingerprint) -> None:
        if not isinstance(self._serverFile, str):
            return
        self._fingerprint = fingerprint
        try:
            serverfile.write(self._serverFile, fingerprint)
        except (OSError, ServerFileError) as exc:
            self._log.error("cannot refresh server file %r: %s", self._serverFile, exc)

    def connect(self, address: str, port: int, password: str | None = None, ntrials: int = 3) -> bool:
        """Connect to a serving locker, local or remote; True on success."""
        if not isinstance(address, str) or not address:
            raise TypeError("address must be a non-empty string")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port <= 65535:
            raise ValueError(f"port must be an integer from 1 to 65535, got {port!r}")
        if password is not None:
            if not isinstance(password, str):
                raise TypeError("password must be a string")
            self._password = password
        if isinstance(ntrials, bool) or not isinstance(ntrials, int) or ntrials < 1:
            raise ValueError(f"ntrials must be a positive integer, got {ntrials!r}")
        if self.isServer or self.isClient:
            self._log.warning("%s is already running; stop it before connecting elsewhere", self._name)
            return False
        self._stopped.clear()
        self._closing = False
        for trial in range(ntrials):
            try:
                self._open_client(address, port, self._password, self._connectTimeout / ntrials)
                self._connected_to = (address, port)
                self._online.set()
                return True
            except AuthenticationError as exc:
                self._log.error("%s", exc)
                return False
            except NotConnected as exc:
                self._log.warning("connection trial %d/%d to %s:%s failed: %s", trial + 1, ntrials,
                                  address, port, exc)
        return False

    def _keys(self, password: str) -> CurveKeys:
        keys = derive_keys(password)
        if self._client_pair is not None:
            keys = keys._replace(client=self._client_pair)
        return keys

    def _open_client(self, address: str, port: int, password: str, timeout: float) -> None:
        client = Client(self._keys(password), address, port, name=self._name,
                        unique_name=self._unique_name, logger=self._log, on_lost=self._lost,
                        on_publications=self._deliver, on_connection_lost=self._connection_lost,
                        subscribe=self._receive_messages)
        welcome = client.connect(timeout)
        self._client = client
        self._fingerprint = serverfile.Fingerprint(welcome.server_unique_name, time.time(), address, port,
                                                   0, welcome.server_name, welcome.epoch)
        self._log.info("%s connected to %s at %s:%s", self._name, welcome.server_name, address, port)

    def stop(self) -> None:
        """Stop server and client connections. Locks held through this locker are released."""
        with self._role_lock:
            self._closing = True
            server, client, election = self._server, self._client, self._election
            self._server = self._client = self._election = None
        self._online.clear()
        if client is not None:
            client.close()
        if server is not None:
            # The server file stays: it names the clients still connected, so that a
            # successor gives them a grace period to re-claim their locks.
            server.stop()
        if election is not None:
            election.release()
        with self._state_lock:
            self._owned.clear()
            self._tokens.clear()
            self._global_locks.clear()
        self._dispatcher.stop()
        self._stopped.set()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Block until this locker is stopped (what ``blocking=True`` does); True if it was."""
        return self._stopped.wait(timeout)

    def reset(self, raiseError: bool = False) -> tuple[bool, str | None]:
        """Recycle a stopped locker into a fresh one (a new unique name, no locks)."""
        if self.isServer or self.isClient:
            reason = "locker is still serving or connected; stop it first"
            if raiseError:
                raise RuntimeError(reason)
            return False, reason
        self.stop()
        self._unique_name = uuid.uuid4().hex
        self._publication_prefix = self._unique_name[:12] + "-"
        self._fingerprint = None
        self._stopped.clear()
        return True, None

    # ------------------------------------------------------------------ locks
    def acquire_lock(self, path: str | Iterable[str], timeout: float | None = None,
                     lockGlobal: bool = False) -> tuple[bool, Any]:
        """Acquire a lock on a path or list of paths: (True, lockId) or (False, 0|1|2|message).

        0: not granted before timeout; 1: connection to the serving locker lost;
        2: this locker is neither a client nor a server.
        """
        names = parse_names(path)
        if timeout is None:
            timeout = self._defaultTimeout
        check_number(timeout, "timeout")
        check_bool(lockGlobal, "lockGlobal")
        if lockGlobal:
            with self._state_lock:
                shared = self._global_locks.get(frozenset(names))
                if shared is not None and shared in self._owned:
                    return True, shared
        try:
            lock_id, token = self._acquire(names, timeout)
        except PylockerError as exc:
            return False, code_for(exc, _ACQUIRE_CODES)
        if lockGlobal:
            with self._state_lock:
                self._global_locks[frozenset(names)] = lock_id
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
            code = self._release(lockId)
        except PylockerError as exc:
            return False, code_for(exc, _RELEASE_CODES)
        return True, code

    def release(self, *args: Any, **kwargs: Any) -> tuple[bool, int | str]:
        """alias to release_lock"""
        return self.release_lock(*args, **kwargs)

    def lock(self, path: str | Iterable[str], timeout: float | None = None) -> Lock:
        """A context manager holding ``path`` (one or many names) for the with-block.

        Raises LockTimeout on entry when not granted within ``timeout`` (default:
        defaultTimeout), and LockLost on exit when the lock was taken away during the
        block (maxLockTime, lease). Not re-entrant: a second lock on a held name waits.
        """
        names = parse_names(path)
        if timeout is not None:
            check_number(timeout, "timeout")
        return Lock(self, names, self._defaultTimeout if timeout is None else timeout)

    def fencing_token(self, lockId: str) -> int:
        """The fencing token granted with ``lockId``: larger than every earlier grant's."""
        with self._state_lock:
            try:
                return self._tokens[lockId]
            except KeyError:
                raise KeyError(f"lock {lockId!r} is not held by this locker") from None

    def lost_reason(self, lockId: str) -> str | None:
        """Why a lock this locker held was taken away (None if it was not, as far as it remembers)."""
        with self._state_lock:
            return self._lost_locks.get(lockId)

    def on_lock_lost(self, callback: Callable[[str, str], None]) -> None:
        """Call ``callback(lockId, reason)`` when a held lock is taken away (e.g. maxLockTime)."""
        if not callable(callback):
            raise TypeError("callback must be callable")
        self._lost_callbacks.append(callback)

    # --------------------------------------------------------------- engine
    def _acquire(self, names: list[str], timeout: float) -> tuple[str, int]:
        deadline = time.monotonic() + timeout
        while True:
            server, client = self._server, self._client
            try:
                if server is not None:
                    lock_id, token = server.acquire(names, timeout)
                elif client is not None:
                    lock_id, token = client.acquire(names, timeout)
                elif self._failover_thread is None:
                    raise NotStarted()
                else:
                    lock_id = ""
            except (NotConnected, NotStarted) as exc:
                if not self._reconnect or self._closing or isinstance(exc, AuthenticationError):
                    raise
                if self._client is client and self._server is server:
                    self._online.clear()  # the failover has not noticed yet
                lock_id = ""
            if lock_id:
                with self._state_lock:
                    self._owned[lock_id] = names
                    self._tokens[lock_id] = token
                return lock_id, token
            # Failing over: wait for the next server, then ask again with what is left of the timeout.
            timeout = deadline - time.monotonic()
            if timeout <= 0 or not self._online.wait(timeout):
                raise LockTimeout(names, None)
            timeout = max(0.0, deadline - time.monotonic())

    def _release(self, lock_id: str) -> int:
        for attempt in (1, 2):
            server, client = self._server, self._client
            try:
                if server is not None:
                    code = 1 if server.release(lock_id) else 0
                elif client is not None:
                    if lock_id in self._owned:
                        # We know we hold it: no need to wait a round trip for the server to agree.
                        # Requests leave in order, so our next acquire comes after this release.
                        client.release_nowait(lock_id)
                        code = 1
                    else:
                        code = client.release(lock_id, self._connectTimeout)
                else:
                    raise NotStarted()
            except (NotConnected, NotStarted):
                # During a failover the lock is re-claimed first, then released.
                if (attempt == 2 or not self._reconnect or self._closing or self._failover_thread is None
                        or not self._online.wait(self._connectTimeout)):
                    raise
                continue
            self._forget(lock_id)
            return code
        raise NotConnected("unreachable")

    # --------------------------------------------------------------- failover
    @property
    def reconnect(self) -> bool:
        """Whether this locker finds the serving locker again (or becomes it) when it is lost."""
        return self._reconnect

    def _connection_lost(self) -> None:
        # Runs on the lost client's I/O thread: hand the work to a failover thread.
        self._online.clear()
        with self._role_lock:
            if self._closing:
                return
            if not self._reconnect:
                self._log.error("%s lost the serving locker; reconnect is off", self._name)
                return
            if self._failover_thread is not None and self._failover_thread.is_alive():
                return
            self._failover_thread = threading.Thread(target=self._failover, name=f"pylocker-failover-{self._name}",
                                                     daemon=True)
            self._failover_thread.start()

    def _failover(self) -> None:
        lost = self._fingerprint
        started = time.monotonic()
        self._log.warning("%s lost the serving locker %s; finding the next one", self._name,
                          lost.unique_name if lost else "?")
        while not self._closing:
            with self._role_lock:
                if self._closing:
                    break
                old = self._client
                self._client = None
                if old is not None:
                    old.close(say_bye=False)
                try:
                    joined = self._rejoin(lost, time.monotonic() - started)
                except AuthenticationError as exc:
                    self._log.error("%s", exc)
                    joined = False
                except (NotConnected, ServerFileError, OSError) as exc:
                    self._log.debug("failover attempt failed: %s", exc)
                    joined = False
            if joined:
                self._log.warning("%s is back after %.3f s, as %s", self._name, time.monotonic() - started,
                                  "the server" if self._server is not None else "a client")
                break
            self._stopped.wait(ELECTION_RETRY * 5)
        with self._role_lock:
            self._failover_thread = None

    def _rejoin(self, lost: serverfile.Fingerprint | None, elapsed: float) -> bool:
        """One attempt to serve or to connect again; re-claims our locks on success."""
        if self._connected_to is not None:
            address, port = self._connected_to
            self._open_client(address, port, self._password, 1.0)
        else:
            path = self._serverFile
            if not isinstance(path, str):
                return False
            if self.canServe and self._try_serve(path):
                self._online.set()
                return True
            fp = serverfile.read(path)
            if fp is None or not self._looks_alive(fp):
                return False
            if lost is not None and fp.unique_name == lost.unique_name and elapsed < SUCCESSOR_WAIT:
                return False  # most likely a successor is about to write its own fingerprint
            self._open_client(fp.address, fp.port, self._password, 1.0)
        client = self._client
        if client is None:
            return False
        for lock_id, names, token in self._held_locks():
            if not client.reclaim(lock_id, names, token, self._connectTimeout):
                self._lost(lock_id, "failover")
        client.reclaim_done()
        self._online.set()
        return True

    def _forget(self, lock_id: str) -> bool:
        with self._state_lock:
            self._tokens.pop(lock_id, None)
            names = self._owned.pop(lock_id, None)
            if names is not None:
                key = frozenset(names)
                if self._global_locks.get(key) == lock_id:
                    del self._global_locks[key]
        return names is not None

    def _lost(self, lock_id: str, reason: str) -> None:
        # Runs on an I/O thread (under the server's table mutex when serving): user
        # callbacks go to the dispatcher thread, where they may call back into the locker.
        if self._forget(lock_id):
            self._log.warning("%s lost lock %s (%s)", self._name, lock_id, reason)
            with self._state_lock:
                self._lost_locks[lock_id] = reason
                while len(self._lost_locks) > LOST_REMEMBERED:
                    del self._lost_locks[next(iter(self._lost_locks))]
            for callback in self._lost_callbacks:
                self._dispatcher.submit(callback, lock_id, reason)


class SingleLocker(ServerLocker):
    """Singleton ServerLocker: one per process (a forked child gets its own)."""

    _instance: SingleLocker | None = None
    _instance_pid = 0
    _guard = threading.Lock()

    def __new__(cls, *args: Any, **kwargs: Any) -> SingleLocker:
        with cls._guard:
            if cls._instance is None or cls._instance_pid != os.getpid():
                instance = super().__new__(cls)
                instance._single_ready = False
                cls._instance, cls._instance_pid = instance, os.getpid()
            return cls._instance

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if getattr(self, "_single_ready", False):
            return
        self._single_ready = True
        super().__init__(*args, **kwargs)


class LockersFactory:
    """Lockers by key: the same key always gives back the same locker (one factory per process)."""

    _instance: LockersFactory | None = None
    _guard = threading.Lock()

    def __new__(cls, *args: Any, **kwargs: Any) -> LockersFactory:
        with cls._guard:
            if cls._instance is None:
                instance = super().__new__(cls)
                instance._lockers = {}
                instance._lock = threading.RLock()
                cls._instance = instance
            return cls._instance

    def __call__(self, key: str, *args: Any, **kwargs: Any) -> ServerLocker:
        return self.get(key, *args, **kwargs)

    def get(self, key: str, restart: bool = False, regenerate: bool = False, *args: Any,
            **kwargs: Any) -> ServerLocker:
        """The locker under ``key``, created from ``*args, **kwargs`` if there is none.

        restart: start it again if it is not running; regenerate: replace it with a
        new instance if it is not running.
        """
        if not isinstance(key, str):
            raise TypeError(f"key must be a string, not {type(key).__name__}")
        check_bool(restart, "restart")
        check_bool(regenerate, "regenerate")
        with self._lock:
            locker = self._lockers.get(key)
            running = locker is not None and (locker.isServer or locker.isClient)
            if locker is None or (regenerate and not running):
                locker = self._lockers[key] = ServerLocker(*args, **kwargs)
            elif restart and not running:
                locker.start()
            return locker

    def pop(self, key: str, restart: bool = False, regenerate: bool = False, *args: Any,
            **kwargs: Any) -> ServerLocker:
        """Like ``get``, and the locker leaves the factory."""
        with self._lock:
            locker = self.get(key, restart, regenerate, *args, **kwargs)
            del self._lockers[key]
            return locker

    def __contains__(self, key: object) -> bool:
        return key in self._lockers

    def keys(self) -> list[str]:
        return list(self._lockers)


FACTORY = LockersFactory()
