"""Addresses: every scheme parses to one Address, and every malformed one is an AddressError."""

from __future__ import annotations

import pytest

from pylocker.errors import AddressError
from pylocker.transport.address import MAX_PATH, Address, is_url, parse


@pytest.mark.parametrize(("text", "expected"), [
    ("tcp://127.0.0.1:5000", Address("tcp", "127.0.0.1", 5000)),
    ("tcp://localhost:0", Address("tcp", "localhost", 0)),
    ("tcp://*:65535", Address("tcp", "*", 65535)),
    ("tcp://[::1]:5000", Address("tcp", "::1", 5000)),
    ("TCP://host:1", Address("tcp", "host", 1)),
    ("ipc:///run/pylocker.sock", Address("ipc", path="/run/pylocker.sock")),
    ("inproc://locks", Address("inproc", path="locks")),
    ("memory://test-1", Address("memory", path="test-1")),
])
def test_urls_parse_to_addresses(text: str, expected: Address) -> None:
    assert parse(text) == expected
    assert is_url(text)


@pytest.mark.parametrize(("address", "url"), [
    (Address("tcp", "127.0.0.1", 5000), "tcp://127.0.0.1:5000"),
    (Address("tcp", "::1", 5000), "tcp://[::1]:5000"),
    (Address("ipc", path="/run/x.sock"), "ipc:///run/x.sock"),
    (Address("inproc", path="locks"), "inproc://locks"),
    (Address("memory", path="m"), "memory://m"),
])
def test_url_round_trips(address: Address, url: str) -> None:
    assert address.url == url == str(address)
    assert parse(url) == address


@pytest.mark.parametrize(("host", "port", "expected"), [
    ("127.0.0.1", 5000, Address("tcp", "127.0.0.1", 5000)),
    ("localhost", 0, Address("tcp", "localhost", 0)),
    ("::1", 80, Address("tcp", "::1", 80)),
    ("[::1]", 80, Address("tcp", "::1", 80)),
])
def test_a_bare_host_means_tcp_with_the_port_beside_it(host: str, port: int, expected: Address) -> None:
    assert not is_url(host)
    assert parse(host, port) == expected
    assert parse(host, port).is_tcp


def test_a_url_ignores_the_port_beside_it() -> None:
    assert parse("tcp://h:5", port=7) == Address("tcp", "h", 5)
    assert parse("memory://m", port=7) == Address("memory", path="m")


def test_with_port_replaces_only_the_port() -> None:
    assert Address("tcp", "h", 0).with_port(4242) == Address("tcp", "h", 4242)


@pytest.mark.parametrize("text", [
    "tcp://host",  # no port at all
    "tcp://host:",  # an empty port
    "tcp://host:http",  # a port that is not a number
    "tcp://:5000",  # no host
    "tcp://[]:5000",  # an empty bracketed host
    "tcp://a/b:5000",  # a path in the host
])
def test_a_tcp_url_needs_a_host_and_a_numeric_port(text: str) -> None:
    with pytest.raises(AddressError):
        parse(text)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]"])
def test_a_bare_host_without_port_is_refused(host: str) -> None:
    with pytest.raises(AddressError, match="needs a port"):
        parse(host)


@pytest.mark.parametrize("port", [-1, 65536, 10**6])
def test_a_port_out_of_range_is_refused(port: int) -> None:
    with pytest.raises(AddressError, match="0 to 65535"):
        parse("localhost", port)


@pytest.mark.parametrize("text", ["tcp://localhost:65536", "tcp://[::1]:99999"])
def test_a_url_port_out_of_range_is_refused(text: str) -> None:
    with pytest.raises(AddressError, match="0 to 65535"):
        parse(text)


@pytest.mark.parametrize("port", [True, "5000", 5000.0, None])
def test_a_port_must_be_an_int(port: object) -> None:
    with pytest.raises(AddressError):
        parse("localhost", port)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["http://x:80", "udp://x:80", "mem://x", "zmq+tcp://x:1"])
def test_an_unknown_scheme_is_refused(text: str) -> None:
    with pytest.raises(AddressError, match="unknown transport"):
        parse(text)


@pytest.mark.parametrize("text", ["ipc://", "inproc://", "memory://"])
def test_an_empty_path_or_name_is_refused(text: str) -> None:
    with pytest.raises(AddressError, match="names no"):
        parse(text)


@pytest.mark.parametrize("text", ["ipc://relative.sock", "ipc://./x.sock", "ipc://~/x.sock"])
def test_an_ipc_path_must_be_absolute(text: str) -> None:
    with pytest.raises(AddressError, match="absolute path"):
        parse(text)


def test_an_ipc_path_fits_a_unix_socket_address() -> None:
    longest = "/" + "a" * (MAX_PATH - 1)  # exactly MAX_PATH bytes
    assert parse(f"ipc://{longest}").path == longest
    with pytest.raises(AddressError, match="socket path"):
        parse(f"ipc://{longest}a")


@pytest.mark.parametrize("text", ["inproc://a\0b", "memory://\0", "ipc:///tmp/a\0b"])
def test_a_nul_character_is_refused(text: str) -> None:
    with pytest.raises(AddressError, match="NUL"):
        parse(text)


@pytest.mark.parametrize("value", ["", None, b"tcp://h:1", 5000])
def test_an_address_must_be_a_non_empty_string(value: object) -> None:
    with pytest.raises(AddressError, match="non-empty string"):
        parse(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("host", ["host:5000", "a b", "a/b", "a\0b"])
def test_a_bare_host_must_be_a_plain_name(host: str) -> None:
    with pytest.raises(AddressError, match="does not name a host"):
        parse(host, 1)


def test_address_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):  # noqa: PT011  (the point is the base class)
        parse("nope://x")


# Regressions: each of these once parsed (or failed with a bare ValueError).
def test_a_non_ascii_digit_port_is_an_address_error() -> None:
    with pytest.raises(AddressError):
        parse("tcp://host:\u00b2")


def test_an_unbracketed_ipv6_url_is_refused() -> None:
    with pytest.raises(AddressError):
        parse("tcp://2001:db8::1")  # read as host "2001:db8:", port 1


def test_a_bare_host_with_a_port_inside_brackets_is_refused() -> None:
    with pytest.raises(AddressError):
        parse("[::1]:5000", 1)  # becomes host "[::1]:5000", url tcp://[[::1]:5000]:1
