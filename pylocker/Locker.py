"""Seed module path: ``from pylocker.Locker import Locker`` keeps working."""

from __future__ import annotations

from .legacy import Locker

__all__ = ["Locker"]
