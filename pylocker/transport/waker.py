"""A pipe any thread may write to, to wake the I/O thread blocked in ``poll``."""

from __future__ import annotations

import contextlib
import os
import threading


class Waker:
    """A pipe that any thread may write to, to wake a thread blocked in ``poll``."""

    def __init__(self) -> None:
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._armed = False
        self._lock = threading.Lock()

    @property
    def fd(self) -> int:
        return self._read_fd

    def wake(self) -> None:
        if self._armed:  # already awake: no lock, no system call
            return
        with self._lock:
            self._write_once()

    def _write_once(self) -> None:
        if self._armed:
            return
        self._armed = True
        # A full pipe means already awake; a closed one, shutting down: nothing to do either way.
        with contextlib.suppress(OSError):
            os.write(self._write_fd, b"\0")

    def clear(self) -> None:
        """Called by the woken thread before it drains its queue."""
        # Empty the pipe first, then disarm: disarming first would let a wake() that
        # lands in between leave the flag set with an empty pipe, and lose every later wake.
        # While armed nobody writes, so the pipe holds one byte at most: one read empties it.
        with contextlib.suppress(OSError):  # nothing there (a spurious wake-up), or closed
            os.read(self._read_fd, 4096)
        self._armed = False

    def close(self) -> None:
        with self._lock:
            if self._read_fd < 0:
                return
            self._armed = True  # no more writes
            for fd in (self._read_fd, self._write_fd):
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._read_fd = self._write_fd = -1


