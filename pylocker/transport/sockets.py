"""The ZeroMQ side of pylocker: the serving ROUTER + PUB pair and the client DEALER + SUB.

Each endpoint object is created, used and closed by one thread only (ZeroMQ sockets
are not thread-safe); other threads reach that thread through a ``Waker``.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from typing import Callable, Final, Iterator

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import recv_monitor_message

from ..errors import NotConnected
from ..protocol import MAX_FRAME
from .keys import CurveKeys

PORT_SEARCH: Final = 100
RECV_BATCH: Final = 256
HEARTBEAT_MS: Final = 1000
HEARTBEAT_TIMEOUT_MS: Final = 4000


class Waker:
    """A pipe that any thread may write to, to wake a thread blocked in ``poll``."""

    def __init__(self) -> None:
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._armed = False
        self._lock = threading.Lock()

    @property
    def fd(self) -> int:
        return self._read_fd

    def wake(self) -> None:
        if self._armed:
            return
        with self._lock:
            if self._armed:
                return
            self._armed = True
            try:
                os.write(self._write_fd, b"\0")
            except (BlockingIOError, OSError):
                pass  # full (already awake) or closed (shutting down): nothing to do

    def clear(self) -> None:
        """Called by the woken thread before it drains its queue."""
        # Empty the pipe first, then disarm: disarming first would let a wake() that
        # lands in between leave the flag set with an empty pipe, and lose every later wake.
        try:
            while os.read(self._read_fd, 4096):
                pass
        except (BlockingIOError, OSError):
            pass
        self._armed = False

    def close(self) -> None:
        with self._lock:
            self._armed = True  # no more writes
            for fd in (self._read_fd, self._write_fd):
                try:
                    os.close(fd)
                except OSError:
                    pass


class _KeyChecker:
    """ZAP credentials provider: admits the derived client key or listed keys."""

    def __init__(self, allowed: set[bytes], logger: logging.Logger) -> None:
        self._allowed = allowed
        self._log = logger

    def callback(self, domain: str, key: bytes) -> bool:
        if key in self._allowed:
            return True
        self._log.warning("authentication failed for a CURVE client key (%s...)", key[:8].decode("ascii", "replace"))
        return False


def _tune(sock: zmq.Socket) -> None:
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME)
    sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_MS)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)


def _bind(sock: zmq.Socket, host: str, port: int) -> int:
    """Bind to ``port``, or the next free one; port 0 picks any free port."""
    if port == 0:
        return sock.bind_to_random_port(f"tcp://{host}")
    for candidate in range(port, min(port + PORT_SEARCH, 65536)):
        try:
            sock.bind(f"tcp://{host}:{candidate}")
            return candidate
        except zmq.ZMQError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
    return sock.bind_to_random_port(f"tcp://{host}")


class ServerEndpoint:
    """ROUTER (requests) + PUB (publications), CURVE servers behind a ZAP check."""

    def __init__(self, keys: CurveKeys, host: str, port: int, logger: logging.Logger,
                 extra_client_keys: set[bytes] | None = None) -> None:
        self._log = logger
        self.context = zmq.Context()
        try:
            self._auth = ThreadAuthenticator(self.context, log=logger.getChild("auth"))
            self._auth.start()
            allowed = {keys.client.public} | set(extra_client_keys or ())
            self._auth.configure_curve_callback("*", credentials_provider=_KeyChecker(allowed, logger))
            self.router = self._secure(self.context.socket(zmq.ROUTER), keys)
            self.router.setsockopt(zmq.ROUTER_HANDOVER, 1)
            self.router.setsockopt(zmq.SNDHWM, 0)
            self.router.setsockopt(zmq.RCVHWM, 100_000)
            self.port = _bind(self.router, host, port)
            self.pub = self._secure(self.context.socket(zmq.PUB), keys)
            self.pub_port = _bind(self.pub, host, 0)
        except BaseException:
            self.close()
            raise
        self.host = host
        self.waker = Waker()
        self._poller = zmq.Poller()
        self._poller.register(self.router, zmq.POLLIN)
        self._poller.register(self.waker.fd, zmq.POLLIN)

    @staticmethod
    def _secure(sock: zmq.Socket, keys: CurveKeys) -> zmq.Socket:
        _tune(sock)
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_SECRETKEY, keys.server.secret)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.server.public)
        return sock

    def poll(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` seconds for input; True when the router has frames."""
        ms = None if timeout is None else max(0, int(timeout * 1000 + 0.999))
        events = dict(self._poller.poll(ms))
        if self.waker.fd in events:
            self.waker.clear()
        return self.router in events

    def receive(self) -> Iterator[tuple[bytes, list[bytes]]]:
        """Frames waiting on the router: (peer id, the frames after it), a bounded batch."""
        recv = self.router.recv_multipart
        for _ in range(RECV_BATCH):
            try:
                parts = recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            yield parts[0], parts[1:]

    def send(self, peer: bytes, data: bytes) -> None:
        try:
            self.router.send_multipart((peer, data), zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            self._log.debug("reply to %r dropped: %s", peer, exc)

    def publish(self, topic: bytes, data: bytes) -> None:
        self.pub.send_multipart((topic, data))

    def close(self) -> None:
        for name in ("router", "pub"):
            sock = getattr(self, name, None)
            if sock is not None:
                sock.close(0)
        auth = getattr(self, "_auth", None)
        if auth is not None:
            auth.stop()
        waker = getattr(self, "waker", None)
        if waker is not None:
            waker.close()
        self.context.term()


class ClientEndpoint:
    """DEALER (requests) + SUB (publications), CURVE clients of one serving locker."""

    def __init__(self, keys: CurveKeys, host: str, port: int, identity: bytes,
                 logger: logging.Logger, on_auth_failure: Callable[[], None]) -> None:
        self._log = logger
        self._on_auth_failure = on_auth_failure
        self.context = zmq.Context()
        self.dealer = self._secure(self.context.socket(zmq.DEALER), keys)
        self.dealer.setsockopt(zmq.ROUTING_ID, identity)
        self.dealer.setsockopt(zmq.SNDHWM, 0)
        self.dealer.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        self._monitor = self.dealer.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
            | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
        self.dealer.connect(f"tcp://{host}:{port}")
        self.sub: zmq.Socket | None = None
        self._keys = keys
        self.host = host
        self.waker = Waker()
        self._poller = zmq.Poller()
        self._poller.register(self.dealer, zmq.POLLIN)
        self._poller.register(self._monitor, zmq.POLLIN)
        self._poller.register(self.waker.fd, zmq.POLLIN)

    @staticmethod
    def _secure(sock: zmq.Socket, keys: CurveKeys) -> zmq.Socket:
        _tune(sock)
        sock.setsockopt(zmq.CURVE_SERVERKEY, keys.server.public)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.client.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, keys.client.secret)
        return sock

    def subscribe(self, pub_port: int, topics: list[bytes]) -> None:
        """Connect the SUB socket to the server's PUB port for these topics."""
        if self.sub is None:
            self.sub = self._secure(self.context.socket(zmq.SUB), self._keys)
            self.sub.setsockopt(zmq.RCVHWM, 0)
            self._poller.register(self.sub, zmq.POLLIN)
            self.sub.connect(f"tcp://{self.host}:{pub_port}")
        for topic in topics:
            self.sub.setsockopt(zmq.SUBSCRIBE, topic)

    def poll(self, timeout: float | None) -> tuple[bool, bool]:
        """Wait up to ``timeout`` s; returns (dealer readable, sub readable)."""
        ms = None if timeout is None else max(0, int(timeout * 1000 + 0.999))
        events = dict(self._poller.poll(ms))
        if self.waker.fd in events:
            self.waker.clear()
        if self._monitor in events:
            self._read_monitor()
        return self.dealer in events, self.sub is not None and self.sub in events

    def _read_monitor(self) -> None:
        while True:
            try:
                event = recv_monitor_message(self._monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            # A wrong password derives a wrong server key, so the handshake fails before
            # ZAP is even asked: every handshake failure means "these credentials do not fit".
            self._log.error("authentication failed with the serving locker at %s (event %s): "
                            "wrong password, or not a pylocker server", self.host, event["event"])
            self._on_auth_failure()

    def receive(self) -> Iterator[bytes]:
        recv = self.dealer.recv_multipart
        for _ in range(RECV_BATCH):
            try:
                parts = recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(parts) == 1:
                yield parts[0]

    def receive_published(self) -> Iterator[list[bytes]]:
        if self.sub is None:
            return
        recv = self.sub.recv_multipart
        for _ in range(RECV_BATCH):
            try:
                yield recv(zmq.NOBLOCK)
            except zmq.Again:
                return

    def send(self, data: bytes) -> None:
        try:
            self.dealer.send(data, zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            raise NotConnected(f"cannot send to the serving locker: {exc}") from exc

    def close(self) -> None:
        self.dealer.disable_monitor()
        for sock in (self._monitor, self.dealer, self.sub):
            if sock is not None:
                sock.close(0)
        self.waker.close()
        self.context.term()
