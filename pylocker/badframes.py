"""The serving locker's log budget for bad frames (moved out of ``server.py`` to keep it short)."""

from __future__ import annotations

import logging
from typing import Callable, Final

from .server_events import BadFrame

BAD_FRAME_LINES: Final = 10  # bad-frame log lines a minute, whatever the peers


class BadFrameLog:
    """Logs bad frames, at most ``lines`` a minute in all, and how many it held back.

    The core limits lines per peer; a peer that cycles routing ids is a new peer each
    time, so the log also has a budget of its own.
    """

    def __init__(self, log: logging.Logger, clock: Callable[[], float], lines: int = BAD_FRAME_LINES) -> None:
        self._log = log
        self._clock = clock
        self._lines = lines
        self._window_end = 0.0
        self._used = 0
        self._unlogged = 0

    def __call__(self, event: BadFrame) -> None:
        now = self._clock()
        if now >= self._window_end:
            if self._unlogged:
                self._log.warning("%d more bad frames in the last minute were not logged", self._unlogged)
            self._window_end, self._used, self._unlogged = now + 60.0, 0, 0
        if self._used >= self._lines:
            self._unlogged += 1
            return
        self._used += 1
        if event.seen % 1000 == 0:
            self._log.warning("%d bad frames from %r so far (latest: %s)", event.seen, event.peer, event.reason)
        else:
            self._log.warning("bad frame from %r: %s", event.peer, event.reason)
