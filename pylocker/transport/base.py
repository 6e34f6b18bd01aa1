"""What a transport offers the I/O drivers: typing Protocols, no implementation.

A transport moves opaque frames between one serving locker and its clients:

* requests, replies and pushes on a per-client channel (``send``/``receive``),
  kept in order per connection, as ZeroMQ's ROUTER/DEALER pair does;
* broadcasts on a publish channel that clients subscribe to by topic prefix.

Every object here is used by one thread at a time (a driver serialises its
threads with a lock), except ``wake``, which any thread may call to end a
``poll`` early, and a client's ``wait``, which may run beside that one thread. Failures
cross this boundary as pylocker errors only (``NotConnected``, ``ListenError``,
``AddressError``); no transport library exception escapes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Callable, NamedTuple, Protocol

from .address import Address
from .keys import CurveKeys


class Security(NamedTuple):
    """The CURVE keys a transport encrypts with, and the client keys a server admits.

    ``admitted`` None admits exactly the password's client key (``keys.client``).
    Transports that never leave the process (inproc, memory) ignore both.
    """

    keys: CurveKeys
    admitted: frozenset[bytes] | None = None


class ServerTransport(Protocol):
    """The serving end: one channel per client, for requests, replies and publications."""

    @property
    def address(self) -> Address:
        """Where clients reach this server (a tcp port of 0 resolved to the bound one)."""

    def poll(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` s (None: forever) for input or a wake; True if requests wait."""

    def receive(self) -> Iterator[tuple[bytes, list[bytes]]]:
        """Waiting requests, a bounded batch: (peer id, frames)."""

    def send(self, peer: bytes, frame: bytes) -> bool:
        """Queue ``frame`` for ``peer``; False when it could not be queued (peer gone or full)."""

    def wake(self) -> None:
        """End the current (or next) ``poll`` early; safe from any thread."""

    def close(self) -> None:
        """Close every socket; the transport cannot be used again."""


class ClientTransport(Protocol):
    """The connecting end: one channel to one server."""

    def poll(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` s (None: forever) for input or a wake; True if frames wait."""

    def wait(self, timeout: float | None, data: bool = True) -> bool:
        """Wait up to ``timeout`` s for input or a wake *without using the connection*; whether one came.

        Safe while another thread polls, sends and receives on it (the connecting driver's
        callers do their own round trips); consumes nothing: ``poll`` afterwards says what came.
        ``data`` False: wait for a wake only.
        """

    def receive(self) -> Iterator[bytes]:
        """Frames from the server on the request channel, a bounded batch."""

    def send(self, frame: bytes) -> None:
        """Queue ``frame`` for the server; raises NotConnected when that is impossible."""

    def wake(self) -> None:
        """End the current (or next) ``poll`` early; safe from any thread."""

    def close(self) -> None:
        """Close every socket; the transport cannot be used again."""


class Transport(Protocol):
    """One family of addresses (``zmq`` serves tcp, ipc and inproc; ``memory`` serves memory)."""

    def listen(self, address: Address, security: Security, logger: logging.Logger, *,
               peer_timeout: float | None = None) -> ServerTransport:
        """Bind a server at ``address``; raises ListenError when it cannot.

        ``peer_timeout``: seconds of silence before the transport may drop a peer's
        connection on its own (the lease: never sooner than the server forgets the peer).
        """

    def connect(self, address: Address, security: Security, identity: bytes, logger: logging.Logger,
                on_auth_failure: Callable[[], None],
                on_disconnect: Callable[[], None], *, peer_timeout: float | None = None) -> ClientTransport:
        """Start connecting to the server at ``address`` (the handshake completes in the background).

        ``on_auth_failure`` is called (on the I/O thread, from ``poll``) when the server
        refuses the credentials; ``on_disconnect`` when an established connection drops.
        ``peer_timeout``: as for ``listen``, the silence a connection survives.
        """
