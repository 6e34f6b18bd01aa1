"""The locker node: one locker's role, election, failover and owned locks.

Roles (``Role``)::

    STOPPED --start()--> STARTING --won the election--> SERVING
                                  --found a server----> CONNECTED
    SERVING / CONNECTED --lost the server (reconnect on)--> FAILING_OVER --> SERVING | CONNECTED
    any --stop()--> STOPPED

Whatever the role, the node talks to the lock service through one ``Link`` (the
in-process ``Server``, or a ``Client``), so nothing above it asks which role it plays.

Failover: when the link is lost, a failover thread re-runs the election (or reconnects
by address) and re-claims every lock still believed held, with its id and fencing token.
Belief ends with the client's lease clock (``Client.valid_until``): a lock not re-claimed
by then is reported lost, since the new server may grant it to another after a lease.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import time
from typing import Callable, Final, TypeVar

from .client import Client
from .dispatch import Dispatcher
from .election.base import Fingerprint, Term
from .errors import AuthenticationError, LockTimeout, NotConnected, NotStarted, PylockerError, ServerFileError
from .holds import PLAIN, Claim
from .inbox import Inbox
from .link import DEFAULT_LEASE, Beacon, Link, NodeConfig, Role
from .node_serving import ServingMixin
from .owned import OwnedLocks
from .protocol import new_routing_id
from .server import Server
from .transport import address as addresses
from .transport.address import Address
from .watches import Rows
from .watching import HoldersListener, WatchList

log = logging.getLogger(__name__)

RETRY_FIRST, RETRY_MAX = 0.01, 0.1  # seconds between election attempts, doubling up to RETRY_MAX
SUCCESSOR_WAIT: Final = 0.5  # a failing-over client waits this long for a successor's fingerprint
FAILOVER_CONNECT: Final = 1.0  # seconds one failover attempt waits for a server's answer
LOST_PROBE: Final = 0.25  # seconds a failover attempt waits for the server just lost (likely dead)

LostCallback = Callable[[str, str], None]
T = TypeVar("T")


class LockerNode(ServingMixin):
    """One locker: serves or connects, fails over, and keeps the locks it holds."""

    def __init__(self, config: NodeConfig, unique_name: str, inbox: Inbox, dispatcher: Dispatcher,
                 logger: logging.Logger | None = None) -> None:
        self.config = config
        self.unique_name = unique_name
        self.inbox = inbox
        self.owned = OwnedLocks()
        self.watching = WatchList(dispatcher)  # names followed for elections and groups
        self._dispatcher = dispatcher
        self._log: logging.Logger = logger if logger is not None else log
        self._lost_callbacks: list[LostCallback] = []
        self._role = Role.STOPPED
        self._role_lock = threading.RLock()
        self._link: Link | None = None
        self._term: Term | None = None
        self.fingerprint: Fingerprint | None = None
        self._connected_to: Address | None = None
        self._stopped = threading.Event()
        self._stopped.set()
        self._online = Beacon()  # set while serving or connected
        self._closing = False
        self._failover_thread: threading.Thread | None = None
        self._unfollow: Callable[[], None] | None = None  # stops our following of the election
        self._believe_until: float | None = None  # during a failover: when our locks stop being ours
        self._fresh_session = False  # the next connection starts with no locks (say goodbye first)
        self._request_ids = itertools.count(1)  # never reused under this locker's identity
        self._routing_id = new_routing_id()  # the secret its locks are bound to on the server

    def renewed(self, unique_name: str) -> LockerNode:
        """A fresh, stopped node with this one's configuration, inbox and callbacks (for ``reset``)."""
        node = LockerNode(self.config, unique_name, self.inbox, self._dispatcher, self._log)
        node._lost_callbacks = self._lost_callbacks
        return node

    def holds(self, lock_id: str) -> bool:
        """Whether this locker may take ``lock_id`` as held right now (its own clocks included)."""
        if lock_id not in self.owned:
            return False
        link = self._link
        if link is not None:
            return link.holds(lock_id)
        believe_until = self._believe_until  # failing over: believe until the lost link's clock ran out
        return believe_until is None or time.monotonic() < believe_until

    # ----------------------------------------------------------------- roles
    @property
    def role(self) -> Role:
        return self._role

    @property
    def link(self) -> Link | None:
        return self._link

    @property
    def server(self) -> Server | None:
        """The in-process server while this locker serves."""
        link = self._link
        return link if isinstance(link, Server) and link.running else None

    @property
    def client(self) -> Client | None:
        link = self._link
        return link if isinstance(link, Client) and link.connected else None

    @property
    def can_serve(self) -> bool:
        config = self.config
        return (config.allow_serving and config.election is not None
                and (config.server_pair is None or bool(config.server_pair.secret)))

    def _set_role(self, role: Role) -> None:
        if role is not self._role:
            self._log.debug("%s: %s -> %s", self.config.name, self._role.value, role.value)
            self._role = role
        if role in (Role.SERVING, Role.CONNECTED):
            self._online.set()
        else:
            self._online.clear()
            if role is Role.STOPPED:
                self._online.poke()  # waiters without a thread of their own look again: they stop

    @property
    def online(self) -> Beacon:
        """Set while serving or connected; its hooks are called as it serves, connects or stops."""
        return self._online

    def may_wait(self) -> bool:
        """Whether a call that failed for want of a link may wait for the failover and try once more."""
        return self.config.reconnect and not self._closing and self._failover_thread is not None

    # ------------------------------------------------------------- lifecycle
    def start(self) -> bool:
        """Serve (if allowed and nobody serves) or connect to the elected server; True on success."""
        if self._link is not None and self._link.alive:
            return True
        election = self.config.election
        self._begin()
        if election is None:
            self._log.warning("%s has no server file and no address to connect to", self.config.name)
            self._set_role(Role.STOPPED)
            return False
        deadline = time.monotonic() + self.config.connect_timeout
        retry = RETRY_FIRST
        while not self._closing:
            try:
                self._follow(election)
                if self.can_serve and self._try_serve(election):
                    return True
                fp = election.read()
            except (ServerFileError, OSError) as exc:
                self._log.error("cannot use server file %r: %s", election.description, exc)
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._log.error("no serving locker found through %r within %s s", election.description,
                                self.config.connect_timeout)
                break
            if fp is not None and election.looks_alive(fp):
                address = addresses.parse(fp.address, fp.port)
                if address.scheme == "inproc" and fp.pid != os.getpid():
                    self._log.error("the serving locker of %r listens at %s, inside process %d: only lockers "
                                    "of that process can reach it", election.description, address, fp.pid)
                    break
                try:
                    self._open_client(address, min(remaining, 5.0))
                    return True
                except AuthenticationError as exc:
                    self._log.error("%s", exc)
                    break
                except NotConnected as exc:
                    self._log.debug("serving locker %s did not answer: %s", fp.unique_name, exc)
            # The elected server may still be writing its fingerprint: look again shortly.
            self._stopped.wait(min(retry, max(0.0, remaining)))
            retry = min(retry * 2, RETRY_MAX)
        self._set_role(Role.STOPPED)
        return False

    def connect(self, address: Address, password: str | None, ntrials: int) -> bool:
        """Connect to the serving locker at ``address``; True on success."""
        if self._link is not None and self._link.alive:
            self._log.warning("%s is already running; stop it before connecting elsewhere", self.config.name)
            return False
        if password is not None:
            self.config.password = password
        self._begin()
        for trial in range(ntrials):
            try:
                self._open_client(address, self.config.connect_timeout / ntrials)
                self._connected_to = address
                return True
            except AuthenticationError as exc:
                self._log.error("%s", exc)
                break
            except NotConnected as exc:
                self._log.warning("connection trial %d/%d to %s failed: %s", trial + 1, ntrials, address, exc)
        self._set_role(Role.STOPPED)
        return False

    def _begin(self) -> None:
        self._stopped.clear()
        self._closing = False
        self._connected_to = None
        self._set_role(Role.STARTING)

    def stop(self) -> None:
        """Stop serving or close the connection; every lock held through this locker is released."""
        with self._role_lock:
            self._closing = True
            link, term = self._link, self._term
            self._link = self._term = None
            self._set_role(Role.STOPPED)
        self._stopped.set()
        if link is not None:
            # A serving locker leaves the server file naming its clients (a successor gives them a
            # grace period), and says it stopped (its live process is not a server that still runs).
            if isinstance(link, Server) and self.fingerprint is not None:
                self._publish_fingerprint(self.fingerprint._replace(timestamp=time.time(), stopped=True))
            link.close()
        if term is not None:
            term.resign()
        if self.config.election is not None:
            self._stop_following()
            self.config.election.close()  # a ZooKeeper session ends here; it reopens on start()
        self.owned.clear()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    # ----------------------------------------------------------------- locks
    def acquire(self, names: list[str], timeout: float | None, claim: Claim = PLAIN) -> tuple[str, int]:
        """Lock ``names`` (as ``claim`` says) within ``timeout`` s; (lock id, token). Waits out a failover.

        The names granted (one, for an any-of claim) are in ``owned``.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            link = self._link
            try:
                if link is None:
                    if self._failover_thread is None:
                        raise NotStarted()
                else:
                    if claim is PLAIN:
                        lock_id, token = link.acquire(names, timeout)
                        granted: list[str] | tuple[str, ...] = names
                    else:
                        lock_id, token, granted = link.claim(names, timeout, claim)
                    self.took(link, lock_id, granted, token, claim)
                    return lock_id, token
            except (NotConnected, NotStarted) as exc:
                if not self.outlasts(exc, link):
                    raise
            # Failing over: wait for the next server, then ask again with what is left of the timeout.
            remaining = None if deadline is None else deadline - time.monotonic()
            if (remaining is not None and remaining <= 0) or not self._online.wait(remaining):
                raise LockTimeout(names, timeout)
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())

    def took(self, link: Link, lock_id: str, names: list[str] | tuple[str, ...], token: int, claim: Claim) -> None:
        """Keep a lock ``link`` granted; NotConnected if our lease ran out since (it is then not ours)."""
        self.owned.add(lock_id, names, token, link.expiry(lock_id), claim)
        if not link.holds(lock_id):  # the lease ran out since the grant: its lapse
            self.owned.forget(lock_id)  # may have passed over this lock unseen
            raise NotConnected("our lease ran out as the lock was granted")

    def outlasts(self, exc: PylockerError, link: Link | None) -> bool:
        """Whether an acquire that failed with ``exc`` on ``link`` may wait for the failover and ask again."""
        if not self.config.reconnect or self._closing or isinstance(exc, AuthenticationError):
            return False
        if self._link is link:
            self._online.clear()  # the failover has not noticed yet
        return True

    def release(self, lock_id: str) -> int:
        """Release ``lock_id``: 1 released, 0 not held (so released)."""
        state = self.releasing(lock_id)
        if state is None:
            return 0
        held, lost = state
        for attempt in (1, 2):
            link = self._link
            try:
                if link is None:
                    raise NotStarted()
                code = link.release(lock_id, held=held)
            except (NotConnected, NotStarted):
                # During a failover the lock is re-claimed first, then released.
                if attempt == 2 or not self.may_wait() or not self._online.wait(self.config.connect_timeout):
                    raise
                continue
            self.owned.forget(lock_id)
            return 0 if lost else code
        raise NotConnected("the serving locker could not be reached")

    def releasing(self, lock_id: str) -> tuple[bool, bool] | None:
        """Before a release of ``lock_id``: (held, lost), or None if it was lost and given up already."""
        held = lock_id in self.owned
        if not held and self.owned.lost_reason(lock_id) is not None:
            return None  # lost already, and given up at the server when it was
        lost = held and not self.holds(lock_id)
        if lost:  # our own clock gave it up, its timer has not said so yet: lost, not released
            link = self._link
            expires_at = link.expiry(lock_id) if link is not None else None
            self._lost(lock_id, "maxLockTime" if expires_at is not None and time.monotonic() >= expires_at
                       else "lease")
        return held, lost

    def on_link(self, call: Callable[[Link], T]) -> T:
        """``call(link)`` on the current link; during a failover, once more on the next one."""
        for attempt in (1, 2):
            link = self._link
            try:
                if link is None:
                    raise NotStarted()
                return call(link)
            except (NotConnected, NotStarted):
                if attempt == 2 or not self.may_wait() or not self._online.wait(self.config.connect_timeout):
                    raise
        raise NotConnected("the serving locker could not be reached")

    def watch(self, name: str, listener: HoldersListener) -> Rows | None:
        """Call ``listener(holders, waiters)`` on every change of ``name``'s holders; its rows now.

        None while the serving locker recovers from a failover (the listener hears the view after).
        """
        if self.watching.add(name, listener):
            try:
                return self.on_link(lambda link: link.watch(name, True))
            except BaseException:
                self.watching.remove(name, listener)
                raise
        return self.on_link(lambda link: link.inspect(name))

    def unwatch(self, name: str, listener: HoldersListener) -> None:
        if self.watching.remove(name, listener):
            link = self._link
            if link is not None:
                with contextlib.suppress(NotConnected, NotStarted):  # a new link is told only what is watched
                    link.watch(name, False)

    def publish(self, receivers: list[str] | None, items: list[bytes], lossy: bool = False) -> None:
        link = self._link
        if link is None:
            raise NotStarted()
        link.publish(receivers, items, lossy)

    def on_lock_lost(self, callback: LostCallback) -> None:
        self._lost_callbacks.append(callback)

    def _lost(self, lock_id: str, reason: str) -> None:
        # Runs on an I/O thread: user callbacks go to the dispatcher thread, where they
        # may call back into the locker.
        self._tell_lost([lock_id] if self.owned.lose(lock_id, reason) else [], reason)

    def _lose_all(self, reason: str) -> None:
        self._tell_lost(self.owned.lose_all(reason), reason)

    def _tell_lost(self, lock_ids: list[str], reason: str) -> None:
        for lock_id in lock_ids:
            self._log.warning("%s lost lock %s (%s)", self.config.name, lock_id, reason)
            for callback in self._lost_callbacks:
                self._dispatcher.submit(callback, lock_id, reason)

    # ------------------------------------------------------------ connecting
    def _open_client(self, address: Address, timeout: float, reclaim: bool = False) -> Client:
        """Connect to ``address`` (and, after a failover, ``reclaim`` our locks) before it becomes our link."""
        config = self.config
        made: list[Client] = []  # the client, for its own connection-lost callback
        client = Client(address, config.security(), name=config.name,
                        unique_name=self.unique_name, on_lost=self._lost, on_publications=self.inbox.deliver,
                        on_connection_lost=lambda lapsed: self._connection_lost(lapsed, *made[:1]),
                        subscribe=config.receive_messages,
                        request_ids=self._request_ids, routing_id=self._routing_id,
                        peer_timeout=2 * (config.lease or DEFAULT_LEASE))  # the server's lease may be longer
        made.append(client)
        client.on_holders = self.watching.notify
        welcome = client.connect(timeout, fresh=self._fresh_session)
        self._fresh_session = False
        if reclaim:  # before others use it: till then holds() believes our locks, and calls wait
            try:
                self._reclaim(client)
            except BaseException:
                client.close(say_bye=False)
                raise
        with self._role_lock:
            self._link = client
            self.fingerprint = Fingerprint(welcome.server_unique_name, time.time(), address.host or address.url,
                                           address.port, 0, welcome.server_name, welcome.epoch)
            self._set_role(Role.CONNECTED)
        self._log.info("%s connected to %s at %s", config.name, welcome.server_name, address)
        return client

    # -------------------------------------------------------------- failover
    def _connection_lost(self, lapsed: bool, source: Link | None = None) -> None:
        link = self._link  # (on the lost client's I/O thread: the work goes to a failover thread)
        if source is not None and link is not None and source is not link:
            return  # a connection already replaced, telling late: our locks are on the new one
        if lapsed:
            self._believe_until = 0.0  # nothing held through the lapsed link is ours any more
            self._lose_all("lease")
            self._fresh_session = True
        elif link is not None:
            self._believe_until = link.valid_until
        self._start_failover()

    def _start_failover(self) -> None:
        """Find the next serving locker (or become it) on a thread of its own; stop without reconnect."""
        with self._role_lock:
            if self._closing:
                return
            self._set_role(Role.FAILING_OVER)
            if not self.config.reconnect:
                self._log.error("%s lost the serving locker; reconnect is off", self.config.name)
                self._lose_all("connection lost")
                self._set_role(Role.STOPPED)
                self._stopped.set()
                return
            if self._failover_thread is not None and self._failover_thread.is_alive():
                return
            self._failover_thread = threading.Thread(target=self._failover, daemon=True,
                                                     name=f"pylocker-failover-{self.config.name}")
            self._failover_thread.start()

    def _failover(self) -> None:
        lost = self.fingerprint
        started = time.monotonic()
        self._log.warning("%s lost the serving locker %s; finding the next one", self.config.name,
                          lost.unique_name if lost else "?")
        retry = RETRY_FIRST
        while True:  # until back, or closing (checked under the role lock: stop() sets it there)
            believe_until = self._believe_until
            if believe_until is not None and time.monotonic() >= believe_until and len(self.owned):
                self._lose_all("lease")  # not re-claimed in time: the next server may grant them
                self._fresh_session = True
            with self._role_lock:
                if self._closing:
                    break
                old = self._link
                self._link = None
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
                self._believe_until = None
                self._log.warning("%s is back after %.3f s, as %s", self.config.name, time.monotonic() - started,
                                  self._role.value)
                break
            self._stopped.wait(retry)
            retry = min(retry * 2, RETRY_MAX)
        with self._role_lock:
            self._failover_thread = None

    def _rejoin(self, lost: Fingerprint | None, elapsed: float) -> bool:
        """One attempt to serve or to connect again; re-claims our locks on success."""
        if self._connected_to is not None:
            self._open_client(self._connected_to, FAILOVER_CONNECT, reclaim=True)
        else:
            election = self.config.election
            if election is None:
                return False
            if self.can_serve and self._try_serve(election):
                return True
            fp = election.read()
            if fp is None or not election.looks_alive(fp):
                return False
            same = lost is not None and fp.unique_name == lost.unique_name
            if same and elapsed < SUCCESSOR_WAIT:
                return False  # most likely a successor is about to publish its own fingerprint
            # The server just lost looks alive until its ZooKeeper session ends: it is probed
            # briefly, so that the next campaign, or the successor's fingerprint, comes soon after.
            wait = LOST_PROBE if same else FAILOVER_CONNECT
            self._open_client(addresses.parse(fp.address, fp.port), wait, reclaim=True)
        return True

