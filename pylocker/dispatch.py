"""A thread that runs user callbacks, so that they never run on (or block) an I/O thread."""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable, Final

_STOP = object()
MAX_PENDING: Final = 100_000  # calls waiting at most: a slow callback must not grow the process without end


class Dispatcher:
    """Runs submitted calls one after another on its own daemon thread, started on first use.

    At most ``max_pending`` calls wait; past that a call is dropped and counted in
    ``dropped`` (a callback slower than what feeds it loses calls, not memory).
    """

    def __init__(self, name: str, logger: logging.Logger, max_pending: int = MAX_PENDING) -> None:
        self._name = name
        self._log = logger
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._max_pending = max_pending
        self.pending = 0
        self.dropped = 0

    def submit(self, function: Callable[..., Any], *args: Any) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            if self.pending >= self._max_pending:
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 10_000 == 0:
                    self._log.warning("%d callbacks dropped so far: they run slower than they are called",
                                      self.dropped)
                return
            self.pending += 1
        self._queue.put((function, args))

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(_STOP)
            if thread is not threading.current_thread():
                thread.join(timeout)

    def _run(self) -> None:
        while True:
            entry = self._queue.get()
            if entry is _STOP:
                return
            function, args = entry
            with self._lock:
                self.pending -= 1
            try:
                function(*args)
            except Exception:  # noqa: BLE001  (a failing user callback is logged; the thread goes on)
                self._log.exception("callback %r failed", function)
