"""Issue 11's cases that only real processes show: frozen peers and ZeroMQ's own timers."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from typing import Any

import pytest

import _workers
from conftest import wait_for

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
