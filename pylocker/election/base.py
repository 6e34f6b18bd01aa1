"""What an election backend offers the locker node: a typing Protocol and the fingerprint.

A backend answers three questions for the lockers that share it: who serves now
(``read``), whether that server is still alive (``looks_alive``), and, for a
locker allowed to serve, "may I serve?" (``campaign``, which never blocks). At
most one campaign holds a term at a time; every term has an epoch larger than
every earlier one, and fencing tokens carry it in their high bits so that they
keep growing across failovers.
"""

from __future__ import annotations

from typing import Callable, Final, NamedTuple, Protocol

TOKEN_EPOCH_SHIFT: Final = 40  # fencing token = epoch << 40 | grant number within the epoch


def first_token(epoch: int) -> int:
    """The first fencing token a server of ``epoch`` grants."""
    return (epoch << TOKEN_EPOCH_SHIFT) + 1


class Fingerprint(NamedTuple):
    """Who serves, and where (never a secret)."""

    unique_name: str
    timestamp: float  # wall-clock seconds: the only place pylocker writes wall-clock time
    address: str  # a bare host (tcp, with ``port``) or a URL (ipc://, inproc://)
    port: int
    pid: int
    name: str = ""
    epoch: int = 0
    clients: tuple[str, ...] = ()
    host: str = ""
    stopped: bool = False  # the server stopped serving on purpose (its process may live on)


class Term(Protocol):
    """A won election: held until ``resign`` (or the holder's death)."""

    @property
    def epoch(self) -> int:
        """This term's epoch, larger than every earlier term's."""

    @property
    def held(self) -> bool:
        """Whether this term is still held."""

    def valid(self) -> bool:
        """Whether the term still stands: held, and nothing replaced what it holds (a lock file)."""

    def resign(self) -> None:
        """Give the term up; another campaign may then win."""


class ElectionBackend(Protocol):
    """One election (a server file, a znode, a name in memory) shared by lockers."""

    @property
    def description(self) -> str:
        """The election's location, for messages (a path, a URL)."""

    def campaign(self) -> Term | None:
        """Take the term if nobody holds it (never blocks); None when somebody does."""

    def read(self) -> Fingerprint | None:
        """The fingerprint last published; None when there is none."""

    def publish(self, fingerprint: Fingerprint) -> None:
        """Record who serves (only the holder of a term calls this)."""

    def looks_alive(self, fingerprint: Fingerprint) -> bool:
        """Whether the server named by ``fingerprint`` still holds its term, as far as one can tell."""

    def follow(self, on_change: Callable[[Fingerprint | None], None]) -> Callable[[], None]:
        """Call ``on_change`` with each fingerprint published from now on; returns the unfollow.

        ``on_change(None)``: a term ended and nobody holds the election (a candidate may
        campaign now). Called from any thread (ZooKeeper's watch thread), so ``on_change``
        must never block. A backend that cannot notify (a server file) never calls it: its
        lockers learn of a new server when their link to the old one fails.
        """

    def close(self) -> None:
        """Let go of what the backend holds open (a ZooKeeper session); it reopens when used again."""
