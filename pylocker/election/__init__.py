"""Election backends: who serves, chosen by where the lockers meet.

``serverfile``: a server file and its OS lock (one host, or a shared file system);
``zookeeper``: a ``zookeeper://`` URL, for fleets of machines without a shared disk
(kazoo, an extra); ``memory``: in one process (tests and the simulation). ``base``
declares the Protocol every backend implements.
"""

from __future__ import annotations

from .base import ElectionBackend, Fingerprint, Term, first_token
from .memory import MemoryElectionStore
from .serverfile import ServerFileElection
from .zk_config import is_zookeeper_url

__all__ = ["ElectionBackend", "Fingerprint", "MemoryElectionStore", "ServerFileElection", "Term",
           "backend_for", "first_token", "is_zookeeper_url", "read_fingerprint"]


def backend_for(server_file: str) -> ElectionBackend:
    """The backend a ``serverFile`` argument names: a ``zookeeper://`` URL, or a path on disk."""
    if is_zookeeper_url(server_file):
        from .zookeeper import ZooKeeperElection  # kazoo is imported only when a fleet uses it

        return ZooKeeperElection(server_file)
    return ServerFileElection(server_file)


def read_fingerprint(server_file: str) -> Fingerprint | None:
    """Who serves, as the election at ``server_file`` (a path or a URL) records it; None if nobody."""
    backend = backend_for(server_file)
    try:
        return backend.read()
    finally:
        backend.close()
