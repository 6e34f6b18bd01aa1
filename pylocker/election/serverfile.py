"""The server-file election: who serves, and the OS lock that elects exactly one server.

The fingerprint (unique name, timestamp, address, port, pid, epoch) is JSON,
written to a random temp file in the same folder and renamed over the server file,
so a reader never sees half of it. It holds no secret. Files are owner-only; a
symlink at the server file's path, or a file that another user owns, is refused.

Election: whoever holds an exclusive ``flock`` on ``<server file>.lock`` serves.
The kernel drops that lock when the holder dies, so a crashed server never blocks
an election, and two lockers started at the same instant can never both serve.
The lock file also keeps the *epoch*: every newly elected server increments it, and
fencing tokens carry it in their high bits, so they keep growing across failovers.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import stat
import tempfile
import time
from typing import Any, Callable, Final

import psutil

from ..errors import ServerFileError
from .base import TOKEN_EPOCH_SHIFT, Fingerprint, first_token

__all__ = ["TOKEN_EPOCH_SHIFT", "ElectionLock", "Fingerprint", "ServerFileElection", "ServerFileError",
           "default_path", "first_token", "read", "someone_serves", "write"]

DEFAULT_NAME: Final = ".pylocker.serverlocker"
FRESH_FINGERPRINT: Final = 10.0  # seconds; a fingerprint from another host this recent names a live server
# A serving locker refreshes its fingerprint every second: one refreshed this recently
# belongs to a server that runs now (a dead or frozen one stops refreshing).
LIVE_REFRESH: Final = 3.0
MAX_SERVER_FILE: Final = 16 * 1024 * 1024  # bytes: about 400,000 client names
logger = logging.getLogger(__name__)


def _no_unfollow() -> None:
    """What unfollowing a server file does: nothing (it never notifies)."""


def this_host() -> str:
    return socket.gethostname()


def default_path() -> str:
    return os.path.join(os.path.expanduser("~"), DEFAULT_NAME)


def _check_owned(info: os.stat_result, path: str) -> None:
    if info.st_uid != os.geteuid():
        raise ServerFileError(f"{path!r} belongs to another user (uid {info.st_uid}); refusing to use it")


def _refuse_symlink(path: str) -> os.stat_result | None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(info.st_mode):
        raise ServerFileError(f"{path!r} is a symbolic link; refusing to follow it")
    if not stat.S_ISREG(info.st_mode):
        raise ServerFileError(f"{path!r} is not a regular file")
    _check_owned(info, path)
    return info


def read(path: str) -> Fingerprint | None:
    """The fingerprint in ``path``; None when there is none. Raises ServerFileError if unsafe or corrupt."""
    if _refuse_symlink(path) is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as handle:
        raw = handle.read(MAX_SERVER_FILE + 1)  # whole: a server with many clients lists them all
    if len(raw) > MAX_SERVER_FILE:
        raise ServerFileError(f"{path!r} is over {MAX_SERVER_FILE} bytes: not a server fingerprint")
    return decode(raw, repr(path))


def decode(raw: bytes, where: str) -> Fingerprint:
    """The fingerprint in ``raw`` (JSON, as ``encode`` wrote it); ServerFileError naming ``where`` if corrupt."""
    try:
        data: Any = json.loads(raw)
        return Fingerprint(
            unique_name=str(data["uniqueName"]), timestamp=float(data["timestamp"]),
            address=str(data["address"]), port=int(data["port"]), pid=int(data["pid"]),
            name=str(data.get("name", "")), epoch=int(data.get("epoch", 0)),
            clients=tuple(str(c) for c in data.get("clients", ())[:100_000]),
            host=str(data.get("host", "")), stopped=data.get("stopped") is True)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ServerFileError(f"{where} does not hold a server fingerprint: {exc}") from None


def encode(fingerprint: Fingerprint) -> bytes:
    """``fingerprint`` as JSON bytes (what the server file and the ZooKeeper backend store)."""
    return json.dumps({
        "uniqueName": fingerprint.unique_name, "timestamp": fingerprint.timestamp,
        "address": fingerprint.address, "port": fingerprint.port, "pid": fingerprint.pid,
        "name": fingerprint.name, "epoch": fingerprint.epoch, "clients": list(fingerprint.clients),
        "host": fingerprint.host, "stopped": fingerprint.stopped,
    }).encode()


def write(path: str, fingerprint: Fingerprint) -> None:
    """Replace ``path`` atomically with ``fingerprint`` (mode 0600)."""
    _refuse_symlink(path)
    folder = os.path.dirname(os.path.abspath(path))
    data = encode(fingerprint)
    fd, temp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def _identity(info: os.stat_result) -> tuple[int, int]:
    return info.st_dev, info.st_ino


def _same_file(fd: int, path: str) -> bool:
    """Whether ``path`` names the file open at ``fd`` (not unlinked, not replaced)."""
    try:
        return _identity(os.lstat(path)) == _identity(os.fstat(fd))
    except OSError:
        return False


class ElectionLock:
    """The OS lock that makes its holder the one serving locker of a server file (a Term)."""

    def __init__(self, server_file: str) -> None:
        self.path = server_file + ".lock"
        self._fd: int | None = None
        self._identity = (0, 0)
        self.epoch = 0

    def try_acquire(self, floor_epoch: int = 0) -> bool:
        """Take the lock if nobody holds it; never blocks.

        The new epoch is above both the one kept in the lock file and ``floor_epoch``
        (the server file's), so that losing the lock file never sends tokens backwards.
        """
        if self._fd is not None:
            return True
        _refuse_symlink(self.path)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            _check_owned(os.fstat(fd), self.path)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise
        except BaseException:
            os.close(fd)
            raise
        # The path must still name the file we locked: a lock on a file that was unlinked
        # or replaced meanwhile elects nobody (another locker may hold the new one).
        if not _same_file(fd, self.path):
            os.close(fd)
            return False
        self._fd = fd
        self._identity = _identity(os.fstat(fd))
        self.epoch = self._next_epoch(fd, floor_epoch)
        return True

    def valid(self) -> bool:
        """Held, and the lock file's path names the file this lock holds.

        A lock file that was deleted, or replaced by one that nobody holds, is taken back
        (with this term's epoch): only a file another locker holds ends the term.
        """
        fd = self._fd
        if fd is None:
            return False
        if _same_file(fd, self.path):
            return True
        replacement = ElectionLock(self.path[: -len(".lock")])
        try:
            taken = replacement.try_acquire(self.epoch - 1)  # writes max(its epoch, ours - 1) + 1 >= ours
        except (OSError, ServerFileError):
            taken = False
        if not taken:
            return False
        logger.warning("the election lock file %s was deleted or replaced: taken back", self.path)
        os.close(fd)
        self._fd, self._identity = replacement._fd, replacement._identity
        replacement._fd = None
        return True

    @staticmethod
    def _next_epoch(fd: int, floor_epoch: int) -> int:
        raw = os.pread(fd, 32, 0)
        try:
            previous = int(raw.decode("ascii").strip() or 0)
        except ValueError:
            previous = 0
        epoch = max(previous, floor_epoch) + 1
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(epoch).encode("ascii"), 0)
        os.fsync(fd)  # an epoch must never be handed out twice, even across a power loss
        return epoch

    def resign(self) -> None:
        self.release()

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def someone_serves(server_file: str) -> bool:
    """Whether a process on this host holds the election lock of ``server_file`` now."""
    path = server_file + ".lock"
    try:
        _refuse_symlink(path)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return True
        raise
    finally:
        os.close(fd)  # closing drops the probe's shared lock, if it got one
    return False


def _still_serves(fingerprint: Fingerprint) -> bool:
    """Whether the server of ``fingerprint`` runs now: not stopped, refreshing, its process alive."""
    if fingerprint.stopped or not is_fresh(fingerprint, LIVE_REFRESH):
        return False
    if fingerprint.host != this_host():
        return True  # another host's fresh fingerprint: let it go stale first
    try:
        return bool(psutil.Process(fingerprint.pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def is_fresh(fingerprint: Fingerprint, max_age: float) -> bool:
    return time.time() - fingerprint.timestamp <= max_age


class ServerFileElection:
    """The election through a server file and its ``.lock`` (one host, or a shared file system)."""

    def __init__(self, path: str) -> None:
        self.path = path

    @property
    def description(self) -> str:
        return self.path

    def campaign(self) -> ElectionLock | None:
        try:
            previous = read(self.path)
        except ServerFileError:
            previous = None
        if previous is not None and _still_serves(previous):
            # A free lock file (or none) is no proof that nobody serves: it may have been
            # deleted under a live server. Touching nothing here lets that server take it back.
            return None
        election = ElectionLock(self.path)
        if not election.try_acquire(previous.epoch if previous is not None else 0):
            return None
        return election

    def read(self) -> Fingerprint | None:
        return read(self.path)

    def publish(self, fingerprint: Fingerprint) -> None:
        write(self.path, fingerprint)

    def follow(self, on_change: Callable[[Fingerprint | None], None]) -> Callable[[], None]:
        """Never calls ``on_change``: a file tells nobody it changed (least of all over NFS).

        Its lockers learn of a new server when their link to the old one fails.
        """
        return _no_unfollow

    def close(self) -> None:
        """Nothing is held open between calls."""

    def looks_alive(self, fingerprint: Fingerprint) -> bool:
        if fingerprint.host == this_host():
            # On this host the election lock tells for sure: a serving locker holds it.
            if not someone_serves(self.path):
                return False
            try:
                return bool(psutil.Process(fingerprint.pid).status() != psutil.STATUS_ZOMBIE)
            except psutil.Error:
                return False
        return is_fresh(fingerprint, FRESH_FINGERPRINT)
