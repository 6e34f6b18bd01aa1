"""Serving candidates elected through a real ZooKeeper: kill -9, SIGSTOP past the session, a partition.

Three candidates and two clients run as processes (``tests/faults``); each candidate
reaches ZooKeeper through a proxy of its own, so its link to the ensemble can be cut
while its clients still reach it. Clients increment the fenced register under the
lock; the checker proves that no lock was granted twice, whatever the fault.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from pylocker import ServerLocker
from tests.faults.checker import check, load_history
from tests.faults.cluster import Cluster, Worker
from tests.faults.proxy import Proxy
from tests.faults.worker import PASSWORD

pytestmark = pytest.mark.integration
SESSION = 4.0  # seconds: the ZooKeeper session timeout the candidates ask for
LEASE = 1.0
NEW_SERVER_WITHIN = SESSION + 1.0  # the bound: the session timeout plus a second
STARTUP = 30.0


class Fleet:
    """A cluster whose candidates reach ZooKeeper through proxies of their own."""

    def __init__(self, zookeeper: Any, directory: str) -> None:
        self.zookeeper = zookeeper
        self.path = f"/pylocker/test-{uuid.uuid4().hex[:10]}"
        self.cluster = Cluster(directory, LEASE, connect_timeout=STARTUP, election_url=self.url(zookeeper.port))
        self.zk_proxies: dict[str, Proxy] = {}

    def url(self, port: int) -> str:
        return f"zookeeper://127.0.0.1:{port}{self.path}?session_timeout={SESSION:g}"

    def start(self, candidates: int = 3, clients: int = 2) -> Worker:
        for _ in range(candidates):
            proxy = Proxy(self.zookeeper.port)
            worker = self.cluster.add_candidate(server_file=self.url(proxy.port))
            self.zk_proxies[worker.name] = proxy
        serving = self.cluster.wait_serving(STARTUP)
        assert serving is not None, "no candidate was elected"
        for _ in range(clients):
            self.cluster.add_client()
        assert self.grants_after(0.0, STARTUP), "no client got the lock"
        return serving

    def grants_after(self, since: float, timeout: float) -> bool:
        """Whether every client was granted the lock after ``since`` (monotonic), waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            paths = self.cluster.history_paths()
            granted = [any(e["ev"] == "acquired" and e["t"] > since and e.get("token") for e in load_history(p))
                       for p in paths]
            if paths and all(granted):
                return True
            time.sleep(0.1)  # polling files other processes write
        return False

    def next_server(self, old: Worker, timeout: float) -> Worker | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            worker = self.cluster.serving()
            if worker is not None and worker is not old:
                return worker
            time.sleep(0.02)  # polling ZooKeeper, where another process publishes
        return None

    def finish(self) -> None:
        """Stop everything and prove the history safe."""
        stuck = self.cluster.stop_role("client", timeout=20)
        self.cluster.stop_role("candidate", timeout=10)
        report = check(self.cluster.history_paths(), self.cluster.register_path)
        assert not stuck, f"clients that did not stop: {stuck}"
        assert report.violations == [], report.violations
        assert report.writes_accepted > 0

    def close(self) -> None:
        self.cluster.close()
        for proxy in self.zk_proxies.values():
            proxy.stop()


@pytest.fixture
def fleet(zookeeper: Any, tmp_path: Any) -> Iterator[Fleet]:
    made = Fleet(zookeeper, str(tmp_path))
    try:
        yield made
    finally:
        made.close()


def _log(worker: Worker, directory: str) -> str:
    with open(os.path.join(directory, f"{worker.name}.log"), encoding="utf-8", errors="replace") as handle:
        return handle.read()


def _replaced(fleet: Fleet, serving: Worker, fault: str) -> float:
    """When the fault (already injected) began: asserts that another candidate serves in time."""
    began = time.monotonic()
    successor = fleet.next_server(serving, NEW_SERVER_WITHIN + 5)
    took = time.monotonic() - began
    assert successor is not None, f"nobody took over after {fault}"
    assert took <= NEW_SERVER_WITHIN, f"a new server {took:.2f} s after {fault}"
    assert fleet.grants_after(began, 20), f"clients did not get back to work after {fault}"
    return began


def test_kill_9_of_the_serving_candidate_elects_another_within_the_session(fleet: Fleet) -> None:
    serving = fleet.start()
    fleet.cluster.signal(serving, signal.SIGKILL)
    _replaced(fleet, serving, "kill -9")
    fleet.finish()


def test_a_candidate_frozen_past_its_session_is_replaced_and_stops_serving_when_thawed(fleet: Fleet) -> None:
    serving = fleet.start()
    fleet.cluster.signal(serving, signal.SIGSTOP)
    _replaced(fleet, serving, "SIGSTOP")
    fleet.cluster.signal(serving, signal.SIGCONT)
    thawed = time.monotonic()
    deadline = thawed + 10
    while "stops serving" not in _log(serving, fleet.cluster.directory) and time.monotonic() < deadline:
        time.sleep(0.05)  # polling the thawed process's log
    assert "stops serving" in _log(serving, fleet.cluster.directory), "the thawed server went on serving"
    assert fleet.grants_after(thawed, 20)
    fleet.finish()


def test_a_candidate_cut_off_from_zookeeper_stops_serving_and_another_takes_over(fleet: Fleet) -> None:
    serving = fleet.start()
    fleet.zk_proxies[serving.name].cut()
    _replaced(fleet, serving, "a partition from ZooKeeper")
    assert "stops serving" in _log(serving, fleet.cluster.directory), "the partitioned server did not stop"
    fleet.zk_proxies[serving.name].heal()
    fleet.finish()


def test_a_client_cut_off_from_zookeeper_keeps_working_with_the_current_server(zookeeper: Any) -> None:
    path = f"/pylocker/test-{uuid.uuid4().hex[:10]}"
    proxy = Proxy(zookeeper.port)
    serving = ServerLocker(PASSWORD, serverFile=f"zookeeper://{zookeeper.hosts}{path}?session_timeout={SESSION:g}",
                           port=0, lease=LEASE)
    client = ServerLocker(PASSWORD, serverFile=f"zookeeper://127.0.0.1:{proxy.port}{path}?session_timeout=4",
                          port=0, allowServing=False, lease=LEASE)
    try:
        assert serving.isServer
        assert client.isClient
        proxy.cut()
        deadline = time.monotonic() + SESSION + 2.0  # past the client's own session
        rounds = 0
        while time.monotonic() < deadline:
            ok, lock_id = client.acquire_lock("x", timeout=2)
            assert ok, "the cut-off client could not lock through the server it knows"
            assert client.release_lock(lock_id) == (True, 1)
            rounds += 1
        assert rounds > 10
        assert client.isClient
    finally:
        client.stop()
        serving.stop()
        proxy.stop()
