"""The ZeroMQ server transport: one ROUTER, for requests, replies and publications (see ``zeromq``)."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import stat
import time
from collections.abc import Iterator
from typing import Final, cast

import zmq
from zmq.utils.monitor import recv_monitor_message

from ..errors import AddressError, ListenError
from .address import Address
from .base import Security
from .keys import CurveKeys
from .waker import Waker
from .zap import AuthGuard, GuardedAuthenticator
from .zmq_common import (
    EVENTS,
    FAILURE_LOG_INTERVAL,
    HANDSHAKE_FAILURES,
    INPROC_PEERS,
    IPC_MODE,
    NOBLOCK,
    POLLIN,
    PORT_SEARCH,
    RCVMORE,
    RECV_BATCH,
    REPLY_HWM,
    REQUEST_HWM,
    SCHEMES,
    SNDMORE_NOBLOCK,
    Socket,
    map_exceptions,
    survive_silence,
    timeout_ms,
    tune,
)


def _bind_tcp(sock: Socket, host: str, port: int) -> int:
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



MAX_BOUND_KEYS: Final = 100_000  # routing ids remembered with their machine's key


class ZmqServerTransport:
    """A ROUTER: a CURVE server behind a ZAP check, except inproc."""

    def __init__(self, address: Address, security: Security, logger: logging.Logger, *,
                 peer_timeout: float | None = None) -> None:
        if address.scheme not in SCHEMES:
            raise AddressError(f"the ZeroMQ transport does not serve {address.scheme}:// addresses")
        self._log = logger
        self._address = address
        self._peer_timeout = peer_timeout
        # With per-machine keys: routing id -> the CURVE key (ZAP User-Id) of the first frame
        # under it. A connection's frames act on its session only under that key.
        self._key_of: dict[bytes, str] | None = None
        self.foreign_frames = 0
        self._secure = address.scheme != "inproc"
        self._closed = False
        self._auth: GuardedAuthenticator | None = None
        self._monitor: Socket | None = None
        self._router: Socket | None = None
        self._waker: Waker | None = None
        self._files: list[tuple[str, int, int]] = []  # ipc socket files: (path, st_dev, st_ino)
        self._inproc_bound = False
        self._poller = zmq.Poller()
        self.guard: AuthGuard | None = None
        self.failed_handshakes = 0
        self._failures_logged_at = -FAILURE_LOG_INTERVAL
        with map_exceptions(ListenError, f"cannot listen at {address.url}", by_errno={}):
            # inproc needs both ends in one context: the process-wide one, which outlives us.
            self._context: zmq.Context[Socket] = zmq.Context() if self._secure else zmq.Context.instance()
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
            if security.admitted is not None:
                self._key_of = {}
            self.guard = AuthGuard(admitted, self._log)
            self._auth = GuardedAuthenticator(self._context, self.guard, self._log.getChild("auth"))
            self._auth.start()
            self._auth.configure_curve_callback("*", credentials_provider=self._auth)
        self._waker = Waker()
        router = self._router = self._socket(zmq.ROUTER, keys)
        # A locker reconnecting takes its routing id back from a connection the server has not
        # seen die yet. With per-machine keys no other machine may: a listed peer that learned a
        # routing id would cut its owner off and receive its answers.
        router.setsockopt(zmq.ROUTER_HANDOVER, 0 if self._key_of is not None else 1)
        survive_silence(router, self._peer_timeout)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)  # an unknown peer fails the send: send() says False
        # Frames queued towards one peer at most: one that does not read loses the rest (send()
        # says False) instead of growing the server. It gets no answers, so its own lease clock
        # lapses and it reconnects; nothing it believes outlives what the server grants.
        router.setsockopt(zmq.SNDHWM, REPLY_HWM)
        router.setsockopt(zmq.RCVHWM, REQUEST_HWM)
        with map_exceptions(ListenError, f"cannot listen at {address.url}"):
            if address.scheme == "tcp":
                port = _bind_tcp(router, address.host, address.port)
                self._address = address.with_port(port)
            elif address.scheme == "ipc":
                _refuse_to_replace(address.path)
                self._bind_ipc(router, address.path)
            else:
                router.bind(address.url)
                self._inproc_bound = True
        poller = self._poller
        poller.register(router, zmq.POLLIN)
        poller.register(self._waker.fd, zmq.POLLIN)
        if self._secure:
            self._monitor = router.get_monitor_socket(HANDSHAKE_FAILURES)
            poller.register(self._monitor, zmq.POLLIN)

    def _socket(self, kind: int, keys: CurveKeys) -> Socket:
        sock = tune(self._context.socket(kind))
        if self._secure:
            sock.setsockopt(zmq.CURVE_SERVER, 1)
            sock.setsockopt(zmq.CURVE_SECRETKEY, keys.server.secret)
            sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.server.public)
        if ":" in self._address.host:
            sock.setsockopt(zmq.IPV6, 1)
        return sock

    def _bind_ipc(self, sock: Socket, path: str) -> None:
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

    def _open_router(self) -> Socket:
        if self._closed or self._router is None:
            raise ListenError(f"the server at {self._address.url} is closed")
        return self._router

    def poll(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` seconds for input; True when the router has frames."""
        router = self._open_router()
        waker = self._waker
        if waker is None:
            raise ListenError(f"the server at {self._address.url} is closed")
        # try/except rather than map_exceptions: this runs for every wake-up.
        try:
            events = dict(self._poller.poll(timeout_ms(timeout)))
            if waker.fd in events:
                waker.clear()
            if self._monitor is not None and self._monitor in events:
                self._count_failed_handshakes(self._monitor)
        except zmq.ZMQError as exc:
            raise ListenError(f"the server's sockets failed: {exc.strerror}") from exc
        return router in events

    def _count_failed_handshakes(self, monitor: Socket) -> None:
        # A wrong password fails in the CURVE crypto, before ZAP sees an address:
        # count those failures and log them at most once a minute.
        for _ in range(RECV_BATCH):
            try:
                recv_monitor_message(monitor, zmq.NOBLOCK)
            except zmq.Again:
                break
            self.failed_handshakes += 1
        now = time.monotonic()
        if now - self._failures_logged_at >= FAILURE_LOG_INTERVAL:
            self._failures_logged_at = now
            self._log.warning("authentication failed: %d CURVE handshakes refused so far "
                              "(wrong password or not a pylocker client)", self.failed_handshakes)

    def receive(self) -> Iterator[tuple[bytes, list[bytes]]]:
        """Frames waiting on the router: (peer id, the frames after it), a bounded batch."""
        router = self._open_router()
        if self._key_of is not None:
            yield from self._receive_keyed(router, self._key_of)
            return
        # recv and RCVMORE by hand: recv_multipart's Python costs ~1.5 us a message more.
        recv, get = router.recv, router.get
        for _ in range(RECV_BATCH):
            try:
                # Asking ZMQ_EVENTS costs less than the zmq.Again a blind NOBLOCK recv raises at the end.
                if not cast(int, get(EVENTS)) & POLLIN:
                    return
                peer = recv(NOBLOCK)
                frames: list[bytes] = []
                while get(RCVMORE):
                    frames.append(recv(NOBLOCK))
            except zmq.ZMQError as exc:
                raise ListenError(f"the server's sockets failed: {exc.strerror}") from exc
            yield peer, frames

    def _receive_keyed(self, router: Socket, key_of: dict[bytes, str]) -> Iterator[tuple[bytes, list[bytes]]]:
        """``receive`` with per-machine keys: frames under a routing id bound to another key are dropped.

        A routing id is a secret of one locker; should it leak, another listed machine still
        cannot act on that locker's session (say goodbye for it, release its locks).
        """
        for _ in range(RECV_BATCH):
            try:
                if not cast(int, router.get(EVENTS)) & POLLIN:
                    return
                parts = router.recv_multipart(zmq.NOBLOCK, copy=False)
                key = str(parts[-1].get("User-Id"))
            except zmq.ZMQError as exc:
                raise ListenError(f"the server's sockets failed: {exc.strerror}") from exc
            peer = parts[0].bytes
            bound = key_of.get(peer)
            if bound is None:
                if len(key_of) >= MAX_BOUND_KEYS:
                    del key_of[next(iter(key_of))]  # bounded: the oldest binding goes first
                key_of[peer] = key
            elif bound != key:
                self.foreign_frames += 1
                if self.foreign_frames in (1, 10, 100) or self.foreign_frames % 10_000 == 0:
                    self._log.warning("dropped %d frames sent under another machine's connection (key %s)",
                                      self.foreign_frames, key)
                continue
            yield peer, [part.bytes for part in parts[1:]]

    def send(self, peer: bytes, frame: bytes) -> bool:
        """Queue ``frame`` for ``peer``; False when the peer is unknown (gone) or the socket is closed."""
        if self._router is None:
            return False
        try:
            # Two sends with plain int flags: send_multipart's checks cost ~4 us a reply.
            self._router.send(peer, SNDMORE_NOBLOCK)
            self._router.send(frame, NOBLOCK)
        except zmq.ZMQError as exc:
            self._log.debug("reply to %r dropped: %s", peer, exc.strerror)
            return False
        return True

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
            with contextlib.suppress(zmq.ZMQBaseError):
                if self._router is not None:
                    self._router.unbind(self._address.url)
        for sock in (self._monitor, self._router):
            if sock is not None:
                sock.close(0)
        if self._auth is not None:
            self._auth.stop()
        if self._waker is not None:
            self._waker.close()
        if self._secure:
            self._context.term()  # ours alone; the shared inproc context is never terminated
        elif self._inproc_bound:
            INPROC_PEERS.server_closed(self._address.path)
        for path, device, inode in self._files:
            with contextlib.suppress(OSError):
                info = os.lstat(path)
                # Only our own socket: a server that replaced a dead one keeps its file.
                if stat.S_ISSOCK(info.st_mode) and (info.st_dev, info.st_ino) == (device, inode):
                    os.unlink(path)


