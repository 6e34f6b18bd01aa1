"""The daemons a peer needs, started by the suite on loopback and stopped by PID.

Each ``start_*`` returns ``(process, port, note)``; ``process`` is None when the
peer is unavailable, and ``note`` then says why (the peer is reported as skipped).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .process import free_port, stop_pid

Started = tuple["subprocess.Popen[bytes] | None", int, str]


def _importable(code: str) -> str | None:
    """The module version ``code`` prints, or None when it does not import."""
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                           timeout=60, cwd=tempfile.gettempdir())
    return probe.stdout.strip() if probe.returncode == 0 else None


def _wait_port(port: int, proc: subprocess.Popen[bytes], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def start_nats(workdir: Path) -> Started:
    exe = shutil.which("nats-server")
    if exe is None:
        return None, 0, "nats-server is not installed (Debian: apt-get install nats-server)"
    client = _importable("import nats; from importlib.metadata import version; print(version('nats-py'))")
    if client is None:
        return None, 0, "nats-py is not importable (pip install nats-py)"
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    port = free_port()
    log = open(workdir / "nats-server.log", "w")  # noqa: SIM115  (closed with the process)
    proc = subprocess.Popen([exe, "-a", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    if not _wait_port(port, proc):
        stop_pid(proc)
        return None, 0, "nats-server did not listen on loopback within 10 s"
    return proc, port, f"{version} (pid {proc.pid}), nats-py {client}"


def start_redis(workdir: Path) -> Started:
    exe = shutil.which("redis-server")
    if exe is None:
        return None, 0, "redis-server is not installed (Debian: apt-get install redis-server)"
    client = _importable("import redis, hiredis; print(redis.__version__, 'hiredis', hiredis.__version__)")
    if client is None:
        return None, 0, "redis or hiredis is not importable (pip install redis hiredis)"
    port = free_port()
    log = open(workdir / "redis-server.log", "w")  # noqa: SIM115  (closed with the process)
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(workdir)], stdout=log, stderr=subprocess.STDOUT)
    if not _wait_port(port, proc):
        stop_pid(proc)
        return None, 0, "redis-server did not listen on loopback within 10 s"
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    return proc, port, f"{version.split(' sha=')[0]} (pid {proc.pid}), redis-py {client}"
