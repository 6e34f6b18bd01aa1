"""The serving core's recovery after a failover: re-claims, and who a successor must wait for.

A part of ``ServerCore`` (``server_core.py``): a core started with ``recover_from``
(the previous server's clients) grants nothing new until each of them has said it
re-claimed what it held, or until its grace period has passed.
"""

from __future__ import annotations

from . import protocol as p
from .holds import PLAIN, Claim, check_claim
from .server_claims import LOCAL
from .server_events import ClientInfo
from .table import Effect, LockTable
from .watches import Watches


class RecoveryMixin:
    """Re-claims and recovery; ``ServerCore`` provides the state named below."""

    table: LockTable
    watches: Watches
    _expected: set[str]
    _first_token: int
    _foreign_ids: bool
    _clients: dict[bytes, ClientInfo]
    _clients_dirty: bool
    _sends: list[tuple[bytes, bytes]]

    def _apply(self, effects: list[Effect]) -> None:
        raise NotImplementedError

    def _on_reclaim(self, peer: bytes, info: ClientInfo, reclaim: p.Reclaim, now: float) -> None:
        held = self.table.get(reclaim.lock_id)
        claim = Claim(reclaim.mode, reclaim.limit, reclaim.any_of, reclaim.info)
        try:
            check_claim(claim)
        except ValueError:
            granted = False
        else:
            if held is not None and held.owner == peer:  # still ours
                granted = self.table.reclaim(reclaim.lock_id, peer, reclaim.names, reclaim.token, now, claim)
            elif info.unique_name not in self._expected or not self._earlier_token(reclaim.token):
                # Only a client of the previous server may take back what it held there, and only
                # with a token that server could have granted: no jump of the token sequence.
                granted = False
            else:
                granted = self.table.reclaim(reclaim.lock_id, peer, reclaim.names, reclaim.token, now, claim)
        if granted and self.watches:
            self.watches.changed(tuple(reclaim.names))
        self._foreign_ids = self._foreign_ids or granted
        self._sends.append((peer, p.encode(p.Reclaimed(reclaim.request_id, granted))))

    def _earlier_token(self, token: int) -> bool:
        """A fencing token granted before this server's epoch."""
        return 0 < token < self._first_token

    def _on_reclaim_done(self, peer: bytes, info: ClientInfo, message: p.Message, now: float) -> None:
        self.reclaim_done(info.unique_name, now)

    # ------------------------------------------------------------ local input
    def local_reclaim(self, lock_id: str, names: list[str], token: int, now: float, claim: Claim = PLAIN) -> bool:
        held = self.table.get(lock_id)
        if (held is None or held.owner != LOCAL) and not self._earlier_token(token):
            return False
        granted = self.table.reclaim(lock_id, LOCAL, names, token, now, claim)
        self._foreign_ids = self._foreign_ids or granted
        if granted and self.watches:
            self.watches.changed(tuple(names))
        return granted

    def successor_must_wait_for(self) -> tuple[str, ...]:
        """Who may hold locks if this server dies now: its clients, and those it still waits for.

        A server that dies while recovering passes on the clients it was still waiting
        for; otherwise its successor would grant their names while they still hold them.
        """
        names = dict.fromkeys(info.unique_name for info in self._clients.values())
        names.update(dict.fromkeys(sorted(self._expected)))
        return tuple(names)

    def reclaim_done(self, unique_name: str, now: float) -> None:
        """``unique_name`` has re-claimed all it held; recovery ends when nobody is left."""
        if unique_name in self._expected:
            self._clients_dirty = True
        self._expected.discard(unique_name)
        if not self._expected and self.table.recover_until is not None:
            self._apply(self.table.end_recovery(now))
