"""A standalone ZooKeeper for the kazoo peer: found, configured, started on loopback, stopped by PID.

``start`` returns ``(process, port, note)``; ``process`` is None when ZooKeeper or
kazoo is unavailable, and ``note`` then says why (the peer is reported as skipped).
The launcher itself is ``tests/zkserver.py``, shared with the test suite.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parents[2] / "tests")
if _TESTS not in sys.path:
    # Appended, not prepended: nothing in tests/ may shadow a module the benchmarks import.
    sys.path.append(_TESTS)

from zkserver import TICK_MS, ZooKeeperError, ZooKeeperUnavailable, start_zookeeper  # noqa: E402

Started = tuple["subprocess.Popen[bytes] | None", int, str]


def start(workdir: Path, min_session_ms: int) -> Started:
    """A ZooKeeper on 127.0.0.1:<free port> in ``workdir``, answering, or (None, 0, why not)."""
    try:
        zk = start_zookeeper(workdir, "127.0.0.1", min_session_ms=min_session_ms,
                             max_session_ms=max(60000, min_session_ms))
    except (ZooKeeperUnavailable, ZooKeeperError) as exc:
        return None, 0, str(exc)
    import kazoo

    kazoo_version = getattr(kazoo, "__version__", "?")
    return zk.process, zk.port, (f"ZooKeeper {zk.version} standalone (pid {zk.pid}, tickTime {TICK_MS} ms, "
                                 f"forceSync=no), kazoo {kazoo_version}")
