"""Seed module path: ``from pylocker.ServerLocker import ServerLocker`` keeps working."""

from __future__ import annotations

from .lockers import FACTORY, LockersFactory, ServerLocker, SingleLocker

__all__ = ["FACTORY", "LockersFactory", "ServerLocker", "SingleLocker"]
