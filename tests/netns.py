"""Network namespaces as machines for tests: a fleet on one private Ethernet, with cables to pull.

A :class:`Fleet` is a "hub" namespace holding a bridge (address ``.1`` of a private
10.213.x.0/24, x random) and N machine namespaces, each with one veth cable to the
bridge and its own address (``.2``, ``.3``, ...). All addresses share the /24 on one
bridge, so no routes are needed. Nothing is created in, or changed about, the host's
own namespace: both ends of every veth are created directly where they belong.
``cut`` pulls a machine's cable at the hub (its peers see timeouts, not refusals);
``heal`` plugs it back. Needs root and iproute2 (``netns_unavailable`` says why not).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from zkserver import stop_process

IFACE = "eth0"  # the machine's end of its cable, inside its own namespace (so the name never collides)
MAX_MACHINES = 253  # .2 to .254 of the /24 (.1 is the hub)
_IP_TIMEOUT = 10.0  # an ``ip`` command is milliseconds; a stuck one must not hang the test run
_IFNAMSIZ = 15  # Linux interface names: at most 15 characters


class FleetError(RuntimeError):
    """An ``ip`` command failed (its command line and stderr are in the message)."""


def _ip(*args: str, timeout: float = _IP_TIMEOUT) -> str:
    """``ip ARGS``, checked; its stdout, or FleetError with the command line and ip's own message."""
    argv = ["ip", *args]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=True)
    except FileNotFoundError:
        raise FleetError("`ip` (iproute2) is not installed") from None
    except subprocess.CalledProcessError as exc:
        raise FleetError(f"`{' '.join(argv)}` failed (exit {exc.returncode}): {exc.stderr.strip()}") from None
    except subprocess.TimeoutExpired:
        raise FleetError(f"`{' '.join(argv)}` did not finish within {timeout:.0f} s") from None
    return done.stdout


def _stop(process: subprocess.Popen[Any], timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL, by the Popen (so by that PID only); reaped, pipes closed."""
    stop_process(process, timeout)
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()


def netns_unavailable() -> str | None:
    """Why a :class:`Fleet` cannot be built here (for ``pytest.skip``), or None when it can.

    Creates and deletes a probe namespace with a bridge and a veth in it, and runs a
    command inside: containers often refuse one of these even to root.
    """
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux only"
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed"
    probe = f"plkprobe{secrets.token_hex(3)}"
    try:
        _ip("netns", "add", probe)
    except FleetError as exc:
        return f"cannot create a network namespace: {exc}"
    reason = None
    try:
        _ip("-n", probe, "link", "add", f"{probe[:11]}br", "type", "bridge")
        _ip("-n", probe, "link", "add", f"{probe[:11]}va", "type", "veth", "peer", "name", f"{probe[:11]}vb")
        _ip("netns", "exec", probe, sys.executable, "-c", "pass")
    except FleetError as exc:
        reason = f"cannot build a network in a namespace: {exc}"
    try:
        _ip("netns", "del", probe)
    except FleetError as exc:
        reason = reason or f"cannot delete a network namespace: {exc}"
    return reason


@dataclass(frozen=True)
class Machine:
    """One machine of a fleet."""

    name: str  # its network namespace
    address: str  # its IPv4 address on the fleet's /24
    veth: str  # the hub's end of its cable (in the hub namespace): what ``cut`` takes down


class Fleet:
    """A hub namespace with a bridge and ``count`` machine namespaces plugged into it.

    Built in the constructor; anything built is removed by :meth:`close` (idempotent,
    also on ``__exit__``, and when the constructor fails halfway).
    """

    def __init__(self, count: int = 3, *, tag: str | None = None) -> None:
        if not 1 <= count <= MAX_MACHINES:
            raise ValueError(f"count must be 1..{MAX_MACHINES}, got {count}")
        # Unique per run: parallel runs (or a leftover of a killed run) never share a name.
        self.tag = tag if tag is not None else f"plk{secrets.token_hex(3)}"
        if not self.tag.isalnum() or len(f"{self.tag}v{count - 1}") > _IFNAMSIZ:
            raise ValueError(f"tag must be alphanumeric and short enough for interface names, got {self.tag!r}")
        net = f"10.213.{secrets.randbelow(256)}"  # random x: two fleets' addresses differ even in logs
        self.subnet = f"{net}.0/24"
        self.hub = f"{self.tag}hub"
        self.bridge = f"{self.tag}br"
        self.hub_address = f"{net}.1"
        self.machines = [Machine(f"{self.tag}m{i}", f"{net}.{i + 2}", f"{self.tag}v{i}") for i in range(count)]
        self._by_name = {m.name: m for m in self.machines}
        self._namespaces: list[str] = []  # created by us, in order: only these are ever deleted
        self._processes: list[subprocess.Popen[Any]] = []
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self) -> None:
        self._add_namespace(self.hub)
        # forward_delay 0 with STP off (the default): a port forwards as soon as it is up, also after heal().
        _ip("-n", self.hub, "link", "add", self.bridge, "type", "bridge", "forward_delay", "0")
        _ip("-n", self.hub, "addr", "add", f"{self.hub_address}/24", "dev", self.bridge)
        _ip("-n", self.hub, "link", "set", self.bridge, "up")
        for m in self.machines:
            self._add_namespace(m.name)
            _ip("-n", self.hub, "link", "add", m.veth, "type", "veth", "peer", "name", IFACE, "netns", m.name)
            _ip("-n", self.hub, "link", "set", m.veth, "master", self.bridge)
            _ip("-n", self.hub, "link", "set", m.veth, "up")
            _ip("-n", m.name, "addr", "add", f"{m.address}/24", "dev", IFACE)
            _ip("-n", m.name, "link", "set", IFACE, "up")

    def _add_namespace(self, name: str) -> None:
        _ip("netns", "add", name)  # fails if the name exists: someone else's namespace is never adopted
        self._namespaces.append(name)
        _ip("-n", name, "link", "set", "lo", "up")  # a fresh namespace's loopback is down

    # ------------------------------------------------------------------ queries
    @property
    def names(self) -> list[str]:
        """The machines' namespace names, in order."""
        return [m.name for m in self.machines]

    @property
    def addresses(self) -> dict[str, str]:
        """Namespace name -> IPv4 address, the hub's included."""
        return {self.hub: self.hub_address, **{m.name: m.address for m in self.machines}}

    def address(self, name: str) -> str:
        """The address of machine (or hub) ``name``."""
        self._check(name)
        return self.addresses[name]

    def _check(self, name: str) -> None:
        if name != self.hub and name not in self._by_name:
            raise KeyError(f"{name!r} is not a namespace of fleet {self.tag} ({', '.join([self.hub, *self.names])})")

    # ------------------------------------------------------------------ running things inside
    def command(self, name: str, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside namespace ``name`` (a machine or the hub): ``ip netns exec NAME ...``."""
        self._check(name)
        return ["ip", "netns", "exec", name, *argv]

    def popen(self, name: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside ``name``; stopped (by its PID) by :meth:`close` if still running."""
        # ``ip netns exec`` execs the command: the PID is the command's own, signals reach it.
        process = subprocess.Popen(self.command(name, argv), **kwargs)
        self._processes.append(process)
        return process

    def run(self, name: str, argv: Sequence[str], *, timeout: float = 30.0,
            **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """Run ``argv`` inside ``name`` to completion (bounded by ``timeout``); not checked unless asked."""
        return subprocess.run(self.command(name, argv), timeout=timeout, **kwargs)

    # ------------------------------------------------------------------ faults
    def cut(self, name: str) -> None:
        """Pull machine ``name``'s cable at the hub: it reaches, and is reached by, nobody. Idempotent."""
        _ip("-n", self.hub, "link", "set", self._machine(name).veth, "down")

    def heal(self, name: str) -> None:
        """Plug machine ``name``'s cable back in. Idempotent."""
        _ip("-n", self.hub, "link", "set", self._machine(name).veth, "up")

    def _machine(self, name: str) -> Machine:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"{name!r} is not a machine of fleet {self.tag} ({', '.join(self.names)})") from None

    # ------------------------------------------------------------------ teardown
    def close(self) -> None:
        """Stop the processes started here, delete every namespace created here. Idempotent.

        Deleting a namespace takes its interfaces along (the bridge, both ends of each
        veth). Everything is attempted; the failures, if any, are raised together at the end.
        """
        errors: list[str] = []
        while self._processes:
            process = self._processes.pop()
            try:
                _stop(process)
            except (OSError, subprocess.SubprocessError) as exc:
                errors.append(f"stopping pid {process.pid}: {exc}")
        for name in reversed(list(self._namespaces)):
            try:
                self._empty(name)
                _ip("netns", "del", name)
            except (OSError, FleetError) as exc:
                errors.append(str(exc))
                continue  # kept in the list: a later close() tries again
            self._namespaces.remove(name)
        if errors:
            raise FleetError(f"fleet {self.tag} not fully removed: " + "; ".join(errors))

    @staticmethod
    def _empty(name: str) -> None:
        """SIGKILL what still runs in ``name`` (started through ``command``, e.g. a JVM), by PID.

        The namespace is this run's own (unique name), so whatever runs in it was started
        by this run; left alone it would keep the namespace alive, unnamed and unseen.
        """
        for pid in _ip("netns", "pids", name).split():
            with contextlib.suppress(ProcessLookupError):  # exited meanwhile
                os.kill(int(pid), signal.SIGKILL)

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Fleet({self.tag}: hub {self.hub_address}, " + ", ".join(
            f"{m.name} {m.address}" for m in self.machines) + ")"
