"""The worker roles: each runs in its own process and talks JSON lines on stdin/stdout.

``bench_locks.py --worker ROLE --spec JSON`` lands in :func:`worker_main`. The
pylocker 3.1.0 workers run it with that venv's interpreter, so this module imports
only the standard library (and the stdlib-only ``harness``) at load time; each role
imports what it measures.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import threading
import time
from typing import Any, Callable

from harness import Slices, emit, next_command

from .adapters import Adapter, checkout_server_locker
from .common import ECHO_PAYLOAD, HANDOVER, PASSWORD


def _wait_go() -> float:
    """Block until the orchestrator says ``go T0``; returns T0 (shared CLOCK_MONOTONIC)."""
    words = next_command()
    if words[0] != "go":
        os._exit(0)
    t0 = float(words[1])
    delay = t0 - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    return t0


def _raise_fd_limit() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "n": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    return {"p50": at(0.50), "p99": at(0.99), "n": len(ordered)}



def _run_loop(adapter: Adapter, names: list[str], t0: float, duration: float, slices: int,
              timeout: float, latency: bool = True) -> dict[str, Any]:
    """Acquire+release as fast as possible for ``duration`` from ``t0``; latencies of both steps.

    ``latency=False`` keeps no latencies: for the in-process figure, where that would cost 10% of the time.
    """
    acquire_lat: list[float] = []
    cycle_lat: list[float] = []
    failures = 0
    clock = time.perf_counter
    ops = 0
    counts = Slices(t0, duration, slices)
    start = now = time.monotonic()
    end = t0 + duration
    n = len(names)
    while now < end:
        name = names[ops % n]
        t0 = clock()
        handle = adapter.acquire(name, timeout)
        t1 = clock()
        if handle is None:
            failures += 1
            now = time.monotonic()
            continue
        adapter.release(handle)
        t2 = clock()
        now = time.monotonic()
        counts.tick(now)
        if latency:
            acquire_lat.append(t1 - t0)
            cycle_lat.append(t2 - t0)
        ops += 1
    elapsed = time.monotonic() - start
    return {"ops": ops, "elapsed": elapsed, "failures": failures, **counts.as_dict(),
            "acquire": _percentiles(acquire_lat), "cycle": _percentiles(cycle_lat)}


def _run_counter(adapter: Adapter, spec: dict[str, Any], t0: float) -> dict[str, Any]:
    """Contend on one name: bump a counter file inside the lock and time every handover."""
    name, counter, timeout = spec["names"][0], spec["counter"], spec["timeout"]
    fd = os.open(spec["handover"], os.O_RDWR)
    shared = mmap.mmap(fd, HANDOVER.size)
    me = os.getpid()
    handovers: list[float] = []
    ops = failures = 0
    counts = Slices(t0, spec["duration"], spec["slices"])
    end = t0 + spec["duration"]
    start = now = time.monotonic()
    while now < end:
        handle = adapter.acquire(name, timeout)
        granted = now = time.monotonic()
        if handle is None:
            failures += 1
            continue
        last_pid, released_at = HANDOVER.unpack_from(shared, 0)
        if last_pid and last_pid != me:
            handovers.append(granted - released_at)
        with open(counter, "r+") as f:  # a read-modify-write that only the lock keeps exact
            value = int(f.read() or "0")
            f.seek(0)
            f.write(str(value + 1))
            f.truncate()
        ops += 1
        HANDOVER.pack_into(shared, 0, me, time.monotonic())
        adapter.release(handle)
        now = time.monotonic()
        counts.tick(now)
    elapsed = time.monotonic() - start
    shared.close()
    os.close(fd)
    return {"ops": ops, "elapsed": elapsed, "failures": failures, "handover": _percentiles(handovers),
            **counts.as_dict()}


def _worker_echo_server(spec: dict[str, Any]) -> None:
    import zmq

    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    if spec.get("curve"):
        router.setsockopt(zmq.CURVE_SERVER, 1)
        router.setsockopt(zmq.CURVE_SECRETKEY, spec["server_secret"].encode())
    port = router.bind_to_random_port("tcp://127.0.0.1")

    def serve() -> None:
        recv, send = router.recv_multipart, router.send_multipart
        while True:
            send(recv())

    threading.Thread(target=serve, daemon=True).start()
    emit({"ready": True, "port": port, "pid": os.getpid()})
    while next_command()[0] != "stop":
        pass
    os._exit(0)


def _worker_echo_client(spec: dict[str, Any]) -> None:
    import zmq

    ctx = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    if spec.get("curve"):
        public, secret = zmq.curve_keypair()
        dealer.setsockopt(zmq.CURVE_SERVERKEY, spec["server_public"].encode())
        dealer.setsockopt(zmq.CURVE_PUBLICKEY, public)
        dealer.setsockopt(zmq.CURVE_SECRETKEY, secret)
    dealer.connect(f"tcp://127.0.0.1:{spec['port']}")
    send, recv = dealer.send, dealer.recv
    for _ in range(200):  # connect, handshake and warm up before the clock starts
        send(ECHO_PAYLOAD)
        recv()
    emit({"ready": True})
    go = _wait_go()
    end = go + spec["duration"]
    counts = Slices(go, spec["duration"], spec["slices"])
    clock = time.perf_counter
    lat: list[float] = []
    start = now = time.monotonic()
    while now < end:
        t0 = clock()
        send(ECHO_PAYLOAD)
        recv()
        lat.append(clock() - t0)
        now = time.monotonic()
        counts.tick(now)
    elapsed = time.monotonic() - start
    emit({"ops": len(lat), "elapsed": elapsed, "rtt": _percentiles(lat), **counts.as_dict()})
    next_command()
    os._exit(0)


def _worker_lock_server(spec: dict[str, Any]) -> None:
    _raise_fd_limit()
    adapter = Adapter(spec, serve=True)
    emit({"ready": True, "pid": os.getpid()})
    while True:
        words = next_command()
        if words[0] == "inproc":  # inproc DURATION SLICES
            emit(_run_loop(adapter, ["inproc"], time.monotonic(), float(words[1]), int(words[2]), 10.0,
                                latency=False))
        else:
            adapter.close()
            os._exit(0)


def _worker_lock_client(spec: dict[str, Any]) -> None:
    adapter = Adapter(spec, serve=False)
    # Warm up: the first requests pay for connections and lazy imports.
    for _ in range(20):
        handle = adapter.acquire(f"warmup/{os.getpid()}", 10.0)
        if handle is not None:
            adapter.release(handle)
    emit({"ready": True, "pid": os.getpid()})
    mode = spec["mode"]
    t0 = _wait_go()
    if mode == "loop":
        result = _run_loop(adapter, spec["names"], t0, spec["duration"], spec["slices"], spec["timeout"])
    elif mode == "counter":
        result = _run_counter(adapter, spec, t0)
    elif mode == "hold":  # hold a name for a while, so that someone else blocks on it
        handle = adapter.acquire(spec["names"][0], spec["timeout"])
        emit({"held": handle is not None})
        time.sleep(spec["hold"])
        adapter.release(handle)
        result = {"released": True}
    else:  # "wait": block on a held name and count the CPU this process burns meanwhile
        cpu0, wall0 = time.process_time(), time.monotonic()
        handle = adapter.acquire(spec["names"][0], spec["timeout"])
        cpu1, wall1 = time.process_time(), time.monotonic()
        if handle is not None:
            adapter.release(handle)
        result = {"acquired": handle is not None, "cpu": cpu1 - cpu0, "wall": wall1 - wall0}
    emit(result)
    next_command()
    adapter.close()
    os._exit(0)


def _worker_scale_loadgen(spec: dict[str, Any]) -> None:
    """Many clients in one process: open them, make them hold many locks, then churn."""
    _raise_fd_limit()
    server_locker = checkout_server_locker(spec["code"])
    import psutil

    wanted, budget, nthreads = spec["clients"], spec["open_budget"], spec["open_threads"]
    slots: list[Any] = [None] * wanted
    failures: list[str] = []
    opened = [0]
    guard = threading.Lock()
    start = time.monotonic()

    # Opening a client is mostly waiting (handshake, hello, subscription probe): overlap them.
    def open_some(slot: int) -> None:
        for i in range(slot, wanted, nthreads):
            if failures or time.monotonic() - start > budget:
                return
            try:
                # Lock-only clients, as a fleet of lock workers would run them: no subscription.
                extra = {"receive_messages": False} if spec.get("lock_only", True) else {}
                try:
                    locker = server_locker(password=PASSWORD, serverFile=spec["server_file"], allowServing=False,
                                           connectTimeout=20, name=f"load-{i}", **extra)
                except TypeError:  # a checkout from before receive_messages existed
                    locker = server_locker(password=PASSWORD, serverFile=spec["server_file"], allowServing=False,
                                           connectTimeout=20, name=f"load-{i}")
            except Exception as exc:  # noqa: BLE001  (any failure to open a client is reported, not raised)
                failures.append(f"client {i}: {type(exc).__name__}: {exc}")
                return
            if not locker.isClient:
                failures.append(f"client {i} did not connect")
                return
            slots[i] = locker
            with guard:
                opened[0] += 1
                if opened[0] % 100 == 0:
                    emit({"progress": opened[0], "elapsed": time.monotonic() - start})

    openers = [threading.Thread(target=open_some, args=(s,)) for s in range(nthreads)]
    for t in openers:
        t.start()
    for t in openers:
        t.join()
    if time.monotonic() - start > budget and opened[0] < wanted:
        failures.append(f"open budget of {budget} s spent after {opened[0]} clients")
    lockers = [locker for locker in slots if locker is not None]
    open_s = time.monotonic() - start
    proc = psutil.Process()
    connected_rss = proc.memory_info().rss
    emit({"connected": len(lockers), "open_s": open_s, "failures": failures})
    next_command()  # "lock": the orchestrator has read the server's memory with connections only

    n = len(lockers)
    per_client = spec["locks"] // max(n, 1)
    held = [0] * spec["threads"]
    lock_failures = [0] * spec["threads"]
    lock_deadline = time.monotonic() + spec["lock_budget"]

    def take(slot: int) -> None:
        for c in range(slot, n, spec["threads"]):
            for j in range(per_client):
                if time.monotonic() > lock_deadline:
                    return
                ok, _ = lockers[c].acquire_lock(f"scale/{c}/{j}", timeout=10)
                if ok:
                    held[slot] += 1
                else:
                    lock_failures[slot] += 1

    start = time.monotonic()
    threads = [threading.Thread(target=take, args=(s,)) for s in range(spec["threads"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lock_s = time.monotonic() - start
    emit({"ready": True, "clients": n, "wanted": wanted, "failures": failures, "open_s": open_s,
           "locks": sum(held), "lock_failures": sum(lock_failures), "lock_s": lock_s,
           "rss": proc.memory_info().rss, "connected_rss": connected_rss, "threads": proc.num_threads()})
    end = _wait_go() + spec["duration"]
    churned = [0] * spec["churn"]

    def churn(slot: int) -> None:
        locker = lockers[slot]
        while time.monotonic() < end:
            ok, lock_id = locker.acquire_lock(f"churn/{slot}", timeout=10)
            if ok:
                locker.release_lock(lock_id)
                churned[slot] += 1

    threads = [threading.Thread(target=churn, args=(s,)) for s in range(min(spec["churn"], n))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    emit({"churn_ops": sum(churned), "duration": spec["duration"]})
    next_command()
    os._exit(0)  # the server is stopped next; closing 1,000 clients one by one buys nothing


WORKERS: dict[str, Callable[[dict[str, Any]], None]] = {
    "echo-server": _worker_echo_server,
    "echo-client": _worker_echo_client,
    "lock-server": _worker_lock_server,
    "lock-client": _worker_lock_client,
    "scale-loadgen": _worker_scale_loadgen,
}


def worker_main(role: str, spec_json: str) -> None:
    spec = json.loads(spec_json)
    try:
        WORKERS[role](spec)
    except BaseException as exc:
        emit({"error": f"{type(exc).__name__}: {exc}"})
        raise
