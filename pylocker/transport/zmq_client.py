"""The ZeroMQ client transport: one DEALER, for requests, replies and publications (see ``zeromq``)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Callable, cast

import zmq
from zmq.utils.monitor import recv_monitor_message

from ..errors import AddressError, NotConnected
from .address import Address
from .base import Security
from .waker import Waker
from .zmq_common import (
    AUTH_FAILURES,
    EVENTS,
    HANDSHAKE_FAILURES,
    INPROC_PEERS,
    NOBLOCK,
    POLLIN,
    RCVMORE,
    RECV_BATCH,
    SCHEMES,
    Socket,
    map_exceptions,
    survive_silence,
    timeout_ms,
    tune,
)


class ZmqClientTransport:
    """DEALER (requests) + SUB (publications); CURVE clients of one server, except inproc."""

    def __init__(self, address: Address, security: Security, identity: bytes, logger: logging.Logger,
                 on_auth_failure: Callable[[], None], on_disconnect: Callable[[], None], *,
                 peer_timeout: float | None = None) -> None:
        if address.scheme not in SCHEMES:
            raise AddressError(f"the ZeroMQ transport does not serve {address.scheme}:// addresses")
        if not 0 < len(identity) <= 255:
            raise NotConnected(f"cannot connect to {address.url}: an identity takes 1 to 255 bytes")
        self._log = logger
        self._address = address
        self._peer_timeout = peer_timeout
        self._keys = security.keys
        self._on_auth_failure = on_auth_failure
        self._on_disconnect = on_disconnect
        self._handshake_failures = 0
        self._secure = address.scheme != "inproc"
        self._closed = False
        self._gone = False  # inproc: the server closed (set from its thread)
        self._gone_reported = False
        self._monitor: Socket | None = None
        self._dealer: Socket | None = None
        self._waker: Waker | None = None
        self._poller = zmq.Poller()
        self._idle_poller: zmq.Poller | None = None  # the raw descriptors, for ``wait``
        self._wake_poller: zmq.Poller | None = None  # the waker's alone
        with map_exceptions(NotConnected, f"cannot connect to {address.url}", by_errno={}):
            self._context: zmq.Context[Socket] = zmq.Context() if self._secure else zmq.Context.instance()
        try:
            with map_exceptions(NotConnected, f"cannot connect to {address.url}", by_errno={}):
                self._open(identity)
        except BaseException:
            self.close()
            raise

    def _open(self, identity: bytes) -> None:
        self._waker = Waker()
        dealer = self._dealer = self._socket(zmq.DEALER)
        dealer.setsockopt(zmq.ROUTING_ID, identity)
        survive_silence(dealer, self._peer_timeout)
        dealer.setsockopt(zmq.SNDHWM, 0)
        dealer.setsockopt(zmq.RECONNECT_IVL, 50)
        dealer.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        poller, idle = self._poller, zmq.Poller()
        poller.register(dealer, zmq.POLLIN)
        poller.register(self._waker.fd, zmq.POLLIN)
        idle.register(cast(int, dealer.get(zmq.FD)), zmq.POLLIN)
        idle.register(self._waker.fd, zmq.POLLIN)
        if self._secure:
            self._monitor = dealer.get_monitor_socket(HANDSHAKE_FAILURES | zmq.EVENT_DISCONNECTED)
            poller.register(self._monitor, zmq.POLLIN)
            idle.register(cast(int, self._monitor.get(zmq.FD)), zmq.POLLIN)
        else:
            INPROC_PEERS.add(self._address.path, self)
        self._idle_poller = idle
        self._wake_poller = zmq.Poller()
        self._wake_poller.register(self._waker.fd, zmq.POLLIN)
        with map_exceptions(NotConnected, f"cannot connect to {self._address.url}"):
            dealer.connect(self._address.url)

    def _socket(self, kind: int) -> Socket:
        sock = tune(self._context.socket(kind))
        if self._secure:
            sock.setsockopt(zmq.CURVE_SERVERKEY, self._keys.server.public)
            sock.setsockopt(zmq.CURVE_PUBLICKEY, self._keys.client.public)
            sock.setsockopt(zmq.CURVE_SECRETKEY, self._keys.client.secret)
        if ":" in self._address.host:
            sock.setsockopt(zmq.IPV6, 1)
        return sock

    def _server_gone(self) -> None:
        """The inproc server closed (called from its thread): report it from the next ``poll``."""
        self._gone = True
        self.wake()

    def poll(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` s; whether frames are waiting. Runs the callbacks."""
        waker = self._waker
        if self._closed or waker is None:
            raise NotConnected(f"the connection to {self._address.url} is closed")
        callbacks: list[Callable[[], None]] = []
        # try/except rather than map_exceptions: this runs for every wake-up, and a
        # context manager costs a generator per call even when nothing fails.
        try:
            events = dict(self._poller.poll(timeout_ms(timeout)))
            if waker.fd in events:
                waker.clear()
            if self._monitor is not None and self._monitor in events:
                self._read_monitor(self._monitor, callbacks)
        except zmq.ZMQError as exc:
            raise NotConnected(f"the connection's sockets failed: {exc.strerror}") from exc
        if self._gone and not self._gone_reported:
            self._gone_reported = True
            callbacks.append(self._on_disconnect)
        for callback in callbacks:  # outside the mapping: the driver's own errors stay its own
            callback()
        return self._dealer in events

    def wait(self, timeout: float | None, data: bool = True) -> bool:
        """Wait up to ``timeout`` s on the sockets' descriptors alone (no ZeroMQ call on them).

        ZeroMQ's descriptors signal that a socket's state may have changed (edge-triggered):
        whoever next takes the socket reads it until it says nothing waits.
        """
        poller = self._idle_poller if data else self._wake_poller
        if self._closed or poller is None:
            raise NotConnected(f"the connection to {self._address.url} is closed")
        try:
            return bool(poller.poll(timeout_ms(timeout)))
        except zmq.ZMQError as exc:
            raise NotConnected(f"the connection's sockets failed: {exc.strerror}") from exc

    def _read_monitor(self, monitor: Socket, callbacks: list[Callable[[], None]]) -> None:
        while True:
            try:
                event = recv_monitor_message(monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            if event["event"] == zmq.EVENT_DISCONNECTED:
                # The server's end closed: it died, or the network dropped the session.
                callbacks.append(self._on_disconnect)
                continue
            # A wrong password derives a wrong server key, so the handshake fails before
            # ZAP is even asked. One failure may be a server that was going away; the same
            # failure on every reconnection means "these credentials do not fit".
            self._handshake_failures += 1
            if event["event"] != zmq.EVENT_HANDSHAKE_FAILED_AUTH and self._handshake_failures < AUTH_FAILURES:
                continue
            self._log.error("authentication failed with the serving locker at %s (event %s): "
                            "wrong password, or not a pylocker server", self._address.url, event["event"])
            callbacks.append(self._on_auth_failure)

    def receive(self) -> Iterator[bytes]:
        """Single-frame messages from the server, a bounded batch (anything else is dropped)."""
        if self._dealer is None:
            raise NotConnected(f"the connection to {self._address.url} is closed")
        recv, get = self._dealer.recv, self._dealer.get
        for _ in range(RECV_BATCH):
            try:
                # Asking ZMQ_EVENTS costs less than the zmq.Again a blind recv raises at the end.
                if not cast(int, get(EVENTS)) & POLLIN:
                    return
                frame = recv(NOBLOCK)
                extra = 0
                while get(RCVMORE):  # a multi-part message is not ours: read it all, drop it
                    recv(NOBLOCK)
                    extra += 1
            except zmq.Again:
                return
            except zmq.ZMQError as exc:
                raise NotConnected(f"cannot receive from {self._address.url}: {exc.strerror}") from exc
            if not extra:
                yield frame

    def send(self, frame: bytes) -> None:
        if self._gone:
            raise NotConnected(f"the server at {self._address.url} closed")
        if self._dealer is None:
            raise NotConnected(f"the connection to {self._address.url} is closed")
        try:
            self._dealer.send(frame, NOBLOCK)
        except zmq.ZMQError as exc:
            raise NotConnected(f"cannot send to {self._address.url}: {exc.strerror}") from exc

    def wake(self) -> None:
        waker = self._waker
        if waker is not None:
            waker.wake()

    def close(self) -> None:
        """Close the sockets (and our own context); idempotent."""
        if self._closed:
            return
        self._closed = True
        if not self._secure:
            INPROC_PEERS.discard(self._address.path, self)
        with contextlib.suppress(zmq.ZMQBaseError):
            if self._monitor is not None and self._dealer is not None:
                self._dealer.disable_monitor()
        for sock in (self._monitor, self._dealer):
            if sock is not None:
                sock.close(0)
        if self._waker is not None:
            self._waker.close()
        if self._secure:
            self._context.term()


