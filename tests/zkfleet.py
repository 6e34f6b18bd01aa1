"""A fleet of "machines" (network namespaces) electing their serving locker through ZooKeeper.

ZooKeeper runs in the fleet's hub namespace; serving candidates and clients run as
processes inside machines of their own (``tests/faults`` workers: clients increment
the fenced register under the lock). The test process, outside every namespace,
learns who serves from an observer process in the hub (``_zk_observer.py``).
Used by ``tests/integration/test_zookeeper_netns.py`` and by the failover benchmark.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from netns import Fleet
from zkserver import ZooKeeper, start_zookeeper

from pylocker.election.base import TOKEN_EPOCH_SHIFT
from tests.faults.checker import Report, check, load_history
from tests.faults.cluster import Cluster, Worker

REPO_ROOT = Path(__file__).resolve().parent.parent
OBSERVER = REPO_ROOT / "tests" / "integration" / "_zk_observer.py"


class ZooKeeperFleet:
    """ZooKeeper in the hub, candidates in ``candidates`` machines, clients in the last machine."""

    def __init__(self, directory: str, candidates: int = 3, session: float = 4.0, lease: float = 1.0) -> None:
        self.directory = directory
        self.session = session
        self.machines = Fleet(candidates + 1)
        self.zookeeper: ZooKeeper | None = None
        self.observer: subprocess.Popen[str] | None = None
        self._changes: queue.Queue[dict[str, Any]] = queue.Queue()
        self.serving_pid: int | None = None
        self.serving_since = 0.0  # when the observer saw the current server appear (CLOCK_MONOTONIC)
        self.serving_epoch = 0
        try:
            hub = self.machines.hub
            self.zookeeper = start_zookeeper(Path(directory) / "zookeeper", host=self.machines.hub_address,
                                             prefix=self.machines.command(hub, []))
            self.url = (f"zookeeper://{self.machines.hub_address}:{self.zookeeper.port}"
                        f"/pylocker/fleet-{uuid.uuid4().hex[:8]}?session_timeout={session:g}")
            self.cluster = Cluster(directory, lease, connect_timeout=30.0, election_url=self.url)
            self.observer = self.machines.popen(hub, [sys.executable, str(OBSERVER), self.url], cwd=REPO_ROOT,
                                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            threading.Thread(target=self._follow, args=(self.observer,), daemon=True).start()
            self.candidate_machines = self.machines.machines[:candidates]
            self.client_machine = self.machines.machines[candidates]
        except BaseException:
            self.close()
            raise

    def _follow(self, observer: subprocess.Popen[str]) -> None:
        assert observer.stdout is not None
        for line in observer.stdout:
            self._changes.put(json.loads(line))

    # ---------------------------------------------------------------- running
    def start(self, clients: int = 2, timeout: float = 40.0) -> Worker:
        """Candidates and clients started; the first server, once every client got the lock."""
        for machine in self.candidate_machines:
            self.cluster.add_machine_candidate(self.machines.command(machine.name, []), machine.address)
        serving = self.next_server(None, timeout)
        if serving is None:
            raise AssertionError("no candidate was elected")
        for _ in range(clients):
            self.cluster.add_client(self.machines.command(self.client_machine.name, []))
        if not self.grants_after(0.0, timeout):
            raise AssertionError("the clients never got the lock")
        return serving

    def machine_of(self, worker: Worker) -> str:
        return self.candidate_machines[self.cluster.workers.index(worker)].name

    def next_server(self, old: Worker | None, timeout: float) -> Worker | None:
        """The candidate that serves next (alive in ZooKeeper, and not ``old``), within ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            current = next((w for w in self.cluster.workers if w.pid == self.serving_pid), None)
            if current is not None and current is not old:
                return current
            try:
                change = self._changes.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return None
            self.serving_pid = change["pid"] if change["alive"] else None
            self.serving_since = change["t"]
            self.serving_epoch = change["epoch"] or 0

    def grants_after(self, since: float, timeout: float) -> float | None:
        """When every client had been granted the lock after ``since`` (monotonic); None if not in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            paths = self.cluster.history_paths()
            firsts = [min((e["t"] for e in load_history(p) if e["ev"] == "acquired" and e["t"] > since
                           and e.get("token")), default=None) for p in paths]
            if paths and all(t is not None for t in firsts):
                return max(t for t in firsts if t is not None)
            time.sleep(0.05)  # polling files other processes write
        return None

    def first_grant_after(self, since: float, timeout: float, epoch: int = 0) -> float | None:
        """When a client was first granted the lock after ``since`` by a server of ``epoch`` or later."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            grants = [e["t"] for p in self.cluster.history_paths() for e in load_history(p)
                      if e["ev"] == "acquired" and e["t"] > since and e.get("token")
                      and e["token"] >> TOKEN_EPOCH_SHIFT >= epoch]
            if grants:
                return min(grants)
            time.sleep(0.02)  # polling files other processes write
        return None

    def log(self, worker: Worker) -> str:
        with open(os.path.join(self.directory, f"{worker.name}.log"), encoding="utf-8", errors="replace") as handle:
            return handle.read()

    def finish(self) -> Report:
        """Stop every worker and check the history (the caller asserts on the report)."""
        for machine in self.machines.machines:
            self.machines.heal(machine.name)
        stuck = self.cluster.stop_role("client", timeout=20)
        self.cluster.stop_role("candidate", timeout=10)
        report = check(self.cluster.history_paths(), self.cluster.register_path)
        report.violations += [f"client that did not stop: {name}" for name in stuck]
        return report

    def close(self) -> None:
        if getattr(self, "cluster", None) is not None:
            self.cluster.close()
        if self.observer is not None and self.observer.stdin is not None:
            self.observer.stdin.close()
        if self.zookeeper is not None:
            self.zookeeper.stop()
        self.machines.close()  # stops what runs inside, then removes the namespaces
