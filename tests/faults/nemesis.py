"""Seeded fault schedules, and the nemesis that plays them on a cluster.

A schedule is a list of faults drawn from ``random.Random(seed)``: what, on whom
(the serving candidate, any candidate, a client), for how long, and the pause
after. The same seed gives the same schedule; what the faults hit depends on
timing (which candidate serves, which connection is picked).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from tests.faults.cluster import Cluster, Worker
from tests.faults.proxy import DOWN, UP

KINDS = ("cut_both", "cut_up", "cut_down", "delay", "drop", "stop_server", "stop_client",
         "kill_server", "kill_client", "remove_lock_file", "stop_server_unlock")


@dataclass(frozen=True)
class Fault:
    kind: str
    duration: float  # how long the fault lasts before it is healed
    pause: float  # healthy time after it
    one_connection: bool = False  # proxy faults: one random connection instead of all
    amount: float = 0.0  # delay: seconds added per chunk

    def describe(self) -> str:
        scope = " (one connection)" if self.one_connection else ""
        extra = f" +{self.amount:.2f}s" if self.kind == "delay" else ""
        return f"{self.kind}{extra}{scope} for {self.duration:.2f}s, then {self.pause:.2f}s healthy"


def make_schedule(seed: int, seconds: float, lease: float, kinds: tuple[str, ...] = KINDS) -> list[Fault]:
    """Faults filling about ``seconds``: every kind once in a shuffled order first, then random ones."""
    rng = random.Random(seed)
    order = list(kinds)
    rng.shuffle(order)
    faults: list[Fault] = []
    total = 0.0
    while total < seconds:
        kind = order.pop() if order else rng.choice(kinds)
        if kind in ("stop_server", "stop_client", "stop_server_unlock"):
            duration = rng.uniform(0.2, 2.0 * lease)
        elif kind in ("kill_server", "kill_client", "remove_lock_file", "drop"):
            duration = 0.0
        else:
            duration = rng.uniform(0.3 * lease, 2.0 * lease)
        fault = Fault(kind, duration, pause=rng.uniform(0.3 * lease, 1.5 * lease),
                      one_connection=rng.random() < 0.3, amount=rng.uniform(0.05, 0.6) * lease)
        faults.append(fault)
        total += fault.duration + fault.pause
    return faults


@dataclass
class Nemesis:
    """Plays faults on ``cluster``; ``seed`` also drives the choices of victims."""

    cluster: Cluster
    seed: int
    injected: Counter[str] = field(default_factory=Counter)
    log: list[str] = field(default_factory=list)  # (monotonic time, what was done), for reproductions

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed ^ 0x5EED)
        self._sleep = threading.Event()

    def play(self, schedule: list[Fault], deadline: float) -> None:
        """Inject each fault, wait its duration, heal, pause; stop early at ``deadline``; always heal."""
        try:
            for fault in schedule:
                if time.monotonic() >= deadline:
                    break
                if self.inject(fault):
                    self.injected[fault.kind] += 1
                self._wait(min(fault.duration, deadline - time.monotonic()))
                self.heal()
                self._wait(min(fault.pause, deadline - time.monotonic()))
        finally:
            self.heal()

    def heal(self) -> None:
        self.cluster.heal()

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self._sleep.wait(seconds)  # the fault's duration: sleeping is the schedule itself

    def _note(self, text: str) -> None:
        self.log.append(f"{time.monotonic():.3f} {text}")

    def _server(self) -> Worker | None:
        serving = self.cluster.serving()
        if serving is not None:
            return serving
        candidates = self.cluster.live("candidate")
        return self.rng.choice(candidates) if candidates else None

    def inject(self, fault: Fault) -> bool:
        """Start ``fault``; False if it had no victim (e.g. nobody serving at that instant)."""
        kind = fault.kind
        if kind in ("cut_both", "cut_up", "cut_down", "delay", "drop"):
            server = self._server()
            if server is None or server.proxy is None:
                return False
            one = self.rng if fault.one_connection else None
            if kind == "delay":
                server.proxy.delay(fault.amount, one)
            elif kind == "drop":
                server.proxy.drop(one)
            else:
                server.proxy.cut({"cut_both": (UP, DOWN), "cut_up": (UP,), "cut_down": (DOWN,)}[kind], one)
            self._note(f"{fault.describe()} on {server.name}'s proxy")
            return True
        if kind in ("stop_server", "stop_client", "stop_server_unlock"):
            if kind == "stop_client":
                clients = self.cluster.live("client")
                victim = self.rng.choice(clients) if clients else None
            else:
                victim = self._server()
            if victim is None or not self.cluster.signal(victim, signal.SIGSTOP):
                return False
            if kind == "stop_server_unlock":  # a frozen server whose election lock file goes: split brain?
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.cluster.server_file + ".lock")
            self._note(f"{fault.describe()} on {victim.name} (pid {victim.pid})")
            return True
        if kind in ("kill_server", "kill_client"):
            return self._kill(kind)
        if kind == "remove_lock_file":
            try:
                os.unlink(self.cluster.server_file + ".lock")
            except FileNotFoundError:
                return False
            self._note("removed the election lock file")
            return True
        raise ValueError(f"unknown fault kind {kind!r}")

    def _kill(self, kind: str) -> bool:
        if kind == "kill_server":
            victim = self.cluster.serving()
        else:
            clients = self.cluster.live("client")
            victim = self.rng.choice(clients) if clients else None
        if victim is None:
            return False
        self.cluster.signal(victim, signal.SIGKILL)
        replacement = self.cluster.add_candidate() if kind == "kill_server" else self.cluster.add_client()
        self._note(f"{kind}: -9 to {victim.name} (pid {victim.pid}), started {replacement.name}")
        return True
