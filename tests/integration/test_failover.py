"""Chaos with real processes: serving lockers killed with -9, a holder frozen past its lease."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import queue
import random
import signal
import statistics
import threading
import time
from typing import Any

import _workers
import pytest
from conftest import PASSWORD, wait_for

from pylocker import ServerLocker
from pylocker.election import serverfile

pytestmark = pytest.mark.integration
SPAWN = multiprocessing.get_context("spawn")
LEASE = 1.0
CLIENTS = 8
KILLS = 5

log = logging.getLogger(__name__)


def _server_pid(server_file: str) -> int | None:
    try:
        fp = serverfile.read(server_file)
    except serverfile.ServerFileError:
        return None
    return fp.pid if fp is not None else None


@pytest.mark.timeout(240)
def test_kill_9_of_the_server_and_a_frozen_holder_lose_nothing(server_file: str, tmp_path: Any) -> None:
    counter = str(tmp_path / "counter")
    open(counter, "w").close()
    # One queue per worker and a stop file, no lock shared between processes: a worker
    # killed -9 while holding one (a shared queue's, an Event's) stalls every other one.
    stop_file = str(tmp_path / "finished")
    channels: list[Any] = []
    workers: dict[int, Any] = {}

    def spawn_client() -> None:
        results = SPAWN.Queue()
        process = SPAWN.Process(target=_workers.chaos_client, args=(server_file, counter, results, stop_file, LEASE))
        process.start()
        workers[process.pid] = process
        channels.append(results)

    holds: list[tuple[int, int, float, float, bool]] = []
    events: list[tuple[str, int, Any]] = []

    def drain() -> None:
        for results in channels:
            try:
                while True:
                    kind, pid, data = results.get_nowait()
                    if kind == "hold":
                        holds.append((pid, *data))
                    else:
                        events.append((kind, pid, data))
            except queue.Empty:
                pass

    kills: list[float] = []
    sleeper = None
    rng = random.Random(1127)
    try:
        for _ in range(CLIENTS):
            spawn_client()
        wait_for(lambda: (drain(), len(holds) >= 20)[1], timeout=60)

        for _ in range(KILLS):
            wait_for(lambda: (drain(), _server_pid(server_file) in workers)[1], timeout=30)
            victim = _server_pid(server_file)
            assert victim in workers  # only ever a process this test started
            victim_epoch = serverfile.read(server_file).epoch
            seen = len(holds)
            wait_for(lambda: (drain(), len(holds) > seen)[1], timeout=30)  # it is busy serving
            threading.Event().wait(rng.uniform(0.2, 1.2))  # a random moment to kill at
            os.kill(victim, signal.SIGKILL)
            kills.append((time.monotonic(), victim_epoch))
            workers.pop(victim).join(10)
            wait_for(lambda: (drain(), _server_pid(server_file) not in (None, victim))[1], timeout=30)
            spawn_client()  # keep eight clients contending

        # A holder frozen past its lease: its write must be refused, and it must be told.
        resumed, results = SPAWN.Event(), SPAWN.Queue()
        channels.append(results)
        sleeper = SPAWN.Process(target=_workers.sleepy_holder, args=(server_file, counter, results, resumed, LEASE))
        sleeper.start()
        wait_for(lambda: (drain(), any(e[0] == "holding" for e in events))[1], timeout=60)
        assert next(e for e in events if e[0] == "holding")[2] is True
        os.kill(sleeper.pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        seen = len(holds)
        # Others get the lock once the lease lapses; then wake the sleeper up.
        wait_for(lambda: (drain(), len(holds) > seen + 3)[1], timeout=30)
        os.kill(sleeper.pid, signal.SIGCONT)
        resumed.set()
        wait_for(lambda: (drain(), any(e[0] == "sleeper" for e in events))[1], timeout=60)
        # The lease runs from the sleeper's last heartbeat, a fraction of a lease before the freeze.
        assert time.monotonic() - frozen_at > LEASE / 2
    finally:
        open(stop_file, "w").close()
        if sleeper is not None:
            os.kill(sleeper.pid, signal.SIGCONT) if sleeper.is_alive() else None
        for process in [*workers.values(), *([sleeper] if sleeper else [])]:
            process.join(20)
            if process.is_alive():
                process.kill()
                process.join(5)
        drain()

    with open(counter) as handle:
        state = json.load(handle)
    tokens = state["tokens"]
    # No lost update: every accepted write incremented what the previous one wrote.
    assert state["value"] == len(tokens) > 0
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)
    # No two holders ever overlapped (among the holds that wrote).
    written = sorted((granted, released) for _, _, granted, released, accepted in holds if accepted)
    overlaps = [(a, b) for a, b in zip(written, written[1:]) if b[0] < a[1]]
    assert overlaps == []
    # The frozen holder's stale write was refused, it was told, and its release says "not held".
    accepted, told, reasons, released, still_owned = next(e[2] for e in events if e[0] == "sleeper")
    assert accepted is False and told is True and reasons
    assert released == (True, 0) and still_owned is False
    # Every kill was followed by new grants, from a higher epoch.
    assert len(kills) == KILLS
    recoveries = []
    for killed_at, epoch in kills:
        after = [granted for _, token, granted, _, _ in holds
                 if token >> serverfile.TOKEN_EPOCH_SHIFT > epoch and granted > killed_at]
        assert after, "no grant after a server was killed"
        recoveries.append(min(after) - killed_at)
    median = statistics.median(recoveries)
    print(f"\nfailover: death to first new grant, median {median * 1000:.0f} ms, "
          f"max {max(recoveries) * 1000:.0f} ms over {len(kills)} kills; "
          f"(each: {[round(r * 1000) for r in recoveries]} ms); {len(tokens)} increments, {sum(1 for h in holds if not h[4])} refused")
    assert median < 3.0


def test_a_client_connected_by_address_reconnects_when_it_answers_again(server_file: str) -> None:
    # The first server gets an Event of its own: killing a process inside Event.wait can
    # leave that Event's shared lock held for good.
    ready, finished, never = SPAWN.Queue(), SPAWN.Event(), SPAWN.Event()
    # A lease long enough for a new process to start serving on a loaded machine: within it the
    # client must still believe in its lock, or there would be nothing to re-claim.
    lease = 5.0
    first = SPAWN.Process(target=_workers.serve, args=(server_file, ready, never, {"lease": lease}))
    first.start()
    _, port = ready.get(timeout=30)
    client = ServerLocker(PASSWORD, serverFile=False, autoconnect=False, reconnect=True, connectTimeout=5)
    second = None
    try:
        assert client.connect("127.0.0.1", port)
        ok, lock_id = client.acquire_lock("kept")
        assert ok
        os.kill(first.pid, signal.SIGKILL)
        first.join(10)
        wait_for(lambda: not client.isClient)
        # A new serving locker on the same port: the client finds it and re-claims its lock.
        second = SPAWN.Process(target=_workers.serve, args=(server_file, ready, finished,
                                                             {"lease": lease, "port": port}))
        second.start()
        assert ready.get(timeout=30)[1] == port
        wait_for(lambda: client.isClient, timeout=30)
        assert client.ownedLocks == {lock_id: ["kept"]}
        assert client.acquire_lock("kept", timeout=0.2) == (False, 0)  # still ours, so not free
        assert client.release_lock(lock_id) == (True, 1)
    finally:
        client.stop()
        finished.set()
        for process in (first, second):
            if process is not None:
                process.join(10)
                if process.is_alive():
                    process.kill()


def test_a_killed_client_loses_its_locks_after_its_lease(make_locker: Any, server_file: str) -> None:
    server = make_locker(lease=LEASE)
    started, release, released_at = SPAWN.Queue(), SPAWN.Event(), SPAWN.Queue()
    holder = SPAWN.Process(target=_workers.hold, args=(server_file, "held", started, release, released_at))
    holder.start()
    try:
        assert started.get(timeout=30) is True
        os.kill(holder.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        ok, lock_id = server.acquire_lock("held", timeout=10 * LEASE)
        waited = time.monotonic() - killed_at
    finally:
        holder.join(10)
    assert ok and waited < 3 * LEASE


def test_a_waiter_is_requeued_across_a_failover_and_keeps_its_deadline(server_file: str) -> None:
    import threading

    ready, never = SPAWN.Queue(), SPAWN.Event()
    # A lease long enough for a new process to start serving on a loaded machine: within it the
    # client must still believe in its lock, or there would be nothing to re-claim.
    lease = 5.0
    first = SPAWN.Process(target=_workers.serve, args=(server_file, ready, never, {"lease": lease}))
    first.start()
    ready.get(timeout=30)
    holder = ServerLocker(PASSWORD, name="holder", serverFile=server_file, port=0, reconnect=True, lease=LEASE)
    waiter = ServerLocker(PASSWORD, name="waiter", serverFile=server_file, port=0, reconnect=True, lease=LEASE,
                          allowServing=False)
    try:
        ok, held = holder.acquire_lock("x")
        assert ok and waiter.isClient
        outcome: list[Any] = []

        def wait_for_x() -> None:
            started = time.monotonic()
            outcome.append((waiter.acquire_lock("x", timeout=2.0), time.monotonic() - started))

        thread = threading.Thread(target=wait_for_x)
        thread.start()
        wait_for(lambda: holder.isClient)  # (the waiter is queued on the first server by now or soon)
        os.kill(first.pid, signal.SIGKILL)
        thread.join(30)
        (result, waited), = outcome
        assert result == (False, 0)           # 'x' was re-claimed by its holder: never granted twice
        assert 2.0 <= waited < 3.0            # and the waiter's deadline held across the failover
        assert holder.isServer and holder.ownedLocks == {held: ["x"]}
        assert waiter.isClient

        thread = threading.Thread(target=lambda: outcome.append(waiter.acquire_lock("x", timeout=10)))
        thread.start()
        wait_for(lambda: holder.node.server is not None and holder.node.server.waiters("x"))
        assert holder.release_lock(held) == (True, 1)
        thread.join(20)
        assert outcome[-1][0] is True         # re-queued waiters are served once the holder lets go
    finally:
        waiter.stop()
        holder.stop()
        first.join(10)


def test_a_graceful_stop_hands_over_without_losing_locks(make_locker: Any) -> None:
    server = make_locker(name="first", lease=LEASE)
    alice = make_locker(name="alice", reconnect=True, lease=LEASE)
    bob = make_locker(name="bob", reconnect=True, lease=LEASE)
    ok_a, lock_a = alice.acquire_lock("a")
    ok_b, lock_b = bob.acquire_lock("b")
    assert ok_a and ok_b
    server.stop()
    # Both may still believe in the old server for a moment: wait for the new one to serve.
    wait_for(lambda: (alice.isServer or bob.isServer) and (alice.isServer or alice.isClient)
             and (bob.isServer or bob.isClient), timeout=20)
    assert alice.isServer != bob.isServer  # exactly one of them took over
    assert alice.ownedLocks == {lock_a: ["a"]} and bob.ownedLocks == {lock_b: ["b"]}
    new_server = alice if alice.isServer else bob
    wait_for(lambda: sorted(new_server.lockedPaths or {}) == ["a", "b"])
    assert alice.acquire_lock("b", timeout=0.2) == (False, 0)  # b is still bob's
    assert bob.release_lock(lock_b) == (True, 1)
    assert alice.acquire_lock("b", timeout=5)[0] is True
