"""The child side: role dispatch, the go signal and the receive tally shared by every peer.

``bench_messages.py --worker ROLE --spec JSON`` lands in :func:`worker_main`. A
worker talks JSON lines: receivers print ``{"ready"}`` once they can receive,
``{"first"}`` at their first message and ``{"received", ...}`` at the end of the
stream; publishers print ``{"ready"}``, wait for ``go`` and print ``{"sent", ...}``.
Every end of stream survives loss: a receiver stops at the expected count or after
``QUIET`` seconds without a message, never on an end marker.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable

from harness import emit, next_command

from .common import QUIET

__all__ = ["START_WAIT", "Tally", "emit", "next_command", "publisher_result", "wait_go", "wait_stop", "worker_main"]

START_WAIT = 120.0  # seconds a receiver waits for its first message before giving up


def wait_go() -> None:
    """Block until the orchestrator says ``go``."""
    if next_command()[0] != "go":
        os._exit(0)


def wait_stop() -> None:
    """Block until the orchestrator says ``stop`` (or goes away)."""
    while next_command()[0] != "stop":
        pass


class Tally:
    """What one receiver got: count, first and last arrival (its monotonic clock), how it ended."""

    def __init__(self, count: int, quiet: float = QUIET) -> None:
        self.count = count
        self.quiet = quiet
        self.received = 0
        self.first = 0.0
        self.last = 0.0
        self.ended = "no message"

    def start(self) -> None:
        """The first message arrived (``received`` is already 1)."""
        self.first = self.last = time.monotonic()
        emit({"first": self.first})

    def result(self, dropped: int | None = None, **extra: Any) -> dict[str, Any]:
        seconds = self.last - self.first
        if self.received >= self.count:
            self.ended = "count"
        elif self.received:
            self.ended = "quiet"
        return {"received": self.received, "expected": self.count, "seconds": seconds,
                "goodput": (self.received - 1) / seconds if seconds > 0 else None,
                "dropped": dropped, "ended": self.ended, **extra}


def publisher_result(sent: int, started: float, failures: int = 0, **extra: Any) -> dict[str, Any]:
    seconds = time.monotonic() - started
    return {"sent": sent, "publish_seconds": seconds, "publish_rate": sent / seconds if seconds > 0 else None,
            "failures": failures, **extra}


def _roles() -> dict[str, Callable[[dict[str, Any]], None]]:
    from . import peer_floor, peer_nats, peer_pylocker, peer_redis

    roles: dict[str, Callable[[dict[str, Any]], None]] = {}
    for module in (peer_pylocker, peer_floor, peer_nats, peer_redis):
        roles.update(module.ROLES)
    return roles


def worker_main(role: str, spec_json: str) -> None:
    spec = json.loads(spec_json)
    try:
        _roles()[role](spec)
    except BaseException as exc:
        emit({"error": f"{type(exc).__name__}: {exc}"})
        raise
