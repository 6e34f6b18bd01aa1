"""AsyncServerLocker within one process: a serving locker and clients on loopback, one event loop.

Both links are covered: the serving locker's own (its in-process server) and a client's
(a connection). Every wait is bounded; nothing sleeps to synchronise (``until`` polls a
condition against a deadline, like conftest's ``wait_for``).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Coroutine
from typing import Any, Callable, TypeVar

import pytest
from conftest import PASSWORD, wait_for

from pylocker import LimitMismatch, LockLost, LockTimeout, ServerLocker
from pylocker.asyncio import AsyncServerLocker

pytestmark = pytest.mark.integration
T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T], timeout: float = 40.0) -> T:
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


async def until(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll ``predicate`` on the loop until it is truthy (fails after ``timeout``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.005)


async def until_async(predicate: Callable[[], Awaitable[Any]], timeout: float = 10.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.005)


def lockers(server_file: str, count: int = 2, **kwargs: Any) -> list[AsyncServerLocker]:
    """A serving locker first, then clients (not started: ``async with`` starts them in order)."""
    return [AsyncServerLocker(PASSWORD, name=f"async-{index}", serverFile=server_file, port=0, connectTimeout=10,
                              allowServing=index == 0, **kwargs) for index in range(count)]


def test_acquire_and_release_codes_on_both_links(server_file: str) -> None:
    async def main() -> None:
        server, client = lockers(server_file)
        async with server, client:
            assert server.isServer
            assert client.isClient
            for locker, other in ((server, client), (client, server)):
                ok, lock_id = await locker.acquire_lock(["a", "b"], timeout=5)
                assert ok
                assert locker.ownedLocks == {lock_id: ["a", "b"]}
                assert await other.acquire_lock("b", timeout=0.2) == (False, 0)
                assert await locker.release_lock(lock_id) == (True, 1)
                assert await locker.release_lock(lock_id) == (True, 0)
                assert await locker.release_lock("nobody-has-this") == (True, 0)  # asks the server
                assert locker.ownedLocks == {}
                ok, first = await locker.acquire_lock("g", lockGlobal=True)
                assert await locker.acquire_lock("g", lockGlobal=True) == (True, first)
                assert await locker.release_lock(first) == (True, 1)
            ok, lock_id = await client.acquire("alias", timeout=5)  # the seed's aliases
            assert ok
            assert await client.release(lock_id) == (True, 1)
            assert (await server.publish("said", toSelf=True))[0]
            assert server.has_message("said")
            with pytest.raises(TypeError):
                await client.release_lock(3)  # type: ignore[arg-type]
        assert await client.acquire_lock("a", timeout=1) == (False, 2)  # stopped
        assert await client.release_lock("x") == (False, 3)

    run(main())


def test_async_with_lock_raises_lock_timeout_and_gives_a_token(server_file: str) -> None:
    async def main() -> None:
        server, client = lockers(server_file)
        async with server, client:
            async with client.lock(["x", "y"], timeout=5) as lock:
                assert lock.is_acquired
                assert lock.token is not None
                info = await server.lock_info("x")
                assert [h.unique_name for h in info.holders] == [client.uniqueName]
                with pytest.raises(LockTimeout):
                    async with server.lock("y", timeout=0.2):
                        pass
            async with server.lock("x", timeout=1, shared=True) as a, client.lock("x", timeout=1, shared=True) as b:
                assert a.token != b.token
                assert [h.mode for h in (await client.lock_info("x")).holders] == ["shared", "shared"]
            assert not lock.is_acquired
            assert client.ownedLocks == {}
            assert server.ownedLocks == {}

    run(main())


def test_many_waiting_acquires_are_served_in_order_without_threads(server_file: str) -> None:
    count = 250

    async def main() -> None:
        server, client = lockers(server_file)
        async with server, client:
            holder = server.locker  # the threaded API beside the async one, on the same locker
            ok, held = holder.acquire_lock("busy")
            assert ok
            baseline = threading.active_count()
            order: list[int] = []

            async def wait_turn(index: int, locker: AsyncServerLocker) -> None:
                async with locker.lock("busy", timeout=60):
                    order.append(index)

            tasks = []
            for index in range(count):
                tasks.append(asyncio.ensure_future(wait_turn(index, client if index % 3 else server)))
                # The serving locker's own requests join its queue at once, a client's when they
                # arrive: each one is in before the next is made, so the queue's order is ``index``.
                await until_async(lambda: _waiting(server, "busy", index + 1))  # noqa: B023
            during = threading.active_count()
            assert during <= baseline + 1, (baseline, during)  # no thread per waiting call
            assert holder.release_lock(held) == (True, 1)
            await asyncio.gather(*tasks)
            assert order == list(range(count))
            assert threading.active_count() <= baseline + 1

    run(main(), timeout=55)


async def _waiting(locker: AsyncServerLocker, name: str, count: int) -> bool:
    return len((await locker.lock_info(name)).waiters) == count


@pytest.mark.parametrize("waiter_index", [0, 1], ids=["serving-locker", "client"])
def test_a_cancelled_acquire_is_withdrawn_at_the_server(server_file: str, waiter_index: int) -> None:
    async def main() -> None:
        async_lockers = lockers(server_file, 3)
        async with async_lockers[0], async_lockers[1], async_lockers[2]:
            waiter = async_lockers[waiter_index]
            holder, third = (x for i, x in enumerate(async_lockers) if i != waiter_index)
            ok, held = await holder.acquire_lock("c")
            assert ok
            task = asyncio.ensure_future(waiter.acquire_lock("c", timeout=None))
            await until_async(lambda: _waiting(holder, "c", 1))
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # Requests leave in order: the withdrawal is in before this look.
            assert (await waiter.lock_info("c")).waiters == []
            assert await holder.release_lock(held) == (True, 1)
            assert (await holder.lock_info("c")).holders == []  # (the release left before this look)
            assert (await third.acquire_lock("c", timeout=0))[0] is True  # at once: nobody queued before it
            # The timeout of asyncio.wait_for cancels the same way.
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(waiter.acquire_lock("c", timeout=30), 0.2)
            assert (await waiter.lock_info("c")).waiters == []
            assert waiter.ownedLocks == {}

    run(main())


@pytest.mark.parametrize("waiter_index", [0, 1], ids=["serving-locker", "client"])
def test_a_grant_that_arrives_as_the_acquire_is_cancelled_is_released(server_file: str, waiter_index: int) -> None:
    async def main() -> None:
        async_lockers = lockers(server_file, 3, maxLockTime=60)
        async with async_lockers[0], async_lockers[1], async_lockers[2]:
            waiter = async_lockers[waiter_index]
            holder, third = (x for i, x in enumerate(async_lockers) if i != waiter_index)
            serving = async_lockers[0].locker
            ok, held = await holder.acquire_lock("late")
            assert ok
            task = asyncio.ensure_future(waiter.acquire_lock("late", timeout=30))
            await until_async(lambda: _waiting(holder, "late", 1))
            # Block the loop (so the task cannot see its answer) while the lock is granted to it.
            holder.locker.release_lock(held)
            wait_for(lambda: (serving.lockedPaths or {}).get("late", {}).get("clientUniqueName")
                     == waiter.uniqueName)
            lock_id = serving.lockedPaths["late"]["lockId"]
            link = waiter.node.link
            assert link is not None
            if waiter_index:  # the grant reached the client's connection (its maxLockTime clock started)
                wait_for(lambda: link.expiry(lock_id) is not None)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await until(lambda: "late" not in (serving.lockedPaths or {}))
            assert waiter.ownedLocks == {}
            assert (await third.acquire_lock("late", timeout=0))[0] is True

    run(main())


@pytest.mark.parametrize("holder_index", [0, 1], ids=["serving-locker", "client"])
def test_a_lost_lock_is_told_to_its_holder(server_file: str, holder_index: int) -> None:
    async def main() -> None:
        async_lockers = lockers(server_file, 2, maxLockTime=0.3)
        async with async_lockers[0], async_lockers[1]:
            locker = async_lockers[holder_index]
            lock = locker.lock("short", timeout=5)
            await lock.__aenter__()
            await asyncio.wait_for(lock.lost.wait(), 10)  # told while the block runs
            assert lock.lost_reason == "maxLockTime"
            assert not lock.is_acquired
            with pytest.raises(LockLost) as raised:  # and the block's end says so
                await lock.__aexit__(None, None, None)
            assert raised.value.reason == "maxLockTime"
            ok, lock_id = await locker.acquire_lock("short", timeout=5)
            assert ok
            await until(lambda: locker.lost_reason(lock_id) is not None)
            assert await locker.release_lock(lock_id) == (True, 0)

    run(main())


def test_messages_round_trip_and_stream(server_file: str) -> None:
    async def main() -> None:
        server, client = lockers(server_file)
        async with server, client:
            waiting = asyncio.ensure_future(client.wait_message("hello", timeout=10, pop=True))
            await asyncio.sleep(0)
            ok, _ = await server.publish_message("hello", payload={"n": 1}, toSelf=False)
            assert ok
            got = await waiting
            assert got is not None
            assert got["payload"] == {"n": 1}
            assert got["sender"] == server.uniqueName
            assert client.get_message("hello") is None  # popped
            assert await client.wait_message("nothing", timeout=0.1) is None
            stream = client.messages_stream("s")
            others = server.messages_stream()
            assert (await server.publish_messages([f"s-{i}" for i in range(3)]))[0]
            for index in range(5):
                await server.publish_message("s", payload=index, toSelf=index % 2 == 0)
            received = []
            async for publication in stream:
                received.append(publication["payload"])
                if len(received) == 5:
                    break
            assert received == list(range(5))
            assert [(await others.__anext__())["message"] for _ in range(3)] == ["s-0", "s-1", "s-2"]
            await stream.aclose()
            with pytest.raises(StopAsyncIteration):
                await stream.__anext__()
            ended = asyncio.ensure_future(_drain(client.messages_stream()))
            await client.publish_message("to-all", toSelf=True)
            await until(lambda: client.get_message("to-all") is not None)
        assert await asyncio.wait_for(ended, 10) >= 1  # stop() ended it

    run(main())


async def _drain(stream: Any) -> int:
    count = 0
    async for _ in stream:
        count += 1
    return count


def test_semaphore_basics(server_file: str) -> None:
    async def main() -> None:
        server, client = lockers(server_file)
        async with server, client:
            api = client.semaphore("api", 2)
            async with api.acquire(timeout=5) as first:
                second = await server.semaphore("api", 2).acquire(timeout=5)
                assert first.token is not None
                assert second.token is not None
                assert first.token < second.token
                info = await api.info()
                assert info.name == "api"
                assert len(info.holders) == 2
                with pytest.raises(LockTimeout):
                    await api.acquire(timeout=0.2)
                with pytest.raises(LimitMismatch):
                    await client.semaphore("api", 3).acquire(timeout=1)
                await second.release()
            async with api as slot:
                assert slot.is_acquired
                assert len((await api.info()).holders) == 1
            assert (await api.info()).holders == []
            async with client.lock_any(["p-1", "p-2"], timeout=5) as one, server.lock_any(["p-1", "p-2"]) as two:
                assert {one.name, two.name} == {"p-1", "p-2"}

    run(main())


def test_election_basics(server_file: str) -> None:
    async def main() -> None:
        server, a, b = lockers(server_file, 3)
        async with server, a, b:
            names = {a.uniqueName: "a", b.uniqueName: "b", None: None}
            ea, eb = a.election("scheduler"), b.election("scheduler")
            seen: list[str | None] = []
            told = asyncio.Event()

            async def changed(leader: str | None) -> None:  # an async callback, on this loop
                seen.append(names[leader])
                told.set()

            await eb.on_change(changed)
            token = await ea.campaign(timeout=5)
            assert ea.is_leader
            assert ea.token == token
            assert names[await eb.leader] == "a"
            with pytest.raises(LockTimeout):
                await eb.campaign(timeout=0.2)
            campaign = asyncio.ensure_future(eb.campaign(timeout=10))
            await until_async(lambda: _waiting_for(ea, 1))
            await ea.resign()
            assert await campaign > token
            assert eb.is_leader
            assert not ea.is_leader
            await until(lambda: seen == ["a", "b"])
            await eb.resign()
            await until(lambda: seen == ["a", "b", None])
            await eb.close()
            await ea.close()

    run(main())


async def _waiting_for(held: Any, count: int) -> bool:
    return len((await held.info()).waiters) == count


def test_group_basics(server_file: str) -> None:
    async def main() -> None:
        server, worker = lockers(server_file)
        async with server, worker:
            watch = server.group("workers")
            seen: list[list[str]] = []
            await watch.on_change(lambda members: seen.append(sorted(i["host"] for i in members.values())))
            me = worker.group("workers")
            await me.join({"host": "node-1", "pid": os.getpid()})
            assert me.joined
            assert [i["host"] for i in (await watch.members).values()] == ["node-1"]
            await me.join({"host": "node-1b"})  # joined again: the info is replaced
            await me.leave()
            assert not me.joined
            await until(lambda: seen and seen[-1] == [])
            assert seen[0] == ["node-1"]
            with pytest.raises(TypeError):
                await me.join(object())
            await me.close()
            await watch.close()

    run(main())


def test_beside_the_threaded_api_on_one_locker(server_file: str, make_locker: Any) -> None:
    threaded = make_locker()
    assert threaded.isServer

    async def main() -> None:
        async_locker = AsyncServerLocker.wrapping(threaded)
        assert async_locker.isServer
        ok, held = threaded.acquire_lock("both")
        waiting = asyncio.ensure_future(async_locker.acquire_lock("both", timeout=10))
        await until(lambda: threaded.node.server is not None and len(threaded.node.server.waiters("both")) == 1)
        assert threaded.release_lock(held) == (True, 1)
        ok, lock_id = await waiting
        assert ok
        assert threaded.ownedLocks == {lock_id: ["both"]}
        assert threaded.acquire_lock("both", timeout=0.1) == (False, 0)
        assert await async_locker.release_lock(lock_id) == (True, 1)

    run(main())
    assert threaded.isServer  # wrapping it did not stop it


def test_arguments_are_the_threaded_lockers(server_file: str) -> None:
    locker = AsyncServerLocker(PASSWORD, "named", server_file, 7, None, 0, True, True)
    assert locker.name == "named"
    assert locker.defaultTimeout == 7
    assert locker.locker.maxLockTime is None
    assert not locker.isServer  # never started by the constructor
    with pytest.raises(ValueError, match="blocking"):
        AsyncServerLocker(PASSWORD, serverFile=server_file, blocking=True)
    with pytest.raises(TypeError):
        AsyncServerLocker(PASSWORD, no_such_argument=1)
    with pytest.raises(TypeError):
        AsyncServerLocker.wrapping(object())  # type: ignore[arg-type]


def test_an_acquire_waits_out_a_failover(server_file: str) -> None:
    async def main() -> None:
        first = ServerLocker(PASSWORD, name="first", serverFile=server_file, port=0, connectTimeout=10)
        assert first.isServer
        client = AsyncServerLocker(PASSWORD, name="second", serverFile=server_file, port=0, connectTimeout=10,
                                   reconnect=True)
        async with client:
            assert client.isClient
            ok, _held = first.acquire_lock("f")
            assert ok
            baseline = threading.active_count()
            served: list[int] = []

            async def wait_turn(index: int) -> None:
                async with client.lock("f", timeout=20):
                    served.append(index)

            waiting = [asyncio.ensure_future(wait_turn(index)) for index in range(20)]
            await until_async(lambda: _waiting(client, "f", 20))
            await asyncio.get_running_loop().run_in_executor(None, first.stop)  # its lock goes with it
            await asyncio.gather(*waiting)
            assert client.isServer  # it took over, and its waiting acquires asked it again
            assert sorted(served) == list(range(20))
            assert threading.active_count() <= baseline + 2  # the new server's I/O thread, the executor's

    run(main(), timeout=55)
