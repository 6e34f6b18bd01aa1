"""Seed module path: ``from pylocker.ServerLocker import ServerLocker`` keeps working."""

from __future__ import annotations

from .factory import FACTORY, LockersFactory, SingleLocker
from .lockers import ServerLocker

__all__ = ["FACTORY", "LockersFactory", "ServerLocker", "SingleLocker"]
