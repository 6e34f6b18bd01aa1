"""The ZeroMQ transport on real sockets: one suite, run once per scheme (tcp, ipc, inproc).

As pyzmq's own auth tests do, an abstract base class holds the tests and each scheme
subclasses it with its address; tcp and ipc add what CURVE and socket files bring.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest
import zmq

from pylocker.errors import AddressError, ListenError, NotConnected
from pylocker.transport import listen, transport_for
from pylocker.transport.address import Address, parse
from pylocker.transport.base import ClientTransport, Security, ServerTransport
from pylocker.transport.keys import derive_keys
from pylocker.transport.zeromq import PORT_SEARCH, ZmqServerTransport, ZmqTransport

pytestmark = pytest.mark.integration

LOG = logging.getLogger("pylocker.test.transport")
SECURITY = Security(derive_keys("pw"))
WRONG_PASSWORD = Security(derive_keys("not the password"))
DEADLINE = 10.0  # seconds any one wait may take before the test fails
_names = itertools.count()


class Events:
    """The client callbacks, counted (they run on the thread that polls)."""

    def __init__(self) -> None:
        self.auth_failures = 0
        self.disconnects = 0

    def auth_failed(self) -> None:
        self.auth_failures += 1

    def disconnected(self) -> None:
        self.disconnects += 1


def poll_until(client: ClientTransport, condition: Callable[[], bool], server: ServerTransport | None = None) -> None:
    """Poll ``client`` (and ``server``) until ``condition`` holds; fail after DEADLINE seconds."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"condition not met within {DEADLINE} s"
        if server is not None:
            server.poll(0)
        client.poll(0.05)


def requests(server: ServerTransport, count: int) -> list[tuple[bytes, list[bytes]]]:
    got: list[tuple[bytes, list[bytes]]] = []
    deadline = time.monotonic() + DEADLINE
    while len(got) < count:
        assert time.monotonic() < deadline, f"{len(got)} of {count} requests within {DEADLINE} s"
        if server.poll(0.1):
            got.extend(server.receive())
    return got


def replies(client: ClientTransport, count: int) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + DEADLINE
    while len(got) < count:
        assert time.monotonic() < deadline, f"{len(got)} of {count} replies within {DEADLINE} s"
        readable = client.poll(0.1)
        if readable:
            got.extend(client.receive())
    return got


class TransportTests:
    """What every scheme must do; subclasses give the ``address`` fixture."""

    @pytest.fixture
    def address(self, tmp_path: Path) -> Address:
        raise NotImplementedError

    @pytest.fixture
    def server(self, address: Address) -> Iterator[ServerTransport]:
        served = listen(address, SECURITY, LOG)
        yield served
        served.close()

    @pytest.fixture
    def make_client(self, server: ServerTransport) -> Iterator[Callable[..., ClientTransport]]:
        made: list[ClientTransport] = []

        def make(identity: bytes = b"client", events: Events | None = None,
                 security: Security = SECURITY) -> ClientTransport:
            events = events or Events()
            client = transport_for(server.address).connect(server.address, security, identity, LOG,
                                                           events.auth_failed, events.disconnected)
            made.append(client)
            return client

        yield make
        for client in made:
            client.close()

    def test_the_scheme_is_served_by_zeromq(self, server: ServerTransport) -> None:
        assert isinstance(transport_for(server.address), ZmqTransport)
        assert isinstance(server, ZmqServerTransport)

    def test_request_and_reply(self, server: ServerTransport, make_client: Callable[..., ClientTransport]) -> None:
        events = Events()
        client = make_client(b"alice", events)
        for index in range(100):
            client.send(b"ping %d" % index)
        got = requests(server, 100)
        assert got == [(b"alice", [b"ping %d" % index]) for index in range(100)]
        assert server.send(b"alice", b"pong") is True
        assert replies(client, 1) == [b"pong"]
        assert events.auth_failures == events.disconnects == 0

    def test_sending_to_an_unknown_peer_says_so(self, server: ServerTransport) -> None:
        assert server.send(b"nobody", b"hello?") is False

    def test_wake_ends_a_poll_early(self, server: ServerTransport,
                                    make_client: Callable[..., ClientTransport]) -> None:
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

    def test_a_closing_server_disconnects_its_client(
            self, server: ServerTransport, make_client: Callable[..., ClientTransport]) -> None:
        events = Events()
        client = make_client(b"c", events)
        client.send(b"hello")
        assert requests(server, 1) == [(b"c", [b"hello"])]
        server.close()
        poll_until(client, lambda: events.disconnects > 0)
        assert events.auth_failures == 0
        with pytest.raises(ListenError):
            server.poll(0)  # and no zmq exception
        assert server.send(b"c", b"x") is False

    def test_a_closed_client_raises_not_connected(self, make_client: Callable[..., ClientTransport]) -> None:
        client = make_client()
        client.close()
        client.close()  # idempotent
        with pytest.raises(NotConnected):
            client.send(b"x")
        with pytest.raises(NotConnected):
            client.poll(0)


class SecureTransportTests(TransportTests):
    """Schemes whose frames leave the process: CURVE, ZAP, and what a wrong password gets."""

    def test_a_wrong_password_is_an_auth_failure(
            self, server: ServerTransport, make_client: Callable[..., ClientTransport]) -> None:
        events = Events()
        client = make_client(b"intruder", events, WRONG_PASSWORD)
        client.send(b"let me in")
        poll_until(client, lambda: events.auth_failures > 0, server)
        assert isinstance(server, ZmqServerTransport)
        assert server.failed_handshakes > 0
        assert server.poll(0) is False  # nothing got through

    def test_a_key_the_server_does_not_admit_is_refused_by_zap(self, address: Address) -> None:
        other = derive_keys("someone else").client.public
        server = listen(address, Security(SECURITY.keys, admitted=frozenset({other})), LOG)
        events = Events()
        client = transport_for(address).connect(server.address, SECURITY, b"c", LOG,
                                                events.auth_failed, events.disconnected)
        try:
            poll_until(client, lambda: events.auth_failures > 0, server)
            assert isinstance(server, ZmqServerTransport)
            assert server.guard is not None
            assert server.guard.refused > 0
        finally:
            client.close()
            server.close()


class TestTcp(SecureTransportTests):
    @pytest.fixture
    def address(self, tmp_path: Path) -> Address:
        return parse("tcp://127.0.0.1:0")

    def test_port_zero_is_resolved(self, server: ServerTransport) -> None:
        assert server.address.host == "127.0.0.1"
        assert 0 < server.address.port <= 65535

    def test_a_taken_port_moves_to_the_next_free_one(self, server: ServerTransport) -> None:
        taken = server.address.port
        second = listen(server.address, SECURITY, LOG)  # asks for the same, fixed port
        try:
            assert second.address.port != taken
            if taken < 65535:
                assert taken < second.address.port < taken + PORT_SEARCH
        finally:
            second.close()

    def test_an_endpoint_zeromq_refuses_is_an_address_error(self) -> None:
        events = Events()
        with pytest.raises(AddressError):
            ZmqTransport().connect(Address("tcp", "127.0.0.1", -1), SECURITY, b"c", LOG,
                                   events.auth_failed, events.disconnected)

    def test_an_interface_we_do_not_have_is_a_listen_error(self) -> None:
        with pytest.raises(ListenError):
            listen("tcp://192.0.2.1:0", SECURITY, LOG)  # TEST-NET-1: never a local address

    def test_ipv6_loopback(self) -> None:
        try:
            with socket.create_server(("::1", 0), family=socket.AF_INET6):
                pass
        except OSError:
            pytest.skip("no IPv6 loopback here")
        server = listen("tcp://[::1]:0", SECURITY, LOG)
        events = Events()
        client = ZmqTransport().connect(server.address, SECURITY, b"six", LOG, events.auth_failed, events.disconnected)
        try:
            client.send(b"over ipv6")
            assert requests(server, 1) == [(b"six", [b"over ipv6"])]
        finally:
            client.close()
            server.close()


class TestIpc(SecureTransportTests):
    @pytest.fixture
    def address(self, tmp_path: Path) -> Address:
        return parse(f"ipc://{tmp_path}/s")

    def test_the_socket_file_is_private_and_removed_on_close(self, address: Address) -> None:
        server = listen(address, SECURITY, LOG)
        mode = os.lstat(address.path).st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o600
        server.close()
        assert not os.path.exists(address.path)

    def test_a_missing_directory_is_a_listen_error(self, tmp_path: Path) -> None:
        with pytest.raises(ListenError, match="directory"):
            listen(f"ipc://{tmp_path}/missing/s", SECURITY, LOG)

    def test_a_live_server_is_never_replaced(self, server: ServerTransport,
                                             make_client: Callable[..., ClientTransport]) -> None:
        with pytest.raises(ListenError, match="another server"):
            listen(server.address, SECURITY, LOG)
        client = make_client(b"still-here")  # the first server still serves
        client.send(b"hi")
        assert requests(server, 1) == [(b"still-here", [b"hi"])]

    def test_a_file_that_is_not_a_socket_is_never_replaced(self, tmp_path: Path) -> None:
        precious = tmp_path / "data"
        precious.write_text("keep me")
        with pytest.raises(ListenError, match="not a socket"):
            listen(f"ipc://{precious}", SECURITY, LOG)
        assert precious.read_text() == "keep me"

    def test_a_dead_server_s_socket_file_is_replaced(self, address: Address) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
            dead.bind(address.path)  # bound, never listening, then closed: what a crash leaves
        server = listen(address, SECURITY, LOG)
        try:
            assert stat.S_IMODE(os.lstat(address.path).st_mode) == 0o600
        finally:
            server.close()


class TestInproc(TransportTests):
    @pytest.fixture
    def address(self, tmp_path: Path) -> Address:
        return parse(f"inproc://test-transports-{os.getpid()}-{next(_names)}")

    def test_no_curve_inside_the_process(self, server: ServerTransport,
                                         make_client: Callable[..., ClientTransport]) -> None:
        events = Events()
        client = make_client(b"any-password", events, WRONG_PASSWORD)  # inproc ignores security
        client.send(b"hi")
        assert requests(server, 1) == [(b"any-password", [b"hi"])]
        assert events.auth_failures == 0

    def test_a_name_in_use_is_a_listen_error(self, server: ServerTransport,
                                             make_client: Callable[..., ClientTransport]) -> None:
        events = Events()
        client = make_client(b"c", events)
        with pytest.raises(ListenError):
            listen(server.address, SECURITY, LOG)
        client.send(b"hi")  # the failed second server did not disturb the first or its client
        assert requests(server, 1) == [(b"c", [b"hi"])]
        client.poll(0)
        assert events.disconnects == 0

    def test_a_closed_server_frees_its_name_at_once(self, address: Address) -> None:
        for _ in range(20):  # libzmq frees a closed socket's inproc name later, an unbound one now
            server = listen(address, SECURITY, LOG)
            server.close()
        assert not zmq.Context.instance().closed  # the shared context outlives its servers
