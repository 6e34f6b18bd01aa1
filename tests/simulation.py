#!/usr/bin/env python3
"""Deterministic simulation of pylocker: the real cores, a simulated network, clock and faults.

One integer seed derives everything in a run: how many clients, names, leases and
maxLockTime, network delays, and every fault (partitions, broken connections,
paused and crashed clients, server deaths and re-elections). The production
``ServerCore`` and ``ClientCore`` run unmodified; what the locker node does
around them (re-claims after a failover, believing in a lock until its lease
clock says otherwise) is modelled by ``Actor``. After every event the checker
verifies the safety rules:

* no name is believed held by two clients at once, unless both hold it shared, or
  both hold one of its slots and no more clients than its limit do;
* fencing tokens grow strictly per name;
* every grant answers the request that asked for it (same client, same names);
* no lock outlives its owner's lease once the owner is gone (crashed);
* waiters are served in arrival order (no grant overtakes an earlier waiter).

After the faults stop, a liveness phase checks that every waiting acquire was
answered. A failing seed prints its options and replays exactly::

    python tests/simulation.py --seeds 100000        # run seeds 0..99999
    python tests/simulation.py --seed 1234 --verbose  # replay one, with its trace
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pylocker import protocol as p
from pylocker.client_core import ClientCore, LeaseLapsed, LockExpired, Reply
from pylocker.election.base import first_token
from pylocker.election.memory import MemoryElectionStore
from pylocker.holds import PLAIN, SHARED, SLOT, Claim
from pylocker.server_core import ServerCore

GRANT_TYPES = {p.encode(p.Grant(0, "", 0))[2], p.encode(p.GrantNames(0, "", 0, ["n"]))[2]}  # their type bytes
SLOT_LIMIT = 2  # every slot claim of a run asks for this limit (a mismatch is refused: tested elsewhere)
BREAK_AFTER = 4.0  # a partition longer than this breaks the connection (ZeroMQ's heartbeat timeout)


class Violation(AssertionError):
    """A safety or liveness rule broke."""


class LivenessViolation(Violation):
    """After the faults stopped, something that should have happened did not."""


@dataclass
class Options:
    """Everything a seed decides."""

    seed: int
    clients: int
    names: list[str]
    lease: float
    max_lock_time: float | None
    delay: float  # largest one-way network delay
    duration: float  # simulated seconds with faults
    fault_rate: float  # faults per simulated second
    server_dies: bool
    claims: bool  # clients also ask for shared locks, slots and any-of locks

    @classmethod
    def from_seed(cls, seed: int) -> Options:
        rng = random.Random(seed)
        return cls(seed=seed, clients=rng.randint(2, 5), names=[f"n{i}" for i in range(rng.randint(1, 3))],
                   lease=rng.choice([1.0, 2.0, 3.0]), max_lock_time=rng.choice([None, None, 1.5, 4.0]),
                   delay=rng.choice([0.0005, 0.005, 0.05]), duration=rng.uniform(3, 10),
                   fault_rate=rng.choice([0.0, 0.2, 0.5, 1.0]), server_dies=rng.random() < 0.5,
                   claims=rng.random() < 0.6)


class Connection:
    """One client's connection to one server incarnation: two FIFO directions."""

    def __init__(self, world: World, actor: Actor, server: ServerHost) -> None:
        self.world, self.actor, self.server = world, actor, server
        self.dead = False
        self.cut_until = 0.0
        self._last = {True: 0.0, False: 0.0}

    def send(self, frame: bytes, up: bool) -> None:
        if self.dead:
            return
        world = self.world
        at = max(world.now, self.cut_until) + world.rng.uniform(0, world.options.delay)
        at = max(at, self._last[up])  # ZeroMQ keeps order per connection
        self._last[up] = at
        world.schedule(at, self._deliver, frame, up)

    def _deliver(self, frame: bytes, up: bool) -> None:
        if self.dead:
            return  # in flight when the connection broke: lost
        if up:
            if not self.server.dead:
                self.server.receive(self.actor.peer, frame)
        else:
            self.actor.receive(self, frame)

    def cut(self, seconds: float) -> None:
        """A partition: frames wait; past BREAK_AFTER the connection breaks and loses them."""
        self.cut_until = self.world.now + seconds
        if seconds > BREAK_AFTER:
            self.world.schedule(self.world.now + BREAK_AFTER, self.break_)

    def break_(self) -> None:
        if not self.dead:
            self.dead = True
            self.actor.disconnected(self)


class ServerHost:
    """One serving incarnation: the real ServerCore, ticked at its deadlines."""

    def __init__(self, world: World, epoch: int, recover_from: set[str] | None) -> None:
        self.world = world
        self.dead = False
        options = world.options
        self.core = ServerCore(name="server", unique_name=f"server-{epoch}", now=world.now, id_prefix=f"{epoch}.",
                               max_lock_time=options.max_lock_time, lease=options.lease, epoch=epoch,
                               first_token=first_token(epoch), recover_from=recover_from,
                               grace=max(options.lease, 2.0))
        self.connections: dict[bytes, Connection] = {}
        self._tick_at: float | None = None
        self.wake()

    def receive(self, peer: bytes, frame: bytes) -> None:
        self.core.receive(peer, [frame], self.world.now)
        self.flush()

    def tick(self) -> None:
        if self.dead:
            return
        self._tick_at = None
        self.core.tick(self.world.now)
        self.flush()

    def flush(self) -> None:
        out = self.core.take()
        for peer, frame in out.sends:
            self.world.checker.server_sent(self, peer, frame)
            connection = self.connections.get(peer)
            if connection is not None:
                connection.send(frame, up=False)
        self.wake()

    def wake(self) -> None:
        deadline = self.core.next_deadline()
        if deadline is not None and (self._tick_at is None or deadline < self._tick_at):
            self._tick_at = deadline
            self.world.schedule(max(deadline, self.world.now), self.tick)


@dataclass
class Held:
    names: tuple[str, ...]
    token: int
    expires_at: float | None = None
    claim: Claim = PLAIN


@dataclass
class Actor:
    """A client locker: the real ClientCore, with the node's rules modelled around it."""

    world: World
    index: int
    peer: bytes = b""
    core: ClientCore | None = None
    connection: Connection | None = None
    believed: dict[str, Held] = field(default_factory=dict)
    waiting: dict[int, tuple[tuple[str, ...], float]] = field(default_factory=dict)  # rid -> (names, deadline)
    reclaiming: dict[int, str] = field(default_factory=dict)
    claims: dict[int, Claim] = field(default_factory=dict)  # rid -> how a waiting request asked
    crashed: bool = False
    paused_until: float = 0.0
    fresh: bool = False
    believe_until: float | None = None
    tick_at: float | None = None
    acquires_granted: int = 0
    crashed_at: float = 0.0

    def __post_init__(self) -> None:
        self.peer = f"client-{self.index}".encode()
        self.request_ids = itertools.count(1)  # one counter for all its connections, as the node keeps

    def believes(self, lock_id: str) -> bool:
        """Whether this client would act as the holder of ``lock_id`` now (its own clocks say so)."""
        if self.crashed or lock_id not in self.believed:
            return False
        core = self.core
        expires_at = self.believed[lock_id].expires_at
        if expires_at is not None and self.world.now >= expires_at:
            return False
        if core is not None and core.welcome is not None and not self.reclaiming:
            return core.holds(lock_id, self.world.now)
        return self.believe_until is None or self.world.now < self.believe_until

    @property
    def name(self) -> str:
        return self.peer.decode()

    # --------------------------------------------------------------- connecting
    def connect(self) -> None:
        world = self.world
        server = world.server
        if self.crashed or server is None or server.dead:
            world.schedule(world.now + 0.1, self.connect)
            return
        self.connection = connection = Connection(world, self, server)
        server.connections[self.peer] = connection
        self.core = core = ClientCore(name=self.name, unique_name=self.name, pid=self.index, now=world.now,
                                      request_ids=self.request_ids)
        self.waiting.clear()
        self.reclaiming.clear()
        self.tick_at = None  # the old connection's tick dies with it; the new core's is scheduled by flush
        if self.fresh:
            core.send(p.Bye(0))
            self.fresh = False
        core.hello(world.now)
        self.flush()

    def disconnected(self, connection: Connection) -> None:
        if connection is not self.connection or self.crashed:
            return
        core = self.core
        self.believe_until = core.valid_until if core is not None and core.welcome is not None else None
        if self.believe_until is not None:
            self.world.schedule(self.believe_until, self.check_belief, connection)
        self.connection = None
        self.core = None
        self.world.schedule(self.world.now + self.world.rng.uniform(0.01, 0.3), self.connect)

    def check_belief(self, lost: Connection) -> None:
        # Not re-claimed by the lease clock of the lost connection: the locks may be re-granted.
        if self.believe_until is not None and self.world.now >= self.believe_until and self.reclaim_pending(lost):
            self.lose_all("lease (failover too slow)")
            self.fresh = True

    def reclaim_pending(self, lost: Connection) -> bool:
        return self.connection is None or self.connection is lost or bool(self.reclaiming) or (
            self.core is not None and self.core.welcome is None)

    def lose_all(self, reason: str) -> None:
        self.world.trace(f"{self.name} loses {sorted(self.believed)} ({reason})")
        self.believed.clear()

    # ------------------------------------------------------------------ input
    def receive(self, connection: Connection, frame: bytes) -> None:
        if self.crashed or connection is not self.connection or self.core is None:
            return
        if self.world.now < self.paused_until:
            self.world.schedule(self.paused_until, self.receive, connection, frame)
            return
        self.core.receive(frame, self.world.now)
        self.flush()

    def flush(self) -> None:
        core, connection = self.core, self.connection
        if core is None or connection is None:
            return
        while True:  # events may ask for more frames (re-claims after a Welcome)
            sends, events = core.take()
            for frame in sends:
                connection.send(frame, up=True)
            if not events:
                break
            for event in events:
                self.on_event(event)
                if self.core is not core:
                    return  # the event ended this connection
        deadline = core.next_deadline()
        if deadline is not None and (self.tick_at is None or deadline < self.tick_at or self.tick_at < self.world.now):
            self.tick_at = deadline
            self.world.schedule(max(deadline, self.world.now), self.tick, core)

    def tick(self, core: ClientCore) -> None:
        if self.crashed or core is not self.core:
            return
        if self.world.now < self.paused_until:
            self.world.schedule(self.paused_until, self.tick, core)
            return
        self.tick_at = None
        core.tick(self.world.now)
        self.flush()

    def on_event(self, event: Any) -> None:
        world = self.world
        if isinstance(event, Reply):
            message = event.message
            if isinstance(message, p.Welcome):
                self.believe_until = None
                self.start_reclaims()
            elif isinstance(message, (p.Grant, p.GrantNames)):
                names, _ = self.waiting.pop(event.request_id, ((), 0.0))
                claim = self.claims.pop(event.request_id, PLAIN)
                world.checker.granted(self, message, names, claim)
                held_names = tuple(message.names) if isinstance(message, p.GrantNames) else names
                self.believed[message.lock_id] = Held(held_names, message.token, self.core.expiry(message.lock_id),
                                                      claim)
                self.acquires_granted += 1
                world.schedule(world.now + world.rng.expovariate(1 / 0.3), self.release, message.lock_id)
            elif isinstance(message, (p.Timeout, p.Error)):
                self.waiting.pop(event.request_id, None)
                self.claims.pop(event.request_id, None)
            elif isinstance(message, p.Reclaimed):
                lock_id = self.reclaiming.pop(event.request_id, "")
                held = self.believed.get(lock_id)
                if message.granted and held is not None and self.core is not None:
                    self.core.keep_expiry(lock_id, held.expires_at)
                if not message.granted and lock_id in self.believed:
                    world.trace(f"{self.name} re-claim of {lock_id} refused")
                    del self.believed[lock_id]
                if not self.reclaiming and self.core is not None:
                    self.core.send(p.ReclaimDone(0))
        elif isinstance(event, LockExpired):
            if self.believed.pop(event.lock_id, None) is not None:
                world.trace(f"{self.name} told {event.lock_id} expired ({event.reason})")
        elif isinstance(event, LeaseLapsed):
            self.lose_all("lease lapsed")
            self.fresh = True
            connection = self.connection
            if connection is not None:
                connection.dead = True
                self.disconnected(connection)

    def start_reclaims(self) -> None:
        core = self.core
        if core is None:
            return
        for lock_id, held in list(self.believed.items()):
            rid = core.request(lambda r, i=lock_id, h=held: p.Reclaim(r, i, list(h.names), h.token, *h.claim),
                               self.world.now)
            self.reclaiming[rid] = lock_id
        if not self.reclaiming:
            core.send(p.ReclaimDone(0))

    # --------------------------------------------------------------- behaviour
    def act(self) -> None:
        world = self.world
        if self.crashed:
            return
        world.schedule(world.now + world.rng.expovariate(1 / 0.35), self.act)
        core = self.core
        if world.now < self.paused_until or core is None or core.welcome is None or self.reclaiming:
            return
        if len(self.waiting) >= 2:
            return
        names = tuple(world.rng.sample(world.options.names, world.rng.randint(1, len(world.options.names))))
        timeout = world.rng.choice([0.0, 0.2, 1.0, 3.0])
        claim = world.rng.choice([PLAIN, PLAIN, Claim(SHARED), Claim(SLOT, SLOT_LIMIT), Claim(any_of=True),
                                  Claim(SHARED, any_of=True)]) if world.options.claims else PLAIN
        if claim is PLAIN:
            rid = core.request(lambda r: p.Acquire(r, list(names), timeout), world.now, is_acquire=True)
        else:
            rid = core.request(lambda r: p.Claim(r, list(names), timeout, *claim), world.now, is_acquire=True)
            self.claims[rid] = claim
        self.waiting[rid] = (names, world.now + timeout)
        self.flush()

    def release(self, lock_id: str) -> None:
        if self.crashed or lock_id not in self.believed:
            return
        core = self.core
        if core is None or core.welcome is None or self.world.now < self.paused_until or self.reclaiming:
            self.world.schedule(self.world.now + 0.05, self.release, lock_id)  # as the node waits to be online
            return
        del self.believed[lock_id]  # belief ends when the release is sent
        core.send(p.Release(0, lock_id))
        self.flush()


class Checker:
    """The safety rules, checked after every event."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.tokens: dict[str, int] = {}
        self.grants = 0

    def server_sent(self, server: ServerHost, peer: bytes, frame: bytes) -> None:
        if frame[2] not in GRANT_TYPES:  # [VERSION, TYPE, ...]: only grants are checked here
            return
        message = p.decode(frame)
        if not isinstance(message, (p.Grant, p.GrantNames)):
            return
        held = server.core.table.get(message.lock_id)
        if held is None or held.owner != peer:
            raise Violation(f"grant of {message.lock_id} sent to {peer!r}, held by {held and held.owner!r}")
        prefix, _, number = message.lock_id.rpartition(".")
        order = int(number, 16)
        for name in held.names:
            last = self.tokens.get(name, 0)
            if message.token <= last:
                raise Violation(f"token {message.token} for {name} after {last}")
            self.tokens[name] = message.token
            earlier = [w for w in server.core.table.waiters(name)
                       if w.startswith(prefix + ".") and int(w.rpartition(".")[2], 16) < order]
            if earlier:
                raise Violation(f"{message.lock_id} granted {name} before earlier waiters {earlier}")
        self.grants += 1

    def granted(self, actor: Actor, grant: p.Grant | p.GrantNames, names: tuple[str, ...], claim: Claim) -> None:
        if not names:
            raise Violation(f"{actor.name} got {grant.lock_id} for no request of its own")
        if isinstance(grant, p.GrantNames) and (
                not set(grant.names) <= set(names) or (claim.any_of and len(grant.names) != 1)):
            raise Violation(f"{grant.lock_id} grants {grant.names} for a request of {names} ({claim})")
        server = self.world.server
        if server is not None and not server.dead:
            held = server.core.table.get(grant.lock_id)
            expected = (tuple(grant.names),) if isinstance(grant, p.GrantNames) else (names,)
            if held is not None and (held.owner != actor.peer or tuple(held.names) not in expected
                                     or held.claim != claim):
                raise Violation(f"{grant.lock_id} answers {actor.name}'s request for {names}, but is {held.names}")

    def after_event(self) -> None:
        believers: dict[str, list[tuple[Actor, str, Claim]]] = {}
        for actor in self.world.actors:
            for lock_id, held in actor.believed.items():
                if not actor.believes(lock_id):
                    continue
                for name in held.names:
                    others = believers.setdefault(name, [])
                    others.append((actor, lock_id, held.claim))
                    if len(others) > 1 and not _may_share(others):
                        raise Violation(f"{name} believed held at once by "
                                        + ", ".join(f"{a.name} ({i}, mode {c.mode})" for a, i, c in others))
        server = self.world.server
        if self.world.crashed and server is not None and not server.dead:
            lease = self.world.options.lease
            for actor in self.world.crashed:
                gone = self.world.now > actor.crashed_at + lease + 0.01
                if gone and server.core.table.locks_of(actor.peer):
                    raise Violation(f"{actor.name} crashed at {actor.crashed_at:.3f} and still holds locks")


def _may_share(holders: list[tuple[Actor, str, Claim]]) -> bool:
    """Whether these holders may hold one name together: all shared, or all slots within the limit."""
    modes = {claim.mode for _, _, claim in holders}
    if modes == {SHARED}:
        return True
    return modes == {SLOT} and len(holders) <= min(claim.limit for _, _, claim in holders)


class World:
    """The event loop: simulated time, the actors, the server, the faults."""

    def __init__(self, options: Options, verbose: bool = False) -> None:
        self.options = options
        self.rng = random.Random(options.seed ^ 0x5EED)
        self.now = 0.0
        self.verbose = verbose
        self._queue: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self.election = MemoryElectionStore(f"sim-{options.seed}")
        self.checker = Checker(self)
        self.server: ServerHost | None = None
        self.actors = [Actor(self, i) for i in range(options.clients)]
        self.faults = 0
        self.crashed: list[Actor] = []

    def schedule(self, at: float, action: Callable[..., None], *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (at, self._seq, action, args))

    def trace(self, text: str) -> None:
        if self.verbose:
            print(f"{self.now:9.4f}  {text}")  # noqa: T201 (the replay trace)

    def elect(self, recover_from: set[str] | None) -> None:
        term = self.election.campaign()
        if term is None:
            return
        self.server = ServerHost(self, term.epoch, recover_from)
        self.trace(f"server epoch {term.epoch} elected (recovering from {sorted(recover_from or ())})")

    def kill_server(self) -> None:
        server = self.server
        if server is None or server.dead:
            return
        server.dead = True
        clients = set(server.core.successor_must_wait_for())  # what its server file names
        self.election.kill()
        self.trace(f"server epoch {server.core.epoch} killed; clients {sorted(clients)}")
        for connection in list(server.connections.values()):
            if self.rng.random() < 0.7:  # the kernel resets the connection: noticed at once
                self.schedule(self.now + self.rng.uniform(0, 0.01), connection.break_)
            else:
                connection.dead = True  # silence: noticed by the lease clock only
        self.schedule(self.now + self.rng.uniform(0.05, 1.0), self.elect, clients)

    def fault(self) -> None:
        options, rng = self.options, self.rng
        if self.now >= options.duration:
            return
        self.schedule(self.now + rng.expovariate(options.fault_rate), self.fault)
        self.faults += 1
        actor = rng.choice(self.actors)
        kind = rng.choice(["cut", "cut", "pause", "crash", "break", "server"])
        if kind == "server" and options.server_dies:
            self.kill_server()
        elif kind == "cut" and actor.connection is not None:
            seconds = rng.choice([0.1, 1.0, options.lease * 0.95, options.lease * 1.5, BREAK_AFTER + 1])
            self.trace(f"cut {actor.name} for {seconds:.2f} s")
            actor.connection.cut(seconds)
        elif kind == "pause" and not actor.crashed:
            seconds = rng.choice([0.1, options.lease * 0.95, options.lease * 1.5])
            self.trace(f"pause {actor.name} for {seconds:.2f} s")
            actor.paused_until = self.now + seconds
        elif kind == "crash" and not actor.crashed and sum(not a.crashed for a in self.actors) > 1:
            self.trace(f"crash {actor.name}")
            actor.crashed = True
            actor.crashed_at = self.now
            self.crashed.append(actor)
            if actor.connection is not None:
                actor.connection.dead = True
        elif kind == "break" and actor.connection is not None:
            self.trace(f"break {actor.name}'s connection")
            actor.connection.break_()

    def run(self) -> None:
        self.elect(None)
        for actor in self.actors:
            actor.crashed_at = 0.0
            self.schedule(self.rng.uniform(0, 0.05), actor.connect)
            self.schedule(self.rng.uniform(0.1, 0.3), actor.act)
        if self.options.fault_rate:
            self.schedule(self.rng.expovariate(self.options.fault_rate), self.fault)
        end = self.options.duration + 2 * self.options.lease + 8  # the faults stop; everything settles
        check = self.checker.after_event
        steps = 0
        while self._queue and steps < 200_000:
            at, _, action, args = heapq.heappop(self._queue)
            if at > end:
                break
            self.now = max(self.now, at)
            action(*args)
            check()
            steps += 1
        self.check_liveness()

    def check_liveness(self) -> None:
        for actor in self.actors:
            if actor.crashed:
                continue
            patience = 2 * self.options.lease + 6
            late = [rid for rid, (_, deadline) in actor.waiting.items() if self.now > deadline + patience]
            if late:
                raise LivenessViolation(f"{actor.name}'s acquires {late} were never answered")
        live = [actor for actor in self.actors if not actor.crashed]
        if live and not any(actor.acquires_granted for actor in live) and self.faults == 0:
            raise LivenessViolation("no client was ever granted a lock")


def run_seed(seed: int, verbose: bool = False) -> World:
    """Run one seed; raises Violation (with the seed's options in the message) on a broken rule."""
    options = Options.from_seed(seed)
    world = World(options, verbose)
    try:
        world.run()
    except Violation as exc:
        raise type(exc)(f"seed {seed} at t={world.now:.4f}: {exc}\n  options: {options}") from None
    return world


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=2000, help="how many seeds to run")
    parser.add_argument("--start", type=int, default=0, help="the first seed")
    parser.add_argument("--seed", type=int, help="replay this one seed")
    parser.add_argument("--verbose", action="store_true", help="print the trace of each run")
    args = parser.parse_args(argv)
    seeds = [args.seed] if args.seed is not None else range(args.start, args.start + args.seeds)
    started = time.monotonic()
    failures = grants = faults = 0
    for seed in seeds:
        try:
            world = run_seed(seed, args.verbose)
        except Violation as exc:
            failures += 1
            print(f"FAIL {exc}")  # noqa: T201
            continue
        grants += world.checker.grants
        faults += world.faults
    count = len(seeds)
    print(f"{count} seeds, {faults} faults, {grants} grants, {failures} failed "  # noqa: T201
          f"in {time.monotonic() - started:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
