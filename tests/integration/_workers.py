"""Functions run in child processes (spawned) by the integration tests."""

from __future__ import annotations

import os
import time
from typing import Any

from pylocker import ServerLocker

PASSWORD = "test-password"


def _read_int(path: str) -> int:
    with open(path) as handle:
        text = handle.read()
    return int(text) if text else 0


def _write_int(path: str, value: int) -> None:
    with open(path, "w") as handle:
        handle.write(str(value))


def increment(server_file: str, counter: str, count: int, results: Any, barrier: Any = None,
              finished: Any = None, allow_serving: bool = True) -> None:
    """Read-modify-write ``counter`` ``count`` times under the lock 'counter'.

    Reports (pid, role, increments done). A worker that serves keeps serving until
    the parent sets ``finished``.
    """
    if barrier is not None:
        barrier.wait()
    locker = ServerLocker(PASSWORD, serverFile=server_file, port=0, connectTimeout=20,
                          allowServing=allow_serving)
    role = "server" if locker.isServer else "client" if locker.isClient else "none"
    done = 0
    try:
        if role != "none":
            for _ in range(count):
                ok, lock_id = locker.acquire_lock("counter", timeout=30)
                if not ok:
                    continue
                value = _read_int(counter)
                _write_int(counter, value + 1)
                locker.release_lock(lock_id)
                done += 1
        results.put((os.getpid(), role, done))
        if role == "server" and finished is not None:
            finished.wait(60)
    finally:
        locker.stop()


def hold(server_file: str, name: str, started: Any, release: Any, released_at: Any,
         max_lock_time_check: bool = False) -> None:
    """Hold ``name`` until ``release`` is set; report the monotonic release time."""
    locker = ServerLocker(PASSWORD, serverFile=server_file, allowServing=False, connectTimeout=20)
    ok, lock_id = locker.acquire_lock(name, timeout=20)
    started.put(ok)
    release.wait(30)
    released_at.put(time.monotonic())
    locker.release_lock(lock_id)
    locker.stop()


def wait_for_lock(server_file: str, name: str, timeout: float, results: Any) -> None:
    """Block on ``name``; report (granted, monotonic grant time, cpu seconds used while waiting)."""
    import psutil

    locker = ServerLocker(PASSWORD, serverFile=server_file, allowServing=False, connectTimeout=20)
    me = psutil.Process()
    cpu_before = sum(me.cpu_times()[:2])
    results.put(("waiting", time.monotonic(), None))
    ok, lock_id = locker.acquire_lock(name, timeout=timeout)
    granted_at = time.monotonic()
    cpu = sum(me.cpu_times()[:2]) - cpu_before
    results.put((ok, granted_at, cpu))
    if ok:
        locker.release_lock(lock_id)
    locker.stop()


def serve(server_file: str, ready: Any, finished: Any, kwargs: Any = None) -> None:
    """Serve on ``server_file`` until ``finished`` is set; report (pid, port)."""
    locker = ServerLocker(PASSWORD, name="served", serverFile=server_file, **{"port": 0, **(kwargs or {})})
    ready.put((os.getpid(), locker.port if locker.isServer else None))
    finished.wait(120)
    locker.stop()


def agent(server_file: str, name: str, commands: Any, replies: Any, kwargs: Any = None) -> None:
    """A locker in its own process that runs (method, args, kwargs) commands and replies with results.

    The pseudo-method "callbacks" registers an on_message callback whose calls are
    collected; "collected" returns them.
    """
    import threading

    locker = ServerLocker(PASSWORD, name=name, serverFile=server_file, allowServing=False,
                          connectTimeout=20, **(kwargs or {}))
    collected: list[Any] = []
    arrived = threading.Event()

    def collect(publication: Any) -> None:
        collected.append(publication)
        arrived.set()

    replies.put(("ready", locker.uniqueName, locker.isClient))
    try:
        while True:
            method, args, kw = commands.get(timeout=60)
            if method == "stop":
                replies.put(("stopped", None, None))
                return
            try:
                if method == "callbacks":
                    locker.on_message(collect, *args, **kw)
                    result: Any = None
                elif method == "collected":
                    count = args[0]
                    deadline = time.monotonic() + 10
                    while len(collected) < count and time.monotonic() < deadline:
                        arrived.wait(0.05)
                        arrived.clear()
                    result = list(collected)
                elif method == "publish_many":
                    padding = "x" * kw.pop("padding", 0)
                    for index in range(args[0]):
                        locker.publish_message(f"m-{index}", payload=[index, padding] if padding else index, **kw)
                    result = True
                else:
                    attribute = getattr(locker, method)
                    result = attribute(*args, **kw) if callable(attribute) else attribute
                replies.put(("ok", method, result))
            except Exception as exc:  # reported to the test, which decides
                replies.put(("error", method, repr(exc)))
    finally:
        locker.stop()


def fenced_increment(counter: str, token: int) -> bool:
    """The storage side of fencing: refuse a write whose token is below one already seen.

    The counter file holds {"value", "highest", "tokens"} (every accepted token, in
    order), replaced atomically so a writer killed mid-way leaves the old state. The
    check and the write happen under the storage's own lock.
    """
    import fcntl
    import json

    with open(counter + ".storage-lock", "a") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        with open(counter) as handle:
            text = handle.read()
        state = json.loads(text) if text else {"value": 0, "highest": 0, "tokens": []}
        if token < state["highest"]:
            return False
        state["value"] += 1
        state["highest"] = token
        state["tokens"].append(token)
        temp = f"{counter}.{os.getpid()}.tmp"
        with open(temp, "w") as handle:
            json.dump(state, handle)
        os.replace(temp, counter)
        return True


def chaos_client(server_file: str, counter: str, results: Any, stop_file: str, lease: float) -> None:
    """Increment the fenced counter under the lock 'counter' until ``stop_file`` exists; report each hold.

    ``results`` is this worker's own queue, and the stop signal a file: the test kills
    workers with -9, and one killed while holding a lock shared between processes (a
    shared queue's, an Event's) would stall every other worker's reports.
    """
    locker = ServerLocker(PASSWORD, serverFile=server_file, port=0, reconnect=True, lease=lease,
                          connectTimeout=20)
    results.put(("started", os.getpid(), None))
    try:
        while not os.path.exists(stop_file):
            ok, lock_id = locker.acquire_lock("counter", timeout=10)
            if not ok:
                continue
            granted = time.monotonic()
            token = locker.fencing_token(lock_id)
            accepted = fenced_increment(counter, token)
            released = time.monotonic()
            locker.release_lock(lock_id)
            results.put(("hold", os.getpid(), (token, granted, released, accepted)))
    finally:
        locker.stop()


def sleepy_holder(server_file: str, counter: str, results: Any, resumed: Any, lease: float) -> None:
    """Take the lock, get frozen (SIGSTOP) by the test past the lease, then try to write."""
    import threading

    locker = ServerLocker(PASSWORD, serverFile=server_file, allowServing=False, reconnect=True,
                          lease=lease, connectTimeout=20)
    lost = threading.Event()
    reasons: list[str] = []
    locker.on_lock_lost(lambda lock_id, reason: (reasons.append(reason), lost.set()))
    ok, lock_id = locker.acquire_lock("counter", timeout=30)
    token = locker.fencing_token(lock_id) if ok else 0
    results.put(("holding", os.getpid(), ok))
    resumed.wait(60)  # the test freezes us somewhere in here, then sets this after SIGCONT
    accepted = fenced_increment(counter, token)
    told = lost.wait(10)
    released = locker.release_lock(lock_id)
    results.put(("sleeper", os.getpid(), (accepted, told, reasons, released, lock_id in locker.ownedLocks)))
    locker.stop()


def try_start(server_file: str, results: Any) -> None:
    """Start a locker (not allowed to serve) and report whether it connected, and how long it took."""
    started = time.monotonic()
    locker = ServerLocker(PASSWORD, serverFile=server_file, allowServing=False, connectTimeout=20)
    try:
        results.put((locker.isClient, time.monotonic() - started))
    finally:
        locker.stop()
