"""The figures of one peer: the throughput phases on a pool of clients, and the leader changes.

A peer's connection (``conn``) is what its workers need to reach the service:
pylocker's server file and source tree, or ZooKeeper's port and session timeout.
"""

from __future__ import annotations

import argparse
import itertools
import queue
import signal
import threading
import time
from pathlib import Path
from typing import Any

import harness
from harness import BenchError, say

from . import gauge
from .common import ELECTION_GROUP, ENTRY


class Worker(harness.Worker):
    """A worker running ``bench_coordination.py --worker ROLE``."""

    def __init__(self, role: str, spec: dict[str, Any], label: str, logdir: Path) -> None:
        super().__init__(ENTRY, role, spec, label, logdir)


class Suite:
    """Runs the figures of each peer; every worker is started here and stopped by PID."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.duration = args.duration or (1.0 if args.quick else 3.0)
        self.slices = 5 if args.quick else 10
        self.processes = args.processes
        self.limit = args.limit
        self.candidates = args.candidates
        self.kills = args.kills or (3 if args.quick else 5)
        self.lease = args.lease
        self.work = workdir
        self._n = 0

    def directory(self, name: str) -> Path:
        self._n += 1
        path = self.work / f"{self._n:02d}-{name}"
        path.mkdir()
        return path

    # --------------------------------------------------------------- throughput
    def throughput(self, impl: str, conn: dict[str, Any]) -> dict[str, Any]:
        """Shared, exclusive (one name, a name each), mixed and semaphore phases on one pool of clients."""
        d = self.directory(f"{impl}-throughput")
        spec = dict(conn, impl=impl, limit=self.limit)
        pool = [Worker("client", dict(spec, name=f"{impl}-client{i}"), f"{impl}-client{i}", d)
                for i in range(self.processes + 1)]  # the last one is the mixed phase's writer
        try:
            ready = [w.recv(90) for w in pool]
            out: dict[str, Any] = {"session": {k: v for k, v in ready[0].items() if k.endswith("_s")}}
            readers = pool[:self.processes]
            say(f"{impl}: {self.processes} processes, shared lock")
            out["shared"] = self._phase(d, [(w, "shared") for w in readers])
            say(f"{impl}: {self.processes} processes, exclusive lock")
            out["exclusive"] = self._phase(d, [(w, "exclusive") for w in readers])
            say(f"{impl}: {self.processes} processes, exclusive lock, a name each")
            out["own"] = self._phase(d, [(w, "own") for w in readers])
            say(f"{impl}: {self.processes} readers and 1 writer")
            out["mixed"] = self._phase(d, [(w, "reader") for w in readers] + [(pool[-1], "writer")], "mixed")
            say(f"{impl}: {self.processes} processes, semaphore of {self.limit}")
            out["semaphore"] = self._phase(d, [(w, "slot") for w in readers], "semaphore")
            out["semaphore"]["limit"] = self.limit
            return out
        finally:
            for w in pool:
                w.stop()

    def _phase(self, d: Path, parts: list[tuple[Worker, str]], gauge_name: str = "") -> dict[str, Any]:
        """Run one phase: each worker its kind, all from one instant; totals per kind, and the gauge."""
        path = d / f"{gauge_name or 'none'}.gauge"
        gauge.create(path)
        t0 = time.monotonic() + 0.3
        for w, kind in parts:
            w.send(f"run {kind} {t0!r} {self.duration!r} {self.slices} {path}")
        results = [(kind, w.recv(self.duration + 60)) for w, kind in parts]
        out: dict[str, Any] = {}
        for kind in dict.fromkeys(kind for _, kind in parts):
            out[kind] = _totals([r for k, r in results if k == kind])
        if gauge_name:
            out["gauge"] = gauge.read(path)
        return out

    # ---------------------------------------------------------------- elections
    def election(self, impl: str, conn: dict[str, Any]) -> dict[str, Any]:
        """Candidates campaign; the leader is SIGKILLed ``kills`` times; kill -> next campaign() return."""
        d = self.directory(f"{impl}-election")
        spec = dict(conn, impl=impl, group=ELECTION_GROUP)
        leaders: queue.Queue[tuple[Worker, dict[str, Any] | BenchError]] = queue.Queue()
        numbers = itertools.count()
        killed: set[Worker] = set()
        everyone: list[Worker] = []
        wait = self.kills * (self.lease * 4 + 60) + 60  # a watcher thread's bound: the whole phase

        def watch(w: Worker) -> None:
            try:
                leaders.put((w, w.recv(wait, key="leader")))
            except BenchError as exc:
                leaders.put((w, exc))

        def spawn() -> Worker:
            i = next(numbers)
            w = Worker("candidate", dict(spec, name=f"{impl}-candidate{i}"), f"{impl}-candidate{i}", d)
            everyone.append(w)
            return w

        def campaign(w: Worker) -> None:
            w.send("campaign")
            w.recv(30, key="campaigning")
            threading.Thread(target=watch, args=(w,), daemon=True).start()

        def next_leader(timeout: float) -> tuple[Worker, dict[str, Any]]:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    w, got = leaders.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    raise BenchError(f"{impl}: no new leader within {timeout:.0f} s") from None
                if isinstance(got, dict):
                    return w, got
                if w not in killed:
                    raise got

        try:
            # Every candidate starts (and connects) up front; a spare enters the race before each
            # kill, so that N candidates campaign at every kill and no start-up is measured.
            workers = [spawn() for _ in range(self.candidates + self.kills)]
            ready = [w.recv(90) for w in workers]
            spares = workers[self.candidates:]
            for w in workers[:self.candidates]:
                campaign(w)
            leader, won = next_leader(60)
            tokens = [won["token"]]
            kills: list[dict[str, Any]] = []
            for n, fresh in enumerate(spares):
                campaign(fresh)
                t_kill = time.monotonic()
                leader.signal(signal.SIGKILL)
                killed.add(leader)
                successor, won = next_leader(self.lease * 4 + 60)
                latency = won["t"] - t_kill
                kills.append({"latency_s": latency, "token": won["token"], "leader_pid": won["leader"]})
                tokens.append(won["token"])
                say(f"{impl}: kill {n + 1}/{self.kills}: next leader after {latency * 1000:.0f} ms")
                leader.stop()  # reaped
                leader = successor
        finally:
            for w in everyone:
                w.stop()
        latencies = sorted(k["latency_s"] for k in kills)
        return {"session": {k: v for k, v in ready[0].items() if k.endswith("_s")},
                "candidates": self.candidates, "kills": kills, "tokens": tokens,
                "tokens_increase": all(a < b for a, b in zip(tokens, tokens[1:])),
                "median_s": latencies[len(latencies) // 2] if latencies else None,
                "min_s": latencies[0] if latencies else None, "max_s": latencies[-1] if latencies else None}


def _totals(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Workers that ran the same slices: the total per second of the median slice (mean and per process too)."""
    width = results[0]["slice_s"]
    per_slice = [sum(r["slices"][i] for r in results) / width for i in range(len(results[0]["slices"]))]
    ordered = sorted(per_slice)
    errors = [r["first_error"] for r in results if r["first_error"]]
    return {"ops_per_s": ordered[len(ordered) // 2], "ops_per_s_mean": sum(r["ops"] / r["elapsed"] for r in results),
            "ops_per_s_slices": per_slice, "per_process": [r["ops"] for r in results],
            "failures": sum(r["failures"] for r in results), "errors": sum(r["errors"] for r in results),
            "first_error": errors[0] if errors else ""}
