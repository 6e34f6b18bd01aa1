"""The lock-file engine under the legacy ``Locker``: the record, the kernel guard, FIFO waiting.

See ``locker.py`` for the theory of operation; this module does the work it describes.
"""


from __future__ import annotations

import errno
import fcntl
import logging
import math
import os
import socket
import stat
import threading
import time
from typing import IO, Any, Final

from . import _liveness, _record
from ._record import HEADER_LEN, SLOT, Entry, Record, Stored, digests_equal, pass_digest
from ._waiting import WAKE_PREFIX, WAKEUPS, Wait, bind_wake_socket, flock, sleep_on_socket, take

logger = logging.getLogger("pylocker.legacy.locker")


# Waiters block on a Unix datagram socket in Linux's abstract namespace (no file, gone with the
# process); whoever hands the lock to a waiter of this host sends it one byte. Elsewhere, or when the
# socket cannot be bound, waiters sleep and look at the record header between sleeps instead.
_BACKOFF_START: Final = 50e-6  # first sleep of a polling waiter, doubled after each look
_HEAD_CAP: Final = 1e-3  # longest sleep of the first polling waiter: bounds the handover latency
_WAITER_CAP: Final = 2e-3  # longest sleep of the other polling waiters
_FULL_POLL_PERIOD: Final = 0.05  # a waiter re-reads the record under the kernel lock this often
_LIVENESS_PERIOD: Final = 0.05  # and checks the pids of the entries (psutil) this often
_REFRESH_PERIOD: Final = 1.0  # a waiter refreshes its timestamp for other hosts' deadLock
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


class LockFileEngine:
    """The lock record's mechanics; ``Locker`` adds the pylocker 3 API and its settings."""

    # Settings, kept by ``Locker``.
    _filePath: str | None
    _lockPath: str
    _lock_path_default: bool
    _lockPass: str
    _salt: str
    _digest: str
    _mode: str
    _timeout: float
    _wait: float
    _deadLock: float

    def __init__(self) -> None:
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
        if not take(self._mutex, deadline):
            return _GUARD_TIMEOUT
        ok = False
        try:
            for _ in range(_MAX_REOPEN):
                if (self._fd is None or self._fd_pid != os.getpid()) and not self._open_lock_file(create):
                    return _GUARD_MISSING
                fd, plock = self._fd, self._plock
                if fd is None or plock is None:  # pragma: no cover - set together by _open_lock_file
                    raise RuntimeError("lock file descriptor missing")
                if not take(plock, deadline):
                    return _GUARD_TIMEOUT
                flocked = False
                try:
                    flocked = flock(fd, deadline)
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

    def _read(self) -> tuple[Record, Stored, bool]:
        """Read and decode the record (guard held); a corrupt record reads as empty, flagged."""
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
            stored = _record.read_image(data)
            return stored.record, stored, False
        except ValueError as err:
            logger.warning("lock file %s holds no valid record (%s): held until deadLock after its last write",
                           self._lockPath, err)
            return Record(), Stored(Record(), 0, 0, 0, data[:HEADER_LEN]), True

    def _corrupt_is_dead(self, now: float) -> bool:
        """Whether a corrupt record is old enough (``deadLock`` since its last write) to break."""
        fd = self._fd
        return fd is not None and now - os.fstat(fd).st_mtime >= self._deadLock

    def _write(self, record: Record, current: Stored) -> Stored:
        """Write ``record`` to a slot clear of ``current`` (guard held), then the stamp; see ``_record``."""
        fd = self._fd
        if fd is None:  # pragma: no cover - the guard opened it
            raise RuntimeError("lock file descriptor missing")
        if not record.holders and not record.queue:
            os.ftruncate(fd, 0)  # the empty record, in one step that cannot tear
            return Stored(record, 0, 0, 0, b"")
        seq = current.seq + 1
        data = _record.encode(record, seq)
        offset = _record.slot_for(len(data), current)
        done = 0
        while done < len(data):  # a failure here leaves ``current`` the file's record
            done += os.pwrite(fd, data[done:], offset + done)
        head = _record.stamp(seq, offset)
        try:
            os.pwrite(fd, head, 0)
            if offset == SLOT:
                os.ftruncate(fd, SLOT + len(data))  # drop the records after it, all older
        except OSError as err:  # the record is written: the stamp and the trim are only tidiness
            logger.warning("lock file %s: record written, stamp not (%s)", self._lockPath, err)
        return Stored(record, seq, offset, len(data), head)

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
        if not take(self._acquiring, deadline):
            return False, 3
        wait = Wait(deadline)
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
                    sleep_on_socket(wait.sock, min(period, deadline - time.monotonic()))
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
        self._listener = bind_wake_socket(self._token)
        self._listener_pid = pid
        return self._listener, self._listener is not None

    def _wake(self, entry: Entry | None) -> None:
        """Tell a waiter of this host that the lock was just handed to it."""
        if entry is None or not WAKEUPS or entry.host != _liveness.host_id():
            return
        pid = os.getpid()
        if self._sender is None or self._sender_pid != pid:
            self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sender.setblocking(False)
            self._sender_pid = pid
        try:
            self._sender.sendto(b"!", WAKE_PREFIX + entry.token)
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

    def _poll(self, wait: Wait, give_up: bool, check_pids: bool) -> tuple[int, int]:
        """Look at the record once, under the guard, and take the lock or queue for it."""
        if self._lock_guard(wait.deadline, create=True) != _GUARD_OK:
            return _TIMED_OUT, 3
        granted = None
        try:
            record, old, dirty = self._read()
            now = time.time()
            if dirty and not self._corrupt_is_dead(now):
                # A record that fails its check may be a live holder's torn write (a full disk, a
                # crash mid-write): the lock counts as held until deadLock after the last write.
                return (_TIMED_OUT, 3) if give_up else (_WAITING, 0)
            broke = dirty
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
            self._seen = old.head
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

