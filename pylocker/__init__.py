"""pylocker: locks and messages between threads, processes and machines."""

from __future__ import annotations

from ._meta import get_author, get_doc, get_email, get_pypi, get_repository, get_version

__all__ = [
    "get_author",
    "get_doc",
    "get_email",
    "get_pypi",
    "get_repository",
    "get_version",
]
