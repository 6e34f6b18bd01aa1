"""Is the locker named by a record entry still alive?

On the same host (same hostname, boot and pid namespace) the answer comes from psutil: the pid must
exist, must not be a zombie and must have the creation time recorded in the entry (so a recycled
pid does not keep a dead holder's lock). For an entry from any other host nothing can be checked,
so it counts as dead once it is older than the checker's ``deadLock``.
"""

from __future__ import annotations

import os
import socket
import time

import psutil

from ._record import Entry

__all__ = ["current_ctime", "entry_is_dead", "host_id"]

# /proc/<pid>/stat gives the start time in clock ticks (10 ms); psutil turns it into seconds the same
# way in every process, so one second of tolerance only guards against float formatting.
_CTIME_TOLERANCE = 1.0

# A process found alive is not looked at again (by any Locker of this process) for this long: reading
# /proc costs ~50 us per entry, and checks happen while the lock file's flock is held.
_ALIVE_RECHECK = 0.05
_alive_seen: dict[tuple[int, float], float] = {}

_cache_pid = -1
_cache_host = ""
_cache_ctime = 0.0


def _read_first_line(path: str) -> str:
    try:
        with open(path, encoding="ascii") as fh:
            return fh.readline().strip()
    except (OSError, ValueError):
        return ""


def _compute() -> None:
    global _cache_pid, _cache_host, _cache_ctime
    pid = os.getpid()
    if pid == _cache_pid:
        return
    # A pid means something only inside one pid namespace of one boot of one machine: all three go
    # into the host id, so a record from a container, or from before a reboot, is "another host".
    boot_id = _read_first_line("/proc/sys/kernel/random/boot_id")
    try:
        pid_ns = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        pid_ns = ""
    host = f"{socket.gethostname()}/{boot_id}/{pid_ns}"
    _cache_host = "".join("_" if c.isspace() else c for c in host)
    _cache_ctime = float(psutil.Process(pid).create_time())
    _cache_pid = pid


def host_id() -> str:
    """This process's host identity as written in records."""
    _compute()
    return _cache_host


def current_ctime() -> float:
    """This process's creation time as written in records."""
    _compute()
    return _cache_ctime


def _pid_alive(pid: int, ctime: float) -> bool:
    if pid == os.getpid():
        return abs(current_ctime() - ctime) <= _CTIME_TOLERANCE
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            if abs(proc.create_time() - ctime) > _CTIME_TOLERANCE:
                return False
            return bool(proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:  # includes ZombieProcess
        return False
    except psutil.AccessDenied:
        return True  # it exists; we may not look at it


def entry_is_dead(entry: Entry, dead_lock: float, now: float, check_pids: bool) -> bool:
    """Whether ``entry`` is a dead locker; same-host pids are only checked when ``check_pids``."""
    if entry.host != host_id():
        return now - entry.ts > dead_lock
    if not check_pids:
        return False
    key, checked = (entry.pid, entry.ctime), time.monotonic()
    seen = _alive_seen.get(key)
    if seen is not None and checked - seen < _ALIVE_RECHECK:
        return False
    if _pid_alive(entry.pid, entry.ctime):
        if len(_alive_seen) > 4096:
            _alive_seen.clear()
        _alive_seen[key] = checked
        return False
    _alive_seen.pop(key, None)
    return True
