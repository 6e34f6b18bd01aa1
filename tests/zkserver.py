"""A standalone ZooKeeper for tests and benchmarks: found, configured, started, stopped by PID.

``start_zookeeper`` returns a running, answering :class:`ZooKeeper`, or raises
:class:`ZooKeeperUnavailable` (kazoo, java or the ZooKeeper jars are missing: a test
skips with the reason) or :class:`ZooKeeperError` (it was there but did not start: a
test fails). Standard library only; run as a script it is the readiness probe used
inside network namespaces (``python zkserver.py srvr HOST PORT``).
"""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
TICK_MS = 100  # session expiry is judged on tick boundaries: a small tick keeps it close to the timeout
# Debian's zookeeper.jar names its dependencies in its manifest; a tarball install has them in lib/.
_JARS = ("/usr/share/java/zookeeper.jar", "{home}/lib/*.jar", "{home}/*.jar", "/usr/share/zookeeper/lib/*.jar",
         "/opt/zookeeper/lib/*.jar")
_LOGGING = "/usr/share/java/slf4j-simple.jar"  # the server's log lines, when the binding is installed
_POLL = 0.1  # between readiness probes: a JVM takes a second or two to listen


class ZooKeeperUnavailable(Exception):
    """kazoo, java or ZooKeeper is not installed: ``reason`` says which (and how to get it)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ZooKeeperError(RuntimeError):
    """ZooKeeper is installed but did not start and answer in time."""


@dataclass
class ZooKeeper:
    """One standalone ZooKeeper started by :func:`start_zookeeper`; only ``process`` is ever signalled."""

    process: subprocess.Popen[bytes]
    host: str
    port: int
    workdir: Path
    version: str = ""  # as the server reports it ("3.8.0"), for setup notes

    @property
    def hosts(self) -> str:
        """The connection string for kazoo: ``host:port``."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; waits, so the PID is reaped. Idempotent."""
        stop_process(self.process, timeout)

    def __enter__(self) -> ZooKeeper:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def stop_process(process: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """Stop a process this module's caller started, by its PID only (SIGTERM, then SIGKILL), and reap it."""
    if process.poll() is not None:
        return
    # Popen's own methods: they do nothing once the child is reaped, so a reused PID is never signalled.
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (a small race with other programs is accepted)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _classpath() -> str | None:
    home = os.environ.get("ZOOKEEPER_HOME", "/nonexistent")
    for pattern in _JARS:
        jars = sorted(glob.glob(pattern.format(home=home)))
        if any("zookeeper" in Path(jar).name for jar in jars):
            return os.pathsep.join(jars + ([_LOGGING] if os.path.exists(_LOGGING) else []))
    return None


def _prerequisites() -> tuple[str, str]:
    """(java, classpath), or ZooKeeperUnavailable saying what is missing."""
    if importlib.util.find_spec("kazoo") is None:
        raise ZooKeeperUnavailable("kazoo is not importable (pip install kazoo)")
    java = shutil.which("java")
    if java is None:
        raise ZooKeeperUnavailable("java is not installed (ZooKeeper needs a JRE)")
    classpath = _classpath()
    if classpath is None:
        raise ZooKeeperUnavailable("ZooKeeper is not installed (Debian: apt-get install zookeeper; "
                                   "or set ZOOKEEPER_HOME)")
    return java, classpath


def zookeeper_unavailable() -> str | None:
    """Why :func:`start_zookeeper` cannot run here (for ``pytest.skip``), or None when it can."""
    try:
        _prerequisites()
    except ZooKeeperUnavailable as exc:
        return exc.reason
    return None


def srvr(host: str, port: int) -> str:
    """The answer to the ``srvr`` four-letter word (the one ZooKeeper 3.5+ allows by default)."""
    with socket.create_connection((host, port), timeout=1.0) as conn:
        conn.sendall(b"srvr")
        chunks = []
        while chunk := conn.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def _helper(prefix: Sequence[str], *args: str) -> str:
    """Run this file as a script under ``prefix`` (e.g. ``ip netns exec NS``): its stdout, or OSError."""
    # A socket opened here would be in our own network namespace, not in the one ``prefix`` enters.
    try:
        done = subprocess.run([*prefix, sys.executable, os.path.abspath(__file__), *args],
                              capture_output=True, text=True, timeout=10, check=True)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise OSError(f"{' '.join(args)} under {' '.join(prefix)}: {exc}") from None
    return done.stdout


def write_config(workdir: Path, host: str, port: int, min_session_ms: int, max_session_ms: int,
                 tick_ms: int = TICK_MS) -> Path:
    """zoo.cfg: ``host`` only, a data dir in ``workdir``, no admin server, no fsync, the session bounds."""
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "zoo.cfg"
    cfg.write_text("\n".join([
        f"tickTime={tick_ms}",
        f"minSessionTimeout={min_session_ms}",
        f"maxSessionTimeout={max_session_ms}",
        f"dataDir={data}",
        f"clientPort={port}",
        f"clientPortAddress={host}",
        "admin.enableServer=false",  # else Jetty listens on 8080, on every interface
        "maxClientCnxns=0",
        "forceSync=no",  # test and benchmark data is throwaway: no fsync per write
        "",
    ]))
    return cfg


def start_zookeeper(workdir: str | os.PathLike[str], host: str = "127.0.0.1", min_session_ms: int = 1000,
                    max_session_ms: int = 60000, *, port: int = 0, tick_ms: int = TICK_MS,
                    prefix: Sequence[str] = (), timeout: float = 60.0) -> ZooKeeper:
    """A ZooKeeper listening on ``host:port`` (``port`` 0: a free one), answering ``srvr``.

    ``workdir`` holds zoo.cfg, the data and zookeeper.log. ``prefix`` is an argv prefix
    for the JVM and the readiness probe, e.g. ``Fleet.command(ns, [])`` to run it in a
    network namespace (``host`` then being that namespace's address).
    """
    if not 0 < min_session_ms <= max_session_ms:
        raise ValueError(f"need 0 < min_session_ms <= max_session_ms, got {min_session_ms}, {max_session_ms}")
    java, classpath = _prerequisites()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if port == 0:
        port = int(_helper(prefix, "port", host)) if prefix else free_port(host)
    cfg = write_config(workdir, host, port, min_session_ms, max_session_ms, tick_ms)
    log_path = workdir / "zookeeper.log"
    # The child keeps its own descriptor of the log: ours is closed at once (no leak, no ResourceWarning).
    with open(log_path, "w") as log:
        proc = subprocess.Popen([*prefix, java, "-Xmx512m", "-cp", classpath, MAIN_CLASS, str(cfg)],
                                cwd=workdir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                answer = _helper(prefix, "srvr", host, str(port)) if prefix else srvr(host, port)
            except OSError:
                answer = ""  # not listening yet
            if answer.startswith("Zookeeper version"):
                version = answer.splitlines()[0].split(":", 1)[1].split("-")[0].strip()
                return ZooKeeper(proc, host, port, workdir, version)
            time.sleep(_POLL)  # a bounded poll (deadline above), not a synchronisation
    except BaseException:
        stop_process(proc)  # interrupted (KeyboardInterrupt, a pytest timeout): leave no JVM behind
        raise
    code = proc.poll()
    stop_process(proc)
    tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
    raise ZooKeeperError(f"ZooKeeper did not answer on {host}:{port} within {timeout:.0f} s "
                         f"(exit {code}): {' | '.join(tail)}")


def _main(argv: list[str]) -> int:
    """``srvr HOST PORT`` prints the server's answer; ``port HOST`` prints a free port on HOST."""
    if len(argv) == 3 and argv[0] == "srvr":
        sys.stdout.write(srvr(argv[1], int(argv[2])))
        return 0
    if len(argv) == 2 and argv[0] == "port":
        sys.stdout.write(f"{free_port(argv[1])}\n")
        return 0
    sys.stderr.write("usage: zkserver.py srvr HOST PORT | port HOST\n")
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
