"""Issue 11's cases that only real processes show: frozen peers and ZeroMQ's own timers."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from typing import Any

import pytest

import _workers
from conftest import PASSWORD, wait_for
from pylocker import ServerLocker
from tests.faults.proxy import Proxy

pytestmark = pytest.mark.integration
SPAWN = multiprocessing.get_context("spawn")


def test_case2_a_client_frozen_past_zeromqs_heartbeat_timeout_still_gets_its_grant(
        make_locker: Any, server_file: str) -> None:
    # ZeroMQ dropped a silent peer's connection after 4 s while its lease (10 s here) still
    # ran: the grant made meanwhile had nowhere to go, and the waiter, once thawed, waited
    # on for a lock that was free until its own timeout.
    serving = make_locker(lease=10.0)
    assert serving.isServer
    ok, held = serving.acquire_lock("x", timeout=5)
    assert ok
    results = SPAWN.Queue()
    waiter = SPAWN.Process(target=_workers.wait_for_lock, args=(server_file, "x", 30.0, results))
    waiter.start()
    try:
        assert results.get(timeout=30)[0] == "waiting"
        wait_for(lambda: len(serving.node.server.waiters("x")) == 1, timeout=10)
        os.kill(waiter.pid, signal.SIGSTOP)
        try:
            time.sleep(6.0)  # the fault: frozen past ZeroMQ's 4 s, well within the lease
            assert serving.release_lock(held) == (True, 1)
        finally:
            os.kill(waiter.pid, signal.SIGCONT)
        thawed = time.monotonic()
        granted, granted_at, _ = results.get(timeout=40)
        assert granted, "the waiter never got the lock it was granted while frozen"
        assert granted_at - thawed < 5.0
    finally:
        waiter.join(40)
        if waiter.is_alive():
            waiter.kill()
            waiter.join(5)


def test_case1_a_partitioned_holder_is_told_its_lock_is_lost_before_another_gets_it(make_locker: Any) -> None:
    # The holder's network is cut (a proxy holds every byte both ways): it kept the lock in
    # ownedLocks with no loss reported while the server, its lease lapsed, granted the name
    # to another locker. Its own lease clock must end its belief first.
    serving = make_locker(lease=2.0)
    assert serving.isServer
    proxy = Proxy(target=int(serving.port))
    holder = ServerLocker(PASSWORD, serverFile=False, autoconnect=False, connectTimeout=10, lease=2.0)
    lost: list[tuple[float, str, str]] = []
    holder.on_lock_lost(lambda lock_id, reason: lost.append((time.monotonic(), lock_id, reason)))
    try:
        assert holder.connect("127.0.0.1", proxy.port)
        ok, lock_id = holder.acquire_lock("x", timeout=5)
        assert ok
        assert holder.node.holds(lock_id)
        proxy.cut()
        got, _ = serving.acquire_lock("x", timeout=15)
        granted_at = time.monotonic()
        assert got, "the server never gave the partitioned holder's lock to another"
        assert not holder.node.holds(lock_id)
        assert [(lock, reason) for _, lock, reason in lost] == [(lock_id, "lease")]
        assert lost[0][0] < granted_at, "the holder still believed it held the lock when it was granted again"
    finally:
        proxy.heal()
        holder.stop()
        proxy.stop()
