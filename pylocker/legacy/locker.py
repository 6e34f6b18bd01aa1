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
waiter finds out by re-reading the 32-byte record header without the kernel lock between sleeps
that grow from 50 us to 0.5 ms (2 ms when not first in line), or of exactly ``wait`` seconds when
``wait`` is set; a full poll under the kernel lock happens at least every ``_FULL_POLL_PERIOD``.

*No hooks, no temp files, no symlinks.* The lock file is opened with ``O_NOFOLLOW`` and must be a
regular file with one link; it is written in place (never through a temp file) and never unlinked.
The locked file is opened with ``O_NOFOLLOW`` in every mode that writes. No signal handler and no
``atexit`` hook is installed: a process that exits holding the lock is simply dead to the others.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import math
import os
import select
import socket
import stat
import sys
import threading
import time
from numbers import Real
from types import TracebackType
from typing import IO, Any, Final

from . import _liveness
from ._record import HEADER_LEN, Entry, Record, decode, digests_equal, encode, pass_digest

__all__ = ["Locker"]

logger = logging.getLogger(__name__)

_MODES: Final = frozenset({"r", "rb", "r+", "rb+", "r+b", "w", "wb", "w+", "wb+", "w+b", "a", "ab", "a+", "ab+", "a+b"})

# Waiters block on a Unix datagram socket in Linux's abstract namespace (no file, gone with the
# process); whoever hands the lock to a waiter of this host sends it one byte. Elsewhere, or when the
# socket cannot be bound, waiters sleep and look at the record header between sleeps instead.
_WAKEUPS: Final = sys.platform.startswith("linux")
_WAKE_PREFIX: Final = "\0pylocker-legacy/"
_BACKOFF_START: Final = 50e-6  # first sleep of a polling waiter, doubled after each look
_HEAD_CAP: Final = 1e-3  # longest sleep of the first polling waiter: bounds the handover latency
_WAITER_CAP: Final = 2e-3  # longest sleep of the other polling waiters
_FULL_POLL_PERIOD: Final = 0.05  # a waiter re-reads the record under the kernel lock this often
_LIVENESS_PERIOD: Final = 0.05  # and checks the pids of the entries (psutil) this often
_REFRESH_PERIOD: Final = 1.0  # a waiter refreshes its timestamp for other hosts' deadLock
_GUARD_CAP: Final = 1e-3  # longest sleep while another locker is inside its record update
_MAX_REOPEN: Final = 8
_READ_CHUNK: Final = 65536

_GUARD_OK: Final = 0
_GUARD_MISSING: Final = 1
_GUARD_TIMEOUT: Final = 2

_ACQUIRED: Final = 0
_WAITING: Final = 1
_TIMED_OUT: Final = 2

# One threading.Lock per (pid, device, inode) of a lock file, shared by every Locker of this process.
# The pid in the key means a forked child never uses a lock that a parent's thread held at fork time.
_process_locks: dict[tuple[int, int, int], threading.Lock] = {}


def _take(lock: threading.Lock, deadline: float | None) -> bool:
    if deadline is None or deadline == math.inf:
        return lock.acquire()
    remaining = deadline - time.monotonic()
    return lock.acquire(timeout=min(max(remaining, 0.0), threading.TIMEOUT_MAX))


def _flock(fd: int, deadline: float | None) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pass
    else:
        return True
    if deadline is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return True
    # Another locker is inside its record update, which takes microseconds: sleep briefly rather
    # than block, so that a stopped process cannot make us overrun our timeout.
    delay = 20e-6
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, _GUARD_CAP)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue
        return True


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


class _Wait:
    """State of one acquire call across its polls."""

    __slots__ = ("bind_tried", "deadline", "enqueued", "head", "sock")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.enqueued = False
        self.head = False
        self.sock: socket.socket | None = None
        self.bind_tried = not _WAKEUPS


def _bind_wake_socket(token: str) -> socket.socket | None:
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    except OSError as err:
        logger.debug("no wake-up socket (%s): polling instead", err)
        return None
    try:
        sock.setblocking(False)
        sock.bind(_WAKE_PREFIX + token)
    except OSError as err:
        sock.close()
        logger.debug("no wake-up socket (%s): polling instead", err)
        return None
    return sock


def _sleep_on_socket(sock: socket.socket, timeout: float) -> None:
    readable, _, _ = select.select([sock], [], [], max(timeout, 0.0))
    while readable:
        try:
            sock.recv(64)
        except BlockingIOError:
            break


class Locker:
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
        self._mutex = threading.Lock()  # instance state and the lock file descriptor
        self._acquiring = threading.Lock()  # one acquire at a time per instance
        self._fd: int | None = None
        self._fd_pid = -1
        self._fd_id = (0, 0)
        self._plock: threading.Lock | None = None
        self._token = os.urandom(8).hex()
        self._holding = False
        self._holding_pid = -1
        self._file: IO[Any] | None = None
        self._seen = b""
        self._sender: socket.socket | None = None
        self._listener: socket.socket | None = None
        self._listener_pid = -1
        self._sender_pid = -1
        self._cmp_salt = ""
        self._cmp_digest = ""
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

    def _open_target(self, path: str) -> IO[Any]:
        mode = self._mode
        nofollow = os.O_NOFOLLOW if any(c in mode for c in "wa+") else 0

        def opener(name: str, flags: int) -> int:
            return os.open(name, flags | nofollow, 0o666)

        try:
            if "b" in mode:
                return open(path, mode, opener=opener)
            return open(path, mode, encoding="utf-8", opener=opener)
        except OSError as err:
            if nofollow and err.errno in (errno.ELOOP, errno.EMLINK):
                raise OSError(err.errno, "refusing to follow a symbolic link at the locked file", path) from None
            raise

    def _close_file(self) -> bool:
        f, self._file = self._file, None
        if f is None or f.closed:
            return False
        f.close()
        return True

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def _open_lock_file(self, create: bool) -> bool:
        path = self._lockPath
        pid = os.getpid()
        if self._fd is not None and self._fd_pid != pid:
            # Forked: the descriptor is shared with the parent (so is any flock on it). Start anew.
            self._close_fd()
            self._token = os.urandom(8).hex()
            self._holding = False
        flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        if create:
            flags |= os.O_CREAT
        try:
            fd = os.open(path, flags, 0o666)
        except FileNotFoundError:
            if create:
                raise
            return False
        except OSError as err:
            if err.errno in (errno.ELOOP, errno.EMLINK):
                raise OSError(err.errno, "refusing to follow a symbolic link at the lock path", path) from None
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(errno.EINVAL, "the lock path is not a regular file", path)
            if st.st_nlink > 1:
                raise OSError(errno.EMLINK, "the lock file has other hard links; refusing to write it", path)
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._fd_pid, self._fd_id = fd, pid, (st.st_dev, st.st_ino)
        self._plock = _process_locks.setdefault((pid, st.st_dev, st.st_ino), threading.Lock())
        return True

    def _lock_guard(self, deadline: float | None, create: bool) -> int:
        """Take the instance mutex, the process lock and the flock, on a file still at lockPath.

        On ``_GUARD_OK`` the caller must call ``_unlock_guard``; otherwise nothing is held.
        """
        if not _take(self._mutex, deadline):
            return _GUARD_TIMEOUT
        ok = False
        try:
            for _ in range(_MAX_REOPEN):
                if (self._fd is None or self._fd_pid != os.getpid()) and not self._open_lock_file(create):
                    return _GUARD_MISSING
                fd, plock = self._fd, self._plock
                if fd is None or plock is None:  # pragma: no cover - set together by _open_lock_file
                    raise RuntimeError("lock file descriptor missing")
                if not _take(plock, deadline):
                    return _GUARD_TIMEOUT
                flocked = False
                try:
                    flocked = _flock(fd, deadline)
                    if not flocked:
                        return _GUARD_TIMEOUT
                    # The path must still name the file we locked: someone may have removed or
                    # replaced it, and a lock on an orphaned inode excludes nobody.
                    try:
                        st = os.lstat(self._lockPath)
                        ok = (st.st_dev, st.st_ino) == self._fd_id
                    except FileNotFoundError:
                        ok = False
                    if ok:
                        return _GUARD_OK
                finally:
                    if not ok:
                        if flocked:
                            fcntl.flock(fd, fcntl.LOCK_UN)
                        plock.release()
                self._close_fd()
            raise OSError(errno.EAGAIN, "the lock file keeps being replaced", self._lockPath)
        finally:
            if not ok:
                self._mutex.release()

    def _unlock_guard(self) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            if self._plock is not None:
                self._plock.release()
            self._mutex.release()

    def _read(self) -> tuple[Record, bytes, bool]:
        """Read and decode the record (guard held); a corrupt record reads as empty."""
        fd = self._fd
        if fd is None:  # pragma: no cover - the guard opened it
            raise RuntimeError("lock file descriptor missing")
        data = os.pread(fd, _READ_CHUNK, 0)
        if len(data) == _READ_CHUNK:
            chunks = [data]
            while len(chunks[-1]) == _READ_CHUNK:
                chunks.append(os.pread(fd, _READ_CHUNK, _READ_CHUNK * len(chunks)))
            data = b"".join(chunks)
        try:
            return decode(data), data, False
        except ValueError as err:
            logger.warning("lock file %s holds no valid record (%s): treating it as a dead lock", self._lockPath, err)
            return Record(), data, True

    def _write(self, record: Record, old: bytes) -> bytes:
        """Write ``record`` in place over ``old`` (guard held); return the bytes written."""
        fd = self._fd
        if fd is None:  # pragma: no cover - the guard opened it
            raise RuntimeError("lock file descriptor missing")
        data = encode(record)
        done = 0
        while done < len(data):
            done += os.pwrite(fd, data[done:], done)
        if len(data) < len(old):
            os.ftruncate(fd, len(data))
        return data

    def _pass_matches(self, salt: str, digest: str) -> bool:
        if not digest:
            return False
        if salt == self._salt:
            mine = self._digest
        elif salt == self._cmp_salt:
            mine = self._cmp_digest
        else:
            mine = pass_digest(self._lockPass, salt)
            self._cmp_salt, self._cmp_digest = salt, mine
        return digests_equal(mine, digest)

    def _entry(self, now: float, waiting: bool) -> Entry:
        entry = Entry(self._token, os.getpid(), _liveness.current_ctime(), _liveness.host_id(), now)
        return entry._replace(salt=self._salt, digest=self._digest) if waiting else entry

    def _prune(self, record: Record, now: float, check_pids: bool) -> tuple[bool, bool]:
        """Drop dead holders and waiters; return whether a holder, and whether anyone, was dropped."""
        token, dead_lock = self._token, self._deadLock
        holders = [
            e for e in record.holders if e.token == token or not _liveness.entry_is_dead(e, dead_lock, now, check_pids)
        ]
        queue = [
            e for e in record.queue if e.token == token or not _liveness.entry_is_dead(e, dead_lock, now, check_pids)
        ]
        broke = len(holders) != len(record.holders)
        if broke:
            logger.info(
                "lock %s: broke the lock of dead holder(s) %s",
                self._lockPath,
                [(e.pid, e.host) for e in record.holders if e not in holders],
            )
        if len(queue) != len(record.queue):
            logger.debug("lock %s: dropped %d dead waiter(s)", self._lockPath, len(record.queue) - len(queue))
        dropped = broke or len(queue) != len(record.queue)
        record.holders, record.queue = holders, queue
        if not holders:
            record.salt = record.digest = ""
        return broke, dropped

    def _acquire(self) -> tuple[bool, int]:
        start = time.monotonic()
        deadline = start + self._timeout
        if not _take(self._acquiring, deadline):
            return False, 3
        wait = _Wait(deadline)
        acquired = False
        try:
            last_live = -math.inf
            delay = _BACKOFF_START
            while True:
                now = time.monotonic()
                check_pids = now - last_live >= _LIVENESS_PERIOD
                if check_pids:
                    last_live = now
                last_full = now
                outcome, code = self._poll(wait, now >= deadline, check_pids)
                if outcome == _ACQUIRED:
                    acquired = True
                    return True, code
                if outcome == _TIMED_OUT:
                    return False, 3
                if not wait.bind_tried:
                    wait.bind_tried = True
                    wait.sock, fresh = self._wake_listener()
                    if fresh:
                        continue  # look again: the lock may have been handed to us before the bind
                period = self._wait if self._wait > 0 else _FULL_POLL_PERIOD
                if wait.sock is not None:
                    _sleep_on_socket(wait.sock, min(period, deadline - time.monotonic()))
                    continue
                # Polling fallback: sleep until the record changes (seen on its header, read
                # without the kernel lock) or a full poll is due; the first waiter sleeps least.
                while True:
                    now = time.monotonic()
                    if now >= deadline or now - last_full >= period:
                        break
                    if self._wait > 0:
                        time.sleep(min(self._wait, deadline - now))
                        break
                    delay = min(delay * 2, _HEAD_CAP if wait.head else _WAITER_CAP)
                    time.sleep(min(delay, deadline - now))
                    if self._record_changed():
                        break
        finally:
            if wait.enqueued and not acquired:
                self._abandon()
            self._acquiring.release()

    def _wake_listener(self) -> tuple[socket.socket | None, bool]:
        """This instance's wake-up socket, kept once bound; and whether it was bound just now."""
        pid = os.getpid()
        if self._listener is not None and self._listener_pid == pid:
            return self._listener, False
        if self._listener is not None and self._listener_pid != pid:
            self._listener.close()  # forked: our copy of the parent's socket
        self._listener = _bind_wake_socket(self._token)
        self._listener_pid = pid
        return self._listener, self._listener is not None

    def _wake(self, entry: Entry | None) -> None:
        """Tell a waiter of this host that the lock was just handed to it."""
        if entry is None or not _WAKEUPS or entry.host != _liveness.host_id():
            return
        pid = os.getpid()
        if self._sender is None or self._sender_pid != pid:
            self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sender.setblocking(False)
            self._sender_pid = pid
        try:
            self._sender.sendto(b"!", _WAKE_PREFIX + entry.token)
        except OSError as err:  # not listening (polling, or gone): it will find out by polling
            logger.debug("lock %s: no wake-up for waiter %s: %s", self._lockPath, entry.pid, err)

    def _record_changed(self) -> bool:
        fd = self._fd
        if fd is None:
            return True
        try:
            return os.pread(fd, HEADER_LEN, 0) != self._seen
        except OSError:
            return True

    def _poll(self, wait: _Wait, give_up: bool, check_pids: bool) -> tuple[int, int]:
        """Look at the record once, under the guard, and take the lock or queue for it."""
        if self._lock_guard(wait.deadline, create=True) != _GUARD_OK:
            return _TIMED_OUT, 3
        granted = None
        try:
            record, old, dirty = self._read()
            broke = dirty
            now = time.time()
            if record.holders or record.queue:
                broke_holder, dropped = self._prune(record, now, check_pids)
                dirty = dirty or dropped
                broke = broke or broke_holder
            token = self._token
            outcome, code = _WAITING, 0
            mine = record.queue_index(token)
            if record.holder_index(token) >= 0:
                outcome, code = _ACQUIRED, ((2 if broke else 0) if wait.enqueued else 1)
            else:
                if not record.holders and record.queue and record.queue[0].token != token:
                    granted = record.grant_head()  # a free lock belongs to the first waiter
                    dirty = True
                    mine = record.queue_index(token)
                if record.holders:
                    if self._pass_matches(record.salt, record.digest):
                        record.holders.append(self._entry(now, waiting=False))
                        outcome, code, dirty = _ACQUIRED, 1, True
                else:
                    record.salt, record.digest = self._salt, self._digest
                    record.holders = [self._entry(now, waiting=False)]
                    outcome, code, dirty = _ACQUIRED, (2 if broke else 0), True
            if outcome == _ACQUIRED:
                if mine >= 0:
                    del record.queue[mine]
                    dirty = True
            elif give_up:
                outcome, code = _TIMED_OUT, 3
                if mine >= 0:
                    del record.queue[mine]
                    dirty = True
                wait.enqueued = False
            elif mine < 0:
                record.queue.append(self._entry(now, waiting=True))
                wait.enqueued, wait.head, dirty = True, len(record.queue) == 1, True
            else:
                if now - record.queue[mine].ts > _REFRESH_PERIOD:
                    record.queue[mine] = record.queue[mine]._replace(ts=now)
                    dirty = True
                wait.head = mine == 0
            if dirty:
                old = self._write(record, old)
            self._seen = old[:HEADER_LEN]
            if outcome == _ACQUIRED:
                self._holding, self._holding_pid = True, os.getpid()
                wait.enqueued = False
        finally:
            self._unlock_guard()
        self._wake(granted)
        return outcome, code

    def _abandon(self) -> None:
        """Leave the queue after a timeout or an exception; give back a lock granted meanwhile."""
        try:
            if self._lock_guard(None, create=False) != _GUARD_OK:
                return
        except OSError as err:
            logger.warning("lock %s: could not leave the waiting queue: %s", self._lockPath, err)
            return
        granted = None
        try:
            record, old, _ = self._read()
            token, dirty = self._token, False
            i = record.queue_index(token)
            if i >= 0:
                del record.queue[i]
                dirty = True
            i = record.holder_index(token)
            if i >= 0:
                del record.holders[i]
                if not record.holders:
                    record.salt = record.digest = ""
                    granted = record.grant_head()
                dirty = True
            if dirty:
                self._write(record, old)
        except OSError as err:
            logger.warning("lock %s: could not leave the waiting queue: %s", self._lockPath, err)
        finally:
            self._unlock_guard()
        self._wake(granted)

    def _release(self) -> tuple[bool, int]:
        if self._lock_guard(None, create=False) == _GUARD_MISSING:
            self._holding = False
            return True, 0
        granted = None
        try:
            record, old, corrupt = self._read()
            if corrupt:
                self._holding = False
                return True, 1
            i = record.holder_index(self._token)
            if i >= 0:
                del record.holders[i]
                code = 2
            elif record.holders and self._pass_matches(record.salt, record.digest):
                logger.debug("lock %s released for every holder of its pass", self._lockPath)
                record.holders = []
                code = 2
            elif not record.holders:
                code = 1
            else:
                return False, 4
            if not record.holders:
                record.salt = record.digest = ""
                granted = record.grant_head()  # direct handover: the releaser cannot barge back in
            if code == 2 or granted is not None:
                self._write(record, old)
            self._holding = False
        finally:
            self._unlock_guard()
        self._wake(granted)
        return True, code
