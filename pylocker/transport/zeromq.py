"""The ZeroMQ transport: tcp, ipc and inproc addresses behind ``base.py``'s Protocols.

A server is a ROUTER (requests, replies, pushes) and a PUB (broadcasts); a client is
a DEALER and, once it knows where, a SUB. Per scheme:

* ``tcp://host:port``: the ROUTER at ``port`` (0: any free port; otherwise the next
  free one from ``port`` on), the PUB at a random port on the same host; the
  ``pub_endpoint`` is that port, in decimal. CURVE encrypts both, and a ZAP thread
  admits the client keys (``AuthGuard`` throttles addresses that keep failing).
* ``ipc:///path``: the ROUTER at ``path``, the PUB at ``path.pub`` (the
  ``pub_endpoint``), both socket files mode 0600 and removed on ``close``; CURVE and
  ZAP as for tcp. An existing file at either path is never replaced, unless it is a
  socket nobody listens on any more (libzmq would silently unlink it, whatever it is).
* ``inproc://name``: both ends share the process-wide context
  (``zmq.Context.instance()``, never terminated here); no CURVE and no ZAP, since
  the frames never leave the process; the PUB at ``name.pub``. libzmq reports no
  connection events for inproc, so a closing server tells its clients itself.

Each transport object is created, used and closed by one thread (ZeroMQ sockets are
not thread-safe); other threads reach it through ``wake``, which writes to a pipe
(``Waker``) that ``poll`` watches. The client's ``on_auth_failure`` and
``on_disconnect`` run on that thread, from ``poll``.

Failures leave as pylocker errors only (``map_exceptions``): ``ListenError`` when a
server cannot bind or its sockets fail, ``NotConnected`` when a client cannot
connect, send or receive, ``AddressError`` when ZeroMQ refuses an endpoint (EINVAL).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import stat
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Callable, Final, cast

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import recv_monitor_message

from ..errors import AddressError, ListenError, NotConnected, PylockerError
from ..protocol import MAX_FRAME
from .address import Address
from .base import Security
from .keys import CurveKeys

__all__ = [
    "AUTH_FAILURES", "HANDSHAKE_MS", "HEARTBEAT_MS", "HEARTBEAT_TIMEOUT_MS", "PORT_SEARCH", "PUB_HWM",
    "RECV_BATCH", "REQUEST_HWM", "SCHEMES", "AuthGuard", "Waker", "ZmqClientTransport", "ZmqServerTransport",
    "ZmqTransport", "map_exceptions",
]

SCHEMES: Final = ("tcp", "ipc", "inproc")
PORT_SEARCH: Final = 100
# Batches queued per subscriber before a slow one starts missing some: with batches of at
# most ~64 KiB (client.BATCH_BYTES) a stalled subscriber costs the server a few MiB at most.
PUB_HWM: Final = 100
REQUEST_HWM: Final = 100_000  # frames waiting on the server's ROUTER
RECV_BATCH: Final = 256
HEARTBEAT_MS: Final = 1000
HEARTBEAT_TIMEOUT_MS: Final = 4000
HANDSHAKE_MS: Final = 5000  # a peer that has not finished the CURVE handshake by then is dropped
AUTH_FAILURES: Final = 3  # failed handshakes in a row before a client gives up on its credentials
IPC_MODE: Final = 0o600
_HANDSHAKE_FAILURES: Final = (zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                              | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
_FAILURE_LOG_INTERVAL: Final = 60.0
# What ZeroMQ answers for an endpoint it cannot parse, or a transport it does not have.
_ENDPOINT_ERRORS: Final[Mapping[int, type[PylockerError]]] = {
    errno.EINVAL: AddressError, errno.EPROTONOSUPPORT: AddressError,
}

_Socket = zmq.Socket[bytes]


@contextlib.contextmanager
def map_exceptions(default: type[PylockerError], action: str,
                   by_errno: Mapping[int, type[PylockerError]] = _ENDPOINT_ERRORS) -> Iterator[None]:
    """Turn a ZeroMQ or OS failure inside the block into a pylocker error (as httpcore does).

    A ``zmq.ZMQError`` whose errno ``by_errno`` names becomes that class; any other
    becomes ``default``, its message prefixed with ``action``. Pylocker errors pass through.
    """
    try:
        yield
    except PylockerError:
        raise
    except zmq.ZMQError as exc:
        cls = by_errno.get(exc.errno or 0, default)
        raise cls(f"{action}: {exc.strerror}") from exc
    except (zmq.ZMQBaseError, OSError) as exc:
        raise default(f"{action}: {exc}") from exc


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
        if self._armed:  # already awake: no lock, no system call
            return
        with self._lock:
            self._write_once()

    def _write_once(self) -> None:
        if self._armed:
            return
        self._armed = True
        # A full pipe means already awake; a closed one, shutting down: nothing to do either way.
        with contextlib.suppress(OSError):
            os.write(self._write_fd, b"\0")

    def clear(self) -> None:
        """Called by the woken thread before it drains its queue."""
        # Empty the pipe first, then disarm: disarming first would let a wake() that
        # lands in between leave the flag set with an empty pipe, and lose every later wake.
        with contextlib.suppress(OSError):
            while os.read(self._read_fd, 4096):
                pass
        self._armed = False

    def close(self) -> None:
        with self._lock:
            if self._read_fd < 0:
                return
            self._armed = True  # no more writes
            for fd in (self._read_fd, self._write_fd):
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._read_fd = self._write_fd = -1


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

    def __init__(self, allowed: Iterable[bytes], logger: logging.Logger,
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
                              len(recent), address or "a local peer", cooldown)
        else:
            self._log.warning("authentication failed from %s: unknown CURVE client key", address or "a local peer")
        return False


class _GuardedAuthenticator(ThreadAuthenticator):
    """pyzmq's ZAP thread, with the peer address passed to the AuthGuard.

    ZAP gives the peer's IP for tcp and an empty address for ipc: all local peers of
    an ipc server share one throttle.
    """

    def __init__(self, context: zmq.Context[_Socket], guard: AuthGuard, logger: logging.Logger) -> None:
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


class _InprocPeers:
    """The clients of each inproc name, so a closing server can tell them it is gone.

    libzmq emits no connection events for inproc, and an inproc connection is never
    re-established: the client's next ``poll`` reports the disconnect instead.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[str, set[ZmqClientTransport]] = {}

    def add(self, name: str, client: ZmqClientTransport) -> None:
        with self._lock:
            self._clients.setdefault(name, set()).add(client)

    def discard(self, name: str, client: ZmqClientTransport) -> None:
        with self._lock:
            clients = self._clients.get(name)
            if clients is not None:
                clients.discard(client)
                if not clients:
                    del self._clients[name]

    def server_closed(self, name: str) -> None:
        with self._lock:
            clients = self._clients.pop(name, set())
        for client in clients:
            client._server_gone()


_INPROC_PEERS: Final = _InprocPeers()


def _tune(sock: _Socket) -> _Socket:
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME)
    sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_MS)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
    sock.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_MS)
    return sock


def _no_heartbeats(sock: _Socket) -> None:
    # On a subscription backed up behind megabytes of publications, a PING waits in line
    # and the peer is timed out and cut, losing what was queued. Liveness is judged on the
    # request connection (ROUTER/DEALER) anyway.
    sock.setsockopt(zmq.HEARTBEAT_IVL, 0)


def _timeout_ms(timeout: float | None) -> int | None:
    return None if timeout is None else max(0, int(timeout * 1000 + 0.999))


def _bind_tcp(sock: _Socket, host: str, port: int) -> int:
    """Bind to ``port``, or the next free one; port 0 picks any free port."""
    base = Address("tcp", host).url.rpartition(":")[0]  # tcp://host, brackets around IPv6
    if port == 0:
        return sock.bind_to_random_port(base)
    for candidate in range(port, min(port + PORT_SEARCH, 65536)):
        try:
            sock.bind(f"{base}:{candidate}")
            return candidate
        except zmq.ZMQError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
    return sock.bind_to_random_port(base)


def _refuse_to_replace(path: str) -> None:
    """Raise ListenError unless binding at ``path`` replaces nothing but a dead socket file.

    libzmq unlinks whatever is at an ipc path before binding: another server's live
    socket (whose clients would silently lose it) or even a regular file.
    """
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ListenError(f"cannot listen at ipc://{path}: the path exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        return  # a socket file left behind by a server that died: libzmq replaces it
    except OSError as exc:
        raise ListenError(f"cannot listen at ipc://{path}: {exc.strerror or exc}") from exc
    finally:
        probe.close()
    raise ListenError(f"cannot listen at ipc://{path}: another server listens there")


class ZmqServerTransport:
    """ROUTER (requests) + PUB (publications); CURVE servers behind a ZAP check, except inproc."""

    def __init__(self, address: Address, security: Security, logger: logging.Logger) -> None:
        if address.scheme not in SCHEMES:
            raise AddressError(f"the ZeroMQ transport does not serve {address.scheme}:// addresses")
        self._log = logger
        self._address = address
        self._pub_endpoint = ""
        self._secure = address.scheme != "inproc"
        self._closed = False
        self._auth: _GuardedAuthenticator | None = None
        self._monitor: _Socket | None = None
        self._router: _Socket | None = None
        self._pub: _Socket | None = None
        self._waker: Waker | None = None
        self._files: list[tuple[str, int, int]] = []  # ipc socket files: (path, st_dev, st_ino)
        self._inproc_bound = False
        self._poller = zmq.Poller()
        self.guard: AuthGuard | None = None
        self.failed_handshakes = 0
        self._failures_logged_at = -_FAILURE_LOG_INTERVAL
        with map_exceptions(ListenError, f"cannot listen at {address.url}", by_errno={}):
            # inproc needs both ends in one context: the process-wide one, which outlives us.
            self._context: zmq.Context[_Socket] = zmq.Context() if self._secure else zmq.Context.instance()
        try:
            with map_exceptions(ListenError, f"cannot listen at {address.url}", by_errno={}):
                self._open(address, security)
        except BaseException:
            self.close()
            raise

    def _open(self, address: Address, security: Security) -> None:
        keys = security.keys
        if self._secure:
            admitted = security.admitted if security.admitted is not None else frozenset({keys.client.public})
            self.guard = AuthGuard(admitted, self._log)
            self._auth = _GuardedAuthenticator(self._context, self.guard, self._log.getChild("auth"))
            self._auth.start()
            self._auth.configure_curve_callback("*", credentials_provider=self._auth)
        self._waker = Waker()
        router = self._router = self._socket(zmq.ROUTER, keys)
        router.setsockopt(zmq.ROUTER_HANDOVER, 1)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)  # an unknown peer fails the send: send() says False
        router.setsockopt(zmq.SNDHWM, 0)
        router.setsockopt(zmq.RCVHWM, REQUEST_HWM)
        pub = self._pub = self._socket(zmq.PUB, keys)
        pub.setsockopt(zmq.SNDHWM, PUB_HWM)
        _no_heartbeats(pub)
        with map_exceptions(ListenError, f"cannot listen at {address.url}"):
            if address.scheme == "tcp":
                port = _bind_tcp(router, address.host, address.port)
                self._address = address.with_port(port)
                self._pub_endpoint = str(_bind_tcp(pub, address.host, 0))
            elif address.scheme == "ipc":
                self._pub_endpoint = address.path + ".pub"
                for path in (address.path, self._pub_endpoint):
                    _refuse_to_replace(path)
                self._bind_ipc(router, address.path)
                self._bind_ipc(pub, self._pub_endpoint)
            else:
                self._pub_endpoint = address.path + ".pub"
                router.bind(address.url)
                self._inproc_bound = True
                pub.bind(f"inproc://{self._pub_endpoint}")
        poller = self._poller
        poller.register(router, zmq.POLLIN)
        poller.register(self._waker.fd, zmq.POLLIN)
        if self._secure:
            self._monitor = router.get_monitor_socket(_HANDSHAKE_FAILURES)
            poller.register(self._monitor, zmq.POLLIN)

    def _socket(self, kind: int, keys: CurveKeys) -> _Socket:
        sock = _tune(self._context.socket(kind))
        if self._secure:
            sock.setsockopt(zmq.CURVE_SERVER, 1)
            sock.setsockopt(zmq.CURVE_SECRETKEY, keys.server.secret)
            sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.server.public)
        if ":" in self._address.host:
            sock.setsockopt(zmq.IPV6, 1)
        return sock

    def _bind_ipc(self, sock: _Socket, path: str) -> None:
        try:
            sock.bind(f"ipc://{path}")
        except zmq.ZMQError as exc:
            hint = " (does the directory exist?)" if exc.errno == errno.ENOENT else ""
            raise ListenError(f"cannot listen at ipc://{path}: {exc.strerror}{hint}") from exc
        info = os.lstat(path)
        self._files.append((path, info.st_dev, info.st_ino))
        os.chmod(path, IPC_MODE)

    @property
    def address(self) -> Address:
        return self._address

    @property
    def pub_endpoint(self) -> str:
        return self._pub_endpoint

    def _open_router(self) -> _Socket:
        if self._closed or self._router is None:
            raise ListenError(f"the server at {self._address.url} is closed")
        return self._router

    def poll(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` seconds for input; True when the router has frames."""
        router = self._open_router()
        waker = self._waker
        if waker is None:
            raise ListenError(f"the server at {self._address.url} is closed")
        with map_exceptions(ListenError, "the server's sockets failed", by_errno={}):
            events = dict(self._poller.poll(_timeout_ms(timeout)))
            if waker.fd in events:
                waker.clear()
            if self._monitor is not None and self._monitor in events:
                self._count_failed_handshakes(self._monitor)
            return router in events

    def _count_failed_handshakes(self, monitor: _Socket) -> None:
        # A wrong password fails in the CURVE crypto, before ZAP sees an address:
        # count those failures and log them at most once a minute.
        for _ in range(RECV_BATCH):
            try:
                recv_monitor_message(monitor, zmq.NOBLOCK)
            except zmq.Again:
                break
            self.failed_handshakes += 1
        now = time.monotonic()
        if now - self._failures_logged_at >= _FAILURE_LOG_INTERVAL:
            self._failures_logged_at = now
            self._log.warning("authentication failed: %d CURVE handshakes refused so far "
                              "(wrong password or not a pylocker client)", self.failed_handshakes)

    def receive(self) -> Iterator[tuple[bytes, list[bytes]]]:
        """Frames waiting on the router: (peer id, the frames after it), a bounded batch."""
        router = self._open_router()
        recv, events = router.recv_multipart, router.get
        with map_exceptions(ListenError, "the server's sockets failed", by_errno={}):
            for _ in range(RECV_BATCH):
                # Asking ZMQ_EVENTS costs less than the zmq.Again a blind NOBLOCK recv raises at the end.
                if not cast(int, events(zmq.EVENTS)) & zmq.POLLIN:
                    return
                parts = recv(zmq.NOBLOCK)
                yield parts[0], parts[1:]

    def send(self, peer: bytes, frame: bytes) -> bool:
        """Queue ``frame`` for ``peer``; False when the peer is unknown (gone) or the socket is closed."""
        if self._router is None:
            return False
        try:
            self._router.send_multipart((peer, frame), zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            self._log.debug("reply to %r dropped: %s", peer, exc.strerror)
            return False
        return True

    def publish(self, frames: Sequence[bytes]) -> None:
        """Send on the PUB socket; a subscriber past its high-water mark misses it (counted by it)."""
        if self._pub is None:
            return
        try:
            self._pub.send_multipart(frames, zmq.NOBLOCK, copy=False)
        except zmq.ZMQError as exc:
            self._log.warning("publication dropped: %s", exc.strerror)

    def wake(self) -> None:
        waker = self._waker
        if waker is not None:
            waker.wake()

    def close(self) -> None:
        """Close the sockets, stop the ZAP thread, remove the ipc socket files; idempotent."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(zmq.ZMQBaseError):
            if self._monitor is not None and self._router is not None:
                self._router.disable_monitor()
        if self._inproc_bound:
            # Closing releases an inproc name later, when libzmq's reaper gets to the socket;
            # unbinding releases it now, so a server restarted at the same name can bind.
            for sock, url in ((self._router, self._address.url), (self._pub, f"inproc://{self._pub_endpoint}")):
                with contextlib.suppress(zmq.ZMQBaseError):
                    if sock is not None:
                        sock.unbind(url)
        for sock in (self._monitor, self._router, self._pub):
            if sock is not None:
                sock.close(0)
        if self._auth is not None:
            self._auth.stop()
        if self._waker is not None:
            self._waker.close()
        if self._secure:
            self._context.term()  # ours alone; the shared inproc context is never terminated
        elif self._inproc_bound:
            _INPROC_PEERS.server_closed(self._address.path)
        for path, device, inode in self._files:
            with contextlib.suppress(OSError):
                info = os.lstat(path)
                # Only our own socket: a server that replaced a dead one keeps its file.
                if stat.S_ISSOCK(info.st_mode) and (info.st_dev, info.st_ino) == (device, inode):
                    os.unlink(path)


class ZmqClientTransport:
    """DEALER (requests) + SUB (publications); CURVE clients of one server, except inproc."""

    def __init__(self, address: Address, security: Security, identity: bytes, logger: logging.Logger,
                 on_auth_failure: Callable[[], None], on_disconnect: Callable[[], None]) -> None:
        if address.scheme not in SCHEMES:
            raise AddressError(f"the ZeroMQ transport does not serve {address.scheme}:// addresses")
        if not 0 < len(identity) <= 255:
            raise NotConnected(f"cannot connect to {address.url}: an identity takes 1 to 255 bytes")
        self._log = logger
        self._address = address
        self._keys = security.keys
        self._on_auth_failure = on_auth_failure
        self._on_disconnect = on_disconnect
        self._handshake_failures = 0
        self._secure = address.scheme != "inproc"
        self._closed = False
        self._gone = False  # inproc: the server closed (set from its thread)
        self._gone_reported = False
        self._monitor: _Socket | None = None
        self._dealer: _Socket | None = None
        self._sub: _Socket | None = None
        self._sub_endpoints: set[str] = set()
        self._waker: Waker | None = None
        self._poller = zmq.Poller()
        with map_exceptions(NotConnected, f"cannot connect to {address.url}", by_errno={}):
            self._context: zmq.Context[_Socket] = zmq.Context() if self._secure else zmq.Context.instance()
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
        dealer.setsockopt(zmq.SNDHWM, 0)
        dealer.setsockopt(zmq.RECONNECT_IVL, 50)
        dealer.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        poller = self._poller
        poller.register(dealer, zmq.POLLIN)
        poller.register(self._waker.fd, zmq.POLLIN)
        if self._secure:
            self._monitor = dealer.get_monitor_socket(_HANDSHAKE_FAILURES | zmq.EVENT_DISCONNECTED)
            poller.register(self._monitor, zmq.POLLIN)
        else:
            _INPROC_PEERS.add(self._address.path, self)
        with map_exceptions(NotConnected, f"cannot connect to {self._address.url}"):
            dealer.connect(self._address.url)

    def _socket(self, kind: int) -> _Socket:
        sock = _tune(self._context.socket(kind))
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

    def _pub_url(self, pub_endpoint: str) -> str:
        scheme = self._address.scheme
        if scheme == "tcp":
            if not (pub_endpoint.isascii() and pub_endpoint.isdigit() and 0 < int(pub_endpoint) <= 65535):
                raise AddressError(f"{pub_endpoint!r} is not a tcp publication port")
            return self._address.with_port(int(pub_endpoint)).url
        if not pub_endpoint or "\0" in pub_endpoint:
            raise AddressError(f"{pub_endpoint!r} names no {scheme} publication endpoint")
        if scheme == "ipc" and not pub_endpoint.startswith("/"):
            raise AddressError(f"{pub_endpoint!r} is not an absolute ipc path")
        return f"{scheme}://{pub_endpoint}"

    def subscribe(self, pub_endpoint: str, topics: Sequence[bytes]) -> None:
        """Connect the SUB socket to the server's publication endpoint for these topic prefixes."""
        url = self._pub_url(pub_endpoint)
        with map_exceptions(NotConnected, f"cannot subscribe at {url}"):
            if self._sub is None:
                sub = self._socket(zmq.SUB)
                self._sub = sub
                sub.setsockopt(zmq.RCVHWM, PUB_HWM)
                _no_heartbeats(sub)
                self._poller.register(sub, zmq.POLLIN)
            if url not in self._sub_endpoints:
                self._sub.connect(url)
                self._sub_endpoints.add(url)
            for topic in topics:
                self._sub.setsockopt(zmq.SUBSCRIBE, topic)

    def poll(self, timeout: float | None) -> tuple[bool, bool]:
        """Wait up to ``timeout`` s; (dealer readable, sub readable). Runs the callbacks."""
        waker = self._waker
        if self._closed or waker is None:
            raise NotConnected(f"the connection to {self._address.url} is closed")
        callbacks: list[Callable[[], None]] = []
        with map_exceptions(NotConnected, "the connection's sockets failed", by_errno={}):
            events = dict(self._poller.poll(_timeout_ms(timeout)))
            if waker.fd in events:
                waker.clear()
            if self._monitor is not None and self._monitor in events:
                self._read_monitor(self._monitor, callbacks)
        if self._gone and not self._gone_reported:
            self._gone_reported = True
            callbacks.append(self._on_disconnect)
        for callback in callbacks:  # outside the mapping: the driver's own errors stay its own
            callback()
        return self._dealer in events, self._sub is not None and self._sub in events

    def _read_monitor(self, monitor: _Socket, callbacks: list[Callable[[], None]]) -> None:
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
        recv = self._dealer.recv_multipart
        for _ in range(RECV_BATCH):
            try:
                parts = recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            except zmq.ZMQError as exc:
                raise NotConnected(f"cannot receive from {self._address.url}: {exc.strerror}") from exc
            if len(parts) == 1:
                yield parts[0]

    def receive_published(self) -> Iterator[list[bytes]]:
        if self._sub is None:
            return
        recv = self._sub.recv_multipart
        for _ in range(RECV_BATCH):
            try:
                parts = recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            except zmq.ZMQError as exc:
                raise NotConnected(f"cannot receive publications: {exc.strerror}") from exc
            yield parts

    def send(self, frame: bytes) -> None:
        if self._gone:
            raise NotConnected(f"the server at {self._address.url} closed")
        if self._dealer is None:
            raise NotConnected(f"the connection to {self._address.url} is closed")
        try:
            self._dealer.send(frame, zmq.NOBLOCK)
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
            _INPROC_PEERS.discard(self._address.path, self)
        with contextlib.suppress(zmq.ZMQBaseError):
            if self._monitor is not None and self._dealer is not None:
                self._dealer.disable_monitor()
        for sock in (self._monitor, self._dealer, self._sub):
            if sock is not None:
                sock.close(0)
        if self._waker is not None:
            self._waker.close()
        if self._secure:
            self._context.term()


class ZmqTransport:
    """``Transport`` for ``tcp://``, ``ipc://`` and ``inproc://`` addresses (stateless)."""

    schemes: Final = SCHEMES

    def listen(self, address: Address, security: Security, logger: logging.Logger) -> ZmqServerTransport:
        """Bind a server at ``address``; raises ListenError (AddressError for a bad endpoint)."""
        return ZmqServerTransport(address, security, logger)

    def connect(self, address: Address, security: Security, identity: bytes, logger: logging.Logger,
                on_auth_failure: Callable[[], None],
                on_disconnect: Callable[[], None]) -> ZmqClientTransport:
        """Start connecting to ``address``; raises NotConnected (AddressError for a bad endpoint)."""
        return ZmqClientTransport(address, security, identity, logger, on_auth_failure, on_disconnect)
