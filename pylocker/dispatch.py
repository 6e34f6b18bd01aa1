"""A thread that runs user callbacks, so that they never run on (or block) an I/O thread."""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable

_STOP = object()


class Dispatcher:
    """Runs submitted calls one after another on its own daemon thread, started on first use."""

    def __init__(self, name: str, logger: logging.Logger) -> None:
        self._name = name
        self._log = logger
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, function: Callable[..., Any], *args: Any) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                    self._thread.start()
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
            try:
                function(*args)
            except Exception:  # noqa: BLE001  (a failing user callback is logged; the thread goes on)
                self._log.exception("callback %r failed", function)
