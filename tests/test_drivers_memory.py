"""The real drivers, ``pylocker.server.Server`` and ``pylocker.client.Client``, over the memory transport.

No sockets: every server listens at its own ``memory://`` name. Waiting is done on
Events and polled deadlines, never on sleeps; every server is stopped and every
client closed by the fixtures, whatever the test did.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any, Callable

import pytest

from pylocker import protocol as p
from pylocker.client import Client
from pylocker.errors import LockTimeout, NotConnected, NotLockHolder, NotStarted
from pylocker.items import decode_items, encode_item
from pylocker.server import Server
from pylocker.transport.address import Address, parse
from pylocker.transport.base import Security
from pylocker.transport.keys import derive_keys
from pylocker.transport.memory import MemoryTransport

LEASE = 2.0
WAIT = 5.0  # how long any single wait may take before the test fails
_names = itertools.count()


def wait_until(predicate: Callable[[], Any], timeout: float = WAIT) -> Any:
    """Poll ``predicate`` (on an Event's clock, not a sleep) until it is truthy; fail after ``timeout``."""
    pause = threading.Event()
    for _ in range(int(timeout / 0.005)):
        value = predicate()
        if value:
            return value
        pause.wait(0.005)
    raise AssertionError(f"condition not met within {timeout} s")


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Recorder:
    """Callbacks that record what they were called with and signal each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self._cond = threading.Condition()

    def __call__(self, *args: Any) -> int:
        with self._cond:
            self.calls.append(args)
            self._cond.notify_all()
        return 0  # a client's publications callback returns how many items were malformed

    def wait_for(self, count: int = 1, timeout: float = WAIT) -> list[tuple[Any, ...]]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.calls) >= count, timeout):
                raise AssertionError(f"{count} calls expected within {timeout} s, got {self.calls}")
            return list(self.calls)


class Background:
    """Run ``call`` in a thread; ``result()`` joins it and returns (or raises) its outcome."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.done = threading.Event()
        self._value: Any = None
        self._error: Exception | None = None
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            self._value = call()
        except Exception as exc:  # noqa: BLE001 - handed to result(), re-raised in the test's thread
            self._error = exc
        finally:
            self.done.set()

    def result(self, timeout: float = WAIT) -> Any:
        assert self.done.wait(timeout), "the background call did not finish"
        self._thread.join(timeout)
        if self._error is not None:
            raise self._error
        return self._value


@pytest.fixture(scope="module")
def security() -> Security:
    return Security(derive_keys("pw"))


@pytest.fixture
def address() -> Address:
    return parse(f"memory://drivers-{uuid.uuid4().hex[:8]}-{next(_names)}")


@pytest.fixture
def make_server(address: Address, security: Security) -> Iterator[Callable[..., Server]]:
    made: list[Server] = []

    def make(**kwargs: Any) -> Server:
        kwargs.setdefault("name", "server")
        kwargs.setdefault("unique_name", "server-unique")
        kwargs.setdefault("max_lock_time", None)
        kwargs.setdefault("lease", LEASE)
        server = Server(address, security, **kwargs)
        made.append(server)
        server.start()
        return server

    yield make
    for server in made:
        server.stop()


class ServerCalls:
    """What the serving locker was told through its callbacks."""

    def __init__(self) -> None:
        self.publications = Recorder()
        self.clients_changed = Recorder()
        self.lost = Recorder()


@pytest.fixture
def calls() -> ServerCalls:
    return ServerCalls()


@pytest.fixture
def server(make_server: Callable[..., Server], calls: ServerCalls) -> Server:
    return make_server(on_publications=calls.publications, on_clients_changed=calls.clients_changed,
                       on_lost=calls.lost)


@pytest.fixture
def make_client(address: Address, security: Security) -> Iterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(name: str, fresh: bool = False, **kwargs: Any) -> Client:
        kwargs.setdefault("routing_id", f"{name}-route".encode())  # one locker: one routing id
        client = Client(address, security, name=name, unique_name=f"{name}-unique", **kwargs)
        made.append(client)
        client.connect(WAIT, fresh=fresh)
        return client

    yield make
    for client in made:
        client.close()


def item(message: str, payload: Any = None) -> bytes:
    return encode_item(message, payload, None, 0, f"pub-{message}", 1.5)


# ------------------------------------------------------------------------ locks
def test_connect_gets_the_servers_welcome(server: Server, calls: ServerCalls,
                                          make_client: Callable[..., Client]) -> None:
    client = make_client("a")
    assert client.connected
    welcome = client.welcome
    assert welcome is not None
    assert (welcome.server_unique_name, welcome.server_name, welcome.lease) == ("server-unique", "server", LEASE)
    assert welcome.max_lock_time is None
    assert client.server_unique_name == "server-unique"
    wait_until(lambda: "a-unique" in server.client_names())
    changes = calls.clients_changed.wait_for()
    assert (["a-unique"],) in changes


def test_acquire_and_release_between_two_clients(server: Server, make_client: Callable[..., Client]) -> None:
    a, b = make_client("a"), make_client("b")
    lock_a, token_a = a.acquire(["x"], 0)
    with pytest.raises(LockTimeout):
        b.acquire(["x"], 0)
    [(lock_id, names, holder, token)] = server.snapshot()
    assert (lock_id, names, token) == (lock_a, ("x",), token_a)
    assert holder is not None
    assert holder.unique_name == "a-unique"
    # b may not release a's lock: the wire's refusal code becomes the registered exception.
    with pytest.raises(NotLockHolder):
        b.release(lock_a)
    assert a.release(lock_a) == 1
    assert a.release(lock_a) == 0  # not held any more
    lock_b, token_b = b.acquire(["x"], 0)
    assert token_b > token_a
    assert b.release(lock_b, held=True) == 1  # sent without waiting
    wait_until(lambda: server.snapshot() == [])
    lock_a2, _ = a.acquire(["x"], 0)
    assert a.release(lock_a2) == 1


def test_a_waiting_acquire_is_granted_when_the_holder_releases(server: Server,
                                                               make_client: Callable[..., Client]) -> None:
    a, b = make_client("a"), make_client("b")
    lock_a, token_a = a.acquire(["x"], 0)
    waiting = Background(lambda: b.acquire(["x"], 10))
    wait_until(lambda: len(server.waiters("x")) == 1)
    assert not waiting.done.is_set()
    assert a.release(lock_a) == 1
    lock_b, token_b = waiting.result()
    assert token_b > token_a
    [(lock_id, _, holder, _)] = server.snapshot()
    assert lock_id == lock_b
    assert holder is not None
    assert holder.unique_name == "b-unique"
    assert b.release(lock_b) == 1


def test_a_waiting_acquire_times_out_and_leaves_the_queue(server: Server,
                                                          make_client: Callable[..., Client]) -> None:
    a, b = make_client("a"), make_client("b")
    lock_a, _ = a.acquire(["x"], 0)
    with pytest.raises(LockTimeout):
        b.acquire(["x"], 0.1)
    assert server.waiters("x") == []
    assert a.release(lock_a) == 1
    wait_until(lambda: server.snapshot() == [])  # nothing was granted to b afterwards


def test_a_fresh_connection_says_bye_for_the_previous_one(server: Server,
                                                         make_client: Callable[..., Client]) -> None:
    lost = Recorder()
    a, b = make_client("a", on_connection_lost=lost), make_client("b")
    lock_a, _ = a.acquire(["x"], 0)
    waiting = Background(lambda: b.acquire(["x"], 10))
    wait_until(lambda: len(server.waiters("x")) == 1)
    # The same locker connects again, fresh: its Bye frees what the old connection held.
    again = make_client("a", fresh=True)
    lock_b, _ = waiting.result()
    assert lock_b != lock_a
    assert [entry[0] for entry in server.snapshot()] == [lock_b]
    assert lost.wait_for() == [(False,)]  # the old connection was replaced
    with pytest.raises(NotConnected):
        a.acquire(["y"], 0)
    lock_y, _ = again.acquire(["y"], 0)
    assert again.release(lock_y) == 1


def test_a_request_sent_just_before_close_still_reaches_the_server(address: Address, security: Security) -> None:
    log = logging.getLogger("pylocker.test.drivers")
    transport = MemoryTransport()
    served = transport.listen(address, security, log)
    try:
        client = transport.connect(address, security, b"peer", log, lambda: None, lambda: None)
        client.send(p.encode(p.Bye(0)))
        client.close()  # what Client.close() does right after queueing its Bye
        assert served.poll(0)
        assert list(served.receive()) == [(b"peer", [p.encode(p.Bye(0))])]
    finally:
        served.close()


def test_the_server_itself_contends_with_a_client(server: Server, make_client: Callable[..., Client]) -> None:
    client = make_client("a")
    local_id, local_token = server.acquire(["x"], 0)
    with pytest.raises(LockTimeout):
        client.acquire(["x"], 0)
    [(_, _, holder, _)] = server.snapshot()
    assert holder is None  # the serving locker itself
    waiting = Background(lambda: client.acquire(["x"], 10))
    wait_until(lambda: len(server.waiters("x")) == 1)
    assert server.release(local_id) == 1
    client_id, client_token = waiting.result()
    assert client_token > local_token
    # And the other way round: the server waits for the client.
    with pytest.raises(LockTimeout):
        server.acquire(["x"], 0)
    local_wait = Background(lambda: server.acquire(["x"], 10))
    wait_until(lambda: len(server.waiters("x")) == 1)
    assert not local_wait.done.is_set()
    assert client.release(client_id) == 1
    local_id2, local_token2 = local_wait.result()
    assert local_token2 > client_token
    assert server.release(local_id2) == 1
    assert server.release(local_id2) == 0


def test_max_lock_time_takes_a_clients_lock(make_server: Callable[..., Server],
                                            make_client: Callable[..., Client]) -> None:
    server = make_server(max_lock_time=0.2)
    lost = Recorder()
    a = make_client("a", on_lost=lost)
    b = make_client("b")
    lock_a, _ = a.acquire(["x"], 0)
    [(lock_id, reason)] = lost.wait_for()
    assert (lock_id, reason) == (lock_a, "maxLockTime")
    lock_b, _ = b.acquire(["x"], WAIT)
    assert [entry[0] for entry in server.snapshot()] == [lock_b]


# ------------------------------------------------------------------ publications
def test_publications_reach_the_named_client(server: Server, calls: ServerCalls,
                                             make_client: Callable[..., Client]) -> None:
    received = Recorder()
    a = make_client("a")
    make_client("b", on_publications=received)
    a.publish(["b-unique"], item("hello", {"k": [1, 2]}))
    a.publish(["b-unique"], [item("m1"), item("m2")])
    # Consecutive publications for the same receivers may travel in one batch.
    wait_until(lambda: sum(len(items) for _, _, items in received.calls) >= 3)
    batches = received.calls
    delivered = [entry for _, _, items in batches for entry in items]
    assert [(b[0], b[1]) for b in batches] == [("a-unique", "a")] * len(batches)
    assert [d[0] for d in delivered] == ["hello", "m1", "m2"]
    assert delivered[0] == ["hello", {"k": [1, 2]}, None, 0, "pub-hello", 1.5]
    assert calls.publications.calls == []  # not addressed to the serving locker


def test_a_broadcast_reaches_the_others_and_the_server_but_not_its_sender(
        server: Server, calls: ServerCalls, make_client: Callable[..., Client]) -> None:
    to_a, to_b = Recorder(), Recorder()
    a = make_client("a", on_publications=to_a)
    make_client("b", on_publications=to_b)
    a.publish(None, item("everyone"))
    [(sender, sender_name, items)] = to_b.wait_for()
    assert (sender, sender_name, [i[0] for i in items]) == ("a-unique", "a", ["everyone"])
    [(sender, sender_name, count, packed)] = calls.publications.wait_for()
    assert (sender, sender_name, count) == ("a-unique", "a", 1)
    assert decode_items(packed, count)[0][0] == "everyone"
    # The server routed the broadcast before this publication: a's subscription gets
    # them in that order, so once "after" is here the broadcast was seen and ignored.
    server.publish(["a-unique"], [item("after")])
    [(sender, _, items)] = to_a.wait_for()
    assert (sender, [i[0] for i in items]) == ("server-unique", ["after"])


def test_a_publication_for_the_server_reaches_its_callback(server: Server, calls: ServerCalls,
                                                           make_client: Callable[..., Client]) -> None:
    a = make_client("a")
    a.publish(["server-unique"], [item("for-you")])
    [(sender, _, count, packed)] = calls.publications.wait_for()
    assert (sender, count) == ("a-unique", 1)
    assert decode_items(packed, 1)[0][0] == "for-you"


# ----------------------------------------------------------------- losing contact
def test_server_stop_reports_connection_loss_to_clients(server: Server, make_client: Callable[..., Client]) -> None:
    lost_a, lost_b = Recorder(), Recorder()
    a = make_client("a", on_connection_lost=lost_a)
    make_client("b", on_connection_lost=lost_b)
    lock_a, _ = a.acquire(["x"], 0)
    local_wait = Background(lambda: server.acquire(["x"], 30))
    wait_until(lambda: len(server.waiters("x")) == 1)
    server.stop()
    assert lost_a.wait_for() == [(False,)]  # not lapsed: the server closed the connection
    assert lost_b.wait_for() == [(False,)]
    with pytest.raises(NotStarted):
        local_wait.result()  # the serving locker's own waiter is failed too
    wait_until(lambda: not a.connected)
    with pytest.raises(NotConnected):
        a.acquire(["y"], 0)
    with pytest.raises(NotConnected):
        a.release(lock_a)
    with pytest.raises(NotStarted):
        server.acquire(["y"], 0)


def test_connect_to_nobody_fails(address: Address, security: Security) -> None:
    client = Client(address, security, name="lonely", unique_name="lonely-unique")
    try:
        with pytest.raises(NotConnected):
            client.connect(1.0)
        assert not client.connected
    finally:
        client.close()


def test_a_silent_client_loses_its_locks_after_the_lease(make_server: Callable[..., Server],
                                                         make_client: Callable[..., Client]) -> None:
    clock = FakeClock()
    changed = Recorder()
    server = make_server(clock=clock, on_clients_changed=changed)
    a, b = make_client("a"), make_client("b")
    lock_a, _ = a.acquire(["x"], 0)
    a.close(say_bye=False)  # a falls silent: the server hears nothing more from it
    with pytest.raises(LockTimeout):
        b.acquire(["x"], 0)
    clock.now += LEASE + 1.0  # more than a lease of the server's time passes
    lock_b, _ = b.acquire(["x"], WAIT)
    assert lock_b != lock_a
    [(lock_id, _, holder, _)] = server.snapshot()
    assert lock_id == lock_b
    assert holder is not None
    assert holder.unique_name == "b-unique"
    wait_until(lambda: "a-unique" not in server.client_names())


def test_a_client_whose_lease_lapses_reports_it(server: Server, make_client: Callable[..., Client]) -> None:
    clock = FakeClock()
    lost_connection, lost_lock = Recorder(), Recorder()
    client = make_client("a", clock=clock, on_connection_lost=lost_connection, on_lost=lost_lock)
    client.acquire(["x"], 0)
    valid_until = client.valid_until
    assert valid_until is not None
    assert valid_until <= clock.now + LEASE
    clock.now = valid_until + 0.01  # the client's clock passes its lease: its locks are lost
    assert lost_connection.wait_for() == [(True,)]  # lapsed
    with pytest.raises(NotConnected):
        client.acquire(["y"], 0)


def test_a_publisher_held_back_by_a_stuck_receiver_hears_at_once_that_the_server_went(
        server: Server, make_client: Callable[..., Client]) -> None:
    # Issue 12: a publisher waits while its receivers lag; when the connection goes, it must
    # be told then, not after PUBLISH_WAIT (30 s).
    stuck = threading.Event()
    make_client("b", on_publications=lambda *args: stuck.wait(30) and 0)  # b's I/O thread stalls: no credit
    a = make_client("a")
    blocked = Background(lambda: [a.publish(["b-unique"], [item("x" * 60_000)]) for _ in range(2000)])
    wait_until(lambda: a._pubbox_bytes > 1_000_000)  # a is held back: its window is full
    assert not blocked.done.is_set()
    started = time.monotonic()
    server.stop()
    with pytest.raises(NotConnected):
        blocked.result()
    assert time.monotonic() - started < 10
    stuck.set()


def test_a_lapse_is_reported_outside_the_client_lock(address: Address, security: Security) -> None:
    # A deadlock the fault-injection suite found (seed 101): the locker's failover thread,
    # holding the locker's lock, waited on a call, while the connection's I/O thread, holding
    # the client lock, reported its lapse into the locker, which wanted the locker's lock.
    log = logging.getLogger("pylocker.test.drivers")
    served = MemoryTransport().listen(address, security, log)  # a server that says hello, then nothing
    locker_lock = threading.Lock()
    lost = threading.Event()

    def connection_lost(lapsed: bool) -> None:
        with locker_lock:  # what the node does: take its own lock
            lost.set()

    def answer_hello() -> None:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if served.poll(0.05):
                for peer, frames in served.receive():
                    message = p.decode(frames[0])
                    if isinstance(message, p.Hello):
                        served.send(peer, p.encode(p.Welcome(message.request_id, "s", "s", None, 0.5, 1)))
                        return

    helper = threading.Thread(target=answer_hello)
    helper.start()
    client = Client(address, security, name="c", unique_name="c-unique", subscribe=False,
                    on_connection_lost=connection_lost)
    try:
        client.connect(WAIT)
        helper.join(WAIT)
        with locker_lock:  # as the failover thread holds the node's lock during a call
            waiting = Background(lambda: client.acquire(["x"], 2.0))
            with pytest.raises(NotConnected):
                waiting.result()  # the lapse (0.45 s) fails the call: not a deadlock
        assert lost.wait(WAIT)
    finally:
        client.close(say_bye=False)
        served.close()


# ------------------------------------------------------------------ lost terms
def test_a_server_woken_past_its_tick_checks_its_term_before_granting(
        make_server: Callable[..., Server], make_client: Callable[..., Client]) -> None:
    # A serving process frozen (SIGSTOP, a long pause) past its election term wakes up with
    # requests waiting. Its housekeeping tick is where it learns the term is gone: that must
    # come before the waiting requests are answered, or it grants a name its successor may grant.
    clock = FakeClock()
    term_gone = threading.Event()
    ticks_after_wake: list[bool] = []
    server: Server | None = None

    def on_tick() -> None:
        if term_gone.is_set():
            ticks_after_wake.append(True)
            assert server is not None
            server.close()  # what the locker node does when its term is no longer valid

    server = make_server(clock=clock, on_tick=on_tick)
    client = make_client("a")
    term_gone.set()
    clock.now += 30.0  # the process "wakes": its next tick is long overdue
    with pytest.raises((LockTimeout, NotConnected)):
        client.acquire(["x"], 1.0)
    assert ticks_after_wake, "the overdue tick never ran"
    assert server.snapshot() == []
