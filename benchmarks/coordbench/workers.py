"""The worker roles: each runs in its own process and talks JSON lines on stdin/stdout.

``bench_coordination.py --worker ROLE --spec JSON`` lands in :func:`worker_main`.
Roles: ``server`` (pylocker's serving locker), ``client`` (throughput phases, one
``run`` command at a time) and ``candidate`` (campaigns once, then leads until it is
killed or told to stop). Standard library only at load time.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any, Callable

from harness import Slices, emit, next_command

from .common import KINDS, PHASE_NAMES, TIMEOUT
from .gauge import Gauge
from .peers import Ours, Peer, make_peer


def _sleep_until(t0: float) -> None:
    """Start at the orchestrator's instant ``t0`` (the shared monotonic clock)."""
    delay = t0 - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def _loop(peer: Peer, kind: str, t0: float, duration: float, slices: int, gauge_path: str,
          limit: int) -> dict[str, Any]:
    """Hold and release ``kind``'s name as fast as possible from ``t0`` for ``duration`` s."""
    lock_kind, role = KINDS[kind]
    name = PHASE_NAMES[kind].format(pid=os.getpid())
    gauge = Gauge(gauge_path, limit) if role else None
    counts = Slices(t0, duration, slices)
    ops = failures = errors = 0
    first_error = ""
    _sleep_until(t0)
    start = now = time.monotonic()
    end = t0 + duration
    while now < end:
        try:
            with peer.hold(lock_kind, name, TIMEOUT):
                if gauge is not None:  # right after the grant, right before the release
                    gauge.enter(role)
                    gauge.leave(role)
        except peer.timeouts:
            failures += 1
        except peer.errors as exc:
            errors += 1
            first_error = first_error or f"{type(exc).__name__}: {exc}"
        else:
            ops += 1
        now = time.monotonic()
        counts.tick(now)
    elapsed = time.monotonic() - start
    if gauge is not None:
        gauge.close()
    return {"ops": ops, "elapsed": elapsed, "failures": failures, "errors": errors, "first_error": first_error,
            "slices": counts.counts, "slice_s": counts.width}


def _warm_up(peer: Peer) -> None:
    """The first requests pay for connections and lazy imports: pay before the clock starts."""
    mine = f"warm/{os.getpid()}"
    for kind in ("exclusive", "shared", "slot"):
        for _ in range(5):
            with peer.hold(kind, f"{mine}-{kind}", TIMEOUT):
                pass


def _worker_server(spec: dict[str, Any]) -> None:
    peer = Ours(spec, serve=True)
    emit({"ready": True, "pid": os.getpid(), **peer.session()})
    next_command()  # "stop", or EOF
    peer.close()
    os._exit(0)


def _worker_client(spec: dict[str, Any]) -> None:
    peer = make_peer(spec)
    _warm_up(peer)
    emit({"ready": True, "pid": os.getpid(), **peer.session()})
    while True:
        words = next_command()
        if words[0] != "run":  # run KIND T0 DURATION SLICES GAUGE
            break
        gauge = " ".join(words[5:])
        emit(_loop(peer, words[1], float(words[2]), float(words[3]), int(words[4]), gauge, int(spec["limit"])))
    peer.close()
    os._exit(0)


def _worker_candidate(spec: dict[str, Any]) -> None:
    peer = make_peer(spec)
    emit({"ready": True, "pid": os.getpid(), **peer.session()})
    if next_command()[0] != "campaign":
        os._exit(0)

    def until_stop() -> None:  # the main thread is in campaign() or leads: "stop" ends the process here
        next_command()
        os._exit(0)

    threading.Thread(target=until_stop, daemon=True).start()
    emit({"campaigning": True})
    token = peer.campaign(spec["group"])
    emit({"leader": os.getpid(), "t": time.monotonic(), "token": token})
    threading.Event().wait()  # lead until killed (or stopped by until_stop)


WORKERS: dict[str, Callable[[dict[str, Any]], None]] = {
    "server": _worker_server,
    "client": _worker_client,
    "candidate": _worker_candidate,
}


def worker_main(role: str, spec_json: str) -> None:
    spec = json.loads(spec_json)
    try:
        WORKERS[role](spec)
    except BaseException as exc:
        emit({"error": f"{type(exc).__name__}: {exc}"})
        sys.stderr.flush()
        raise
