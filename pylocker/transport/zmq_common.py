"""What the ZeroMQ server and client transports share: limits, socket tuning, error mapping."""

from __future__ import annotations

import contextlib
import errno
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Final

import zmq

from ..errors import AddressError, PylockerError
from ..protocol import MAX_FRAME

if TYPE_CHECKING:
    from .zmq_client import ZmqClientTransport

SCHEMES: Final = ("tcp", "ipc", "inproc")
PORT_SEARCH: Final = 100
REQUEST_HWM: Final = 100_000  # frames waiting on the server's ROUTER
# Frames the server queues towards one peer: replies, pushes, and the batches addressed to it
# (each at most ~64 KiB), so a receiver that falls behind holds ~16 MiB of the server at most.
# A grant that finds the queue full is undone by the server (ServerCore.undeliverable).
REPLY_HWM: Final = 250
# Plain ints: pyzmq's enum flags cost microseconds per ``&``, and these are asked for every frame.
EVENTS: Final = int(zmq.EVENTS)
POLLIN: Final = int(zmq.POLLIN)
RCVMORE: Final = int(zmq.RCVMORE)
NOBLOCK: Final = int(zmq.NOBLOCK)
SNDMORE_NOBLOCK: Final = int(zmq.SNDMORE | zmq.NOBLOCK)
RECV_BATCH: Final = 256
HEARTBEAT_MS: Final = 1000
HEARTBEAT_TIMEOUT_MS: Final = 4000
HANDSHAKE_MS: Final = 5000  # a peer that has not finished the CURVE handshake by then is dropped
AUTH_FAILURES: Final = 3  # failed handshakes in a row before a client gives up on its credentials
IPC_MODE: Final = 0o600
HANDSHAKE_FAILURES: Final = (zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                              | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
FAILURE_LOG_INTERVAL: Final = 60.0
# What ZeroMQ answers for an endpoint it cannot parse, or a transport it does not have.
ENDPOINT_ERRORS: Final[Mapping[int, type[PylockerError]]] = {
    errno.EINVAL: AddressError, errno.EPROTONOSUPPORT: AddressError,
}

Socket = zmq.Socket[bytes]


@contextlib.contextmanager

def map_exceptions(default: type[PylockerError], action: str,
                   by_errno: Mapping[int, type[PylockerError]] = ENDPOINT_ERRORS) -> Iterator[None]:
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



class InprocPeers:
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


INPROC_PEERS: Final = InprocPeers()



def tune(sock: Socket) -> Socket:
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME)
    sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_MS)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
    sock.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_MS)
    return sock


def survive_silence(sock: Socket, peer_timeout: float | None) -> None:
    """Let ZeroMQ drop a silent peer only after ``peer_timeout`` (the lease), never sooner.

    Its default 4 s cut a frozen client (or server) off while its lease still ran: what
    was sent meanwhile had nowhere to go. The lease clocks of both ends judge liveness;
    ZeroMQ's heartbeat only cleans up connections after them. Set before binding or connecting.
    """
    if peer_timeout is not None:
        timeout = max(HEARTBEAT_TIMEOUT_MS, int(peer_timeout * 1000) + 2 * HEARTBEAT_MS)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, timeout)
        sock.setsockopt(zmq.HEARTBEAT_TTL, min(timeout, 6_553_500))  # the peer's timeout of us, too


def timeout_ms(timeout: float | None) -> int | None:
    return None if timeout is None else max(0, int(timeout * 1000 + 0.999))


