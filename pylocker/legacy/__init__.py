"""pylocker 3's file-based ``Locker``, rebuilt on a kernel lock; shares nothing with the server code."""

from __future__ import annotations

from .locker import Locker

__all__ = ["Locker"]
