"""The ZAP side of a CURVE server: admit known client keys, throttle addresses that keep failing."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Callable, Final

import zmq
from zmq.auth.thread import ThreadAuthenticator


class AuthGuard:
    """Admits known CURVE client keys; throttles addresses that keep failing.

    An address with more than ``MAX_FAILURES`` refusals within ``FAILURE_WINDOW``
    seconds is refused outright (its key not even looked at) for a cool-down that
    doubles with every new burst, up to ``MAX_COOLDOWN``; the log gets one line per
    cool-down, not one per attempt, so a flood can exhaust neither CPU nor disk.
    """

    MAX_FAILURES: Final = 5
    FAILURE_WINDOW: Final = 60.0
    FIRST_COOLDOWN: Final = 1.0
    MAX_COOLDOWN: Final = 60.0
    MAX_TRACKED: Final = 10_000

    def __init__(self, allowed: Iterable[bytes], logger: logging.Logger,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._allowed = frozenset(allowed)
        self._log = logger
        self._clock = clock
        self._failures: dict[str, list[float]] = {}
        self._blocked_until: dict[str, float] = {}
        self._cooldown: dict[str, float] = {}
        self.refused = 0

    def admit(self, address: str, key: bytes) -> bool:
        """Whether to admit ``key`` from ``address``: a listed key always; others unless throttled.

        The throttle is per address, for unlisted keys only: failures of one unlisted key
        never lock out a listed machine behind the same address (or every local ipc peer).
        """
        if key in self._allowed:
            self._failures.pop(address, None)
            return True
        if self.is_blocked(address):
            return False
        return self.check(address, key)

    def is_blocked(self, address: str) -> bool:
        until = self._blocked_until.get(address)
        if until is None:
            return False
        if self._clock() < until:
            self.refused += 1
            return True
        del self._blocked_until[address]
        return False

    def check(self, address: str, key: bytes) -> bool:
        if key in self._allowed:
            self._failures.pop(address, None)
            return True
        self.refused += 1
        now = self._clock()
        if len(self._failures) >= self.MAX_TRACKED and address not in self._failures:
            self._failures.clear()  # bounded memory beats perfect accounting under a flood
        recent = [t for t in self._failures.get(address, ()) if now - t < self.FAILURE_WINDOW]
        recent.append(now)
        self._failures[address] = recent
        if len(recent) > self.MAX_FAILURES:
            cooldown = min(self._cooldown.get(address, self.FIRST_COOLDOWN / 2) * 2, self.MAX_COOLDOWN)
            self._cooldown[address] = cooldown
            self._blocked_until[address] = now + cooldown
            self._failures.pop(address, None)
            self._log.warning("authentication failed %d times from %s: refusing it for %.0f s",
                              len(recent), address or "a local peer", cooldown)
        else:
            self._log.warning("authentication failed from %s: unknown CURVE client key", address or "a local peer")
        return False



class GuardedAuthenticator(ThreadAuthenticator):
    """pyzmq's ZAP thread, with the peer address passed to the AuthGuard.

    ZAP gives the peer's IP for tcp and an empty address for ipc: all local peers of
    an ipc server share one throttle.
    """

    def __init__(self, context: zmq.Context[zmq.Socket[bytes]], guard: AuthGuard, logger: logging.Logger) -> None:
        super().__init__(context, log=logger)
        self._guard = guard
        self._address = ""

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        self._address = msg[3].decode("utf-8", "replace") if len(msg) > 3 else ""
        await super().handle_zap_message(msg)

    def callback(self, domain: str, key: bytes) -> bool:
        return self._guard.admit(self._address, key)


