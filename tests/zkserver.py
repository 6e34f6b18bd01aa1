"""A standalone ZooKeeper for tests and benchmarks: found, configured, started, stopped by PID.

``start_zookeeper`` returns a running, answering :class:`ZooKeeper`, or raises
:class:`ZooKeeperUnavailable` (kazoo, java or the ZooKeeper jars are missing: a test
skips with the reason) or :class:`ZooKeeperError` (it was there but did not start: a
test fails). Standard library only; run as a script it is the readiness probe used
inside network namespaces (``python zkserver.py srvr HOST PORT``).

With ``tls=`` (:class:`TlsFiles`, e.g. from :func:`make_tls_files`, which makes a
throwaway CA and certificates with the ``openssl`` command) it also listens for TLS
clients on ``ZooKeeper.secure_port``; the plain port stays, on ``host`` only, for the
``srvr`` readiness probe.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import secrets
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
# The TLS port needs Netty's server; Debian's manifest lists only part of Netty, these make up the rest.
_NETTY_FACTORY = "org.apache.zookeeper.server.NettyServerCnxnFactory"
_DEBIAN_NETTY = ("netty-codec", "netty-resolver", "netty-transport-native-unix-common")
_OPENSSL_TIMEOUT = 30.0  # seconds per openssl command: key generation is quick, but the machine may be busy
CLIENT_AUTH = ("need", "want", "none")  # ZooKeeper's ssl.clientAuth


class ZooKeeperUnavailable(Exception):
    """kazoo, java or ZooKeeper is not installed: ``reason`` says which (and how to get it)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ZooKeeperError(RuntimeError):
    """ZooKeeper is installed but did not start and answer in time."""


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for a TLS ZooKeeper and its clients, all signed by one throwaway CA."""

    ca: Path  # the CA's certificate: the server's trust store, the clients' ``ca=``
    server: Path  # the server's private key (PKCS#8) and certificate in one file: its key store
    client_cert: Path  # a client's certificate (``cert=``) ...
    client_key: Path  # ... and its private key (``key=``)


@dataclass
class ZooKeeper:
    """One standalone ZooKeeper started by :func:`start_zookeeper`; only ``process`` is ever signalled."""

    process: subprocess.Popen[bytes]
    host: str
    port: int
    workdir: Path
    version: str = ""  # as the server reports it ("3.8.0"), for setup notes
    secure_port: int | None = None  # the TLS clients' port, when started with ``tls=``

    @property
    def hosts(self) -> str:
        """The connection string for kazoo: ``host:port``."""
        return f"{self.host}:{self.port}"

    @property
    def secure_hosts(self) -> str:
        """The connection string for a TLS client: ``host:secure_port`` (ValueError without TLS)."""
        if self.secure_port is None:
            raise ValueError("this ZooKeeper was started without tls=")
        return f"{self.host}:{self.secure_port}"

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


def _classpath(netty: bool = False) -> str | None:
    """The JVM's classpath; with ``netty``, complete enough for NettyServerCnxnFactory (TLS)."""
    home = os.environ.get("ZOOKEEPER_HOME", "/nonexistent")
    for pattern in _JARS:
        jars = sorted(glob.glob(pattern.format(home=home)))
        if any("zookeeper" in Path(jar).name for jar in jars):
            if netty and pattern == _JARS[0]:  # a tarball's lib/ has all of Netty already
                jars += [jar for name in _DEBIAN_NETTY if os.path.exists(jar := f"/usr/share/java/{name}.jar")]
            return os.pathsep.join(jars + ([_LOGGING] if os.path.exists(_LOGGING) else []))
    return None


def _prerequisites(netty: bool = False) -> tuple[str, str]:
    """(java, classpath), or ZooKeeperUnavailable saying what is missing."""
    if importlib.util.find_spec("kazoo") is None:
        raise ZooKeeperUnavailable("kazoo is not importable (pip install kazoo)")
    java = shutil.which("java")
    if java is None:
        raise ZooKeeperUnavailable("java is not installed (ZooKeeper needs a JRE)")
    classpath = _classpath(netty)
    if classpath is None:
        raise ZooKeeperUnavailable("ZooKeeper is not installed (Debian: apt-get install zookeeper; "
                                   "or set ZOOKEEPER_HOME)")
    return java, classpath


def zookeeper_unavailable(tls: bool = False) -> str | None:
    """Why :func:`start_zookeeper` (``tls``: with :func:`make_tls_files`) cannot run here, or None when it can."""
    try:
        _prerequisites()
        if tls and shutil.which("openssl") is None:
            raise ZooKeeperUnavailable("openssl is not installed (it makes the test certificates)")
    except ZooKeeperUnavailable as exc:
        return exc.reason
    return None


def _openssl(directory: Path, *args: str) -> None:
    try:
        subprocess.run(["openssl", *args], cwd=directory, capture_output=True, text=True,
                       timeout=_OPENSSL_TIMEOUT, check=True, stdin=subprocess.DEVNULL)
    except subprocess.CalledProcessError as exc:
        raise ZooKeeperError(f"openssl {args[0]} failed: {exc.stderr.strip()[-500:]}") from None
    except subprocess.TimeoutExpired:
        raise ZooKeeperError(f"openssl {args[0]} did not finish within {_OPENSSL_TIMEOUT:.0f} s") from None


def make_tls_files(directory: str | os.PathLike[str], host: str = "127.0.0.1", days: int = 2) -> TlsFiles:
    """A throwaway CA, a server certificate for ``host`` (an IP address) and a client certificate, in ``directory``.

    EC P-256 keys, unencrypted, PKCS#8 (ZooKeeper's PEM key store reads no other form).
    ZooKeeperUnavailable without the ``openssl`` command, ZooKeeperError if it fails.
    """
    if shutil.which("openssl") is None:
        raise ZooKeeperUnavailable("openssl is not installed (it makes the test certificates)")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # Our own config, so that the system's openssl.cnf adds no extensions of its own.
    (directory / "openssl.cnf").write_text("\n".join([
        "[req]", "distinguished_name = dn", "prompt = no", "[dn]", "CN = unused",
        "[ca]", "basicConstraints = critical, CA:TRUE", "keyUsage = critical, keyCertSign, cRLSign",
        "subjectKeyIdentifier = hash",
        "[server]", "basicConstraints = critical, CA:FALSE", "keyUsage = critical, digitalSignature",
        "extendedKeyUsage = serverAuth", f"subjectAltName = IP:{host}",
        "[client]", "basicConstraints = critical, CA:FALSE", "keyUsage = critical, digitalSignature",
        "extendedKeyUsage = clientAuth",
        "",
    ]))
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-config", "openssl.cnf")
    _openssl(directory, "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", str(days),
             "-subj", "/CN=pylocker test CA", "-extensions", "ca")
    for name, subject in (("server", f"/CN={host}"), ("client", "/CN=pylocker test client")):
        _openssl(directory, "req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject)
        _openssl(directory, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-set_serial", f"0x{secrets.token_hex(16)}", "-days", str(days), "-out", f"{name}.pem",
                 "-extfile", "openssl.cnf", "-extensions", name)
    server = directory / "server-keystore.pem"  # the key first, then the certificate
    server.write_text((directory / "server.key").read_text() + (directory / "server.pem").read_text())
    for path in directory.glob("*.key"):
        path.chmod(0o600)
    server.chmod(0o600)
    return TlsFiles(ca=directory / "ca.pem", server=server, client_cert=directory / "client.pem",
                    client_key=directory / "client.key")


def srvr(host: str, port: int) -> str:
    """The answer to the ``srvr`` four-letter word (the one ZooKeeper 3.5+ allows by default)."""
    with socket.create_connection((host, port), timeout=1.0) as conn:
        conn.sendall(b"srvr")
        chunks = []
        while chunk := conn.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def tcp_open(host: str, port: int) -> None:
    """Return if ``host:port`` accepts a TCP connection (closed at once, nothing sent), else OSError."""
    with socket.create_connection((host, port), timeout=1.0):
        pass


def _helper(prefix: Sequence[str], *args: str) -> str:
    """Run this file as a script under ``prefix`` (e.g. ``ip netns exec NS``): its stdout, or OSError."""
    # A socket opened here would be in our own network namespace, not in the one ``prefix`` enters.
    try:
        done = subprocess.run([*prefix, sys.executable, os.path.abspath(__file__), *args],
                              capture_output=True, text=True, timeout=10, check=True)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise OSError(f"{' '.join(args)} under {' '.join(prefix)}: {exc}") from None
    return done.stdout


def _tls_config(tls: TlsFiles, host: str, secure_port: int, client_auth: str) -> list[str]:
    return [
        f"secureClientPort={secure_port}",
        f"secureClientPortAddress={host}",  # else every interface
        f"serverCnxnFactory={_NETTY_FACTORY}",  # the NIO factory has no TLS
        f"ssl.keyStore.location={tls.server}",
        "ssl.keyStore.type=PEM",
        f"ssl.trustStore.location={tls.ca}",
        "ssl.trustStore.type=PEM",
        f"ssl.clientAuth={client_auth}",  # need: a client without a certificate signed by the CA is refused
    ]


def write_config(workdir: Path, host: str, port: int, min_session_ms: int, max_session_ms: int,
                 tick_ms: int = TICK_MS, *, tls: TlsFiles | None = None, secure_port: int = 0,
                 client_auth: str = "need") -> Path:
    """zoo.cfg: ``host`` only, a data dir in ``workdir``, no admin server, no fsync, the session bounds.

    With ``tls``, TLS clients on ``secure_port`` too, with ``ssl.clientAuth=client_auth``.
    """
    if tls is not None and (secure_port <= 0 or client_auth not in CLIENT_AUTH):
        raise ValueError(f"tls needs a secure_port and client_auth in {CLIENT_AUTH}, got {secure_port}, "
                         f"{client_auth!r}")
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
        *(_tls_config(tls, host, secure_port, client_auth) if tls is not None else []),
        "",
    ]))
    return cfg


def start_zookeeper(workdir: str | os.PathLike[str], host: str = "127.0.0.1", min_session_ms: int = 1000,
                    max_session_ms: int = 60000, *, port: int = 0, tick_ms: int = TICK_MS,
                    prefix: Sequence[str] = (), timeout: float = 60.0, tls: TlsFiles | None = None,
                    secure_port: int = 0, client_auth: str = "need") -> ZooKeeper:
    """A ZooKeeper listening on ``host:port`` (``port`` 0: a free one), answering ``srvr``.

    ``workdir`` holds zoo.cfg, the data and zookeeper.log. ``prefix`` is an argv prefix
    for the JVM and the readiness probe, e.g. ``Fleet.command(ns, [])`` to run it in a
    network namespace (``host`` then being that namespace's address). With ``tls`` it
    also takes TLS clients on ``host:secure_port`` (0: a free one), asking them for a
    certificate as ``client_auth`` says (ZooKeeper's ``ssl.clientAuth``: need, want, none).
    """
    if not 0 < min_session_ms <= max_session_ms:
        raise ValueError(f"need 0 < min_session_ms <= max_session_ms, got {min_session_ms}, {max_session_ms}")
    if tls is not None and client_auth not in CLIENT_AUTH:
        raise ValueError(f"client_auth must be one of {CLIENT_AUTH}, got {client_auth!r}")
    java, classpath = _prerequisites(netty=tls is not None)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)

    def a_free_port() -> int:
        return int(_helper(prefix, "port", host)) if prefix else free_port(host)

    if port == 0:
        port = a_free_port()
    if tls is not None:
        while secure_port in (0, port):
            secure_port = a_free_port()
    cfg = write_config(workdir, host, port, min_session_ms, max_session_ms, tick_ms, tls=tls,
                       secure_port=secure_port, client_auth=client_auth)
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
                if tls is not None and answer.startswith("Zookeeper version"):
                    # The TLS port is bound after the plain one serves: answering srvr is not enough.
                    # (ZooKeeper logs this probe as an "Unsuccessful handshake": it sends nothing.)
                    _helper(prefix, "tcp", host, str(secure_port)) if prefix else tcp_open(host, secure_port)
            except OSError:
                answer = ""  # not listening yet
            if answer.startswith("Zookeeper version"):
                version = answer.splitlines()[0].split(":", 1)[1].split("-")[0].strip()
                return ZooKeeper(proc, host, port, workdir, version, secure_port if tls is not None else None)
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
    """``srvr HOST PORT`` prints the server's answer; ``tcp HOST PORT`` fails unless it accepts a
    connection; ``port HOST`` prints a free port on HOST."""
    if len(argv) == 3 and argv[0] == "srvr":
        sys.stdout.write(srvr(argv[1], int(argv[2])))
        return 0
    if len(argv) == 3 and argv[0] == "tcp":
        tcp_open(argv[1], int(argv[2]))
        return 0
    if len(argv) == 2 and argv[0] == "port":
        sys.stdout.write(f"{free_port(argv[1])}\n")
        return 0
    sys.stderr.write("usage: zkserver.py srvr HOST PORT | tcp HOST PORT | port HOST\n")
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
