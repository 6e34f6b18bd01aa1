"""Functions run in child processes (spawn context) by the legacy Locker tests."""

from __future__ import annotations

import errno
import os
import time
from typing import Any

from pylocker.legacy import Locker

LONG = 60.0  # bound on every wait of a child, so a failed test never leaves one behind for long


def hold(lock_path: str, lock_pass: str, acquired: Any, release: Any, results: Any) -> None:
    """Acquire, report the code, hold until ``release`` is set, release and report that code."""
    locker = Locker(None, lock_pass, lockPath=lock_path, timeout=LONG)
    results.put(("acquire", os.getpid(), locker.acquire_lock()))
    acquired.set()
    release.wait(LONG)
    results.put(("release", os.getpid(), locker.release_lock()))


def hold_until_killed(lock_path: str, lock_pass: str, acquired: Any, never: Any) -> None:
    """Acquire and report through ``acquired``, then wait to be killed (SIGKILL) by the parent."""
    locker = Locker(None, lock_pass, lockPath=lock_path, timeout=LONG)
    if locker.acquire_lock()[0]:
        acquired.set()
    never.wait(LONG)


def try_acquire(lock_path: str, lock_pass: str, timeout: float, results: Any) -> None:
    """One acquire with ``timeout``; report its result and elapsed time, then release if acquired."""
    locker = Locker(None, lock_pass, lockPath=lock_path, timeout=timeout)
    start = time.monotonic()
    acquired, code = locker.acquire_lock()
    results.put((acquired, code if isinstance(code, int) else repr(code), time.monotonic() - start))
    if acquired:
        locker.release_lock()


def wait_and_measure(lock_path: str, timeout: float, ready: Any, results: Any) -> None:
    """Wait for the lock (held by the parent) and report (acquired, code, cpu seconds, wall seconds).

    Also reports, for a successful acquire, the monotonic time at which acquire returned, so the
    parent can compute the handover latency from its own release time (CLOCK_MONOTONIC is shared).
    """
    locker = Locker(None, "waiter", lockPath=lock_path, timeout=timeout)
    ready.set()
    cpu0, wall0 = time.process_time(), time.monotonic()
    acquired, code = locker.acquire_lock()
    wall1 = time.monotonic()
    cpu = time.process_time() - cpu0
    results.put((acquired, code, cpu, wall1 - wall0, wall1))
    if acquired:
        locker.release_lock()


def _read_int(path: str) -> int:
    with open(path, "rb") as handle:
        text = handle.read()
    return int(text) if text else 0


def _write_int(path: str, value: int) -> None:
    with open(path, "wb") as handle:
        handle.write(str(value).encode())


def increment(
    lock_path: str,
    counter: str,
    marker: str,
    lock_pass: str,
    duration: float,
    start: Any,
    results: Any,
) -> None:
    """Increment ``counter`` under the lock for ``duration`` seconds after the ``start`` barrier.

    Inside the critical section a marker file is created with O_EXCL (a kernel-checked witness):
    if it already exists, another process is inside too, and that overlap is counted. Reports
    (pid, increments, overlaps, failed acquires).
    """
    locker = Locker(None, lock_pass, lockPath=lock_path, timeout=LONG)
    done = overlaps = failures = 0
    start.wait(LONG)
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        acquired, _ = locker.acquire_lock()
        if not acquired:
            failures += 1
            continue
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except OSError as err:
            if err.errno != errno.EEXIST:
                raise
            overlaps += 1
            fd = -1
        _write_int(counter, _read_int(counter) + 1)
        done += 1
        if fd >= 0:
            os.close(fd)
            os.unlink(marker)
        locker.release_lock()
    results.put((os.getpid(), done, overlaps, failures))
