"""The memory transport: ``memory://name`` servers and their clients inside one process.

No sockets and no ZeroMQ: a process-wide registry maps each name to its listening
server, and frames move through per-connection FIFO queues guarded by a
``threading.Condition`` per end, which ``poll`` waits on until input arrives,
``wake`` is called, or the timeout passes. It serves tests and single-process
deployments with the same semantics the ZeroMQ transport has:

* requests keep their order per connection; the server takes them round-robin
  across connections (as a ROUTER fair-queues), in batches of ``RECV_BATCH``;
* a client connecting with the identity of a connected one takes its place (as
  ``ROUTER_HANDOVER``); the one replaced sees a disconnect;
* closing a server (``close``, or ``vanish(name)`` from any thread) reports a
  disconnect to each of its clients, from their next ``poll``; their ``send``
  raises NotConnected from then on, and what was already queued stays readable.

Bounds: each queue holds at most ``max_frames`` frames (``MAX_QUEUE_FRAMES``
unless the ``MemoryTransport`` says otherwise; the receiving end's transport
decides). A full request queue makes the client's ``send`` raise NotConnected; a
full reply queue makes the server's ``send`` return False.

Security is ignored: nothing leaves the process, so there is no handshake to
encrypt, no key to check and no ``on_auth_failure``. Frames have no size limit
here (the protocol layer checks sizes). A client connecting to a name nobody
listens at fails at once with NotConnected (there is no connecting in the
background to wait for).
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Callable, Final

from ..errors import AddressError, ListenError, NotConnected
from .address import Address

if TYPE_CHECKING:
    from .base import Security

__all__ = ["MAX_QUEUE_FRAMES", "RECV_BATCH", "SCHEMES", "MemoryClientTransport", "MemoryServerTransport",
           "MemoryTransport", "vanish"]

SCHEMES: Final = ("memory",)
MAX_QUEUE_FRAMES: Final = 100_000
RECV_BATCH: Final = 256

_registry_lock = threading.Lock()
_servers: dict[str, MemoryServerTransport] = {}
_anonymous = itertools.count(1)


def vanish(name: str) -> bool:
    """Close the server listening at ``memory://name``, from any thread; False if none listens.

    Its clients see a disconnect, as if its process had died; its own ``poll`` raises ListenError.
    """
    with _registry_lock:
        server = _servers.get(name)
    if server is None:
        return False
    server.close()
    return True


def _name_of(address: Address) -> str:
    if address.scheme not in SCHEMES or not address.path:
        raise AddressError(f"the memory transport does not serve {address.url}")
    return address.path


class _Link:
    """One client's connection, as the server sees it: its peer id and its request queue."""

    __slots__ = ("client", "closed", "peer", "requests")

    def __init__(self, peer: bytes, client: MemoryClientTransport) -> None:
        self.peer = peer
        self.client = client
        self.requests: collections.deque[bytes] = collections.deque()
        self.closed = False  # the client closed; what it sent before is still read


class MemoryServerTransport:
    """A server in this process's registry; every method is safe from any thread."""

    def __init__(self, name: str, logger: logging.Logger, max_frames: int) -> None:
        self._name = name
        self._log = logger
        self._max_frames = max_frames
        self._cond = threading.Condition()
        self._links: dict[bytes, _Link] = {}
        self._ready: dict[bytes, None] = {}  # peers with requests waiting, oldest first (an ordered set)
        self._woken = False
        self._closed = False

    @property
    def address(self) -> Address:
        return Address("memory", path=self._name)

    # ------------------------------------------------------------ called by clients
    def _attach(self, identity: bytes, client: MemoryClientTransport) -> _Link:
        peer = identity or b"\0" + next(_anonymous).to_bytes(4, "big")
        with self._cond:
            if self._closed:
                raise NotConnected(f"the server at memory://{self._name} is closed")
            replaced = self._links.get(peer)
            if replaced is not None:
                self._ready.pop(peer, None)  # the replaced connection's requests go with it
            link = self._links[peer] = _Link(peer, client)
        if replaced is not None:
            self._log.debug("peer %r reconnected: the previous connection is dropped", peer)
            replaced.client._server_gone(self)
        return link

    def _detach(self, link: _Link) -> None:
        with self._cond:
            if self._links.get(link.peer) is not link:
                return
            if link.requests:
                # As a socket's linger does: what the client sent before closing (its Bye,
                # say) still reaches the server; the connection goes once that is read.
                link.closed = True
            else:
                del self._links[link.peer]

    def _accept(self, link: _Link, frame: bytes) -> None:
        with self._cond:
            if self._closed:
                raise NotConnected(f"the server at memory://{self._name} is closed")
            if self._links.get(link.peer) is not link or link.closed:
                raise NotConnected(f"the connection to memory://{self._name} was replaced or closed")
            if len(link.requests) >= self._max_frames:
                raise NotConnected(f"the server at memory://{self._name} has {self._max_frames} frames "
                                   "waiting from this client already")
            link.requests.append(bytes(frame))
            if link.peer not in self._ready:
                self._ready[link.peer] = None
                self._cond.notify_all()

    # ------------------------------------------------------------ ServerTransport
    def poll(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` s for requests or a wake; True if requests wait."""
        with self._cond:
            if not (self._ready or self._woken or self._closed):
                self._cond.wait_for(lambda: self._ready or self._woken or self._closed, timeout)
            if self._closed:
                raise ListenError(f"the server at memory://{self._name} is closed")
            self._woken = False
            return bool(self._ready)

    def receive(self) -> Iterator[tuple[bytes, list[bytes]]]:
        """Waiting requests, one per peer in turn, at most ``RECV_BATCH``; stopping early loses none."""
        for _ in range(RECV_BATCH):
            with self._cond:
                if not self._ready:
                    return
                peer = next(iter(self._ready))
                del self._ready[peer]
                link = self._links[peer]
                frame = link.requests.popleft()
                if link.requests:
                    self._ready[peer] = None  # to the back of the line
                elif link.closed:
                    del self._links[peer]
            yield peer, [frame]

    def send(self, peer: bytes, frame: bytes) -> bool:
        """Queue ``frame`` for ``peer``; False when the peer is gone, its queue full, or the server closed."""
        with self._cond:
            link = None if self._closed else self._links.get(peer)
        if link is None or link.closed:
            self._log.debug("reply to %r dropped: no such peer", peer)
            return False
        return link.client._deliver(bytes(frame))

    def wake(self) -> None:
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def close(self) -> None:
        """Leave the registry and report a disconnect to every client; idempotent."""
        with _registry_lock:
            if _servers.get(self._name) is self:
                del _servers[self._name]
        with self._cond:
            if self._closed:
                return
            self._closed = True
            clients = {link.client for link in self._links.values()}
            self._links.clear()
            self._ready.clear()
            self._cond.notify_all()
        for client in clients:
            client._server_gone(self)


class MemoryClientTransport:
    """A connection to one memory server; every method is safe from any thread."""

    def __init__(self, server: MemoryServerTransport, identity: bytes, logger: logging.Logger,
                 on_disconnect: Callable[[], None], max_frames: int) -> None:
        self._log = logger
        self._on_disconnect = on_disconnect
        self._max_frames = max_frames
        self._cond = threading.Condition()
        self._replies: collections.deque[bytes] = collections.deque()
        self._woken = False
        self._gone = False  # the server closed or another connection took our identity
        self._gone_reported = False
        self._closed = False
        self._server = server
        self._link = server._attach(identity, self)

    # ------------------------------------------------------------ called by servers
    def _deliver(self, frame: bytes) -> bool:
        with self._cond:
            if self._closed or len(self._replies) >= self._max_frames:
                return False
            self._replies.append(frame)
            self._cond.notify_all()
            return True

    def _server_gone(self, server: MemoryServerTransport) -> None:
        with self._cond:
            if server is self._server and not self._closed:
                self._gone = True
                self._cond.notify_all()

    # ------------------------------------------------------------ ClientTransport
    def _has_news(self) -> bool:
        return bool(self._replies or self._woken or (self._gone and not self._gone_reported))

    def poll(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` s; whether replies wait. Reports a disconnect once."""
        with self._cond:
            if self._closed:
                raise NotConnected(f"the connection to {self._server.address.url} is closed")
            if not self._has_news():
                self._cond.wait_for(self._has_news, timeout)
            self._woken = False
            report = self._gone and not self._gone_reported
            self._gone_reported = self._gone
            readable = bool(self._replies)
        if report:
            self._on_disconnect()
        return readable

    def wait(self, timeout: float | None, data: bool = True) -> bool:
        """Wait up to ``timeout`` s for input, a wake or a disconnect (``data`` False: a wake); consumes nothing."""
        def news() -> bool:
            return self._closed or (self._has_news() if data else self._woken)

        with self._cond:
            return self._cond.wait_for(news, timeout)

    def receive(self) -> Iterator[bytes]:
        for _ in range(RECV_BATCH):
            with self._cond:
                if not self._replies:
                    return
                frame = self._replies.popleft()
            yield frame

    def send(self, frame: bytes) -> None:
        """Queue ``frame`` for the server; NotConnected when it is closed or its queue for us is full."""
        with self._cond:
            unusable = self._closed or self._gone
        if unusable:
            raise NotConnected(f"not connected to {self._server.address.url}")
        self._server._accept(self._link, frame)

    def wake(self) -> None:
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def close(self) -> None:
        """Leave the server (its ``send`` to us returns False from now on); idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._server._detach(self._link)


class MemoryTransport:
    """``Transport`` for ``memory://name`` addresses; ``max_frames`` bounds the queues its ends receive on."""

    schemes: Final = SCHEMES

    def __init__(self, max_frames: int = MAX_QUEUE_FRAMES) -> None:
        if max_frames < 1:
            raise ValueError(f"max_frames must be at least 1, got {max_frames}")
        self.max_frames = max_frames

    def listen(self, address: Address, security: Security, logger: logging.Logger, *,
               peer_timeout: float | None = None) -> MemoryServerTransport:
        """Register a server at ``address``; ListenError when the name is taken.

        ``security`` and ``peer_timeout`` are ignored: nothing in memory goes silent.
        """
        name = _name_of(address)
        server = MemoryServerTransport(name, logger, self.max_frames)
        with _registry_lock:
            if name in _servers:
                raise ListenError(f"cannot listen at {address.url}: another server listens there")
            _servers[name] = server
        return server

    def connect(self, address: Address, security: Security, identity: bytes, logger: logging.Logger,
                on_auth_failure: Callable[[], None],
                on_disconnect: Callable[[], None], *, peer_timeout: float | None = None) -> MemoryClientTransport:
        """Connect at once; NotConnected when nobody listens there (``security`` is ignored)."""
        name = _name_of(address)
        with _registry_lock:
            server = _servers.get(name)
        if server is None:
            raise NotConnected(f"no server listens at {address.url}")
        return MemoryClientTransport(server, identity, logger, on_disconnect, self.max_frames)
