"""Transports: how a serving locker and its clients exchange frames, chosen by address scheme.

The package holds:

* ``address``: ``Address`` and ``parse`` (``tcp://``, ``ipc://``, ``inproc://``, ``memory://``);
* ``base``: the ``Transport``/``ServerTransport``/``ClientTransport`` Protocols and ``Security``;
* ``keys``: the CURVE key pairs derived from the password;
* ``zeromq``: ``ZmqTransport``, for tcp, ipc and inproc;
* ``memory``: ``MemoryTransport``, threads and queues inside one process, for memory;
* this module: ``transport_for`` (the scheme registry, importing a transport only when
  first asked for it) and the ``listen``/``connect`` shortcuts.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable, Final

from ..errors import AddressError
from .address import Address, parse

if TYPE_CHECKING:
    from .base import ClientTransport, Security, ServerTransport, Transport

__all__ = ["SCHEMES", "connect", "listen", "transport_for"]


def _zeromq() -> Transport:
    from .zeromq import ZmqTransport

    return ZmqTransport()


def _memory() -> Transport:
    from .memory import MemoryTransport

    return MemoryTransport()


_FACTORIES: Final[dict[str, Callable[[], Transport]]] = {
    "tcp": _zeromq, "ipc": _zeromq, "inproc": _zeromq, "memory": _memory,
}
SCHEMES: Final = tuple(_FACTORIES)
_made: dict[Callable[[], Transport], Transport] = {}  # one transport per factory: they hold no state


def transport_for(address: Address) -> Transport:
    """The transport serving ``address.scheme``; raises AddressError for a scheme without one."""
    factory = _FACTORIES.get(address.scheme)
    if factory is None:
        raise AddressError(f"no transport serves {address.scheme}:// addresses; use one of {', '.join(SCHEMES)}")
    transport = _made.get(factory)
    if transport is None:
        transport = _made.setdefault(factory, factory())
    return transport


def _address(address: Address | str) -> Address:
    return parse(address) if isinstance(address, str) else address


def listen(address: Address | str, security: Security, logger: logging.Logger, *,
           peer_timeout: float | None = None) -> ServerTransport:
    """Bind a server at ``address`` (an Address or a URL) with the transport its scheme names."""
    where = _address(address)
    return transport_for(where).listen(where, security, logger, peer_timeout=peer_timeout)


def connect(address: Address | str, security: Security, identity: bytes, logger: logging.Logger,
            on_auth_failure: Callable[[], None], on_disconnect: Callable[[], None], *,
            peer_timeout: float | None = None) -> ClientTransport:
    """Start connecting to the server at ``address`` with the transport its scheme names."""
    where = _address(address)
    return transport_for(where).connect(where, security, identity, logger, on_auth_failure, on_disconnect,
                                        peer_timeout=peer_timeout)
