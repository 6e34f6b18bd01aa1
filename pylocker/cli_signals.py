"""Signals for the commands that run until told to stop (``lock``, ``listen``, ``serve``).

The signals are blocked in every thread (the mask is set before any thread starts,
and threads inherit it) and taken by one thread of their own with ``sigwaitinfo``,
which puts them on the command's event queue. So no Python signal handler runs in
the middle of the main thread's work (a handler that takes a lock the interrupted
code holds deadlocks), and the command learns who sent a signal: a SIGINT that the
terminal sent to its whole foreground process group has reached the command's child
already, and is not sent to it a second time.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import sys
import threading
from collections.abc import Iterable, Iterator
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, Callable, Final, NamedTuple

if TYPE_CHECKING:
    from typing_extensions import TypeAlias

    _Handler: TypeAlias = "Callable[[int, FrameType | None], Any] | int | signal.Handlers | None"

TERMINATING: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_WAKE: Final = signal.SIGCHLD  # harmless when unasked for: wakes the signal thread to leave
_SI_KERNEL: Final = 0x80  # Linux: si_code of a signal the kernel sent (the terminal's ^C, a hang-up)
_HAVE_SIGINFO: Final = hasattr(signal, "sigwaitinfo")  # not on macOS: sigwait, without the sender


class Received(NamedTuple):
    """A signal to act on; ``from_terminal``: sent by the kernel to the whole foreground process group."""

    signum: int
    from_terminal: bool = False

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


def exit_status(signum: int) -> int:
    """What a shell reports for a process killed by ``signum``."""
    return 128 + signum


class Signals:
    """Puts the signals in ``signums`` on ``events`` (as ``Received``) while the with-block runs.

    Enter it before any thread starts: threads started earlier would take the signals
    with their default actions.
    """

    def __init__(self, events: queue.Queue[object], signums: Iterable[int] = TERMINATING) -> None:
        self._events = events
        self._signums = frozenset(signums)
        self._closing = False
        self._noted: list[int] = []
        self._thread: threading.Thread | None = None
        self._old_mask: set[int] = set()
        self._old_handlers: dict[int, _Handler] = {}

    def __enter__(self) -> Signals:
        if sys.platform == "win32":  # pragma: no cover (pylocker is POSIX only)
            raise OSError("signals are handled on POSIX systems only")
        self._old_mask = set(signal.pthread_sigmask(signal.SIG_BLOCK, self._signums))
        # Only reached while unblocked (``unblocked``): noted, and put on the queue after.
        for signum in self._signums:
            self._old_handlers[signum] = signal.signal(signum, self._note)
        self._thread = threading.Thread(target=self._run, name="pylocker-signals", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._closing = True
        thread = self._thread
        if thread is not None and thread.ident is not None and thread.is_alive():
            signal.pthread_kill(thread.ident, _WAKE)
            thread.join(5)
        # Signals still pending reach _note as they are unblocked, and are dropped: we are leaving.
        signal.pthread_sigmask(signal.SIG_SETMASK, self._old_mask)
        for signum, handler in self._old_handlers.items():
            signal.signal(signum, handler)

    @contextlib.contextmanager
    def unblocked(self) -> Iterator[None]:
        """Unblock the signals in this thread for the block: a child started here must not inherit the mask."""
        signal.pthread_sigmask(signal.SIG_UNBLOCK, self._signums)
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_BLOCK, self._signums)
            while self._noted:
                self._events.put(Received(self._noted.pop(0)))

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self._noted.append(signum)  # no lock taken: this may interrupt anything in this thread

    def _run(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {_WAKE})  # only here: the others keep SIGCHLD as it was
        waited = self._signums | {_WAKE}
        while True:
            if _HAVE_SIGINFO:
                info = signal.sigwaitinfo(waited)
                signum, from_terminal = info.si_signo, info.si_code == _SI_KERNEL
            else:  # pragma: no cover (macOS)
                signum, from_terminal = signal.sigwait(waited), False
            if signum == _WAKE:
                if self._closing:
                    return
                continue
            self._events.put(Received(signum, from_terminal and sys.platform.startswith("linux")))


def same_process_group(pid: int) -> bool:
    """Whether process ``pid`` is in our process group (so the terminal's signals reach it too)."""
    try:
        return os.getpgid(pid) == os.getpgrp()
    except OSError:
        return False
