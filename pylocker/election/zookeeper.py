"""The ZooKeeper election: one serving locker for a fleet of machines with no shared disk.

Under the election's path (``zk_config``) live three znodes:

- ``epoch`` (persistent): the last epoch handed out. A campaign bumps it with a
  versioned write *in the same transaction* that creates ``leader``, so every term
  has an epoch above every earlier one, across machines.
- ``leader`` (ephemeral): exists while a term is held; ZooKeeper removes it when the
  holder's session ends (it stopped, or it was silent for the session timeout).
- ``server`` (persistent): the fingerprint, as JSON, written only together with a
  check that our ``leader`` and our ``epoch`` are still the ones there, so a server
  that lost its term can never overwrite its successor's address.

A serving locker must stop before ZooKeeper could expire its session, since a
successor may win from then on. ZooKeeper expires a session no sooner than the
session timeout after it last heard from the client, and the client's requests are
sent before they are heard, so the term counts from the *sending* time of the last
answered heartbeat (``ZooKeeperTerm.valid``) and ends well inside the timeout.
Every call has a deadline: a partition never blocks a caller, least of all the
server's I/O thread, which only ever sends asynchronous requests.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any, Callable, Final

from ..errors import ServerFileError
from .base import Fingerprint
from .serverfile import decode, encode
from .zk_config import ZooKeeperConfig, parse_url

logger = logging.getLogger(__name__)

TICK: Final = 1.0  # seconds between two validity checks by the serving locker (its housekeeping tick)
SAFE_SHARE: Final = 0.75  # of the session timeout: the term ends this far past its last heartbeat, minus a tick


class ElectionUnavailable(ServerFileError):
    """The election's ZooKeeper ensemble cannot be reached, or refused the request."""


def _kazoo() -> Any:
    try:
        import kazoo.client
    except ImportError:
        raise ServerFileError("a zookeeper:// server file needs kazoo: pip install 'pylocker[zookeeper]'") from None
    return kazoo


class ZooKeeperTerm:
    """A won election, valid while its ZooKeeper session answers heartbeats in time."""

    def __init__(self, election: ZooKeeperElection, epoch: int, session_id: int, sent_at: float,
                 epoch_version: int) -> None:
        self._election = election
        self.epoch = epoch
        self.session_id = session_id
        self.epoch_version = epoch_version  # the epoch znode's version this term wrote
        self._confirmed_at = sent_at  # monotonic: when the last answered request was sent
        self._beating = False
        self._lost = False
        self.held = True

    def valid(self) -> bool:
        """Held, ZooKeeper's answers recent enough that our session cannot have expired; sends a heartbeat."""
        if not self.held or self._lost:
            return False
        now = time.monotonic()
        if not self._beating:
            self._beat(now)
        return now - self._confirmed_at < self._election.term_budget()

    def _beat(self, sent_at: float) -> None:
        try:
            zk = self._election.client(connect=False)
            session = zk.client_id  # None while kazoo reconnects: then only the budget can tell
            if session is None:
                return
            if session[0] != self.session_id:
                self._lost = True  # a new session: the old one, and its leader znode, are gone
                return
            request = zk.exists_async(self._election.leader_path)
        except ServerFileError:
            return
        self._beating = True

        def answered(result: Any) -> None:
            self._beating = False
            try:
                stat = result.get_nowait()
            except Exception as exc:  # noqa: BLE001  a lost connection is only a missed heartbeat
                if type(exc).__name__ in ("SessionExpiredError", "AuthFailedError"):
                    self._lost = True
                return
            if stat is None or stat.ephemeralOwner != self.session_id:
                self._lost = True  # our leader znode is gone: the session expired
            else:
                self._confirmed_at = max(self._confirmed_at, sent_at)

        request.rawlink(answered)

    def resign(self) -> None:
        """Delete our leader znode (only if the epoch is still ours), so a successor wins at once."""
        if not self.held:
            return
        self.held = False
        if self._lost:
            return  # our session, and its leader znode, are gone already
        if time.monotonic() - self._confirmed_at < self._election.term_budget():
            self._election.end_term(self)
        else:
            # Past its budget: maybe cut off (waiting on the ensemble would hold up our own
            # failover), maybe only paused for less than the session timeout, in which case the
            # session and its leader znode live on and would bar every campaign. Asked, not waited for.
            self._election.end_term(self, wait=False)


class ZooKeeperElection:
    """The election under a ``zookeeper://`` URL (see ``zk_config``), through one kazoo session."""

    def __init__(self, url: str | ZooKeeperConfig) -> None:
        self.config = url if isinstance(url, ZooKeeperConfig) else parse_url(url)
        _kazoo()  # a missing extra is said when the locker is made, not at its first election
        self.leader_path = self.config.path + "/leader"
        self.epoch_path = self.config.path + "/epoch"
        self.server_path = self.config.path + "/server"
        self._mutex = threading.Lock()
        self._zk: Any = None
        self._negotiated: float | None = None  # the session timeout ZooKeeper granted, seconds
        self._term: ZooKeeperTerm | None = None
        self._published: Fingerprint | None = None
        self._writing: Fingerprint | None = None  # a write in flight; the next waits in _pending
        self._pending: Fingerprint | None = None
        self._followers: list[Callable[[Fingerprint | None], None]] = []
        self._watched: Any = None  # the kazoo client whose data watches feed the followers

    @property
    def description(self) -> str:
        return self.config.url

    # ------------------------------------------------------------- session
    def client(self, connect: bool = True) -> Any:
        """The started kazoo client (connecting now if need be); ElectionUnavailable when it cannot."""
        with self._mutex:
            if self._zk is None:
                if not connect:  # the server's I/O thread never waits for a connection
                    raise ElectionUnavailable(f"no session with ZooKeeper at {self.config.url}")
                self._zk = self._connect()
            return self._zk

    def _connect(self) -> Any:
        kazoo = _kazoo()
        from kazoo.security import make_digest_acl

        config = self.config
        auth, acl = None, None
        if config.user is not None and config.password is not None:
            # Digest identity and creator-only ACLs: other ZooKeeper users can neither read the
            # fingerprint nor touch the election.
            auth = [("digest", f"{config.user}:{config.password}")]
            acl = [make_digest_acl(config.user, config.password, all=True)]
        zk = kazoo.client.KazooClient(
            hosts=config.hosts, timeout=config.session_timeout, auth_data=auth, default_acl=acl,
            use_ssl=config.tls, ca=config.ca, certfile=config.cert, keyfile=config.key,
            connection_retry={"max_tries": -1, "delay": 0.1, "max_delay": 1.0},
            logger=logging.getLogger("pylocker.kazoo"))
        self._watch_negotiation(zk)
        try:
            zk.start(timeout=config.connect_timeout)
            zk.ensure_path(config.path)
        except Exception as exc:  # noqa: BLE001  kazoo raises its own and the handler's errors
            zk.stop()
            zk.close()
            raise ElectionUnavailable(f"cannot reach ZooKeeper at {config.url}: {exc or type(exc).__name__}") from None
        return zk

    def _watch_negotiation(self, zk: Any) -> None:
        # ZooKeeper may grant another session timeout than the one asked for (its min and max):
        # the term's safety margin is counted from the granted one, which kazoo keeps to itself.
        connection = getattr(zk, "_connection", None)
        connect = getattr(connection, "_connect", None)
        if connection is None or connect is None:
            return

        def connect_and_note(*args: Any) -> Any:
            read_timeout, connect_timeout = connect(*args)
            self._negotiated = read_timeout * 1.5 / 1000.0  # kazoo's read timeout is 2/3 of the session's
            return read_timeout, connect_timeout

        connection._connect = connect_and_note

    def term_budget(self) -> float:
        """Seconds after its last answered heartbeat's sending that a term stops counting as held."""
        granted = self._negotiated or self.config.session_timeout
        timeout = min(granted, self.config.session_timeout)
        return max(timeout * SAFE_SHARE - TICK, timeout * 0.25)

    def _wait(self, request: Any, what: str) -> Any:
        try:
            return request.get(timeout=self.config.connect_timeout)
        except Exception as exc:
            if type(exc).__name__ in ("NoNodeError", "NodeExistsError", "BadVersionError"):
                raise
            raise ElectionUnavailable(f"ZooKeeper at {self.config.url} did not {what}: "
                                      f"{exc or type(exc).__name__}") from None

    def close(self) -> None:
        """End the session (a held term's leader znode goes with it) and stop kazoo's threads."""
        with self._mutex:
            zk, self._zk = self._zk, None
            self._watched, self._followers = None, []  # the watch ends with the session
        if zk is not None:
            zk.stop()
            zk.close()

    # ------------------------------------------------------------ election
    def campaign(self) -> ZooKeeperTerm | None:
        from kazoo.exceptions import NodeExistsError

        zk = self.client()
        if self._wait(zk.exists_async(self.leader_path), "answer") is not None:
            return None
        # Both made before anybody wins: the winner's writes never wait for a creation.
        for path in (self.epoch_path, self.server_path):
            with contextlib.suppress(NodeExistsError):
                self._wait(zk.create_async(path, b"0" if path == self.epoch_path else b""), f"create {path}")
        raw, stat = self._wait(zk.get_async(self.epoch_path), "answer")
        try:
            previous = int(raw.decode("ascii") or 0)
        except ValueError:
            raise ElectionUnavailable(f"{self.epoch_path} in {self.config.url} holds no epoch: {raw[:40]!r}") from None
        session_id = zk.client_id[0] if zk.client_id else None
        sent_at = time.monotonic()
        transaction = zk.transaction()
        transaction.set_data(self.epoch_path, str(previous + 1).encode("ascii"), version=stat.version)
        transaction.create(self.leader_path, str(previous + 1).encode("ascii"), ephemeral=True)
        results = self._wait(transaction.commit_async(), "hold the election")
        if any(isinstance(result, Exception) for result in results):
            return None  # somebody else leads, or campaigned at the same moment
        if session_id is None or not zk.client_id or zk.client_id[0] != session_id:
            return None  # our session changed under the transaction: its znode is not ours to hold
        term = ZooKeeperTerm(self, previous + 1, session_id, sent_at, results[0].version)
        with self._mutex:
            self._term, self._published, self._pending = term, None, None
        return term

    def end_term(self, term: ZooKeeperTerm, wait: bool = True) -> None:
        """Delete the leader znode if no campaign came since ``term``'s (the epoch's version says)."""
        try:
            zk = self.client(connect=wait)
            if wait:
                self._settle_writes(zk)
            transaction = zk.transaction()
            transaction.check(self.epoch_path, term.epoch_version)
            transaction.delete(self.leader_path)
            request = transaction.commit_async()
            if wait:
                self._wait(request, "end the term")
        except Exception as exc:  # noqa: BLE001  ours, or kazoo's for a client closing under us: best effort
            logger.warning("could not end the term in %s (its session's end will): %s", self.description, exc)
        with self._mutex:
            if self._term is term:
                self._term = None

    def read(self) -> Fingerprint | None:
        from kazoo.exceptions import NoNodeError

        try:
            raw, _ = self._wait(self.client().get_async(self.server_path), "answer")
        except NoNodeError:
            return None
        return decode(raw, f"znode {self.server_path} of {self.config.url}") if raw else None

    def looks_alive(self, fingerprint: Fingerprint) -> bool:
        from kazoo.exceptions import NoNodeError

        if fingerprint.stopped:
            return False
        try:
            raw, _ = self._wait(self.client().get_async(self.leader_path), "answer")
        except NoNodeError:
            return False
        return bool(raw == str(fingerprint.epoch).encode("ascii"))

    # ------------------------------------------------------------- follow
    def follow(self, on_change: Callable[[Fingerprint | None], None]) -> Callable[[], None]:
        """Call ``on_change`` on kazoo's thread with each fingerprint written, and None when the
        ``leader`` znode goes (a term ended: a candidate may campaign), until unfollowed or closed."""
        zk = self.client()
        with self._mutex:
            self._followers.append(on_change)
            start, self._watched = self._watched is not zk, zk
        if start:
            def server_changed(raw: bytes | None, stat: Any, event: Any = None) -> bool | None:
                if not raw:
                    return self._tell(zk, ())
                try:
                    return self._tell(zk, (decode(raw, f"znode {self.server_path} of {self.config.url}"),))
                except ServerFileError as exc:
                    logger.warning("%s", exc)
                    return self._tell(zk, ())

            def leader_changed(raw: bytes | None, stat: Any, event: Any = None) -> bool | None:
                # A new leader is told by the fingerprint it writes; its znode's end is a vacancy.
                return self._tell(zk, (None,) if raw is None else ())

            # A DataWatch reads its znode once before returning, retrying for as long as it
            # takes: on threads of kazoo's, so that a partition never holds up our caller.
            zk.handler.spawn(zk.DataWatch, self.server_path, server_changed)
            zk.handler.spawn(zk.DataWatch, self.leader_path, leader_changed)

        def unfollow() -> None:
            with self._mutex:
                if on_change in self._followers:
                    self._followers.remove(on_change)

        return unfollow

    def _tell(self, zk: Any, news: tuple[Fingerprint | None, ...]) -> bool | None:
        """Give the followers ``news`` (nothing, or one item); False once ``zk`` watches no more."""
        with self._mutex:
            if self._watched is not zk:
                return False  # closed, or a new session watches: kazoo drops this watch
            followers = list(self._followers)
        for told in news:
            for on_change in followers:
                try:
                    on_change(told)
                except Exception:  # one follower's bug must not end the watch for the others
                    logger.exception("a follower of %s failed", self.description)
        return None

    # ------------------------------------------------------------ publish
    def publish(self, fingerprint: Fingerprint) -> None:
        """Write the fingerprint if more than its timestamp changed; never waits (the I/O thread calls it)."""
        with self._mutex:
            term = self._term
            if term is None or not term.held or term.epoch != fingerprint.epoch:
                raise ServerFileError(f"no term of epoch {fingerprint.epoch} is held in {self.description}")
            latest = self._pending or self._writing or self._published
            if latest is not None and latest._replace(timestamp=0.0) == fingerprint._replace(timestamp=0.0):
                return  # liveness is the leader znode: a fresh timestamp alone is not worth a write
            if self._writing is not None:
                self._pending = fingerprint
                return
            self._writing = fingerprint
        self._write(term, fingerprint)

    def _write(self, term: ZooKeeperTerm, fingerprint: Fingerprint) -> None:
        try:
            zk = self.client(connect=False)
            transaction = zk.transaction()
            transaction.check(self.epoch_path, term.epoch_version)
            transaction.check(self.leader_path, 0)  # still there: our session lives
            transaction.set_data(self.server_path, encode(fingerprint))
            request = transaction.commit_async()
        except Exception as exc:  # noqa: BLE001  kazoo's and ours alike: reported, retried with the next change
            self._written(term, fingerprint, f"{exc}")
            return

        def answered(result: Any) -> None:
            try:
                outcome = result.get_nowait()
                failed = next((r for r in outcome if isinstance(r, Exception)), None)
            except Exception as exc:  # noqa: BLE001  reported, and retried with the next change
                failed = exc
            self._written(term, fingerprint, None if failed is None else f"{type(failed).__name__}")

        request.rawlink(answered)

    def _written(self, term: ZooKeeperTerm, fingerprint: Fingerprint, error: str | None) -> None:
        with self._mutex:
            self._writing = None
            if error is None:
                self._published = fingerprint
            else:
                logger.error("could not publish the fingerprint in %s: %s", self.description, error)
            following, self._pending = self._pending, None
            if following is not None and self._term is term and term.held:
                self._writing = following
            else:
                following = None
        if following is not None:
            self._write(term, following)

    def _settle_writes(self, zk: Any) -> None:
        deadline = time.monotonic() + self.config.connect_timeout
        while (self._writing is not None or self._pending is not None) and time.monotonic() < deadline:
            time.sleep(0.01)  # polled with a deadline: the last fingerprint (stopped) should land first
