#!/usr/bin/env python3
"""asyncio benchmark: AsyncServerLocker against the threaded client, in one run.

Usage (from the repository root; never run by CI or the test suite)::

    python benchmarks/bench_asyncio.py [--quick] [--waiters 1000] [--out benchmarks/results]

The serving locker runs in a process of its own (spawned here, stopped at the end);
this process holds two client lockers of it, one used through ``pylocker.asyncio``,
the other through the threaded API, and measures, one after the other:

* **waiting acquires**: N callers (default 1,000) wait for one name that a third
  locker holds: N tasks in one event loop, then N threads. Threads in the process and
  its memory growth while they all wait; then the time from the release to the last
  of them served (each takes the lock and lets go at once), and whether they were
  served in the order they queued (one connection: its requests keep their order);
* **throughput**: acquire+release per second on free names, by 1 caller and by 16
  (16 tasks, or 16 threads, each on a name of its own), and the median acquire
  latency of 1 caller.

Writes ``asyncio.json`` (every figure, the machine) and ``asyncio.md`` (the table).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import psutil

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:  # measure this checkout, as it is on disk
    sys.path.insert(0, str(REPO))

from pylocker import ServerLocker  # noqa: E402  (after the path)
from pylocker.asyncio import AsyncServerLocker  # noqa: E402

PASSWORD = "bench-password"
SPAWN = multiprocessing.get_context("spawn")


def serve(path: str, ready: Any, finished: Any) -> None:
    """The serving locker's process: serves until ``finished`` is set."""
    locker = ServerLocker(PASSWORD, name="server", serverFile=path, port=0, maxLockTime=None)
    ready.put(locker.port)
    finished.wait(1800)
    locker.stop()


def rss() -> int:
    return int(psutil.Process().memory_info().rss)


def until(predicate: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError("the benchmark waited too long for its waiters to queue")
        time.sleep(0.01)


# ---------------------------------------------------------------- waiting
async def async_waiters(client: AsyncServerLocker, holder: ServerLocker, count: int) -> dict[str, Any]:
    ok, held = holder.acquire_lock("contended", timeout=10)
    assert ok
    threads, memory = threading.active_count(), rss()
    order: list[int] = []

    async def wait_turn(index: int) -> None:
        async with client.lock("contended", timeout=600):
            order.append(index)

    tasks = []
    for index in range(count):
        tasks.append(asyncio.ensure_future(wait_turn(index)))
        await asyncio.sleep(0)  # each task sends its request before the next one starts
    while len((await client.lock_info("contended")).waiters) < count:
        await asyncio.sleep(0.01)
    waiting = {"threads": threading.active_count() - threads, "rss_mb": (rss() - memory) / 2**20}
    started = time.perf_counter()
    holder.release_lock(held)
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    return {**waiting, "served_s": elapsed, "handovers_per_s": count / elapsed, "in_order": order == sorted(order)}


def threaded_waiters(client: ServerLocker, holder: ServerLocker, count: int) -> dict[str, Any]:
    ok, held = holder.acquire_lock("contended", timeout=10)
    assert ok
    threads, memory = threading.active_count(), rss()
    order: list[int] = []

    def wait_turn(index: int) -> None:
        with client.lock("contended", timeout=600):
            order.append(index)

    def start(index: int) -> threading.Thread:
        thread = threading.Thread(target=wait_turn, args=(index,), daemon=True)
        thread.start()
        return thread

    workers = [start(index) for index in range(count)]
    until(lambda: len(holder.lock_info("contended").waiters) >= count)
    waiting = {"threads": threading.active_count() - threads, "rss_mb": (rss() - memory) / 2**20}
    started = time.perf_counter()
    holder.release_lock(held)
    for worker in workers:
        worker.join(600)
    elapsed = time.perf_counter() - started
    # Threads start in order but may queue out of it (each sends when it runs): reported, not a fault.
    return {**waiting, "served_s": elapsed, "handovers_per_s": count / elapsed, "in_order": order == sorted(order)}


# ------------------------------------------------------------- throughput
async def async_throughput(client: AsyncServerLocker, callers: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def caller(index: int) -> int:
        done = 0
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            ok, lock_id = await client.acquire_lock(f"free-{index}", timeout=10)
            latencies.append(time.perf_counter() - started)
            assert ok
            await client.release_lock(lock_id)
            done += 1
        return done

    begun = time.perf_counter()
    done = sum(await asyncio.gather(*(caller(index) for index in range(callers))))
    return {"per_s": done / (time.perf_counter() - begun), "p50_us": statistics.median(latencies) * 1e6}


def threaded_throughput(client: ServerLocker, callers: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    counts = [0] * callers
    deadline = time.perf_counter() + seconds

    def caller(index: int) -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            ok, lock_id = client.acquire_lock(f"free-{index}", timeout=10)
            latencies.append(time.perf_counter() - started)
            assert ok
            client.release_lock(lock_id)
            counts[index] += 1

    begun = time.perf_counter()
    workers = [threading.Thread(target=caller, args=(index,), daemon=True) for index in range(callers)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(seconds + 60)
    return {"per_s": sum(counts) / (time.perf_counter() - begun), "p50_us": statistics.median(latencies) * 1e6}


# -------------------------------------------------------------------- run
def measure(path: str, waiters: int, seconds: float) -> dict[str, Any]:
    holder = ServerLocker(PASSWORD, name="holder", serverFile=path, allowServing=False)
    threaded = ServerLocker(PASSWORD, name="threaded", serverFile=path, allowServing=False)
    assert holder.isClient
    assert threaded.isClient
    results: dict[str, Any] = {}

    async def with_asyncio() -> None:
        async with AsyncServerLocker(PASSWORD, name="async", serverFile=path, allowServing=False) as client:
            assert client.isClient
            await client.acquire_lock("warm-up", timeout=10)
            results["async_waiting"] = await async_waiters(client, holder, waiters)
            results["async_1"] = await async_throughput(client, 1, seconds)
            results["async_16"] = await async_throughput(client, 16, seconds)

    try:
        asyncio.run(with_asyncio())
        results["threaded_waiting"] = threaded_waiters(threaded, holder, waiters)
        results["threaded_1"] = threaded_throughput(threaded, 1, seconds)
        results["threaded_16"] = threaded_throughput(threaded, 16, seconds)
    finally:
        threaded.stop()
        holder.stop()
    return results


def table(results: dict[str, Any], waiters: int) -> str:
    a, t = results["async_waiting"], results["threaded_waiting"]
    rows = [
        (f"{waiters:,} waiting acquires: threads added while they wait", f"{a['threads']}", f"{t['threads']}"),
        (f"{waiters:,} waiting acquires: memory added while they wait (MB)", f"{a['rss_mb']:.1f}",
         f"{t['rss_mb']:.1f}"),
        (f"{waiters:,} waiting acquires: release to the last one served (s)", f"{a['served_s']:.3f}",
         f"{t['served_s']:.3f}"),
        ("... handovers per second", f"{a['handovers_per_s']:,.0f}", f"{t['handovers_per_s']:,.0f}"),
        ("... served in the order they queued", str(a["in_order"]), str(t["in_order"])),
        ("acquire+release/s, 1 caller", f"{results['async_1']['per_s']:,.0f}",
         f"{results['threaded_1']['per_s']:,.0f}"),
        ("acquire latency p50, 1 caller (µs)", f"{results['async_1']['p50_us']:,.0f}",
         f"{results['threaded_1']['p50_us']:,.0f}"),
        ("acquire+release/s, 16 callers on 16 names", f"{results['async_16']['per_s']:,.0f}",
         f"{results['threaded_16']['per_s']:,.0f}"),
    ]
    lines = ["| figure | asyncio (tasks) | threaded (threads) |", "|---|---:|---:|"]
    lines += [f"| {name} | {ours} | {theirs} |" for name, ours, theirs in rows]
    return "\n".join(lines)


def revision() -> str:
    """The measured tree's commit (with "+" if it has changes), or "?" outside git."""
    import subprocess

    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "pylocker"], capture_output=True,
                               text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
    return commit + ("+" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 s per throughput figure, 200 waiters")
    parser.add_argument("--waiters", type=int, default=0, help="callers waiting at once (default 1,000)")
    parser.add_argument("--seconds", type=float, default=0.0, help="seconds per throughput figure (default 3)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="output folder")
    args = parser.parse_args(argv)
    waiters = args.waiters or (200 if args.quick else 1000)
    seconds = args.seconds or (1.0 if args.quick else 3.0)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "bench.serverlocker")
        ready, finished = SPAWN.Queue(), SPAWN.Event()
        server = SPAWN.Process(target=serve, args=(path, ready, finished), daemon=True)
        server.start()
        try:
            ready.get(timeout=60)
            results = measure(path, waiters, seconds)
        finally:
            finished.set()
            server.join(30)
            if server.is_alive():
                server.kill()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"waiters": waiters, "seconds": seconds, "results": results,
              "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                          "platform": platform.platform(), "load_before": load_before},
              "revision": revision(), "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    (out / "asyncio.json").write_text(json.dumps(report, indent=2) + "\n")
    text = (f"# asyncio benchmark\n\nOne run of `{report['revision']}` on {os.cpu_count()} CPUs (load average "
            f"{load_before:.1f} before it: the machine is shared), Python {platform.python_version()}, a serving "
            f"locker in its own process on loopback; {seconds:g} s per throughput figure. "
            f"`python benchmarks/bench_asyncio.py`\n\n{table(results, waiters)}\n")
    (out / "asyncio.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
