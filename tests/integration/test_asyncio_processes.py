"""AsyncServerLocker against lockers in other OS processes (spawned, on loopback).

The serving locker, a lock holder, a receiver: each in its own process; the event loop
here waits on them without a thread per call. Every process is stopped (or killed, by
its own pid) and joined; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Coroutine, Iterator
from typing import Any, Callable, TypeVar

import _workers
import pytest
from _agent import Agent
from conftest import PASSWORD

from pylocker import LockLost, ServerLocker
from pylocker.asyncio import AsyncServerLocker

pytestmark = pytest.mark.integration
SPAWN = multiprocessing.get_context("spawn")
LEASE = 1.0
T = TypeVar("T")


@contextlib.contextmanager
def serving_process(server_file: str, killed: bool = False, **kwargs: Any) -> Iterator[Any]:
    """A serving locker in its own process; yields the process.

    ``killed``: the test kills it with -9, so it waits on an Event nobody sets (a process
    killed inside ``Event.wait`` can leave that Event's shared lock held for good).
    """
    ready, finished = SPAWN.Queue(), SPAWN.Event()
    server = SPAWN.Process(target=_workers.serve, args=(server_file, ready, finished, kwargs))
    server.start()
    try:
        _, port = ready.get(timeout=30)
        assert port is not None
        yield server
    finally:
        if not killed:
            finished.set()
        server.join(0 if killed else 20)
        if server.is_alive():
            server.kill()
            server.join(5)


def run(coroutine: Coroutine[Any, Any, T], timeout: float = 50.0) -> T:
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


async def until(predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (value := predicate()):
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.01)
    return value


async def waiters(locker: AsyncServerLocker, name: str) -> int:
    return len((await locker.lock_info(name)).waiters)


def client(server_file: str, **kwargs: Any) -> AsyncServerLocker:
    return AsyncServerLocker(PASSWORD, name="async", serverFile=server_file, allowServing=False,
                             connectTimeout=20, **kwargs)


def test_locks_against_a_serving_locker_in_another_process(server_file: str) -> None:
    count = 200
    with serving_process(server_file, maxLockTime=0.5):
        holder = Agent(server_file, "holder")
        try:
            async def main() -> None:
                async with client(server_file) as locker:
                    assert locker.isClient
                    ok, lock_id = await locker.acquire_lock(["a", "b"], timeout=5)
                    assert ok
                    assert holder.acquire_lock("b", timeout=0.1) == (False, 0)
                    assert await locker.release_lock(lock_id) == (True, 1)

                    # Many waiters in one loop, served in the order they were queued, no thread each.
                    ok, held = holder.acquire_lock("busy", timeout=5)
                    assert ok
                    baseline = threading.active_count()
                    order: list[int] = []

                    async def wait_turn(index: int) -> None:
                        async with locker.lock("busy", timeout=60):
                            order.append(index)

                    tasks = [asyncio.ensure_future(wait_turn(index)) for index in range(count)]
                    await asyncio.wait_for(_until_waiting(locker, "busy", count), 20)
                    assert threading.active_count() <= baseline  # not one thread per waiting acquire
                    assert holder.release_lock(held) == (True, 1)
                    await asyncio.gather(*tasks)
                    assert order == list(range(count))  # one connection: its requests keep their order

                    # Cancelled: withdrawn at the remote server; the next locker gets in at once.
                    ok, held = holder.acquire_lock("c", timeout=5)
                    task = asyncio.ensure_future(locker.acquire_lock("c", timeout=None))
                    await asyncio.wait_for(_until_waiting(locker, "c", 1), 10)
                    task.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await task
                    assert (await locker.lock_info("c")).waiters == []
                    assert holder.release_lock(held) == (True, 1)
                    assert holder.lock_info("c").holders == []
                    ok, held = holder.acquire_lock("c", timeout=0)
                    assert ok
                    assert holder.release_lock(held) == (True, 1)

                    # maxLockTime of the remote server: the holder's task is told, and the block's end.
                    lock = locker.lock("short", timeout=5)
                    await lock.__aenter__()
                    await asyncio.wait_for(lock.lost.wait(), 10)
                    assert lock.lost_reason == "maxLockTime"
                    with pytest.raises(LockLost):
                        await lock.__aexit__(None, None, None)

            run(main())
        finally:
            holder.stop()


async def _until_waiting(locker: AsyncServerLocker, name: str, count: int) -> None:
    while await waiters(locker, name) != count:
        await asyncio.sleep(0.01)


def test_messages_with_a_locker_in_another_process(server_file: str) -> None:
    with serving_process(server_file):
        other = Agent(server_file, "other")
        try:
            async def main() -> None:
                async with client(server_file) as locker:
                    stream = locker.messages_stream("m-")
                    numbered = locker.messages_stream()
                    other.publish_message("hello", receivers=[locker.uniqueName], payload=[1, "x"])
                    got = await locker.wait_message("hello", timeout=10)
                    assert got is not None
                    assert got["payload"] == [1, "x"]
                    assert got["sender"] == other.unique_name
                    ok, _ = await locker.publish_message("back", receivers=[other.unique_name], payload=2,
                                                         toSelf=False)
                    assert ok
                    assert other.wait_message("back", timeout=10)["payload"] == 2
                    other.publish_many(500, receivers=[locker.uniqueName])
                    seen = [publication["payload"] async for publication in _first(numbered, 501)]
                    assert seen[0] == [1, "x"]
                    assert seen[1:] == list(range(500))
                    await stream.aclose()

            run(main())
        finally:
            other.stop()


async def _first(stream: Any, count: int) -> Any:
    async for publication in stream:
        yield publication
        count -= 1
        if not count:
            return


@pytest.mark.parametrize("serving_here", [False, True], ids=["client-publisher", "serving-publisher"])
def test_a_frozen_receiver_slows_an_async_publisher_but_not_its_loop(server_file: str, serving_here: bool) -> None:
    # The publisher waits for credit (its queue full, or the serving locker's window) on a
    # hook, not on a thread: the loop keeps ticking meanwhile.
    total, padding = 30_000, "x" * 1000
    context = contextlib.nullcontext() if serving_here else serving_process(server_file)
    with context:
        async def main() -> tuple[float, float]:
            publisher = AsyncServerLocker(PASSWORD, name="publisher", serverFile=server_file, port=0,
                                          connectTimeout=20, allowServing=serving_here)
            async with publisher:
                assert publisher.isServer is serving_here
                bob = await asyncio.get_running_loop().run_in_executor(
                    None, lambda: Agent(server_file, "bob", mailbox_size=100_000))
                try:
                    ticks: list[float] = []
                    stop = asyncio.Event()

                    async def tick() -> None:
                        while not stop.is_set():
                            ticks.append(time.monotonic())
                            await asyncio.sleep(0.01)

                    ticker = asyncio.ensure_future(tick())
                    os.kill(bob.process.pid, signal.SIGSTOP)
                    thaw = threading.Timer(2.0, os.kill, (bob.process.pid, signal.SIGCONT))
                    thaw.start()
                    started = time.monotonic()
                    try:
                        for index in range(total):
                            ok, _ = await publisher.publish_message(f"m-{index}", receivers=[bob.unique_name],
                                                                    toSelf=False, payload=padding)
                            assert ok
                        publishing = time.monotonic() - started
                    finally:
                        thaw.join()
                    stop.set()
                    await ticker
                    gaps = [later - earlier for earlier, later in zip(ticks, ticks[1:]) if earlier >= started]
                    assert await asyncio.get_running_loop().run_in_executor(
                        None, lambda: bob.wait_message(f"m-{total - 1}", timeout=30)) is not None
                    assert len(bob.messages()) == total
                    assert bob.dropped_messages() == 0
                    return publishing, max(gaps)
                finally:
                    bob.stop()

        publishing, longest_gap = run(main(), timeout=90)
    assert publishing > 1.0  # it waited for bob ...
    assert longest_gap < 0.5  # ... and the loop went on meanwhile


@pytest.mark.timeout(120)
def test_async_waiters_outlast_a_kill_9_of_the_serving_process(server_file: str) -> None:
    with serving_process(server_file, killed=True, lease=LEASE) as first:
        holder = ServerLocker(PASSWORD, name="holder", serverFile=server_file, port=0, reconnect=True, lease=LEASE)
        try:
            ok, held = holder.acquire_lock("x")
            assert ok

            async def main() -> None:
                async with client(server_file, reconnect=True, lease=LEASE) as locker:
                    assert locker.isClient
                    served: list[int] = []

                    async def wait_turn(index: int) -> None:
                        async with locker.lock("x", timeout=30):
                            served.append(index)

                    tasks = [asyncio.ensure_future(wait_turn(index)) for index in range(20)]
                    await asyncio.wait_for(_until_waiting(locker, "x", 20), 10)
                    baseline = threading.active_count()
                    os.kill(first.pid, signal.SIGKILL)
                    # The holder takes over and re-claims 'x'; the waiters ask the new server again.
                    await until(lambda: holder.isServer and locker.isClient, timeout=30)
                    await asyncio.wait_for(_until_waiting(locker, "x", 20), 20)
                    assert served == []  # 'x' was re-claimed by its holder: never granted twice
                    assert threading.active_count() <= baseline + 1  # (its failover thread, if not gone yet)
                    assert holder.release_lock(held) == (True, 1)
                    await asyncio.gather(*tasks)
                    assert sorted(served) == list(range(20))

            run(main(), timeout=100)
        finally:
            holder.stop()
