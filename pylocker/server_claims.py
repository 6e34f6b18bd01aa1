"""The serving core's claims (shared, slots, any-of), inspections and watches: a part of ``ServerCore``.

Kept apart so that each module stays about one job: this one turns ``Claim``,
``Inspect`` and ``Watch`` requests (and the serving locker's own calls) into table
calls, and pushes a watched name's holders to its watchers when they change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, cast

import msgpack

from . import protocol as p
from .errors import BAD_FRAME, LIMIT_MISMATCH, TOO_MANY_WATCHES
from .holds import PLAIN, Claim, LimitConflict, check_claim
from .server_events import ClientInfo, LocalHolders, ServerEvent
from .status import build_status
from .table import Effect, LockTable
from .watches import Rows, Watches, describe

if TYPE_CHECKING:
    from .server_core import ServerCore

LOCAL: Final = b""  # the owner id of the serving locker's own requests


class ClaimsMixin:
    """Claims, inspections and watches; ``ServerCore`` provides the state named below."""

    table: LockTable
    watches: Watches
    unique_name: str
    _any_of: set[str]
    _queued: dict[tuple[bytes, int], str]
    _sends: list[tuple[bytes, bytes]]
    _events: list[ServerEvent]
    _clients: dict[bytes, ClientInfo]
    _now: float
    _asked_at: dict[str, float]
    _unsettled: bool  # a watcher was answered, or a change held back, while recovering

    def new_lock_id(self) -> str:
        raise NotImplementedError

    def _refuse(self, peer: bytes, request_id: int, code: int, detail: str) -> None:
        raise NotImplementedError

    def _apply(self, effects: list[Effect]) -> None:
        raise NotImplementedError

    def _on_claim(self, peer: bytes, info: ClientInfo, message: p.Claim, now: float) -> None:
        key = (peer, message.request_id)
        if key in self._queued:
            self._refuse(peer, message.request_id, BAD_FRAME, "request id in use")
            return
        claim = Claim(message.mode, message.limit, message.any_of, message.info)
        try:
            check_claim(claim)
            lock_id, effects = self._claim(peer, message.names, message.timeout, claim, now, message.request_id)
        except LimitConflict as exc:
            self._refuse(peer, message.request_id, LIMIT_MISMATCH, str(exc))
            return
        except ValueError as exc:
            self._refuse(peer, message.request_id, BAD_FRAME, str(exc))
            return
        if effects:
            self._apply(effects)
        else:
            self._queued[key] = lock_id
            self._asked_at[lock_id] = now

    def _claim(self, owner: bytes, names: list[str], timeout: float | None, claim: Claim, now: float,
               tag: int | None) -> tuple[str, list[Effect]]:
        lock_id = self.new_lock_id()
        if claim.any_of:
            self._any_of.add(lock_id)
        try:
            return lock_id, self.table.acquire(lock_id, owner, names, timeout, now, tag=tag,
                                               claim=PLAIN if claim == PLAIN else claim)
        except ValueError:
            self._any_of.discard(lock_id)
            raise

    def asked_at(self, lock_id: str, now: float) -> float:
        """When the waiting request ``lock_id`` was asked for (``now`` if unknown)."""
        return self._asked_at.get(lock_id, now)

    def status(self, now: float) -> dict[str, Any]:
        """The serving locker's status (``status.py``)."""
        return build_status(cast("ServerCore", self), now)

    def _on_status(self, peer: bytes, info: ClientInfo, message: p.Status, now: float) -> None:
        packed = msgpack.packb(self.status(now), use_bin_type=True)
        self._sends.append((peer, p.encode(p.StatusReply(message.request_id, packed))))

    def _on_inspect(self, peer: bytes, info: ClientInfo, message: p.Inspect, now: float) -> None:
        holders, waiters = self.describe(message.name, now)
        settled = self.table.recover_until is None
        self._sends.append((peer, p.encode(p.Holders(message.request_id, message.name, holders, waiters, settled))))

    def _on_watch(self, peer: bytes, info: ClientInfo, message: p.Watch, now: float) -> None:
        if not message.on:
            self.watches.unwatch(peer, message.name)
        elif not self.watches.watch(peer, message.name):
            self._refuse(peer, message.request_id, TOO_MANY_WATCHES, "this session watches too many names")
            return
        if self.table.recover_until is not None:
            self._unsettled = True
        self._on_inspect(peer, info, p.Inspect(message.request_id, message.name), now)

    def local_claim(self, lock_id: str, names: list[str], timeout: float | None, claim: Claim,
                    now: float) -> Effect | None:
        """``local_acquire`` as ``claim`` says; raises LimitConflict or ValueError for a claim refused."""
        check_claim(claim)
        if claim.any_of:
            self._any_of.add(lock_id)
        self._now = now
        try:
            effects = self.table.acquire(lock_id, LOCAL, names, timeout, now, claim=claim)
        except ValueError:
            self._any_of.discard(lock_id)
            raise
        if not effects:
            self._asked_at[lock_id] = now
            return None
        self._apply(effects)
        return effects[0]

    def local_watch(self, name: str, on: bool, now: float) -> Rows | None:
        """Start or stop the serving locker's own watch of ``name`` (``LocalHolders`` events).

        Returns its rows now, or None while recovering (the whole view comes as an event after).
        """
        if not on:
            self.watches.unwatch(LOCAL, name)
        elif not self.watches.watch(LOCAL, name):
            raise ValueError("the serving locker watches too many names")
        if self.table.recover_until is not None:
            self._unsettled = True
            return None
        return self.describe(name, now)

    def describe(self, name: str, now: float) -> Rows:
        """Who holds ``name`` and who waits for it (rows as in ``protocol.Holders``)."""
        return describe(self.table, name, self._unique_name_of, now)

    def _unique_name_of(self, owner: object) -> str:
        if owner == LOCAL:
            return self.unique_name
        info = self._clients.get(owner) if isinstance(owner, bytes) else None
        return info.unique_name if info is not None else ""

    def _push_changes(self) -> None:
        if self.table.recover_until is not None:
            self._unsettled = True  # no partial views while clients re-claim: the whole one after
            return
        if self._unsettled:
            self._unsettled = False
            self.watches.changed_all()
        for name, watchers in self.watches.take_changed():
            holders, waiters = self.describe(name, self._now)
            for watcher in watchers:
                if watcher == LOCAL:
                    self._events.append(LocalHolders(name, holders, waiters))
                elif isinstance(watcher, bytes):
                    self._sends.append((watcher, p.encode(p.Holders(0, name, holders, waiters))))

