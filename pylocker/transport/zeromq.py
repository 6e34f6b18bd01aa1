"""The ZeroMQ transport: tcp, ipc and inproc addresses behind ``base.py``'s Protocols.

A server is one ROUTER and a client one DEALER: requests, replies, pushes and
publications all travel there (publications by credit, see ``flow.py``). Per scheme:

* ``tcp://host:port``: the ROUTER at ``port`` (0: any free port; otherwise the next
  free one from ``port`` on). CURVE encrypts, and a ZAP thread admits the client
  keys (``AuthGuard`` throttles addresses that keep failing).
* ``ipc:///path``: the ROUTER at ``path``, a socket file mode 0600 removed on
  ``close``; CURVE and ZAP as for tcp. An existing file at the path is never
  replaced, unless it is a socket nobody listens on any more (libzmq would silently
  unlink it, whatever it is).
* ``inproc://name``: both ends share the process-wide context
  (``zmq.Context.instance()``, never terminated here); no CURVE and no ZAP, since
  the frames never leave the process. libzmq reports no connection events for
  inproc, so a closing server tells its clients itself.

Each transport object is created, used and closed by one thread (ZeroMQ sockets are
not thread-safe); other threads reach it through ``wake``, which writes to a pipe
(``Waker``) that ``poll`` watches. The client's ``on_auth_failure`` and
``on_disconnect`` run on that thread, from ``poll``.

The code is cut by job: ``zmq_common`` (limits, socket tuning, ``map_exceptions``),
``zmq_server`` and ``zmq_client`` (the two ends), ``zap`` (the ZAP guard), ``waker``
(the wake-up pipe); this module is the ``Transport`` itself.

Failures leave as pylocker errors only (``map_exceptions``): ``ListenError`` when a
server cannot bind or its sockets fail, ``NotConnected`` when a client cannot
connect, send or receive, ``AddressError`` when ZeroMQ refuses an endpoint (EINVAL).
"""

from __future__ import annotations

import logging
from typing import Callable, Final

from .address import Address
from .base import Security
from .waker import Waker
from .zap import AuthGuard
from .zmq_client import ZmqClientTransport
from .zmq_common import (
    AUTH_FAILURES,
    HANDSHAKE_MS,
    HEARTBEAT_MS,
    HEARTBEAT_TIMEOUT_MS,
    IPC_MODE,
    PORT_SEARCH,
    RECV_BATCH,
    REQUEST_HWM,
    SCHEMES,
    map_exceptions,
)
from .zmq_server import ZmqServerTransport

__all__ = [
    "AUTH_FAILURES",
    "HANDSHAKE_MS",
    "HEARTBEAT_MS",
    "HEARTBEAT_TIMEOUT_MS",
    "IPC_MODE",
    "PORT_SEARCH",
    "RECV_BATCH",
    "REQUEST_HWM",
    "SCHEMES",
    "AuthGuard",
    "Waker",
    "ZmqClientTransport",
    "ZmqServerTransport",
    "ZmqTransport",
    "map_exceptions",
]


class ZmqTransport:
    """``Transport`` for ``tcp://``, ``ipc://`` and ``inproc://`` addresses (stateless)."""

    schemes: Final = SCHEMES

    def listen(self, address: Address, security: Security, logger: logging.Logger, *,
               peer_timeout: float | None = None) -> ZmqServerTransport:
        """Bind a server at ``address``; raises ListenError (AddressError for a bad endpoint)."""
        return ZmqServerTransport(address, security, logger, peer_timeout=peer_timeout)

    def connect(self, address: Address, security: Security, identity: bytes, logger: logging.Logger,
                on_auth_failure: Callable[[], None],
                on_disconnect: Callable[[], None], *, peer_timeout: float | None = None) -> ZmqClientTransport:
        """Start connecting to ``address``; raises NotConnected (AddressError for a bad endpoint)."""
        return ZmqClientTransport(address, security, identity, logger, on_auth_failure, on_disconnect,
                                  peer_timeout=peer_timeout)

