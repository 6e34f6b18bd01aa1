"""The legacy file-based ``Locker`` of pylocker 3, rebuilt on a kernel lock.

Theory of operation
-------------------
*The record is the lock.* The lock file (``lockPath``, by default ``.lock`` beside ``filePath``)
holds a small record (``_record.py``): the salted digest of the holders' pass, one entry per holder
(a token naming the ``Locker`` instance, its pid and process creation time, its host and the grant
time) and a FIFO of waiters. Nobody holds the lock when the file is empty or missing.

*The kernel guards the record.* Every read-modify-write of the record happens while this instance
holds ``flock(LOCK_EX)`` on the lock file (plus an in-process ``threading.Lock`` per lock file, so
threads stay excluded even where ``flock`` is emulated with per-process POSIX locks, as on NFS).
Exclusion therefore never depends on rewriting a file and reading it back. The ``flock`` is held for
microseconds, never while a lock is held or awaited, so a holder that dies leaves no kernel lock
behind; its record entry is what others find.

*The pass is the identity.* A locker whose pass matches the record's digest joins the holders
(acquire code 1) instead of waiting; the lock is free again when its last holder releases. A locker
that knows the pass but holds nothing may still release: it frees the lock for every holder of that
pass, as pylocker 3 did (the pass owns the lock). A locker with another pass gets code 4.

*Dead holders are found from the record.* An entry of this host (hostname, boot id and pid
namespace) is dead when psutil finds no live, non-zombie process with its pid and creation time; an
entry of any other host is dead once older than ``deadLock`` seconds. Waiters check at most every
``_LIVENESS_PERIOD`` and break dead entries (acquire code 2).

*Waiting is FIFO and never spins.* A waiter appends itself to the record's queue. A release hands
the lock to the first waiter directly (no barging: the releaser cannot take it back first), and the
waiter finds out by re-reading the file's 32-byte stamp without the kernel lock between sleeps
that grow from 50 us to 0.5 ms (2 ms when not first in line), or of exactly ``wait`` seconds when
``wait`` is set; a full poll under the kernel lock happens at least every ``_FULL_POLL_PERIOD``.

*No hooks, no temp files, no symlinks.* The lock file is opened with ``O_NOFOLLOW`` and must be a
regular file with one link; each record goes to a slot clear of the current one, so no write can
tear it (``_record``); the file is never replaced through a temp file and never unlinked.
The locked file is opened with ``O_NOFOLLOW`` in every mode that writes. No signal handler and no
``atexit`` hook is installed: a process that exits holding the lock is simply dead to the others.
"""

from __future__ import annotations

import logging
import math
import os
from numbers import Real
from types import TracebackType
from typing import IO, Any, Final

from ._engine import LockFileEngine
from ._record import pass_digest

__all__ = ["Locker"]

logger = logging.getLogger(__name__)

_MODES: Final = frozenset({"r", "rb", "r+", "rb+", "r+b", "w", "wb", "w+", "wb+", "w+b", "a", "ab", "a+", "ab+", "a+b"})


def _path_arg(name: str, value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be None, a str or an os.PathLike of str, not {type(value).__name__}")
    if not value:
        raise ValueError(f"{name} must not be empty")
    if "\0" in value:
        raise ValueError(f"{name} must not contain a NUL character")
    return value


def _seconds_arg(name: str, value: object, allow_inf: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    seconds = float(value)
    if math.isnan(seconds) or seconds < 0 or (math.isinf(seconds) and not allow_inf):
        limit = "a non-negative number" if allow_inf else "a finite non-negative number"
        raise ValueError(f"{name} must be {limit} of seconds, not {value!r}")
    return seconds



class Locker(LockFileEngine):
    """A lock held through a lock file, shared by every locker that knows the lock pass.

    This is pylocker 3's file-based ``Locker``, same names, arguments and return codes, rebuilt so
    that exclusion comes from the kernel (``flock``), waiters queue in FIFO order without spinning,
    and a holder that dies does not block the others. Use it from any number of processes (and
    threads, one instance per thread) of one host, or of several hosts sharing a file system with
    working ``flock`` (then ``deadLock`` decides when another host's holder is dead).

    The lock is not counted: acquiring it again with the same instance returns ``(True, 1)`` and a
    single release frees it. Do not mix this locker with pylocker 3.x processes on the same lock
    file: the record formats differ.

    Args:
        filePath: the file to lock (``str``, ``os.PathLike`` or ``None``). When given, a ``with``
            block opens it in ``mode`` once the lock is acquired and closes it on exit.
        lockPass: the lock pass (``str``); only its salted digest is written to the lock file.
        mode: the ``open`` mode of ``filePath``: ``r``, ``r+``, ``w``, ``w+``, ``a``, ``a+``, each
            optionally binary (``rb``, ``rb+``/``r+b``, ...). Text modes use UTF-8.
        lockPath: the lock file; ``None`` means ``.lock`` in ``filePath``'s folder, or in the
            working directory when ``filePath`` is ``None``.
        timeout: seconds an acquire may wait (``0``: one attempt; ``math.inf``: forever).
        wait: seconds between attempts; ``0`` (the default) means a short adaptive backoff.
        deadLock: age in seconds after which a holder from another host is considered dead.

    Raises:
        TypeError, ValueError: an argument has the wrong type or value (the message names it).
    """

    def __init__(
        self,
        filePath: str | os.PathLike[str] | None,
        lockPass: str,
        mode: str = "ab",
        lockPath: str | os.PathLike[str] | None = None,
        timeout: float = 60,
        wait: float = 0,
        deadLock: float = 120,
    ) -> None:
        super().__init__()
        self._filePath: str | None = None
        self._lockPath = ""
        self._lock_path_default = True
        self._lockPass = ""
        self._salt = ""
        self._digest = ""
        self._mode = "ab"
        self._timeout = 60.0
        self._wait = 0.0
        self._deadLock = 120.0
        self.set_file_path(filePath)
        self.set_mode(mode)
        self.set_lock_pass(lockPass)
        self.set_lock_path(lockPath)
        self.set_wait(wait)
        self.set_timeout(timeout)
        self.set_dead_lock(deadLock)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(filePath={self._filePath!r}, lockPath={self._lockPath!r}, "
            f"mode={self._mode!r}, holding={self._holding})"
        )

    # ----------------------------------------------------------------------------------------------
    # context manager

    def __enter__(self) -> tuple[bool, int | Exception, IO[Any] | None]:
        acquired, code = self.acquire_lock()
        fd = None
        if acquired and self._filePath is not None:
            try:
                fd = self._open_target(self._filePath)
            except BaseException:
                self.release_lock(verbose=True)
                raise
            self._file = fd
        return acquired, code, fd

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._holding and self._holding_pid == os.getpid():
            self.release_lock(verbose=True)
        else:
            self._close_file()

    def __del__(self) -> None:
        # Release what an unreachable locker still holds (pylocker 3 did so too), but only in the
        # process that acquired it: a forked child must not release its parent's lock.
        pid = os.getpid()
        if getattr(self, "_holding", False) and self._holding_pid == pid:
            self.release_lock()
        for name in ("_sender", "_listener"):
            sock = getattr(self, name, None)
            if sock is not None:
                setattr(self, name, None)
                sock.close()
        fd = getattr(self, "_fd", None)
        if fd is not None:
            self._fd = None
            try:
                os.close(fd)
            except OSError as err:
                logger.debug("closing the lock file descriptor failed: %s", err)

    # ----------------------------------------------------------------------------------------------
    # properties and setters (pylocker 3 API)

    @property
    def filePath(self) -> str | None:
        """locker file path"""
        return self._filePath

    @property
    def lockPass(self) -> str:
        """locker pass"""
        return self._lockPass

    @property
    def lockPath(self) -> str:
        """locker lock path"""
        return self._lockPath

    @property
    def mode(self) -> str:
        """file opening mode"""
        return self._mode

    @property
    def timeout(self) -> float:
        """locker timeout in seconds"""
        return self._timeout

    @property
    def wait(self) -> float:
        """locker wait in seconds"""
        return self._wait

    @property
    def deadLock(self) -> float:
        """locker deadLock in seconds"""
        return self._deadLock

    def _refuse_while_holding(self, name: str) -> None:
        if self._holding and self._holding_pid == os.getpid():
            raise RuntimeError(f"cannot change {name} while this locker holds the lock; release it first")

    def set_mode(self, mode: str) -> None:
        """Set the opening mode of ``filePath``: r, r+, w, w+, a, a+, each optionally binary.

        Raises:
            TypeError: ``mode`` is not a str. ValueError: ``mode`` is not one of those modes.
        """
        if not isinstance(mode, str):
            raise TypeError(f"mode must be a str, not {type(mode).__name__}")
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {', '.join(sorted(_MODES))}, not {mode!r}")
        self._mode = mode

    def set_file_path(self, filePath: str | os.PathLike[str] | None) -> None:
        """Set the file that needs to be locked (``None`` for a general-purpose lock).

        When ``lockPath`` was left to its default, it follows: ``.lock`` in the new file's folder.

        Raises:
            TypeError, ValueError: ``filePath`` is not None or a non-empty path.
            RuntimeError: this locker holds the lock.
        """
        path = _path_arg("filePath", filePath)
        with self._mutex:
            self._refuse_while_holding("filePath")
            self._filePath = path
            if self._lock_path_default and self._lockPath:
                self._set_lock_path_locked(None)

    def set_lock_pass(self, lockPass: str) -> None:
        """Set the locking pass.

        Raises:
            TypeError: ``lockPass`` is not a str. RuntimeError: this locker holds the lock.
        """
        if not isinstance(lockPass, str):
            raise TypeError(f"lockPass must be a str, not {type(lockPass).__name__}")
        with self._mutex:
            self._refuse_while_holding("lockPass")
            salt = os.urandom(16).hex()
            self._lockPass = lockPass
            self._salt, self._digest = salt, pass_digest(lockPass, salt)
            self._cmp_salt = self._cmp_digest = ""

    def set_lock_path(self, lockPath: str | os.PathLike[str] | None) -> None:
        """Set the managing lock file path; ``None`` means ``.lock`` in ``filePath``'s folder.

        Raises:
            TypeError, ValueError: ``lockPath`` is not None or a non-empty path.
            RuntimeError: this locker holds the lock.
        """
        path = _path_arg("lockPath", lockPath)
        with self._mutex:
            self._refuse_while_holding("lockPath")
            self._set_lock_path_locked(path)

    def _set_lock_path_locked(self, path: str | None) -> None:
        self._lock_path_default = path is None
        if path is None:
            folder = os.getcwd() if self._filePath is None else os.path.dirname(os.path.abspath(self._filePath))
            path = os.path.join(folder, ".lock")
        path = os.path.abspath(path)
        if path != self._lockPath:
            self._close_fd()
            self._lockPath = path

    def set_timeout(self, timeout: float) -> None:
        """Set the longest time in seconds an acquire waits (0: try once; ``math.inf``: forever).

        Raises:
            TypeError: ``timeout`` is not a number. ValueError: it is negative or NaN.
        """
        self._timeout = _seconds_arg("timeout", timeout, allow_inf=True)

    def set_wait(self, wait: float) -> None:
        """Set the time in seconds between attempts to lock; 0 means a short adaptive backoff.

        Raises:
            TypeError: ``wait`` is not a number. ValueError: it is negative, infinite or NaN.
        """
        self._wait = _seconds_arg("wait", wait, allow_inf=False)

    def set_dead_lock(self, deadLock: float) -> None:
        """Set the age in seconds after which a lock held from another host is considered dead.

        Holders on this host are checked by pid instead, whatever their age.

        Raises:
            TypeError: ``deadLock`` is not a number. ValueError: it is negative or NaN.
        """
        self._deadLock = _seconds_arg("deadLock", deadLock, allow_inf=True)

    # ----------------------------------------------------------------------------------------------
    # acquire and release (pylocker 3 API)

    def acquire_lock(self, verbose: bool = False, raiseError: bool = False) -> tuple[bool, int | Exception]:
        """Try to acquire the lock, waiting at most ``timeout`` seconds.

        Args:
            verbose: log errors at WARNING level (else DEBUG).
            raiseError: raise errors instead of returning them.

        Returns:
            ``(True, 0)``: the lock is set. ``(True, 1)``: it was already set with this pass (by
            this or another locker), this locker now shares it. ``(True, 2)``: a dead holder's
            lock was found and removed, and the lock is set. ``(False, 3)``: not set before the
            timeout. ``(False, exception)``: an OS error (the lock file cannot be created, is a
            symbolic link, ...); nothing is held.

        Raises:
            OSError: only when ``raiseError`` is true.
        """
        try:
            return self._acquire()
        except OSError as err:
            self._report("acquire", err, verbose, raiseError)
            return False, err

    def release_lock(self, verbose: bool = False, raiseError: bool = False) -> tuple[bool, int | Exception]:
        """Release the lock when set and close the file descriptor opened by ``with``.

        Args:
            verbose: log errors at WARNING level (else DEBUG).
            raiseError: raise errors instead of returning them.

        Returns:
            ``(True, 0)``: no lock file. ``(True, 1)``: the lock file records no holder.
            ``(True, 2)``: the lock, held with this pass, is released (for every holder of the
            pass when this locker was not one of them). ``(True, 3)``: as 2 (or 0, 1), and the
            locked file was closed. ``(False, 4)``: the lock is held with another pass and stays
            held. ``(False, exception)``: an OS error.

        Raises:
            OSError: only when ``raiseError`` is true.
        """
        close_error: OSError | None = None
        try:
            closed = self._close_file()
        except OSError as err:
            closed, close_error = True, err
        try:
            released, code = self._release()
        except OSError as err:
            self._report("release", err, verbose, raiseError)
            return False, err
        if close_error is not None:
            self._report("closing the locked file at release", close_error, verbose, raiseError)
            return released, close_error
        if released and closed:
            code = 3
        return released, code

    def acquire(self, *args: Any, **kwargs: Any) -> tuple[bool, int | Exception]:
        """Alias to acquire_lock"""
        return self.acquire_lock(*args, **kwargs)

    def release(self, *args: Any, **kwargs: Any) -> tuple[bool, int | Exception]:
        """Alias to release_lock"""
        return self.release_lock(*args, **kwargs)

    # ----------------------------------------------------------------------------------------------
    # internals

    def _report(self, action: str, err: OSError, verbose: bool, raise_error: bool) -> None:
        level = logging.WARNING if verbose else logging.DEBUG
        logger.log(level, "%s of lock %s failed: %s", action, self._lockPath, err)
        if raise_error:
            raise err

