"""The ZeroMQ side of pylocker: the serving ROUTER + PUB pair and the client DEALER + SUB.

Each endpoint object is created, used and closed by one thread only (ZeroMQ sockets
are not thread-safe); other threads reach that thread through a ``Waker``.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from typing import Callable, Final, Iterator

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import recv_monitor_message

from ..errors import NotConnected
from ..protocol import MAX_FRAME
from .keys import CurveKeys

PORT_SEARCH: Final = 100
# Batches queued per subscriber before a slow one starts missing some: with batches of at
# most ~64 KiB (client.BATCH_BYTES) a stalled subscriber costs the server a few MiB at most.
PUB_HWM: Final = 100
RECV_BATCH: Final = 256
HEARTBEAT_MS: Final = 1000
HEARTBEAT_TIMEOUT_MS: Final = 4000
_HANDSHAKE_FAILURES: Final = (zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                              | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
HANDSHAKE_MS: Final = 5000
AUTH_FAILURES: Final = 3  # failed handshakes in a row before a client gives up on its credentials  # a peer that has not finished the CURVE handshake by then is dropped


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


class AuthGuard:
    """Admits known CURVE client keys; throttles addresses that keep failing.

    An address with more than ``MAX_FAILURES`` refusals within ``FAILURE_WINDOW``
    seconds is refused outright (its key not even looked at) for a cool-down that
    doubles with every new burst, up to ``MAX_COOLDOWN``; the log gets one line per
    cool-down, not one per attempt, so a flood can exhaust neither CPU nor disk.
    """

    MAX_FAILURES: Final = 5
    FAILURE_WINDOW: Final = 60.0
    FIRST_COOLDOWN: Final = 1.0
    MAX_COOLDOWN: Final = 60.0
    MAX_TRACKED: Final = 10_000

    def __init__(self, allowed: set[bytes], logger: logging.Logger,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._allowed = frozenset(allowed)
        self._log = logger
        self._clock = clock
        self._failures: dict[str, list[float]] = {}
        self._blocked_until: dict[str, float] = {}
        self._cooldown: dict[str, float] = {}
        self.refused = 0

    def is_blocked(self, address: str) -> bool:
        until = self._blocked_until.get(address)
        if until is None:
            return False
        if self._clock() < until:
            self.refused += 1
            return True
        del self._blocked_until[address]
        return False

    def check(self, address: str, key: bytes) -> bool:
        if key in self._allowed:
            self._failures.pop(address, None)
            return True
        self.refused += 1
        now = self._clock()
        if len(self._failures) >= self.MAX_TRACKED and address not in self._failures:
            self._failures.clear()  # bounded memory beats perfect accounting under a flood
        recent = [t for t in self._failures.get(address, ()) if now - t < self.FAILURE_WINDOW]
        recent.append(now)
        self._failures[address] = recent
        if len(recent) > self.MAX_FAILURES:
            cooldown = min(self._cooldown.get(address, self.FIRST_COOLDOWN / 2) * 2, self.MAX_COOLDOWN)
            self._cooldown[address] = cooldown
            self._blocked_until[address] = now + cooldown
            self._failures.pop(address, None)
            self._log.warning("authentication failed %d times from %s: refusing it for %.0f s",
                              len(recent), address, cooldown)
        else:
            self._log.warning("authentication failed from %s: unknown CURVE client key", address)
        return False


class _GuardedAuthenticator(ThreadAuthenticator):
    """pyzmq's ZAP thread, with the peer address passed to the AuthGuard."""

    def __init__(self, context: zmq.Context, guard: AuthGuard, logger: logging.Logger) -> None:
        super().__init__(context, log=logger)
        self._guard = guard
        self._address = ""

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        self._address = msg[3].decode("utf-8", "replace") if len(msg) > 3 else ""
        if len(msg) > 1 and self._guard.is_blocked(self._address):
            self._send_zap_reply(msg[1], b"400", b"Too many failures")
            return
        await super().handle_zap_message(msg)

    def callback(self, domain: str, key: bytes) -> bool:
        return self._guard.check(self._address, key)


def _tune(sock: zmq.Socket) -> None:
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME)
    sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_MS)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
    sock.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_MS)


def _no_heartbeats(sock: zmq.Socket) -> None:
    # On a subscription backed up behind megabytes of publications, a PING waits in line
    # and the peer is timed out and cut, losing what was queued. Liveness is judged on the
    # request connection (ROUTER/DEALER) anyway.
    sock.setsockopt(zmq.HEARTBEAT_IVL, 0)


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
                 client_keys: set[bytes]) -> None:
        """``client_keys``: the public CURVE keys admitted (z85)."""
        self._log = logger
        self.context = zmq.Context()
        try:
            self.guard = AuthGuard(client_keys, logger)
            self._auth = _GuardedAuthenticator(self.context, self.guard, logger.getChild("auth"))
            self._auth.start()
            self._auth.configure_curve_callback("*", credentials_provider=self._auth)
            self.router = self._secure(self.context.socket(zmq.ROUTER), keys)
            self.router.setsockopt(zmq.ROUTER_HANDOVER, 1)
            self.router.setsockopt(zmq.SNDHWM, 0)
            self.router.setsockopt(zmq.RCVHWM, 100_000)
            self.port = _bind(self.router, host, port)
            self.pub = self._secure(self.context.socket(zmq.PUB), keys)
            self.pub.setsockopt(zmq.SNDHWM, PUB_HWM)
            _no_heartbeats(self.pub)
            self.pub_port = _bind(self.pub, host, 0)
        except BaseException:
            self.close()
            raise
        self.host = host
        self.waker = Waker()
        self.failed_handshakes = 0
        self._failures_logged_at = 0.0
        self._monitor = self.router.get_monitor_socket(_HANDSHAKE_FAILURES)
        self._poller = zmq.Poller()
        self._poller.register(self.router, zmq.POLLIN)
        self._poller.register(self._monitor, zmq.POLLIN)
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
        if self._monitor in events:
            self._count_failed_handshakes()
        return self.router in events

    def _count_failed_handshakes(self) -> None:
        # A wrong password fails in the CURVE crypto, before ZAP sees an address:
        # count those failures and log them at most once a minute.
        for _ in range(RECV_BATCH):
            try:
                recv_monitor_message(self._monitor, zmq.NOBLOCK)
            except zmq.Again:
                break
            self.failed_handshakes += 1
        now = time.monotonic()
        if now - self._failures_logged_at >= 60.0:
            self._failures_logged_at = now
            self._log.warning("authentication failed: %d CURVE handshakes refused so far "
                              "(wrong password or not a pylocker client)", self.failed_handshakes)

    def receive(self) -> Iterator[tuple[bytes, list[bytes]]]:
        """Frames waiting on the router: (peer id, the frames after it), a bounded batch."""
        router = self.router
        recv, events = router.recv_multipart, router.get
        for _ in range(RECV_BATCH):
            # Asking ZMQ_EVENTS costs less than the zmq.Again a blind NOBLOCK recv raises at the end.
            if not events(zmq.EVENTS) & zmq.POLLIN:
                return
            parts = recv(zmq.NOBLOCK)
            yield parts[0], parts[1:]

    def send(self, peer: bytes, data: bytes) -> None:
        try:
            self.router.send_multipart((peer, data), zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            self._log.debug("reply to %r dropped: %s", peer, exc)

    def publish(self, frames: tuple[bytes, ...]) -> None:
        """Send on the PUB socket; a subscriber past its high-water mark misses it (counted by it)."""
        self.pub.send_multipart(frames, copy=False)

    def close(self) -> None:
        monitor = getattr(self, "_monitor", None)
        if monitor is not None:
            self.router.disable_monitor()
            monitor.close(0)
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
                 logger: logging.Logger, on_auth_failure: Callable[[], None],
                 on_disconnect: Callable[[], None] | None = None) -> None:
        self._log = logger
        self._on_auth_failure = on_auth_failure
        self._on_disconnect = on_disconnect
        self._handshake_failures = 0
        self.context = zmq.Context()
        self.dealer = self._secure(self.context.socket(zmq.DEALER), keys)
        self.dealer.setsockopt(zmq.ROUTING_ID, identity)
        self.dealer.setsockopt(zmq.SNDHWM, 0)
        self.dealer.setsockopt(zmq.RECONNECT_IVL, 50)
        self.dealer.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        self._monitor = self.dealer.get_monitor_socket(_HANDSHAKE_FAILURES | zmq.EVENT_DISCONNECTED)
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
            self.sub.setsockopt(zmq.RCVHWM, PUB_HWM)
            _no_heartbeats(self.sub)
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
            if event["event"] == zmq.EVENT_DISCONNECTED:
                # The server's end closed: it died, or the network dropped the session.
                if self._on_disconnect is not None:
                    self._on_disconnect()
                continue
            # A wrong password derives a wrong server key, so the handshake fails before
            # ZAP is even asked. One failure may be a server that was going away; the same
            # failure on every reconnection means "these credentials do not fit".
            self._handshake_failures += 1
            if event["event"] != zmq.EVENT_HANDSHAKE_FAILED_AUTH and self._handshake_failures < AUTH_FAILURES:
                continue
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
