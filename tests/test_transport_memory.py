"""The memory transport: ordering, wake-ups, disconnects and bounds, in one process."""

from __future__ import annotations

import ast
import itertools
import logging
import pathlib
import threading
import time
from collections.abc import Iterator
from typing import Callable

import pytest

import pylocker.transport.memory as memory
from pylocker.errors import AddressError, ListenError, NotConnected
from pylocker.transport import connect, listen, transport_for
from pylocker.transport.address import Address, parse
from pylocker.transport.base import ClientTransport, Security, ServerTransport
from pylocker.transport.keys import derive_keys
from pylocker.transport.memory import MemoryClientTransport, MemoryServerTransport, MemoryTransport, vanish

LOG = logging.getLogger("pylocker.test.memory")
SECURITY = Security(derive_keys("pw"))
_names = itertools.count()


class Events:
    """The client callbacks, counted."""

    def __init__(self) -> None:
        self.auth_failures = 0
        self.disconnects = 0

    def auth_failed(self) -> None:
        self.auth_failures += 1

    def disconnected(self) -> None:
        self.disconnects += 1


@pytest.fixture
def address() -> Address:
    return parse(f"memory://test-{next(_names)}")


@pytest.fixture
def server(address: Address) -> Iterator[MemoryServerTransport]:
    served = MemoryTransport().listen(address, SECURITY, LOG)
    yield served
    served.close()


@pytest.fixture
def make_client(address: Address) -> Iterator[Callable[..., MemoryClientTransport]]:
    made: list[MemoryClientTransport] = []

    def make(identity: bytes = b"client", events: Events | None = None,
             transport: MemoryTransport | None = None) -> MemoryClientTransport:
        events = events or Events()
        client = (transport or MemoryTransport()).connect(address, SECURITY, identity, LOG,
                                                          events.auth_failed, events.disconnected)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def requests(server: ServerTransport, count: int, timeout: float = 5.0) -> list[tuple[bytes, list[bytes]]]:
    """Poll and receive until ``count`` requests came (or fail after ``timeout``)."""
    got: list[tuple[bytes, list[bytes]]] = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        assert time.monotonic() < deadline, f"{len(got)} of {count} requests within {timeout} s"
        if server.poll(0.5):
            got.extend(server.receive())
    return got


def replies(client: ClientTransport, count: int, timeout: float = 5.0) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        assert time.monotonic() < deadline, f"{len(got)} of {count} replies within {timeout} s"
        readable = client.poll(0.5)
        if readable:
            got.extend(client.receive())
    return got


def test_request_and_reply(server: MemoryServerTransport, make_client: Callable[..., MemoryClientTransport]) -> None:
    client = make_client(b"alice")
    client.send(b"ping")
    assert requests(server, 1) == [(b"alice", [b"ping"])]
    assert server.send(b"alice", b"pong") is True
    assert replies(client, 1) == [b"pong"]
    assert client.poll(0) is False
    assert server.poll(0) is False


def test_a_thousand_frames_keep_their_order(server: MemoryServerTransport,
                                            make_client: Callable[..., MemoryClientTransport]) -> None:
    client = make_client(b"bob")
    frames = [b"%d" % index for index in range(1000)]
    for frame in frames:
        client.send(frame)
    got = requests(server, 1000)
    assert [peer for peer, _ in got] == [b"bob"] * 1000
    assert [parts[0] for _, parts in got] == frames
    for frame in frames:
        assert server.send(b"bob", frame)
    assert replies(client, 1000) == frames


def test_receive_takes_a_bounded_batch_and_stopping_early_loses_nothing(
        server: MemoryServerTransport, make_client: Callable[..., MemoryClientTransport]) -> None:
    client = make_client()
    for index in range(memory.RECV_BATCH + 10):
        client.send(b"%d" % index)
    assert server.poll(0)
    assert len(list(server.receive())) == memory.RECV_BATCH
    first = next(server.receive())  # abandon the rest of this batch
    assert first == (b"client", [b"%d" % memory.RECV_BATCH])
    rest = [parts[0] for _, parts in server.receive()]
    assert rest == [b"%d" % index for index in range(memory.RECV_BATCH + 1, memory.RECV_BATCH + 10)]


def test_requests_of_several_clients_are_taken_in_turn(
        server: MemoryServerTransport, make_client: Callable[..., MemoryClientTransport]) -> None:
    one, two = make_client(b"one"), make_client(b"two")
    for index in range(3):
        one.send(b"one-%d" % index)
    for index in range(3):
        two.send(b"two-%d" % index)
    got = requests(server, 6)
    assert [peer for peer, _ in got] == [b"one", b"two"] * 3
    assert [parts[0] for peer, parts in got if peer == b"two"] == [b"two-0", b"two-1", b"two-2"]


def test_wake_ends_a_poll_early_and_is_not_lost_when_early(
        server: MemoryServerTransport, make_client: Callable[..., MemoryClientTransport]) -> None:
    client = make_client()
    started = time.monotonic()
    waker = threading.Thread(target=server.wake)
    waker.start()  # before or during the poll: either way the poll ends at once
    assert server.poll(30) is False
    waker.join()
    waker = threading.Thread(target=client.wake)
    waker.start()
    assert client.poll(30) is False
    waker.join()
    assert time.monotonic() - started < 5
    server.wake()
    assert server.poll(30) is False  # a wake before the poll ends the next poll
    started = time.monotonic()
    assert server.poll(0.05) is False  # ... and only that one: this one waits its timeout
    assert time.monotonic() - started >= 0.04


def test_a_request_from_another_thread_ends_a_blocking_poll(
        server: MemoryServerTransport, make_client: Callable[..., MemoryClientTransport]) -> None:
    client = make_client()
    sender = threading.Thread(target=client.send, args=(b"late",))
    sender.start()
    started = time.monotonic()
    assert server.poll(30) is True
    sender.join()
    assert time.monotonic() - started < 5
    assert list(server.receive()) == [(b"client", [b"late"])]


def test_closing_the_server_disconnects_its_clients(
        server: MemoryServerTransport, make_client: Callable[..., MemoryClientTransport]) -> None:
    events = Events()
    client = make_client(b"c", events)
    assert server.send(b"c", b"last words")
    server.close()
    assert events.disconnects == 0  # reported from the client's poll, on its own thread
    assert client.poll(30) is True
    assert events.disconnects == 1
    assert list(client.receive()) == [b"last words"]  # what was queued stays readable
    with pytest.raises(NotConnected):
        client.send(b"anyone?")
    assert client.poll(0) is False
    assert events.disconnects == 1  # reported once
    assert events.auth_failures == 0
    with pytest.raises(ListenError):
        server.poll(0)
    server.close()  # idempotent


def test_vanish_closes_a_server_from_another_thread(
        address: Address, server: MemoryServerTransport, make_client: Callable[..., MemoryClientTransport]) -> None:
    events = Events()
    client = make_client(b"c", events)
    killer = threading.Thread(target=vanish, args=(address.path,))
    killer.start()
    client.poll(30)
    killer.join()
    assert events.disconnects == 1
    assert vanish(address.path) is False  # nobody listens there any more
    with pytest.raises(NotConnected, match="no server"):
        make_client()
    replacement = MemoryTransport().listen(address, SECURITY, LOG)  # the name is free again
    replacement.close()


def test_the_server_cannot_send_to_a_peer_that_is_gone(
        server: MemoryServerTransport, make_client: Callable[..., MemoryClientTransport]) -> None:
    client = make_client(b"leaving")
    client.send(b"bye")
    client.close()
    assert server.send(b"leaving", b"too late") is False
    assert server.send(b"never-here", b"x") is False
    # What it sent before closing is still read (as a socket's linger delivers it), then it is gone.
    assert server.poll(0) is True
    assert list(server.receive()) == [(b"leaving", [b"bye"])]
    assert server.poll(0) is False
    with pytest.raises(NotConnected):
        client.send(b"x")


def test_a_reconnecting_identity_takes_over(
        server: MemoryServerTransport, make_client: Callable[..., MemoryClientTransport]) -> None:
    old_events = Events()
    old = make_client(b"same", old_events)
    new = make_client(b"same")
    old.poll(30)
    assert old_events.disconnects == 1
    with pytest.raises(NotConnected):
        old.send(b"x")
    new.send(b"y")
    assert requests(server, 1) == [(b"same", [b"y"])]
    assert server.send(b"same", b"z")
    assert replies(new, 1) == [b"z"]
    assert list(old.receive()) == []


def test_full_queues(address: Address, make_client: Callable[..., MemoryClientTransport]) -> None:
    small = MemoryTransport(max_frames=3)
    server = small.listen(address, SECURITY, LOG)
    try:
        client = make_client(b"c", transport=small)
        for index in range(3):
            client.send(b"%d" % index)
        with pytest.raises(NotConnected, match="3 frames"):
            client.send(b"one too many")
        assert [parts for _, parts in requests(server, 3)] == [[b"0"], [b"1"], [b"2"]]
        client.send(b"room again")  # receiving made room
        assert [server.send(b"c", b"%d" % index) for index in range(4)] == [True, True, True, False]
        assert list(client.receive()) == [b"0", b"1", b"2"]
        assert server.send(b"c", b"room again") is True
    finally:
        server.close()


def test_nobody_listening_and_names_in_use(address: Address, server: MemoryServerTransport) -> None:
    with pytest.raises(ListenError, match="another server"):
        MemoryTransport().listen(address, SECURITY, LOG)
    with pytest.raises(NotConnected, match="no server"):
        MemoryTransport().connect(parse("memory://nobody-here"), SECURITY, b"c", LOG, Events().auth_failed,
                                  Events().disconnected)
    with pytest.raises(AddressError):
        MemoryTransport().listen(parse("inproc://x"), SECURITY, LOG)
    with pytest.raises(ValueError, match="max_frames"):
        MemoryTransport(max_frames=0)
    assert server.address == address


def test_the_registry_picks_the_transport_by_scheme(address: Address) -> None:
    assert isinstance(transport_for(address), MemoryTransport)
    assert transport_for(address) is transport_for(address)
    events = Events()
    server = listen(address.url, SECURITY, LOG)
    try:
        client = connect(address, SECURITY, b"via-registry", LOG, events.auth_failed, events.disconnected)
        try:
            client.send(b"hi")
            assert requests(server, 1) == [(b"via-registry", [b"hi"])]
        finally:
            client.close()
    finally:
        server.close()
    with pytest.raises(AddressError):
        transport_for(Address("carrier-pigeon"))


def test_the_memory_transport_needs_no_zeromq() -> None:
    tree = ast.parse(pathlib.Path(memory.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module}
    assert not imported & {"zmq", "socket"}
