"""One connection shared by many threads (``pylocker.connection``): leaders, followers and the I/O thread.

A calling thread takes the socket and does its own round trip; the others follow
(their frames go out through the holder, their replies come back through it); the
I/O thread reads what arrives while nobody calls. Each test runs over the memory
transport and over tcp (ZeroMQ, CURVE), whose descriptors signal only changes.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Iterator
from typing import Any, Callable

import pytest

from pylocker import protocol as p
from pylocker.client import Client
from pylocker.errors import LockTimeout, NotConnected
from pylocker.items import join_items
from pylocker.server import Server
from pylocker.transport.address import Address, parse
from pylocker.transport.base import Security
from pylocker.transport.keys import derive_keys
from pylocker.transport.memory import MemoryClientTransport
from pylocker.transport.zmq_client import ZmqClientTransport

from tests.test_drivers_memory import WAIT, Background, FakeClock, Recorder, item, wait_until

SECURITY = Security(derive_keys("pw"))
LEASE = 0.5
_names = itertools.count()


@pytest.fixture(params=["memory", "tcp"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    where = f"memory://connection-{uuid.uuid4().hex[:8]}-{next(_names)}" if request.param == "memory" \
        else "tcp://127.0.0.1:0"
    server = Server(parse(where), SECURITY, name="server", unique_name="server-unique",
                    max_lock_time=None, lease=LEASE)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def make_client(server: Server) -> Iterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(name: str, **kwargs: Any) -> Client:
        address: Address = server.address
        client = Client(address, SECURITY, name=name, unique_name=f"{name}-unique",
                        routing_id=f"{name}-route".encode(), **kwargs)
        made.append(client)
        client.connect(WAIT)
        return client

    yield make
    for client in made:
        client.close()


def test_threads_sharing_a_connection_each_get_their_own_replies(server: Server,
                                                                 make_client: Callable[..., Client]) -> None:
    client = make_client("a")
    errors: list[BaseException] = []
    granted: dict[int, list[str]] = {}

    def work(worker: int) -> None:
        mine = granted.setdefault(worker, [])
        try:
            for round_ in range(60):
                shared = round_ % 3 == 0  # one name all contend for, and names of their own
                lock_id, _ = client.acquire(["shared" if shared else f"own-{worker}"], WAIT)
                mine.append(lock_id)
                assert client.release(lock_id) == 1  # a wrong reply here would be someone else's lock
        except BaseException as exc:  # noqa: BLE001 - reported by the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    every = [lock_id for ids in granted.values() for lock_id in ids]
    assert len(every) == 6 * 60 and len(set(every)) == len(every)  # each grant went to one caller
    assert server.snapshot() == []


def test_calls_go_on_while_another_thread_waits_on_the_socket(server: Server,
                                                              make_client: Callable[..., Client]) -> None:
    holder, client = make_client("holder"), make_client("a")
    held, _ = holder.acquire(["busy"], 0)
    waiting = Background(lambda: client.acquire(["busy"], 30))  # leads: it holds the socket meanwhile
    wait_until(lambda: len(server.waiters("busy")) == 1)
    for round_ in range(20):  # these follow: the waiting leader carries their frames
        lock_id, _ = client.acquire([f"other-{round_}"], WAIT)
        assert client.release(lock_id) == 1
    assert not waiting.done.is_set()
    assert holder.release(held) == 1
    lock_id, _ = waiting.result()
    assert client.release(lock_id) == 1


def test_an_idle_connection_reads_what_arrives_unasked(server: Server, make_client: Callable[..., Client]) -> None:
    received = Recorder()
    sender, receiver = make_client("sender"), make_client("receiver", on_publications=received)
    sender.publish(["receiver-unique"], item("first"))
    received.wait_for(1)  # nobody calls on the receiver: its I/O thread read this
    for _ in range(20):  # now the receiver's own calls hold its socket, again and again ...
        lock_id, _ = receiver.acquire(["n"], WAIT)
        receiver.release(lock_id, held=True)
    sender.publish(["receiver-unique"], item("second"))  # ... and stop: the I/O thread is back
    calls = received.wait_for(2)
    assert [entry[0] for _, _, items in calls for entry in items] == ["first", "second"]


def test_close_ends_a_leaders_wait_at_once(server: Server, make_client: Callable[..., Client]) -> None:
    holder, client = make_client("holder"), make_client("a")
    holder.acquire(["busy"], 0)
    waiting = Background(lambda: client.acquire(["busy"], None))  # would wait forever
    wait_until(lambda: len(server.waiters("busy")) == 1)
    client.close()
    with pytest.raises(NotConnected):
        waiting.result()


def test_a_server_that_goes_away_ends_a_leaders_wait(server: Server, make_client: Callable[..., Client]) -> None:
    lost = Recorder()
    holder, client = make_client("holder"), make_client("a", on_connection_lost=lost)
    holder.acquire(["busy"], 0)
    waiting = Background(lambda: client.acquire(["busy"], 60))
    wait_until(lambda: len(server.waiters("busy")) == 1)
    server.stop()
    with pytest.raises((NotConnected, LockTimeout)):
        waiting.result(timeout=WAIT)  # not after its 60 s
    assert lost.wait_for() == [(False,)]  # told once, by the I/O thread, as not lapsed


def test_an_idle_connection_keeps_its_lease(make_client: Callable[..., Client], server: Server,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # The I/O thread went idle with no deadline before the Welcome was in; the caller that
    # read it left without a word, and no heartbeat ever left: the idle client's lease ran out
    # (seen). A descriptor's signal may be gone before the I/O thread looks (the caller read
    # what it announced): here the idle wait never sees data, only wakes and its deadline.
    for transport in (MemoryClientTransport, ZmqClientTransport):
        blind = transport.wait
        monkeypatch.setattr(transport, "wait", lambda self, timeout, data=True, blind=blind: blind(
            self, timeout, data=False))
    client = make_client("a")
    lock_id, _ = client.acquire(["kept"], 0)
    quiet = threading.Event()
    quiet.wait(3 * LEASE)  # nobody calls: only the I/O thread's heartbeats keep the lease
    assert client.connected
    assert client.holds(lock_id)
    assert [entry[0] for entry in server.snapshot()] == [lock_id]
    assert client.release(lock_id) == 1


class _Wire:
    """A transport stand-in that records what the connection sends."""

    def __init__(self) -> None:
        self.sent: list[p.Message] = []

    def send(self, frame: bytes) -> None:
        self.sent.append(p.decode(frame))


def test_a_heartbeat_leaves_while_a_long_backlog_is_read() -> None:
    # A receiver read a backlog of publications for 3.6 s without looking at its clock
    # (seen in the message benchmark): no heartbeat left, and its lease ran out.
    clock = FakeClock()

    def slow_store(sender: str, sender_name: str, items: list[Any]) -> int:
        clock.now += 0.4  # storing each batch takes 0.4 s of the client's clock
        return 0

    client = Client(parse("memory://nowhere"), SECURITY, name="a", unique_name="a-unique",
                    on_publications=slow_store, clock=clock)
    wire = _Wire()
    client._running = True  # as its I/O thread would be: this test plays that thread
    hello = client._core.hello(clock())
    client._feed(wire, [p.encode(p.Welcome(hello, "server-unique", "server", None, 5.0, 1))])
    batch = p.encode(p.Deliver(0, "b-unique", "b", 0, 1, join_items([item("m")])))
    client._feed(wire, [batch] * 10)  # 4 s of storing in one read
    heartbeats = [message for message in wire.sent if type(message) is p.Heartbeat]
    assert len(heartbeats) >= 3  # one a second at a 5 s lease, sent as they fell due


def test_a_call_registered_after_the_connection_failed_does_not_wait_forever(
        make_client: Callable[..., Client], monkeypatch: pytest.MonkeyPatch) -> None:
    # The window between a call's usability check and its registration: a failure that
    # told every registered call before this one was registered must still reach it.
    client = make_client("a")
    client.close()
    monkeypatch.setattr(client, "_check_usable", lambda: None)  # as if checked just before the failure
    waiting = Background(lambda: client.acquire(["x"], None))  # no timeout: it would wait forever
    with pytest.raises(NotConnected):
        waiting.result()
