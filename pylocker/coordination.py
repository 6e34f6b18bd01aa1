"""The coordination half of ServerLocker: shared locks' siblings, semaphores, elections, groups.

A mixin, like the messages, so that ServerLocker keeps one class; everything here is
new (PEP 8 names) and raises exceptions rather than returning codes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .holds import Claim
from .lock import Lock
from .primitives import Election, Group, LockInfo, Semaphore, lock_info
from .validation import check_number
from .validation import names as parse_names

if TYPE_CHECKING:
    from .node import LockerNode


class CoordinationMixin:
    """semaphore, lock_any, election, group, lock_info; see ServerLocker."""

    _defaultTimeout: float

    @property
    def node(self) -> LockerNode:
        raise NotImplementedError

    def semaphore(self, name: str, limit: int) -> Semaphore:
        """A semaphore of ``limit`` slots on ``name``; ``with L.semaphore("api", 5).acquire(timeout=10) as slot:``.

        Every locker using ``name`` at the same time must give the same limit
        (LimitMismatch otherwise). Slots are granted in FIFO order, with fencing tokens.
        """
        return Semaphore(self.node, name, limit, self._defaultTimeout)

    def lock_any(self, names: str | Iterable[str], timeout: float | None = None) -> Lock:
        """A context manager holding exactly one of ``names``: the first that is free (``lock.name`` says which).

        Waiting, it takes the first of them that frees up (FIFO per name); LockTimeout
        on entry when none was granted within ``timeout`` (default: defaultTimeout).
        """
        parsed = parse_names(names)
        if timeout is not None:
            check_number(timeout, "timeout")
        return Lock(self.node, parsed, self._defaultTimeout if timeout is None else timeout, Claim(any_of=True))

    def election(self, group: str) -> Election:
        """The election of one leader among the lockers that campaign for ``group``."""
        return Election(self.node, group)

    def group(self, name: str) -> Group:
        """The membership group ``name``: join, leave, members, on_change."""
        return Group(self.node, name)

    def server_status(self) -> dict[str, Any]:
        """The serving locker's status, asked of it now: itself, its clients, who holds and waits, its figures.

        Keys: ``server`` (name, epoch, uptime, clients, held...), ``clients``, ``locks``
        (each name's holders and waiters, the busiest first), ``stats`` (grants,
        time-outs, expiries, wait and hold time percentiles, per name), ``truncated``.
        """
        return self.node.on_link(lambda link: link.status())

    def lock_info(self, name: str) -> LockInfo:
        """Who holds the lock ``name`` (shared or exclusive, since when, token) and who waits, in order."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"a lock name must be a non-empty string, not {name!r}")
        return lock_info(name, *self.node.on_link(lambda link: link.inspect(name)))
