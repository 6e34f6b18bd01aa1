"""Run fault schedules back to back on fresh clusters and check each run's histories."""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field

from pylocker import ServerLocker
from tests.faults.checker import Report, check, load_history
from tests.faults.cluster import Cluster
from tests.faults.nemesis import KINDS, Nemesis, make_schedule
from tests.faults.worker import LOCK_NAME, PASSWORD

STARTUP_TIMEOUT = 30.0
ACQUIRE_TIMEOUT = 3.0


@dataclass
class ScheduleResult:
    seed: int
    report: Report
    injected: Counter[str]
    nemesis_log: list[str]
    directory: str | None  # kept when the run failed, for inspection
    recovery: float | None = None  # seconds a fresh locker took to get the lock after the run
    crashed: list[str] = field(default_factory=list)  # workers whose log shows a traceback


def _first_grant(cluster: Cluster, deadline: float) -> bool:
    while time.monotonic() < deadline:
        for path in cluster.history_paths():
            if any(e["ev"] == "acquired" for e in load_history(path)):
                return True
        time.sleep(0.1)  # polling files other processes write
    return False


def fresh_acquire(server_file: str, lease: float, timeout: float) -> float | None:
    """Seconds a new locker (not serving) needs to acquire the lock, or None if it could not."""
    started = time.monotonic()
    locker = ServerLocker(PASSWORD, name="fresh", serverFile=server_file, port=0, allowServing=False,
                          reconnect=True, connectTimeout=timeout, lease=lease, receive_messages=False)
    try:
        while time.monotonic() - started < timeout:
            remaining = timeout - (time.monotonic() - started)
            ok, lock_id = locker.acquire_lock(LOCK_NAME, timeout=max(0.1, min(remaining, ACQUIRE_TIMEOUT)))
            if ok:
                locker.release_lock(lock_id)
                return time.monotonic() - started
            if lock_id != 0:
                time.sleep(0.1)  # not connected (failing over): retry after a pause
        return None
    finally:
        locker.stop()


def _crashes(directory: str) -> list[str]:
    crashed = []
    for path in glob.glob(os.path.join(directory, "c*.log")):
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
        if "Traceback" in text:
            crashed.append(f"{os.path.basename(path)}: {text.strip().splitlines()[-1]}")
    return crashed


def run_schedule(seed: int, seconds: float = 20.0, lease: float = 2.0, clients: int = 3, servers: int = 2,
                 kinds: tuple[str, ...] = KINDS, keep: str = "failed", zookeeper: str | None = None) -> ScheduleResult:
    """One cluster, one seeded schedule of about ``seconds``, then stop, recover and check.

    ``zookeeper``: ``host:port`` of a ZooKeeper to elect through (a fresh path per schedule,
    4 s sessions) instead of a server file; the lock-file faults then find nothing to remove.
    """
    directory = tempfile.mkdtemp(prefix=f"pylocker-faults-{seed}-")
    url = None if zookeeper is None else \
        f"zookeeper://{zookeeper}/pylocker/faults-{seed}-{os.path.basename(directory)}?session_timeout=4"
    cluster = Cluster(directory, lease, election_url=url)
    nemesis = Nemesis(cluster, seed)
    problems: list[str] = []
    recovery = None
    try:
        for _ in range(servers):
            cluster.add_candidate()
        if cluster.wait_serving(STARTUP_TIMEOUT) is None:
            problems.append("no candidate was elected at start")
        for _ in range(clients):
            cluster.add_client()
        if not _first_grant(cluster, time.monotonic() + STARTUP_TIMEOUT):
            problems.append("no grant before the faults started")
        nemesis.play(make_schedule(seed, seconds, lease, kinds), time.monotonic() + seconds)
        stuck = cluster.stop_role("client", timeout=ACQUIRE_TIMEOUT + 3 * lease + 10)
        if stuck:
            problems.append(f"clients that did not stop when asked (killed): {stuck}")
        bound = 4 * lease + 15  # a lease for a killed holder, failover, re-claim grace
        recovery = fresh_acquire(cluster.server_file, lease, bound)
        if recovery is None:
            problems.append(f"lock held by nobody who knows it: a fresh locker could not acquire "
                            f"{LOCK_NAME!r} within {bound:.0f}s after healing and stopping every client")
        cluster.stop_role("candidate", timeout=10)
    finally:
        cluster.close()
    report = check(cluster.history_paths(), cluster.register_path)
    report.violations += problems
    crashed = _crashes(directory)
    failed = bool(report.violations or report.errors or crashed)
    if keep == "never" or (keep == "failed" and not failed):
        shutil.rmtree(directory, ignore_errors=True)
        directory = None
    return ScheduleResult(seed, report, nemesis.injected, nemesis.log, directory, recovery, crashed)


@dataclass
class Summary:
    results: list[ScheduleResult] = field(default_factory=list)

    @property
    def injected(self) -> Counter[str]:
        return sum((r.injected for r in self.results), Counter())

    @property
    def violations(self) -> list[str]:
        return [f"seed {r.seed}: {v}" for r in self.results for v in r.report.violations]

    def total(self, name: str) -> int:
        return sum(getattr(r.report, name) for r in self.results)


def run_for(minutes: float, seed: int, lease: float, clients: int, servers: int, seconds: float = 20.0,
            on_result: object = None, zookeeper: str | None = None) -> Summary:
    """Schedules back to back (seed, seed + 1, ...) until ``minutes`` have passed."""
    summary = Summary()
    end = time.monotonic() + minutes * 60
    current = seed
    while not summary.results or end - time.monotonic() > seconds / 2:
        result = run_schedule(current, seconds, lease, clients, servers, zookeeper=zookeeper)
        summary.results.append(result)
        if callable(on_result):
            on_result(result)
        current += 1
    return summary
