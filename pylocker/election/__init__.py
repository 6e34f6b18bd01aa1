"""Election backends: who serves, chosen by where the lockers meet.

``serverfile``: a server file and its OS lock (one host, or a shared file system);
``memory``: in one process (tests and the simulation). ``base`` declares the
Protocol every backend implements.
"""

from __future__ import annotations

from .base import ElectionBackend, Fingerprint, Term, first_token
from .memory import MemoryElectionStore
from .serverfile import ServerFileElection

__all__ = ["ElectionBackend", "Fingerprint", "MemoryElectionStore", "ServerFileElection", "Term",
           "backend_for", "first_token"]


def backend_for(server_file: str) -> ElectionBackend:
    """The backend a ``serverFile`` argument names (today: a path on disk)."""
    return ServerFileElection(server_file)
