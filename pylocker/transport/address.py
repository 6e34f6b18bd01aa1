"""Addresses as URLs: ``tcp://host:port``, ``ipc:///path``, ``inproc://name``, ``memory://name``.

Parsed once, here; everything else passes ``Address`` values around. A bare host
(``127.0.0.1``, ``localhost``, ``[::1]``) keeps meaning tcp, with the port given
beside it, as pylocker 3.1's ``(address, port)`` pairs did.
"""

from __future__ import annotations

import socket
from typing import Final, NamedTuple

from ..errors import AddressError

SCHEMES: Final = ("tcp", "ipc", "inproc", "memory")
MAX_PATH: Final = 107  # a Unix socket path (sun_path) holds at most 107 bytes and a NUL


class Address(NamedTuple):
    """Where a serving locker listens, or where a client connects.

    ``host``/``port`` are set for tcp; ``path`` is the socket file for ipc and the
    name for inproc and memory.
    """

    scheme: str
    host: str = ""
    port: int = 0
    path: str = ""

    @property
    def url(self) -> str:
        if self.scheme == "tcp":
            host = f"[{self.host}]" if ":" in self.host else self.host
            return f"tcp://{host}:{self.port}"
        if self.scheme == "ipc":
            return f"ipc://{self.path}"
        return f"{self.scheme}://{self.path}"

    @property
    def is_tcp(self) -> bool:
        return self.scheme == "tcp"

    def with_port(self, port: int) -> Address:
        return self._replace(port=port)

    def __str__(self) -> str:
        return self.url


def is_url(address: str) -> bool:
    """Whether ``address`` names its transport (``scheme://...``) rather than a bare host."""
    return "://" in address


def parse(address: str, port: int | None = None) -> Address:
    """Parse ``address``; a bare host takes ``port`` (required), a URL ignores it.

    Raises:
        AddressError: the address is malformed, or names an unknown transport.
    """
    if not isinstance(address, str) or not address:
        raise AddressError(f"an address must be a non-empty string, got {address!r}")
    if not is_url(address):
        if port is None:
            raise AddressError(f"address {address!r} needs a port (or give a tcp://host:port URL)")
        return Address("tcp", _host(address, address, in_url=False), _port(port, address))
    scheme, _, rest = address.partition("://")
    scheme = scheme.lower()
    if scheme not in SCHEMES:
        raise AddressError(f"unknown transport {scheme!r} in {address!r}; use one of {', '.join(SCHEMES)}")
    if scheme == "tcp":
        host, sep, port_text = rest.rpartition(":")
        if not sep or not (port_text.isascii() and port_text.isdigit()):
            raise AddressError(f"{address!r} needs a port: tcp://host:port")
        return Address("tcp", _host(host, address, in_url=True), _port(int(port_text), address))
    if not rest:
        raise AddressError(f"{address!r} names no {'path' if scheme == 'ipc' else 'name'}")
    if "\0" in rest:
        raise AddressError(f"{address!r} holds a NUL character")
    if scheme == "ipc":
        if not rest.startswith("/"):
            raise AddressError(f"{address!r}: an ipc address takes an absolute path (ipc:///tmp/x.sock)")
        if len(rest.encode()) > MAX_PATH:
            raise AddressError(f"{address!r}: a socket path must be shorter than {MAX_PATH - 4} bytes")
    return Address(scheme, path=rest)


def _host(host: str, original: str, *, in_url: bool) -> str:
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
    # An IPv6 host must be bracketed in a URL, where its colons would mix with the port's.
    if (not host or any(c in host for c in "/ []\0") or host.count(":") == 1
            or (in_url and ":" in host and not bracketed)):
        raise AddressError(f"{original!r} does not name a host")
    return host


def _port(port: object, original: str) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise AddressError(f"port of {original!r} must be an integer from 0 to 65535, got {port!r}")
    return port


def advertised(host: str) -> str:
    """The address other machines reach a server listening on ``host`` at (the wildcard: this host's)."""
    if host in ("0.0.0.0", "*", "", "::"):  # noqa: S104 (recognising the wildcard, not binding it)
        try:
            return socket.gethostbyname(socket.gethostname())
        except OSError:
            return "127.0.0.1"
    return host
