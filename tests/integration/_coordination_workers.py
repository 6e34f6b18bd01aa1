"""Functions run in child processes (spawned) by test_coordination.py.

Times are ``time.monotonic()`` readings: CLOCK_MONOTONIC is one clock for every
process of the machine, so the parent compares them across processes. A hold is
logged as (asked, entered, exited, token): ``entered`` is read after the grant and
``exited`` before the release, so a logged interval lies inside the real hold, and
two logged intervals that overlap prove that the two holds overlapped.

Processes the tests kill with -9 talk only through queues of their own (one writer,
one reader): a process killed while holding a lock shared between processes (a
shared queue's, an Event's) would stall every other user of it.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from pylocker import LimitMismatch, LockTimeout, ServerLocker

PASSWORD = "test-password"


def _locker(server_file: str, **kwargs: Any) -> ServerLocker:
    options = {"port": 0, "connectTimeout": 20, "allowServing": False, **kwargs}
    return ServerLocker(PASSWORD, serverFile=server_file, **options)


def semaphore_worker(server_file: str, name: str, limit: int, iterations: int, hold: float,
                     start: Any, results: Any) -> None:
    """Take a slot of ``semaphore(name, limit)`` ``iterations`` times, holding each ``hold`` s.

    Reports ("ready", unique name), then ("done", holds, mismatch): ``mismatch`` names
    what asking for the same semaphore with another limit raised while it was in use.
    """
    locker = _locker(server_file)
    try:
        results.put(("ready", locker.uniqueName))
        start.wait(30)
        semaphore = locker.semaphore(name, limit)
        holds: list[tuple[float, float, float, int]] = []
        mismatch = "nothing"
        for index in range(iterations):
            asked = time.monotonic()
            with semaphore.acquire(timeout=30) as slot:
                entered = time.monotonic()
                if index == 0:  # the name is in use (by us at least): another limit is refused
                    try:
                        locker.semaphore(name, limit + 1).acquire(timeout=2).release()
                    except LimitMismatch:
                        mismatch = "LimitMismatch"
                    except Exception as exc:  # noqa: BLE001 - reported to the test, which fails
                        mismatch = repr(exc)
                time.sleep(hold)  # the work done under the slot
                exited = time.monotonic()
                holds.append((asked, entered, exited, slot.token))
        results.put(("done", holds, mismatch))
    finally:
        locker.stop()


def reader(server_file: str, name: str, hold: float, stop_file: str, results: Any) -> None:
    """Hold ``name`` shared for ``hold`` s, again and again, until ``stop_file`` exists.

    Reports ("holding", unique name) at its first hold, then ("done", holds).
    """
    locker = _locker(server_file)
    holds: list[tuple[float, float, float, int]] = []
    try:
        while not os.path.exists(stop_file):
            asked = time.monotonic()
            with locker.lock(name, timeout=30, shared=True) as lock:
                entered = time.monotonic()
                if not holds:
                    results.put(("holding", locker.uniqueName))
                time.sleep(hold)
                exited = time.monotonic()
                holds.append((asked, entered, exited, lock.token))
        results.put(("done", holds))
    finally:
        locker.stop()


def writer(server_file: str, name: str, count: int, hold: float, pause: float, go: Any, results: Any) -> None:
    """Once ``go`` is set, hold ``name`` exclusively ``count`` times (``pause`` s apart); report ("done", holds).

    A hold not granted within 10 s is logged with ``entered`` None.
    """
    locker = _locker(server_file)
    holds: list[tuple[float, float | None, float | None, int | None]] = []
    try:
        results.put(("ready", locker.uniqueName))
        go.wait(30)
        for _ in range(count):
            asked = time.monotonic()
            try:
                with locker.lock(name, timeout=10) as lock:
                    entered = time.monotonic()
                    time.sleep(hold)
                    exited = time.monotonic()
                    holds.append((asked, entered, exited, lock.token))
            except LockTimeout:
                holds.append((asked, None, None, None))
            time.sleep(pause)  # let the readers stream again before the next request
        results.put(("done", holds))
    finally:
        locker.stop()


def queued_waiter(server_file: str, kind: str, name: str, timeout: float, hold: float,
                  go: Any, finish: Any, results: Any) -> None:
    """Once ``go`` is set, wait up to ``timeout`` s for ``name``.

    ``kind``: "lock" (exclusive), "shared", or "semaphore" (a slot of ``semaphore(name, 1)``).

    Reports ("ready", unique name), then ("granted", token, entered, exited) after a
    hold of ``hold`` s, or ("timeout", seconds waited, exception type). The locker
    stays connected until ``finish`` is set, so that what the server still shows of
    a timed-out request is not cleaned away by a disconnection.
    """
    locker = _locker(server_file)
    try:
        results.put(("ready", locker.uniqueName))
        go.wait(30)
        asked = time.monotonic()
        try:
            if kind in ("lock", "shared"):
                held: Any = locker.lock(name, timeout=timeout, shared=kind == "shared")
                held.__enter__()
            else:
                held = locker.semaphore(name, 1).acquire(timeout=timeout)
        except LockTimeout as exc:
            results.put(("timeout", time.monotonic() - asked, type(exc).__name__))
        else:
            entered = time.monotonic()
            token = held.token
            time.sleep(hold)
            exited = time.monotonic()
            held.release()
            results.put(("granted", token, entered, exited))
        finish.wait(60)
    finally:
        locker.stop()


def coordinator(server_file: str, commands: Any, replies: Any, kwargs: Any = None) -> None:
    """A locker in its own process that runs the test's commands on coordination primitives.

    Commands are (command, args); each gets ("ok", command, result) or ("error",
    command, "ExceptionType: message"). ``campaign`` answers at once and runs the
    campaign on a thread of its own, which reports ("leader", group, token, when)
    once elected (or ("campaign-error", group, exception)). Keys name what is held:

    * ("lock", key, name, shared, timeout) -> token
    * ("any", key, names, timeout) -> (the name granted, token) (``lock_any``)
    * ("slot", key, name, limit, timeout) -> token
    (a command that waits for a grant blocks this agent until it is answered)
    * ("release", key) -> None
    * ("join", group, info) / ("leave", group)
    * ("campaign", group, timeout) / ("resign", group)
    * ("state",) -> what this locker believes it holds, and its role
    * ("stop",)
    """
    locker = _locker(server_file, **(kwargs or {}))
    held: dict[str, Any] = {}
    elections: dict[str, Any] = {}
    groups: dict[str, Any] = {}

    def campaign(group: str, timeout: float | None) -> None:
        try:
            token = elections[group].campaign(timeout)
        except Exception as exc:  # noqa: BLE001 - reported to the test, which decides
            replies.put(("campaign-error", group, f"{type(exc).__name__}: {exc}", time.monotonic()))
        else:
            replies.put(("leader", group, token, time.monotonic()))

    def state() -> dict[str, Any]:
        return {
            "role": "server" if locker.isServer else "client" if locker.isClient else "none",
            "held": {key: (lock.is_acquired, lock.token) for key, lock in held.items()},
            "leader": {group: (election.is_leader, election.token) for group, election in elections.items()},
            "joined": {group: member.joined for group, member in groups.items()},
        }

    replies.put(("ready", locker.uniqueName, os.getpid()))
    try:
        while True:
            command, *args = commands.get(timeout=120)
            if command == "stop":
                return
            try:
                result: Any = None
                if command == "lock":
                    key, name, shared, timeout = args
                    lock = locker.lock(name, timeout=timeout, shared=shared)
                    lock.__enter__()
                    held[key] = lock
                    result = lock.token
                elif command == "any":
                    key, names, timeout = args
                    lock = locker.lock_any(names, timeout=timeout)
                    lock.__enter__()
                    held[key] = lock
                    result = (lock.name, lock.token)
                elif command == "slot":
                    key, name, limit, timeout = args
                    held[key] = locker.semaphore(name, limit).acquire(timeout=timeout)
                    result = held[key].token
                elif command == "release":
                    held.pop(args[0]).release()
                elif command == "join":
                    group, info = args
                    groups.setdefault(group, locker.group(group)).join(info)
                elif command == "leave":
                    groups[args[0]].leave()
                elif command == "campaign":
                    group, timeout = args
                    elections.setdefault(group, locker.election(group))
                    threading.Thread(target=campaign, args=(group, timeout), daemon=True).start()
                elif command == "resign":
                    elections[args[0]].resign()
                elif command == "state":
                    result = state()
                else:
                    raise ValueError(f"unknown command {command!r}")
                replies.put(("ok", command, result))
            except Exception as exc:  # noqa: BLE001 - reported to the test, which decides
                replies.put(("error", command, f"{type(exc).__name__}: {exc}"))
    finally:
        locker.stop()
