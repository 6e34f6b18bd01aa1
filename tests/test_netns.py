"""The test-support modules ``netns`` (a fleet of network namespaces) and ``zkserver`` (a ZooKeeper).

Namespace tests need root and iproute2, ZooKeeper tests need java, the ZooKeeper jars
and kazoo: each skips, saying why, without them. Every wait is a poll against a
deadline; every process and namespace is removed in a ``finally``.
"""

from __future__ import annotations

import importlib.util
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import netns
import pytest
from netns import Fleet, FleetError, netns_unavailable
from zkserver import ZooKeeper, ZooKeeperUnavailable, start_zookeeper, zookeeper_unavailable

PORT = 7007  # every namespace has its own ports: no clash with the host, or between machines
CONNECT_TIMEOUT = 1.0  # a cut machine is judged unreachable after this long

# One line "ready" once listening, then echo one message per connection (until killed).
ECHO_SERVER = """
import socket, sys
server = socket.create_server((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
while True:
    conn, _ = server.accept()
    with conn:
        conn.settimeout(5)
        conn.sendall(conn.recv(1024))
"""

# Exit 0 if the echo came back, else 1 with the error on stdout.
ECHO_CLIENT = """
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])) as conn:
        conn.sendall(b"ping")
        answer = conn.recv(1024)
except OSError as exc:
    print(f"{type(exc).__name__}: {exc}")
    sys.exit(1)
print(answer.decode())
sys.exit(0 if answer == b"ping" else 1)
"""

# kazoo from inside a namespace: connect, write a znode, read it back; exit 1 if ZooKeeper is unreachable.
KAZOO_CLIENT = """
import sys
from kazoo.client import KazooClient
client = KazooClient(hosts=sys.argv[1])
try:
    try:
        client.start(timeout=float(sys.argv[2]))
    except Exception as exc:
        print(f"unreachable: {type(exc).__name__}")
        sys.exit(1)
    path = client.create("/fleet/node-", sys.argv[3].encode(), makepath=True, sequence=True)
    print(client.get(path)[0].decode())
finally:
    client.stop()
    client.close()
"""


# ------------------------------------------------------------------ helpers
def _skip_without_netns() -> None:
    reason = netns_unavailable()
    if reason is not None:
        pytest.skip(reason)


def _skip_without_zookeeper() -> None:
    reason = zookeeper_unavailable()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    _skip_without_netns()
    made = Fleet(3)
    try:
        yield made
    finally:
        made.close()  # idempotent: a test may have closed it already


def _read_line(process: subprocess.Popen[str], timeout: float) -> str:
    """The next line of ``process``'s stdout, within ``timeout`` (else AssertionError)."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    assert ready, f"pid {process.pid}: no line within {timeout} s (exit {process.poll()})"
    return process.stdout.readline().strip()


def _start_echo(fleet: Fleet, name: str) -> subprocess.Popen[str]:
    """An echo server on ``name``'s address, listening (stopped by ``fleet.close``)."""
    server = fleet.popen(name, [sys.executable, "-c", ECHO_SERVER, fleet.address(name), str(PORT)],
                         stdout=subprocess.PIPE, text=True)
    assert _read_line(server, 10.0) == "ready"
    return server


def _echo(fleet: Fleet, client: str, server: str) -> tuple[bool, str]:
    """Whether a client in namespace ``client`` gets its echo from ``server`` (and what it printed)."""
    done = fleet.run(client, [sys.executable, "-c", ECHO_CLIENT, fleet.address(server), str(PORT),
                              str(CONNECT_TIMEOUT)], capture_output=True, text=True, timeout=15)
    return done.returncode == 0, done.stdout.strip()


def _poll(predicate: Any, timeout: float, what: str) -> None:
    """Call ``predicate`` until it returns true, for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.05)  # the interval of a bounded poll, not a synchronisation


def _root_links() -> str:
    return subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout


def _namespaces() -> list[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in listing.splitlines() if line.strip()]


# ------------------------------------------------------------------ netns
def test_netns_unavailable_says_why_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(sys, "platform", "linux")
    reason = netns_unavailable()
    assert reason is not None
    assert "root" in reason


def test_fleet_layout(fleet: Fleet) -> None:
    names = [fleet.hub, *fleet.names]
    assert len(set(names)) == 4
    assert set(names) <= set(_namespaces())
    assert all(name.startswith("plk") for name in names)
    assert all(len(m.veth) <= 15 for m in fleet.machines)
    assert len(fleet.bridge) <= 15
    addresses = list(fleet.addresses.values())
    assert len(set(addresses)) == 4
    assert all(a.startswith(fleet.subnet.rsplit(".", 1)[0] + ".") for a in addresses)
    assert fleet.command(fleet.names[0], ["true"]) == ["ip", "netns", "exec", fleet.names[0], "true"]
    with pytest.raises(KeyError):
        fleet.command("not-ours", ["true"])
    # Nothing in the host's own namespace: the bridge and the veths live in the fleet's namespaces.
    assert fleet.tag not in _root_links()


def test_reach_cut_heal_close(fleet: Fleet) -> None:
    a, b, c = fleet.names
    server_a = _start_echo(fleet, a)
    server_b = _start_echo(fleet, b)
    server_hub = _start_echo(fleet, fleet.hub)
    assert _echo(fleet, b, a) == (True, "ping")
    assert _echo(fleet, c, fleet.hub) == (True, "ping")

    fleet.cut(a)
    started = time.monotonic()
    reached, said = _echo(fleet, b, a)
    assert not reached, said
    assert "refused" not in said, said  # a pulled cable (a timeout), not a closed port
    assert time.monotonic() - started < CONNECT_TIMEOUT + 2.0  # bounded: the client's timeout, plus startup
    assert not _echo(fleet, a, b)[0]  # both ways
    assert not _echo(fleet, a, fleet.hub)[0]
    assert _echo(fleet, c, b) == (True, "ping")  # the others still talk
    fleet.cut(a)  # idempotent

    fleet.heal(a)
    _poll(lambda: _echo(fleet, b, a)[0], 10.0, "b reaches a after heal")
    assert _echo(fleet, a, b) == (True, "ping")

    tag, created = fleet.tag, [fleet.hub, *fleet.names]
    fleet.close()
    fleet.close()  # idempotent
    assert not set(created) & set(_namespaces())
    assert tag not in _root_links()
    assert all(server.poll() is not None for server in (server_a, server_b, server_hub))


def test_failed_build_removes_what_it_made(monkeypatch: pytest.MonkeyPatch) -> None:
    _skip_without_netns()
    tag = f"plk{os.urandom(3).hex()}"
    real = netns._ip

    def failing(*args: str, **kwargs: Any) -> str:
        if args[:5] == ("-n", f"{tag}hub", "link", "add", f"{tag}v1"):
            raise FleetError("injected: the second cable")
        return real(*args, **kwargs)

    monkeypatch.setattr(netns, "_ip", failing)
    try:
        with pytest.raises(FleetError, match="injected"):
            Fleet(3, tag=tag)
        assert not [name for name in _namespaces() if name.startswith(tag)]
    finally:
        for name in _namespaces():  # only if the assertion above failed: this run's tag, nobody else's
            if name.startswith(tag):
                subprocess.run(["ip", "netns", "del", name], check=False)


# ------------------------------------------------------------------ zkserver
def test_zookeeper_unavailable_without_java(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())  # kazoo or not
    with pytest.raises(ZooKeeperUnavailable, match="java") as caught:
        start_zookeeper(tmp_path)
    assert "java" in caught.value.reason
    assert zookeeper_unavailable() == caught.value.reason
    assert not (tmp_path / "zoo.cfg").exists()


def test_zookeeper_start_query_stop(tmp_path: Path) -> None:
    _skip_without_zookeeper()
    from kazoo.client import KazooClient

    zk = start_zookeeper(tmp_path, "127.0.0.1", min_session_ms=1000, max_session_ms=10000)
    try:
        assert zk.hosts == f"127.0.0.1:{zk.port}"
        assert zk.version
        assert "clientPortAddress=127.0.0.1" in (tmp_path / "zoo.cfg").read_text()
        client = KazooClient(hosts=zk.hosts)
        client.start(timeout=15)
        try:
            client.create("/plk/probe", b"hello", makepath=True)
            assert client.get("/plk/probe")[0] == b"hello"
        finally:
            client.stop()
            client.close()
    finally:
        zk.stop()
    assert zk.process.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.kill(zk.pid, 0)  # reaped: that PID is gone
    zk.stop()  # idempotent


def test_zookeeper_in_a_namespace_is_reached_from_another(fleet: Fleet, tmp_path: Path) -> None:
    _skip_without_zookeeper()
    a, b, c = fleet.names
    zk = start_zookeeper(tmp_path, fleet.address(a), prefix=fleet.command(a, []))
    try:
        assert zk.hosts == f"{fleet.address(a)}:{zk.port}"
        for client in (b, fleet.hub):  # a machine, and the hub itself
            done = fleet.run(client, [sys.executable, "-c", KAZOO_CLIENT, zk.hosts, "15", client],
                             capture_output=True, text=True, timeout=30)
            assert done.returncode == 0, done.stdout + done.stderr[-500:]
            assert done.stdout.strip() == client
        fleet.cut(a)
        done = fleet.run(c, [sys.executable, "-c", KAZOO_CLIENT, zk.hosts, "2", c],
                         capture_output=True, text=True, timeout=30)
        assert done.returncode == 1, done.stdout + done.stderr[-500:]
        assert "unreachable" in done.stdout
    finally:
        zk.stop()


def test_zookeeper_fixture(zookeeper: ZooKeeper) -> None:
    from kazoo.client import KazooClient

    assert zookeeper.host == "127.0.0.1"
    assert "tickTime=100" in (zookeeper.workdir / "zoo.cfg").read_text()
    client = KazooClient(hosts=zookeeper.hosts)
    client.start(timeout=15)
    try:
        client.ensure_path("/plk/fixture")
        assert client.exists("/plk/fixture") is not None
    finally:
        client.stop()
        client.close()
