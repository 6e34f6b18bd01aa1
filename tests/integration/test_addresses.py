"""ipc:// and inproc:// through the public API: serving, finding the server, connecting by URL."""

from __future__ import annotations

import multiprocessing
import os
import stat
import threading
from typing import Any, Callable

import _workers
import pytest
from conftest import PASSWORD

from pylocker import AddressError, ServerLocker

pytestmark = pytest.mark.integration
SPAWN = multiprocessing.get_context("spawn")


def _join_all(processes: list[Any], timeout: float = 60) -> None:
    for process in processes:
        process.join(timeout)
    for process in processes:
        if process.is_alive():
            process.kill()
            raise AssertionError(f"worker {process.pid} did not finish")
        assert process.exitcode == 0


@pytest.fixture
def ipc_path(tmp_path: Any) -> str:
    return os.path.join(str(tmp_path), "locks.sock")


def test_worker_processes_share_an_ipc_server_found_through_the_server_file(
        make_locker: Callable[..., ServerLocker], server_file: str, ipc_path: str, tmp_path: Any) -> None:
    server = make_locker(listen_address=f"ipc://{ipc_path}")
    assert server.isServer
    assert server.serverAddress == f"ipc://{ipc_path}"
    assert stat.S_IMODE(os.stat(ipc_path).st_mode) == 0o600  # no other user may even connect
    counter = str(tmp_path / "counter")
    with open(counter, "w") as handle:
        handle.write("0")
    results = SPAWN.Queue()
    workers = [SPAWN.Process(target=_workers.increment, args=(server_file, counter, 100, results, None, None, False))
               for _ in range(3)]
    for worker in workers:
        worker.start()
    _join_all(workers)
    reports = [results.get(timeout=5) for _ in workers]
    assert sorted(role for _, role, _ in reports) == ["client"] * 3
    assert sum(done for _, _, done in reports) == 300
    with open(counter) as handle:
        assert int(handle.read()) == 300  # no lost update: the lock held across processes


def test_a_locker_connects_by_ipc_url_and_contends_with_the_server(
        make_locker: Callable[..., ServerLocker], ipc_path: str) -> None:
    server = make_locker(listen_address=f"ipc://{ipc_path}")
    client = make_locker(serverFile=False, autoconnect=False)
    assert client.connect(f"ipc://{ipc_path}")  # no port: the URL says it all
    ok, lock_id = client.acquire_lock("x", timeout=2)
    assert ok
    assert server.acquire_lock("x", timeout=0.2) == (False, 0)
    assert client.release_lock(lock_id) == (True, 1)
    ok, server_lock = server.acquire_lock("x", timeout=2)
    assert ok
    other = make_locker(serverFile=False, autoconnect=False)
    assert other.start(f"ipc://{ipc_path}")  # start() takes a URL too
    assert other.acquire_lock("x", timeout=0.2) == (False, 0)
    server.release_lock(server_lock)


def test_lockers_of_one_process_share_an_inproc_server(make_locker: Callable[..., ServerLocker]) -> None:
    name = f"inproc://pylocker-test-{os.getpid()}-{threading.get_ident()}"
    server = make_locker(listen_address=name)
    assert server.isServer and server.serverAddress == name
    lockers = [make_locker() for _ in range(3)]
    assert all(locker.isClient for locker in lockers)
    counter = [0]
    overlaps = []
    inside = threading.Lock()

    def work(locker: ServerLocker) -> None:
        for _ in range(50):
            with locker.lock("counter", timeout=10):
                if not inside.acquire(blocking=False):
                    overlaps.append(1)
                    continue
                counter[0] += 1
                inside.release()

    threads = [threading.Thread(target=work, args=(locker,)) for locker in lockers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    assert overlaps == [] and counter[0] == 150
    assert lockers[0].publish_message("hello", receivers=[lockers[1].uniqueName])[0]
    assert lockers[1].wait_message("hello", timeout=5) is not None


def test_another_process_is_told_at_once_that_an_inproc_server_is_out_of_reach(
        make_locker: Callable[..., ServerLocker], server_file: str) -> None:
    server = make_locker(listen_address=f"inproc://pylocker-test-{os.getpid()}")
    assert server.isServer
    results = SPAWN.Queue()
    worker = SPAWN.Process(target=_workers.try_start, args=(server_file, results))
    worker.start()
    _join_all([worker])
    connected, took = results.get(timeout=5)
    assert connected is False
    assert took < 5  # not the 20 s connectTimeout: nothing can be reached, and it says so


@pytest.mark.parametrize("address", ["udp://h:1", "tcp://host", "ipc://relative/path", "tcp://2001:db8::1"])
def test_a_malformed_listen_address_is_refused_when_the_locker_is_made(address: str) -> None:
    with pytest.raises(AddressError):
        ServerLocker(PASSWORD, serverFile=False, autoconnect=False, listen_address=address)
