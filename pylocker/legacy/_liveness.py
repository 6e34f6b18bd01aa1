"""Is the locker named by a record entry still alive?

On the same host (same hostname, boot and pid namespace) the answer comes from the process table: the
pid must exist, must not be a zombie and must have the start time recorded in the entry (so a
recycled pid does not keep a dead holder's lock). The start time is counted in clock ticks since
boot (``/proc/<pid>/stat``), which no step of the wall clock moves; psutil's ``create_time`` is
computed through the wall clock, and is used only where ``/proc`` is missing. For an entry from any
other host nothing can be checked, so it counts as dead once it is older than the checker's
``deadLock``.
"""

from __future__ import annotations

import os
import socket
import time

import psutil

from ._record import Entry

__all__ = ["current_ctime", "entry_is_dead", "host_id"]

# Start times are whole clock ticks (from /proc), or psutil's seconds where /proc is missing: half a
# tick only guards against float formatting, and a second against psutil's rounding.
_CTIME_TOLERANCE = 0.5 if os.path.exists("/proc/self/stat") else 1.0

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
    start = _start_time(pid)
    _cache_ctime = start if start is not None else float(psutil.Process(pid).create_time())
    _cache_pid = pid


def _start_time(pid: int) -> float | None:
    """When ``pid`` started, in clock ticks since boot (None: no such process)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except FileNotFoundError:
        return None
    except OSError:
        try:  # no /proc here: psutil's wall-clock-based creation time, the only one there is
            return float(psutil.Process(pid).create_time())
        except psutil.Error:
            return None
    # Field 2 (the command) may hold spaces and parentheses: count fields after its last ")".
    fields = stat[stat.rindex(b")") + 2:].split()
    return float(fields[19])  # field 22, starttime


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
    start = _start_time(pid)
    if start is None or abs(start - ctime) > _CTIME_TOLERANCE:
        return False
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
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
