"""A standalone ZooKeeper for the kazoo peer: found, configured, started on loopback, stopped by PID.

``start`` returns ``(process, port, note)``; ``process`` is None when ZooKeeper or
kazoo is unavailable, and ``note`` then says why (the peer is reported as skipped).
"""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from harness import free_port, stop_pid

MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
TICK_MS = 100  # session expiry is judged on tick boundaries: a small tick keeps it close to the timeout
# Debian's zookeeper.jar names its dependencies in its manifest; a tarball install has them in lib/.
_JARS = ("/usr/share/java/zookeeper.jar", "{home}/lib/*.jar", "{home}/*.jar", "/usr/share/zookeeper/lib/*.jar",
         "/opt/zookeeper/lib/*.jar")
_LOGGING = "/usr/share/java/slf4j-simple.jar"  # the server's log lines, when the binding is installed

Started = tuple["subprocess.Popen[bytes] | None", int, str]


def _classpath() -> str | None:
    home = os.environ.get("ZOOKEEPER_HOME", "/nonexistent")
    for pattern in _JARS:
        jars = sorted(glob.glob(pattern.format(home=home)))
        if any("zookeeper" in Path(jar).name for jar in jars):
            return os.pathsep.join(jars + ([_LOGGING] if os.path.exists(_LOGGING) else []))
    return None


def _srvr(port: int) -> str:
    """The answer to the ``srvr`` four-letter word (the one ZooKeeper 3.5+ allows by default)."""
    with socket.create_connection(("127.0.0.1", port), timeout=1.0) as conn:
        conn.sendall(b"srvr")
        chunks = []
        while chunk := conn.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def write_config(workdir: Path, port: int, min_session_ms: int) -> Path:
    """zoo.cfg: loopback only, a temp data dir, no admin server, no fsync, sessions from ``min_session_ms``."""
    data = workdir / "data"
    data.mkdir(exist_ok=True)
    cfg = workdir / "zoo.cfg"
    cfg.write_text("\n".join([
        f"tickTime={TICK_MS}",
        f"minSessionTimeout={min_session_ms}",
        "maxSessionTimeout=60000",
        f"dataDir={data}",
        f"clientPort={port}",
        "clientPortAddress=127.0.0.1",
        "admin.enableServer=false",  # else Jetty listens on 8080, on every interface
        "maxClientCnxns=0",
        "forceSync=no",  # pylocker keeps its table in memory: no fsync per write on either side
        "",
    ]))
    return cfg


def start(workdir: Path, min_session_ms: int) -> Started:
    """A ZooKeeper on 127.0.0.1:<free port> in ``workdir``, answering, or (None, 0, why not)."""
    if importlib.util.find_spec("kazoo") is None:
        return None, 0, "kazoo is not importable (pip install kazoo)"
    java = shutil.which("java")
    if java is None:
        return None, 0, "java is not installed (ZooKeeper needs a JRE)"
    classpath = _classpath()
    if classpath is None:
        return None, 0, "ZooKeeper is not installed (Debian: apt-get install zookeeper)"
    port = free_port()
    cfg = write_config(workdir, port, min_session_ms)
    log = open(workdir / "zookeeper.log", "w")  # noqa: SIM115  (closed with the process)
    proc = subprocess.Popen([java, "-Xmx512m", "-cp", classpath, MAIN_CLASS, str(cfg)], cwd=workdir,
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            answer = _srvr(port)
        except OSError:
            time.sleep(0.1)  # polled: a JVM takes a second or two to listen
            continue
        if answer.startswith("Zookeeper version"):
            version = answer.splitlines()[0].split(":", 1)[1].split("-")[0].strip()
            import kazoo

            kazoo_version = getattr(kazoo, "__version__", "?")
            return proc, port, (f"ZooKeeper {version} standalone (pid {proc.pid}, tickTime {TICK_MS} ms, "
                                f"forceSync=no), kazoo {kazoo_version}")
        time.sleep(0.1)
    code = proc.poll()
    stop_pid(proc)
    log.close()
    tail = (workdir / "zookeeper.log").read_text(errors="replace").strip().splitlines()[-3:]
    return None, 0, f"ZooKeeper did not answer on 127.0.0.1:{port} within 60 s (exit {code}): {' | '.join(tail)}"
