"""Real OS processes on loopback: mutual exclusion, handover, election."""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

import pytest

import _workers
from pylocker import ServerLocker

pytestmark = pytest.mark.integration
SPAWN = multiprocessing.get_context("spawn")


def _join_all(processes: list[Any], timeout: float = 60) -> None:
    for process in processes:
        process.join(timeout)
    for process in processes:
        if process.is_alive():
            process.kill()
            process.join(5)
    assert all(process.exitcode == 0 for process in processes), [p.exitcode for p in processes]


def test_four_clients_increment_a_counter_file_exactly(serving: ServerLocker, server_file: str, tmp_path: Any) -> None:
    counter = str(tmp_path / "counter")
    open(counter, "w").close()
    results = SPAWN.Queue()
    workers = [SPAWN.Process(target=_workers.increment, args=(server_file, counter, 200, results))
               for _ in range(4)]
    for worker in workers:
        worker.start()
    reports = [results.get(timeout=90) for _ in workers]
    _join_all(workers)
    assert sorted(role for _, role, _ in reports) == ["client"] * 4
    assert sum(done for _, _, done in reports) == 800
    with open(counter) as handle:
        assert int(handle.read()) == 800
    assert serving.lockedPaths == {}


def test_ten_lockers_started_together_elect_exactly_one_server(server_file: str, tmp_path: Any) -> None:
    counter = str(tmp_path / "counter")
    open(counter, "w").close()
    results, barrier, finished = SPAWN.Queue(), SPAWN.Barrier(10), SPAWN.Event()
    workers = [SPAWN.Process(target=_workers.increment,
                             args=(server_file, counter, 20, results, barrier, finished))
               for _ in range(10)]
    for worker in workers:
        worker.start()
    try:
        reports = [results.get(timeout=90) for _ in workers]
    finally:
        finished.set()
    _join_all(workers)
    roles = sorted(role for _, role, _ in reports)
    assert roles == ["client"] * 9 + ["server"]
    assert sum(done for _, _, done in reports) == 200
    with open(counter) as handle:
        assert int(handle.read()) == 200  # the nine clients shared the server's locks


def test_blocked_waiter_is_handed_the_lock_on_release_without_spinning(serving: ServerLocker,
                                                                        server_file: str) -> None:
    started, release, released_at, results = SPAWN.Queue(), SPAWN.Event(), SPAWN.Queue(), SPAWN.Queue()
    holder = SPAWN.Process(target=_workers.hold, args=(server_file, "shared", started, release, released_at))
    holder.start()
    assert started.get(timeout=30) is True
    waiter = SPAWN.Process(target=_workers.wait_for_lock, args=(server_file, "shared", 30, results))
    waiter.start()
    kind, _, _ = results.get(timeout=30)
    assert kind == "waiting"
    # Let the waiter sit blocked for a while, then release: it must not have burnt CPU meanwhile.
    _wait_until_queued(serving, "shared")
    release.wait(1.0)  # not set by anyone: a one-second bounded wait while the waiter is blocked
    release.set()
    release_time = released_at.get(timeout=30)
    granted, granted_at, cpu = results.get(timeout=30)
    _join_all([holder, waiter])
    assert granted is True
    handover = granted_at - release_time
    assert 0 <= handover < 0.1, f"handover took {handover * 1000:.1f} ms"
    assert cpu < 0.1, f"a blocked waiter used {cpu:.3f} s of CPU"


def _wait_until_queued(serving: ServerLocker, name: str) -> None:
    from conftest import wait_for

    server = serving.node.server
    assert server is not None
    wait_for(lambda: server.waiters(name))


def test_stopped_client_frees_its_locks_for_others(serving: ServerLocker, make_locker: Any) -> None:
    client = make_locker(allowServing=False)
    ok, lock_id = client.acquire_lock("a")
    assert ok
    client.stop()
    from conftest import wait_for

    wait_for(lambda: serving.lockedPaths == {})
    assert serving.acquire_lock("a", timeout=1)[0] is True


def test_server_process_pid_in_fingerprint(serving: ServerLocker) -> None:
    unique, timestamp, address, port, pid = serving.get_running_server_fingerprint()
    assert unique == serving.uniqueName and pid == os.getpid()
    assert address == "127.0.0.1" and int(port) == serving.port and float(timestamp) > 0
