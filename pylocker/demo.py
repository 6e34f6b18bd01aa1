"""The ``pylocker demo`` run: worker processes contend for a few paths through one serving locker.

Every worker increments a counter file per path under that path's lock and records
when it held each lock. Afterwards the counters must equal the number of grants and
no two critical sections on one path may overlap in time.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import secrets
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from .lockers import ServerLocker

Interval = tuple[float, float, int]  # (entered, left, worker)


@dataclass
class DemoReport:
    workers: int
    paths: list[str]
    grants_per_worker: dict[int, int] = field(default_factory=dict)
    timeouts: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    expected: dict[str, int] = field(default_factory=dict)
    overlaps: int = 0
    critical_sections: int = 0
    median_wait_ms: float = 0.0
    elapsed: float = 0.0
    server_file: str = ""
    port: int = 0

    @property
    def ok(self) -> bool:
        return self.overlaps == 0 and self.counters == self.expected and self.timeouts == 0


def _worker(
    index: int, server_file: str, password: str, folder: str, paths: list[str], rounds: int, results: Any
) -> None:
    locker = ServerLocker(
        password, name=f"worker-{index}", serverFile=server_file, allowServing=False, connectTimeout=30
    )
    rng = random.Random(index)  # noqa: S311  (picks which path to lock next; not security)
    intervals: dict[str, list[Interval]] = {path: [] for path in paths}
    waits: list[float] = []
    timeouts = 0
    try:
        for _ in range(rounds):
            path = rng.choice(paths)
            asked = time.monotonic()
            ok, lock_id = locker.acquire_lock(path, timeout=30)
            if not ok:
                timeouts += 1
                continue
            entered = time.monotonic()
            counter = os.path.join(folder, path)
            with open(counter) as handle:
                value = int(handle.read() or 0)
            with open(counter, "w") as handle:
                handle.write(str(value + 1))
            left = time.monotonic()
            locker.release_lock(lock_id)
            intervals[path].append((entered, left, index))
            waits.append(entered - asked)
    finally:
        locker.stop()
    results.put((index, intervals, waits, timeouts))


def _count_overlaps(intervals: list[Interval]) -> int:
    overlaps = 0
    ordered = sorted(intervals)
    for (_, left, _), (entered, _, _) in zip(ordered, ordered[1:]):
        if entered < left:
            overlaps += 1
    return overlaps


def run_demo(workers: int = 4, paths: int = 3, rounds: int = 100) -> DemoReport:
    """Serve on loopback from a temp dir, run ``workers`` processes, and check what happened."""
    if workers < 1 or paths < 1 or rounds < 1:
        raise ValueError("workers, paths and rounds must all be at least 1")
    names = [f"file-{i}.txt" for i in range(paths)]
    password = secrets.token_urlsafe(16)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pylocker-demo-") as folder:
        server_file = os.path.join(folder, "serverlocker")
        for name in names:
            open(os.path.join(folder, name), "w").close()
        server = ServerLocker(password, name="demo-server", serverFile=server_file, port=0, allowServing=True)
        if not server.isServer:
            raise RuntimeError("the demo could not start its serving locker")
        report = DemoReport(workers=workers, paths=names, server_file=server_file, port=server.port)
        context = multiprocessing.get_context("spawn")
        results = context.Queue()
        processes = [
            context.Process(target=_worker, args=(i, server_file, password, folder, names, rounds, results))
            for i in range(workers)
        ]
        try:
            for process in processes:
                process.start()
            collected = [results.get(timeout=300) for _ in processes]
        finally:
            for process in processes:
                process.join(30)
                if process.is_alive():
                    process.kill()
                    process.join(5)
            server.stop()
        all_waits: list[float] = []
        by_path: dict[str, list[Interval]] = {name: [] for name in names}
        for index, intervals, waits, timeouts in collected:
            report.grants_per_worker[index] = sum(len(v) for v in intervals.values())
            report.timeouts += timeouts
            all_waits.extend(waits)
            for name, spans in intervals.items():
                by_path[name].extend(spans)
        for name in names:
            with open(os.path.join(folder, name)) as handle:
                report.counters[name] = int(handle.read() or 0)
            report.expected[name] = len(by_path[name])
            report.overlaps += _count_overlaps(by_path[name])
            report.critical_sections += len(by_path[name])
        all_waits.sort()
        report.median_wait_ms = all_waits[len(all_waits) // 2] * 1000 if all_waits else 0.0
    report.elapsed = time.monotonic() - started
    return report
