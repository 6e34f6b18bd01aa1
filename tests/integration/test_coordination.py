"""Coordination primitives between real OS processes on loopback.

Semaphores, shared (read) locks, FIFO order and timeouts, groups, elections, and
all of them across a kill -9 of the serving process. Every process is spawned here,
stopped (or killed, by its own pid) and joined; every wait is a polled deadline.

Hold intervals are logged by the workers as ``time.monotonic()`` readings (one clock
for every process of the machine), read after the grant and before the release: a
logged interval lies inside the real hold, so overlapping logged intervals prove
overlapping holds, and the checks below cannot fail because of logging delays.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable

import _coordination_workers as workers
import _workers
import pytest
from conftest import wait_for

from pylocker import LockTimeout, ServerLocker
from pylocker.election import serverfile
from pylocker.node_serving import MIN_GRACE

pytestmark = pytest.mark.integration
SPAWN = multiprocessing.get_context("spawn")
LEASE = 1.0
LEASE_SLACK = 1.0  # what a lease's end may take beyond the lease: the server's clock ticks, the push, the queue


# --------------------------------------------------------------------------- helpers
def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals open at one instant (an end before a start at a tie)."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    best = current = 0
    for _, step in events:
        current += step
        best = max(best, current)
    return best


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _settle(get: Callable[[], Any], expected: Any, timeout: float = 10.0) -> None:
    """Wait until ``get()`` equals ``expected``; on timeout, fail with the last value against it."""
    last: list[Any] = []

    def check() -> bool:
        last[:] = [get()]
        return bool(last[0] == expected)

    try:
        wait_for(check, timeout)
    except AssertionError:
        assert last[0] == expected, f"not settled within {timeout} s"


def _get(results: Any, timeout: float = 30) -> Any:
    return results.get(timeout=timeout)


def _finish(processes: list[Any], killed: tuple[Any, ...] = ()) -> None:
    """Join every process (killing, by its own pid, one that does not end); all but ``killed`` exit 0."""
    for process in processes:
        process.join(20)
    for process in processes:
        if process.is_alive():
            process.kill()
            process.join(5)
    codes = {process.pid: process.exitcode for process in processes if process not in killed}
    assert all(code == 0 for code in codes.values()), codes


class Agent:
    """A ``coordinator`` process, with queues of its own, driven by commands."""

    def __init__(self, server_file: str, **kwargs: Any) -> None:
        self.commands, self.replies = SPAWN.Queue(), SPAWN.Queue()
        self.process = SPAWN.Process(target=workers.coordinator,
                                     args=(server_file, self.commands, self.replies, kwargs))
        self.pending: list[tuple[Any, ...]] = []  # replies received and not taken yet
        self.unique_name = ""
        self.pid = 0
        self.killed = False

    def start(self) -> Agent:
        self.process.start()
        return self

    def ready(self, timeout: float = 30) -> Agent:
        _, self.unique_name, self.pid = self.take(lambda reply: reply[0] == "ready", timeout)
        return self

    def take(self, match: Callable[[tuple[Any, ...]], bool], timeout: float = 30) -> tuple[Any, ...]:
        deadline = time.monotonic() + timeout
        while True:
            for index, reply in enumerate(self.pending):
                if match(reply):
                    return self.pending.pop(index)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"agent {self.pid}: no such reply within {timeout} s; got {self.pending}")
            with contextlib.suppress(queue.Empty):
                self.pending.append(self.replies.get(timeout=min(remaining, 0.2)))

    def poll(self, kind: str) -> tuple[Any, ...] | None:
        """The first reply of ``kind`` received so far (left in place), or None."""
        try:
            while True:
                self.pending.append(self.replies.get_nowait())
        except queue.Empty:
            pass
        return next((reply for reply in self.pending if reply[0] == kind), None)

    def send(self, command: str, *args: Any) -> None:
        self.commands.put((command, *args))

    def answer(self, command: str, timeout: float = 30) -> Any:
        kind, _, result = self.take(lambda reply: reply[0] in ("ok", "error") and reply[1] == command, timeout)
        assert kind == "ok", f"{command} failed in agent {self.pid}: {result}"
        return result

    def call(self, command: str, *args: Any, timeout: float = 30) -> Any:
        self.send(command, *args)
        return self.answer(command, timeout)

    def kill(self) -> float:
        assert self.pid == self.process.pid  # only ever a process this test started
        os.kill(self.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        self.killed = True
        self.process.join(10)
        return killed_at

    def stop(self) -> None:
        if self.process.is_alive() and not self.killed:
            self.send("stop")


@pytest.fixture
def agents(server_file: str) -> Iterator[Callable[..., Agent]]:
    made: list[Agent] = []

    def make(**kwargs: Any) -> Agent:
        agent = Agent(server_file, **kwargs)
        made.append(agent)
        return agent.start()

    yield make
    for agent in made:
        agent.stop()
    _finish([agent.process for agent in made], killed=tuple(a.process for a in made if a.killed))


def _server_pid(server_file: str) -> int | None:
    try:
        fp = serverfile.read(server_file)
    except serverfile.ServerFileError:
        return None
    return fp.pid if fp is not None and not fp.stopped else None


class Seen:
    """What an ``on_change`` callback was called with, and when (it runs on a dispatcher thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: list[tuple[float, Any]] = []

    def __call__(self, view: Any) -> None:
        with self._lock:
            self.calls.append((time.monotonic(), view))

    def views(self) -> list[Any]:
        with self._lock:
            return [view for _, view in self.calls]

    def first(self, predicate: Callable[[Any], bool]) -> tuple[float, Any] | None:
        with self._lock:
            return next((call for call in self.calls if predicate(call[1])), None)


# ----------------------------------------------------------------------- semaphores
def test_a_semaphore_admits_at_most_its_limit_across_processes(serving: ServerLocker, server_file: str) -> None:
    processes, iterations, limit = 4, 20, 2
    start = SPAWN.Event()
    channels = [SPAWN.Queue() for _ in range(processes)]
    workers_ = [SPAWN.Process(target=workers.semaphore_worker,
                              args=(server_file, "api", limit, iterations, 0.01, start, channel))
                for channel in channels]
    for worker in workers_:
        worker.start()
    try:
        names = [_get(channel)[1] for channel in channels]
        start.set()
        reports = [_get(channel, 60) for channel in channels]
    finally:
        start.set()
        _finish(workers_)
    assert len(set(names)) == processes
    assert [mismatch for _, _, mismatch in reports] == ["LimitMismatch"] * processes
    holds = [hold for _, worker_holds, _ in reports for hold in worker_holds]
    assert len(holds) == processes * iterations
    # Never more than `limit` holders at once, and `limit` reached: the slots were used concurrently.
    assert _max_overlap([(entered, exited) for _, entered, exited, _ in holds]) == limit
    # Fencing tokens: one per grant, and a grant made before another was asked for has the smaller one.
    tokens = [token for *_, token in holds]
    assert len(set(tokens)) == len(tokens)
    assert all(isinstance(t, int) and t > 0 for t in tokens)
    for _, entered, _, token in holds:
        later = [other for asked, _, _, other in holds if asked > entered]
        assert all(other > token for other in later)
    # Nothing is left: no holder, no waiter, and the limit is free for another use of the name.
    info = serving.semaphore("api", limit).info()
    assert info.name == "api"
    assert info.holders == []
    assert info.waiters == []
    with serving.semaphore("api", limit + 1).acquire(timeout=1) as slot:
        assert slot.token > max(tokens)


# ----------------------------------------------------------------- readers / writer
def test_readers_share_and_a_writer_is_alone_and_not_starved(serving: ServerLocker, server_file: str,
                                                            tmp_path: Any) -> None:
    stop_file = str(tmp_path / "stop-readers")
    writes, write_hold, write_pause, max_wait = 4, 0.02, 0.15, 1.0
    reader_channels = [SPAWN.Queue() for _ in range(3)]
    # Different hold times: the readers drift apart, so that some reader holds the name at any time.
    readers = [SPAWN.Process(target=workers.reader, args=(server_file, "data", hold, stop_file, channel))
               for hold, channel in zip((0.04, 0.055, 0.07), reader_channels)]
    go, writer_channel = SPAWN.Event(), SPAWN.Queue()
    writer = SPAWN.Process(target=workers.writer,
                           args=(server_file, "data", writes, write_hold, write_pause, go, writer_channel))
    for process in [*readers, writer]:
        process.start()
    try:
        assert _get(writer_channel)[0] == "ready"
        assert all(_get(channel)[0] == "holding" for channel in reader_channels)  # the stream flows
        go.set()
        kind, write_holds = _get(writer_channel, 60)
        open(stop_file, "w").close()
        reports = [_get(channel, 30) for channel in reader_channels]
    finally:
        go.set()
        open(stop_file, "w").close()
        _finish([*readers, writer])
    read_holds = [hold for _, holds in reports for hold in holds]
    assert kind == "done"
    assert len(write_holds) == writes
    assert all(entered is not None for _, entered, _, _ in write_holds), "the writer timed out: starved"
    # Readers held the name together.
    assert _max_overlap([(entered, exited) for _, entered, exited, _ in read_holds]) >= 2
    # Never a writer beside a reader.
    for _, w_entered, w_exited, _ in write_holds:
        beside = [r for r in read_holds if _overlap((w_entered, w_exited), (r[1], r[2]))]
        assert beside == [], f"writer held {w_entered:.4f}..{w_exited:.4f} beside readers {beside}"
    # Not starved: each write got in soon, though readers kept asking (and held the name) meanwhile.
    waits = [entered - asked for asked, entered, _, _ in write_holds]
    assert max(waits) < max_wait, f"writer waits {[round(w, 3) for w in waits]} s"
    behind_readers = [asked for asked, _, _, _ in write_holds
                      if any(r[1] < asked < r[2] for r in read_holds)]
    assert behind_readers, "the writer never had to wait for readers: the test proved nothing"
    for _, _, exited, _ in write_holds:
        assert any(r[0] > exited for r in read_holds), "the readers stopped streaming"
    tokens = [hold[3] for hold in [*read_holds, *write_holds]]
    assert len(set(tokens)) == len(tokens)


def test_a_queued_writer_is_not_overtaken_by_a_later_reader(serving: ServerLocker, server_file: str) -> None:
    go = {role: SPAWN.Event() for role in ("writer", "reader")}
    channels = {role: SPAWN.Queue() for role in go}
    finish = SPAWN.Event()
    kinds = {"writer": "lock", "reader": "shared"}
    processes = {role: SPAWN.Process(target=workers.queued_waiter,
                                     args=(server_file, kinds[role], "data", 30, 0.05, go[role], finish,
                                           channels[role]))
                 for role in go}
    held = serving.lock("data", shared=True)
    held.__enter__()
    for process in processes.values():
        process.start()
    try:
        names = {role: _get(channel)[1] for role, channel in channels.items()}
        go["writer"].set()
        _settle(lambda: serving.lock_info("data").waiters, [(names["writer"], "exclusive")])
        go["reader"].set()
        wait_for(lambda: len(serving.lock_info("data").waiters) == 2)
        # The reader asks for a mode the holder shares, yet it waits behind the writer.
        info = serving.lock_info("data")
        assert info.waiters == [(names["writer"], "exclusive"), (names["reader"], "shared")]
        assert [(h.unique_name, h.mode) for h in info.holders] == [(serving.uniqueName, "shared")]
        held.release()
        writer_kind, writer_token, _, w_exited = _get(channels["writer"])
        reader_kind, reader_token, r_entered, _ = _get(channels["reader"])
    finally:
        go["writer"].set()
        go["reader"].set()
        finish.set()
        if held.lock_id is not None:
            held.release()
        _finish(list(processes.values()))
    assert writer_kind == reader_kind == "granted"
    assert writer_token < reader_token
    assert r_entered > w_exited  # the reader got in after the writer left


# ------------------------------------------------------------- FIFO and timeouts
@pytest.mark.parametrize("kind", ["lock", "semaphore"])
def test_waiters_are_served_in_arrival_order_and_a_timed_out_one_leaves_no_trace(
        serving: ServerLocker, server_file: str, kind: str) -> None:
    count, quitter, quit_after = 4, 2, 1.5
    if kind == "lock":
        held: Any = serving.lock("q")
        held.__enter__()

        def info() -> Any:
            return serving.lock_info("q")
    else:
        held = serving.semaphore("q", 1).acquire()

        def info() -> Any:
            return serving.semaphore("q", 1).info()
    mode = "exclusive" if kind == "lock" else "slot"
    go = [SPAWN.Event() for _ in range(count)]
    channels = [SPAWN.Queue() for _ in range(count)]
    finish = SPAWN.Event()
    processes = [SPAWN.Process(target=workers.queued_waiter,
                               args=(server_file, kind, "q", quit_after if index == quitter else 30, 0.05,
                                     go[index], finish, channels[index]))
                 for index in range(count)]
    for process in processes:
        process.start()
    try:
        names = [_get(channel)[1] for channel in channels]
        for index in range(count):  # one at a time: the arrival order is known
            go[index].set()
            _settle(lambda: [w.unique_name for w in info().waiters], names[:index + 1])
        assert [w.mode for w in info().waiters] == [mode] * count
        assert [(h.unique_name, h.mode) for h in info().holders] == [(serving.uniqueName, mode)]
        # The quitter times out at its own deadline, and the server has forgotten its request.
        gave_up, waited, error = _get(channels[quitter])
        assert (gave_up, error) == ("timeout", "LockTimeout")
        assert quit_after - 0.05 <= waited < quit_after + 1.0
        current = info()
        assert [w.unique_name for w in current.waiters] == [n for i, n in enumerate(names) if i != quitter]
        assert all(h.unique_name != names[quitter] for h in current.holders)
        held.release()
        grants = {index: _get(channels[index]) for index in range(count) if index != quitter}
    finally:
        for event in go:
            event.set()
        finish.set()
        if held.lock_id is not None:
            held.release()
        _finish(processes)
    assert all(grant[0] == "granted" for grant in grants.values()), grants
    by_token = sorted(grants, key=lambda index: grants[index][1])
    assert by_token == [index for index in range(count) if index != quitter]  # FIFO
    by_time = sorted(grants, key=lambda index: grants[index][2])
    assert by_time == by_token
    ordered = [grants[index] for index in by_token]
    assert all(b[2] > a[3] for a, b in zip(ordered, ordered[1:]))  # one at a time
    final = info()
    assert final.holders == []
    assert final.waiters == []
    if kind == "semaphore":  # the quitter's limit is not counted any more either
        with serving.semaphore("q", 3).acquire(timeout=1):
            pass


# -------------------------------------------------------------------------- lock_any
def test_lock_any_grants_one_free_name_per_process_and_the_first_freed_to_a_waiter(
        serving: ServerLocker, agents: Any) -> None:
    first, second, third = (agents() for _ in range(3))
    for agent in (first, second, third):
        agent.ready()
    name_1, token_1 = first.call("any", "k", ["x", "y"], 10)
    name_2, token_2 = second.call("any", "k", ["x", "y"], 10)
    assert (name_1, name_2) == ("x", "y")  # the first free one, in the order asked
    assert token_2 > token_1
    third.send("any", "k", ["x", "y"], 10)  # none free: it waits on both
    for name, holder in (("x", first), ("y", second)):
        _settle(lambda name=name: [w.unique_name for w in serving.lock_info(name).waiters], [third.unique_name])
        assert [h.unique_name for h in serving.lock_info(name).holders] == [holder.unique_name]
    second.call("release", "k")
    name_3, token_3 = third.answer("any", timeout=10)
    assert name_3 == "y"  # the one freed
    assert token_3 > token_2
    assert [h.unique_name for h in serving.lock_info("y").holders] == [third.unique_name]
    assert serving.lock_info("x").waiters == []  # it left the queue of the name it did not take
    with pytest.raises(LockTimeout):
        serving.lock("x", timeout=0.2).__enter__()


# -------------------------------------------------------------------------- groups
def test_a_group_member_killed_with_9_leaves_within_the_lease_and_the_others_stay(
        make_locker: Any, agents: Any) -> None:
    server = make_locker(name="server", lease=LEASE)
    assert server.isServer
    observer = make_locker(name="observer", allowServing=False, lease=LEASE)
    seen = Seen()
    crew = observer.group("crew")
    crew.on_change(seen)
    members = [agents(lease=LEASE) for _ in range(3)]
    for index, member in enumerate(members):
        member.ready()
        member.call("join", "crew", {"index": index, "pid": member.pid, "tags": ["a", index]})
    expected = {m.unique_name: {"index": i, "pid": m.pid, "tags": ["a", i]} for i, m in enumerate(members)}
    assert crew.members == expected  # asked of the server, through the observer's connection
    assert server.group("crew").members == expected
    _settle(lambda: seen.views()[-1:], [expected])  # and pushed to the observer

    victim = members[1]
    killed_at = victim.kill()
    survivors = {name: info for name, info in expected.items() if name != victim.unique_name}
    wait_for(lambda: seen.first(lambda view: view == survivors) is not None, timeout=10 * LEASE)
    left_at, _ = seen.first(lambda view: view == survivors)
    assert left_at - killed_at < LEASE + LEASE_SLACK, f"left {left_at - killed_at:.2f} s after the kill"
    assert crew.members == survivors
    # Every view between: the three, then the two; nobody else ever, no survivor ever missing.
    after = [view for at, view in seen.calls if at >= killed_at]
    assert all(view in (expected, survivors) for view in after), after
    for member in (members[0], members[2]):
        assert member.call("state")["joined"] == {"crew": True}
    # A member that leaves is gone at once, not after a lease.
    members[2].call("leave", "crew")
    last = {members[0].unique_name: expected[members[0].unique_name]}
    assert crew.members == last
    _settle(lambda: seen.views()[-1:], [last], timeout=LEASE / 2)


# ----------------------------------------------------------------------- elections
def test_an_elected_leader_killed_with_9_is_replaced_within_the_lease(make_locker: Any, agents: Any) -> None:
    server = make_locker(name="server", lease=LEASE)
    assert server.isServer
    observer = make_locker(name="observer", allowServing=False, lease=LEASE)
    seen = Seen()
    boss = observer.election("boss")
    boss.on_change(seen)
    candidates = [agents(lease=LEASE) for _ in range(3)]
    for candidate in candidates:
        candidate.ready()
        candidate.call("campaign", "boss", None)

    def leaders() -> list[Agent]:
        return [candidate for candidate in candidates if candidate.poll("leader")]

    wait_for(leaders, timeout=20)
    first, = leaders()
    _, _, first_token, _ = first.take(lambda reply: reply[0] == "leader")
    for candidate in candidates:
        if candidate is not first:
            assert candidate.call("state")["leader"] == {"boss": (False, None)}
    assert leaders() == []
    assert boss.leader == first.unique_name
    assert not boss.is_leader
    _settle(lambda: seen.views()[-1:], [first.unique_name])

    killed_at = first.kill()
    rest = [candidate for candidate in candidates if candidate is not first]
    wait_for(leaders, timeout=10 * LEASE)
    second, = leaders()  # exactly one of the two left
    _, _, second_token, elected_at = second.take(lambda reply: reply[0] == "leader")
    assert elected_at - killed_at < LEASE + LEASE_SLACK, f"re-elected {elected_at - killed_at:.2f} s after the kill"
    assert second_token > first_token  # fencing: the old leader's writes can be refused
    assert boss.leader == second.unique_name
    wait_for(lambda: seen.first(lambda view: view == second.unique_name) is not None)
    views = [view for view in seen.views() if view is not None]
    assert views.index(first.unique_name) < views.index(second.unique_name)
    third = next(candidate for candidate in rest if candidate is not second)
    assert third.poll("leader") is None
    assert third.call("state")["leader"] == {"boss": (False, None)}
    # A leader that resigns hands over at once, to the one still campaigning.
    resigned_at = time.monotonic()
    second.call("resign", "boss")
    _, _, third_token, third_at = third.take(lambda reply: reply[0] == "leader", timeout=10)
    assert third_token > second_token
    assert third_at - resigned_at < LEASE
    _settle(lambda: seen.views()[-1:], [third.unique_name])
    assert second.call("state")["leader"] == {"boss": (False, None)}


# ------------------------------------------------------- a kill -9 of the server
@pytest.mark.timeout(90)
def test_everything_held_survives_a_kill_9_of_the_serving_process(make_locker: Any, agents: Any,
                                                                  server_file: str) -> None:
    ready, never = SPAWN.Queue(), SPAWN.Event()  # an Event of its own: it is killed, maybe inside wait
    serving = SPAWN.Process(target=_workers.serve, args=(server_file, ready, never, {"lease": LEASE}))
    serving.start()
    try:
        server_pid, _ = _get(ready)
        assert server_pid == serving.pid
        options = {"reconnect": True, "lease": LEASE}
        alice = agents(allowServing=True, **options)
        bob = agents(allowServing=True, **options)
        carol = agents(**options)
        observer = make_locker(name="observer", allowServing=False, **options)
        for agent in (alice, bob, carol):
            agent.ready()
        # alice and bob read "data", hold the two slots of "api" and are in the group; alice leads.
        tokens: dict[str, dict[str, int]] = {}
        for agent, tag in ((alice, "alice"), (bob, "bob")):
            tokens[tag] = {"read": agent.call("lock", "read", "data", True, 10),
                           "slot": agent.call("slot", "slot", "api", 2, 10)}
            agent.call("join", "crew", tag)
        alice.call("campaign", "boss", None)
        tokens["alice"]["lead"] = alice.take(lambda reply: reply[0] == "leader")[2]
        bob.call("campaign", "boss", None)  # bob waits to lead
        carol.send("slot", "slot", "api", 2, 30)  # carol waits for a slot
        slots = observer.semaphore("api", 2)
        _settle(lambda: [w.unique_name for w in slots.info().waiters], [carol.unique_name])
        boss, crew = observer.election("boss"), observer.group("crew")
        seen, seen_crew = Seen(), Seen()
        boss.on_change(seen)
        crew.on_change(seen_crew)
        before = _snapshot(observer)
        assert before == {
            "leader": alice.unique_name,
            "members": {alice.unique_name: "alice", bob.unique_name: "bob"},
            "readers": {(alice.unique_name, "shared", tokens["alice"]["read"]),
                        (bob.unique_name, "shared", tokens["bob"]["read"])},
            "slots": {(alice.unique_name, "slot", tokens["alice"]["slot"]),
                      (bob.unique_name, "slot", tokens["bob"]["slot"])},
            "slot waiters": [carol.unique_name],
        }

        os.kill(server_pid, signal.SIGKILL)  # only ever the process this test started
        serving.join(10)
        wait_for(lambda: _server_pid(server_file) in (alice.pid, bob.pid), timeout=30)
        new_server = serverfile.read(server_file).unique_name
        wait_for(lambda: observer.isClient and observer.serverUniqueName == new_server, timeout=30)
        # Everything is held as before, by the same lockers, with the same tokens (re-claimed);
        # the re-claims may still be arriving while the new server waits for them.
        _settle(lambda: _snapshot(observer), before)
        for agent, tag in ((alice, "alice"), (bob, "bob")):
            state = agent.call("state")
            assert state["held"] == {"read": (True, tokens[tag]["read"]), "slot": (True, tokens[tag]["slot"])}
            assert state["joined"] == {"crew": True}
        assert alice.call("state")["leader"] == {"boss": (True, tokens["alice"]["lead"])}
        assert bob.call("state")["leader"] == {"boss": (False, None)}
        # Still so once the new server's grace for re-claims is over (a bounded look, not a synchronisation),
        # and nothing granted twice: the semaphore at its limit stays at it, the readers keep writers out.
        threading.Event().wait(max(LEASE, MIN_GRACE) + 0.5)
        assert _snapshot(observer) == before
        with pytest.raises(LockTimeout):
            slots.acquire(timeout=0.3)
        with pytest.raises(LockTimeout):
            observer.lock("data", timeout=0.3).__enter__()
        assert carol.poll("ok") is None  # carol still waits
        assert carol.poll("error") is None
        assert bob.poll("leader") is None
        # Watchers were never shown a partial view while the re-claims came in: no leader, a member missing.
        assert set(seen.views()) <= {alice.unique_name}, seen.views()
        assert all(view == before["members"] for view in seen_crew.views()), seen_crew.views()

        # The queues survived too: a slot let go goes to carol, the lead to bob, with newer tokens.
        alice.call("release", "slot")
        carol_token = carol.answer("slot", timeout=10)
        assert carol_token > max(tokens["alice"]["slot"], tokens["bob"]["slot"])
        assert {h.unique_name for h in slots.info().holders} == {bob.unique_name, carol.unique_name}
        alice.call("resign", "boss")
        _, _, bob_lead, _ = bob.take(lambda reply: reply[0] == "leader", timeout=10)
        assert bob_lead > tokens["alice"]["lead"]
        assert boss.leader == bob.unique_name
        _settle(lambda: seen.views()[-1:], [bob.unique_name])  # the observer's watch lived through the failover
    finally:
        # Never set `never`: a process killed inside Event.wait leaves that Event unusable.
        if serving.is_alive():
            serving.kill()
        serving.join(10)


def _snapshot(observer: ServerLocker) -> dict[str, Any]:
    """Who leads "boss", who is in "crew", who reads "data", who holds and waits for the slots of "api"."""
    readers = observer.lock_info("data")
    slots = observer.semaphore("api", 2).info()
    return {
        "leader": observer.election("boss").leader,
        "members": observer.group("crew").members,
        "readers": {(h.unique_name, h.mode, h.token) for h in readers.holders},
        "slots": {(h.unique_name, h.mode, h.token) for h in slots.holders},
        "slot waiters": [w.unique_name for w in slots.waiters],
    }

