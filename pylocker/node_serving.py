"""How a locker node serves and follows the election: winning it, starting the server,
advertising it, giving up, re-claiming locks on a new link, and moving to a newer server.

A part of ``LockerNode`` (``node.py``), kept apart so that each module has one job.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable, Final

from .client import Client
from .election.base import ElectionBackend, Fingerprint, Term, first_token
from .election.serverfile import this_host
from .errors import ServerFileError
from .inbox import Inbox
from .link import DEFAULT_LEASE, Link, NodeConfig, Role
from .owned import OwnedLocks
from .server import Server
from .transport import address as addresses
from .transport.address import Address
from .watching import WatchList

MIN_GRACE: Final = 2.0  # seconds a new server waits at least for the previous clients' re-claims


class ServingMixin:
    """The serving side of ``LockerNode``, which provides the state named below."""

    config: NodeConfig
    unique_name: str
    inbox: Inbox
    owned: OwnedLocks
    watching: WatchList
    fingerprint: Fingerprint | None
    _link: Link | None
    _term: Term | None
    _role: Role
    _role_lock: threading.RLock
    _closing: bool
    _log: logging.Logger
    _connected_to: Address | None
    _believe_until: float | None
    _unfollow: Callable[[], None] | None

    @property
    def server(self) -> Server | None:
        raise NotImplementedError

    @property
    def can_serve(self) -> bool:
        raise NotImplementedError

    def _set_role(self, role: Role) -> None:
        raise NotImplementedError

    def _lost(self, lock_id: str, reason: str) -> None:
        raise NotImplementedError

    def _lose_all(self, reason: str) -> None:
        raise NotImplementedError

    def _start_failover(self) -> None:
        raise NotImplementedError

    def _try_serve(self, election: ElectionBackend) -> bool:
        term = election.campaign()
        if term is None:
            return False
        try:
            previous = election.read()
        except ServerFileError:
            previous = None
        config = self.config
        lease = config.lease or DEFAULT_LEASE
        recover_from = None
        if previous is not None and previous.unique_name != self.unique_name and previous.clients:
            # The previous server may have died with clients holding locks: give them a
            # grace period to re-claim those before anything new is granted.
            recover_from = set(previous.clients) - {self.unique_name}
        server = Server(config.listen, config.security(), name=config.name,
                        unique_name=self.unique_name, max_lock_time=config.max_lock_time or None,
                        lease=config.lease, epoch=term.epoch, first_token=first_token(term.epoch),
                        recover_from=recover_from, grace=max(lease, MIN_GRACE), on_lost=self._lost,
                        on_publications=self.inbox.deliver_packed if config.receive_messages else None,
                        on_clients_changed=self._clients_changed, on_tick=self._refresh_fingerprint,
                        on_failure=self._give_up_serving)
        try:
            server.start()
            bound = server.address
            reach = config.advertise or bound
            fingerprint = Fingerprint(
                self.unique_name, time.time(), addresses.advertised(reach.host) if reach.is_tcp else reach.url,
                reach.port or bound.port, os.getpid(), config.name, term.epoch, (), this_host())
            election.publish(fingerprint)
            self._reclaim(server)  # before it becomes our link (see LockerNode._open_client)
        except BaseException:
            server.stop()
            term.resign()
            raise
        with self._role_lock:
            self._link, self._term, self.fingerprint = server, term, fingerprint
            self._set_role(Role.SERVING)
        self._log.info("%s serves on %s (election %s, epoch %d%s)", config.name, bound, election.description,
                       term.epoch, ", recovering" if recover_from else "")
        return True

    def _refresh_fingerprint(self) -> None:
        # Runs on the server's I/O thread, once a second.
        term = self._term
        if term is not None and not term.valid():
            self._give_up_serving("its election lock file was deleted or replaced; another locker may serve")
            return
        fp = self.fingerprint
        if self.server is not None and fp is not None:
            self._publish_fingerprint(fp._replace(timestamp=time.time()))

    def _give_up_serving(self, reason: str) -> None:
        """Fail-stop: stop serving and give up the election, so that a successor can take over."""
        with self._role_lock:
            link, term = self._link, self._term
            if not isinstance(link, Server) or self._closing:
                return
            self._link = self._term = None
        self._log.error("%s stops serving: %s", self.config.name, reason)
        fp = self.fingerprint
        if fp is not None and term is not None and term.valid():
            self._publish_fingerprint(fp._replace(timestamp=time.time(), stopped=True))
        link.close()  # from its own I/O thread too: stop() never joins itself
        if term is not None:
            term.resign()
        self._lose_all("the serving locker stopped")  # its table, and every lock in it, is gone
        self._start_failover()

    def _clients_changed(self, clients: list[str]) -> None:
        fp = self.fingerprint
        if self.server is not None and fp is not None:
            self._publish_fingerprint(fp._replace(timestamp=time.time(), clients=tuple(clients)))

    def _publish_fingerprint(self, fingerprint: Fingerprint) -> None:
        election = self.config.election
        if election is None:
            return
        self.fingerprint = fingerprint
        try:
            election.publish(fingerprint)
        except (OSError, ServerFileError) as exc:
            self._log.error("cannot refresh server file %r: %s", election.description, exc)

    def _reclaim(self, link: Link) -> None:
        """Take back on a new link every lock we still hold; report those refused as lost."""
        for lock in self.owned.held():
            if not link.reclaim(lock.lock_id, list(lock.names), lock.token, lock.expires_at, lock.claim):
                self._lost(lock.lock_id, "failover")
        link.reclaim_done()
        link.on_holders = self.watching.notify
        self.watching.attach(link)

    # ------------------------------------------------------- following
    def _follow(self, election: ElectionBackend) -> None:
        if self._unfollow is None:
            self._unfollow = election.follow(self._election_changed)

    def _stop_following(self) -> None:
        unfollow, self._unfollow = self._unfollow, None
        if unfollow is not None:
            unfollow()

    def _election_changed(self, published: Fingerprint | None) -> None:
        """The election named a server, or (None) has nobody: an elected client moves now.

        A server cut off silently (a cable, a firewall) keeps its clients' links open until
        their lease runs out; its successor may serve well before. So a client moves when a
        newer epoch is named, and a candidate campaigns as soon as the term is vacant. Runs
        on the backend's thread, which must never wait: a locker changing roles already
        reads the election.
        """
        link, current = self._link, self.fingerprint
        if not isinstance(link, Client) or self._connected_to is not None or current is None:
            return
        if published is None:
            if not self.can_serve:
                return  # a client waits for the next server's fingerprint
            why = "nobody holds the election any more: campaigning"
        elif published.stopped or published.epoch <= current.epoch:
            return
        else:
            why = f"the election names a newer server, {published.name or published.unique_name} of epoch " \
                  f"{published.epoch}"
        if not self._role_lock.acquire(blocking=False):
            return  # starting, failing over or stopping: it reads the election itself
        try:
            if self._closing or self._link is not link or self._role is not Role.CONNECTED:
                return
            self._log.warning("%s: %s; leaving %s of epoch %d", self.config.name, why,
                              current.name or current.unique_name, current.epoch)
            self._believe_until = link.valid_until  # our locks stay ours until re-claimed, or the lease
            self._start_failover()
        finally:
            self._role_lock.release()
