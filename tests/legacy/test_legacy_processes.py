"""The legacy Locker across real OS processes: sharing, crashes, exclusion, waiting cost."""

from __future__ import annotations

import multiprocessing
import os
import signal
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import _legacy_workers as workers
import pytest

from pylocker.legacy import Locker
from pylocker.legacy._record import Record, decode

CTX = multiprocessing.get_context("spawn")
START = 30.0  # bound for a spawned child to start and report


@pytest.fixture
def spawn() -> Iterator[Callable[..., Any]]:
    """Start a child running ``target(*args)``; every child is killed (by pid) and joined at the end."""
    started: list[Any] = []

    def start(target: Callable[..., None], *args: Any) -> Any:
        process = CTX.Process(target=target, args=args, daemon=True)
        process.start()
        started.append(process)
        return process

    yield start
    for process in started:
        if process.is_alive() and process.pid is not None:
            os.kill(process.pid, signal.SIGKILL)
        process.join(10)


def _record(path: Path) -> Record:
    return decode(path.read_bytes())


def _wait_until(predicate: Callable[[], bool], timeout: float = START) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        threading.Event().wait(0.005)


def test_the_pass_is_shared_across_processes(tmp_path: Path, spawn: Callable[..., Any]) -> None:
    path = str(tmp_path / "x.lock")
    acquired, release, results = CTX.Event(), CTX.Event(), CTX.Queue()
    child = spawn(workers.hold, path, "shared", acquired, release, results)
    assert acquired.wait(START)
    assert results.get(timeout=START)[2] == (True, 0)

    mine = Locker(None, "shared", lockPath=path)
    assert mine.acquire_lock() == (True, 1)  # the child's lock, shared by pass
    spawn(workers.try_acquire, path, "other", 0.3, results)
    assert results.get(timeout=START)[:2] == (False, 3)

    release.set()
    assert results.get(timeout=START)[2] == (True, 2)
    child.join(START)
    assert [e.pid for e in _record(tmp_path / "x.lock").holders] == [os.getpid()]  # still held by us
    spawn(workers.try_acquire, path, "other", 0, results)
    assert results.get(timeout=START)[:2] == (False, 3)

    assert mine.release_lock() == (True, 2)
    spawn(workers.try_acquire, path, "other", 5, results)
    assert results.get(timeout=START)[:2] == (True, 0)


def test_release_with_another_pass_is_refused_across_processes(tmp_path: Path, spawn: Callable[..., Any]) -> None:
    path = str(tmp_path / "x.lock")
    acquired, release, results = CTX.Event(), CTX.Event(), CTX.Queue()
    spawn(workers.hold, path, "theirs", acquired, release, results)
    assert acquired.wait(START)
    results.get(timeout=START)
    assert Locker(None, "mine", lockPath=path).release_lock() == (False, 4)
    release.set()
    assert results.get(timeout=START)[2] == (True, 2)


@pytest.mark.parametrize("reap", [True, False], ids=["reaped", "zombie"])
def test_a_killed_holder_does_not_block_a_waiter(tmp_path: Path, spawn: Callable[..., Any], reap: bool) -> None:
    path = str(tmp_path / "x.lock")
    acquired, never = CTX.Event(), CTX.Event()
    holder = spawn(workers.hold_until_killed, path, "holder", acquired, never)
    assert acquired.wait(START)

    waiter = Locker(None, "waiter", lockPath=path, timeout=20)
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(waiter.acquire_lock()))
    thread.start()
    _wait_until(lambda: bool(_record(tmp_path / "x.lock").queue))  # blocked behind the holder
    killed = time.monotonic()
    os.kill(holder.pid, signal.SIGKILL)
    if reap:
        holder.join(START)
    thread.join(START)
    detected = time.monotonic() - killed
    assert result == [(True, 2)]  # the dead holder's lock was broken
    assert detected < 2.0
    holder.join(START)
    waiter.release_lock()


def test_a_killed_waiter_does_not_block_the_queue(tmp_path: Path, spawn: Callable[..., Any]) -> None:
    path = tmp_path / "x.lock"
    owner = Locker(None, "owner", lockPath=str(path))
    owner.acquire_lock()
    results = CTX.Queue()
    doomed = spawn(workers.try_acquire, str(path), "doomed", 30.0, results)
    _wait_until(lambda: len(_record(path).queue) == 1)
    later = Locker(None, "later", lockPath=str(path), timeout=20)
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(later.acquire_lock()))
    thread.start()
    _wait_until(lambda: len(_record(path).queue) == 2)
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.join(START)
    released = time.monotonic()
    owner.release_lock()  # may hand the lock to the dead waiter first
    thread.join(START)
    assert result
    assert result[0][0] is True
    assert time.monotonic() - released < 2.0
    later.release_lock()


def test_distinct_passes_exclude_and_share_fairly(tmp_path: Path, spawn: Callable[..., Any]) -> None:
    counter, marker = tmp_path / "counter", tmp_path / "inside"
    counter.write_bytes(b"0")
    n = 4
    start, results = CTX.Barrier(n), CTX.Queue()  # all start together, for a fair race
    for i in range(n):
        spawn(
            workers.increment,
            str(tmp_path / "x.lock"),
            str(counter),
            str(marker),
            f"p{i}",
            1.5,
            start,
            results,
        )
    reports = [results.get(timeout=START + 10) for _ in range(n)]
    done = [r[1] for r in reports]
    assert sum(r[2] for r in reports) == 0, "two processes were inside the lock at once"
    assert sum(r[3] for r in reports) == 0
    assert int(counter.read_bytes()) == sum(done), "an update was lost"
    assert min(done) >= 0.3 * max(done), f"unfair shares {done}"


def test_a_waiter_sleeps_and_wakes_fast(tmp_path: Path, spawn: Callable[..., Any]) -> None:
    path = tmp_path / "x.lock"
    owner = Locker(None, "owner", lockPath=str(path))
    handovers, cpu_shares = [], []
    for _ in range(3):
        owner.acquire_lock()
        ready, results = CTX.Event(), CTX.Queue()
        spawn(workers.wait_and_measure, str(path), 10.0, ready, results)
        assert ready.wait(START)
        _wait_until(lambda: bool(_record(path).queue))
        threading.Event().wait(0.5)  # let it wait: its CPU over this time is what we measure
        released = time.monotonic()
        owner.release_lock()
        acquired, code, cpu, wall, returned = results.get(timeout=START)
        assert (acquired, code) == (True, 0)
        handovers.append(returned - released)
        cpu_shares.append(cpu / wall)
    assert statistics.median(handovers) < 0.05  # the benchmark measures it; here: no polling sleep
    assert statistics.median(cpu_shares) < 0.05  # at most 5% of a core while waiting


def test_a_timed_out_waiter_returns_on_time_without_spinning(tmp_path: Path, spawn: Callable[..., Any]) -> None:
    path = tmp_path / "x.lock"
    owner = Locker(None, "owner", lockPath=str(path))
    owner.acquire_lock()
    ready, results = CTX.Event(), CTX.Queue()
    spawn(workers.wait_and_measure, str(path), 1.0, ready, results)
    acquired, code, cpu, wall, _ = results.get(timeout=START)
    assert (acquired, code) == (False, 3)
    assert 1.0 <= wall < 1.5
    assert cpu / wall < 0.05
    assert _record(path).queue == []
    owner.release_lock()
