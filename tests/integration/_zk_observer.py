"""Who serves, as ZooKeeper says: one JSON line per change, for tests whose ZooKeeper sits in another namespace.

``python tests/integration/_zk_observer.py URL`` (run inside the namespace that reaches
ZooKeeper) prints ``{"t": CLOCK_MONOTONIC, "pid": ..., "epoch": ..., "alive": ...}``
whenever the fingerprint or its liveness changes, until its standard input closes.
"""

from __future__ import annotations

import json
import select
import sys
import time

from pylocker.election import backend_for
from pylocker.errors import ServerFileError

POLL = 0.02  # seconds between two looks at ZooKeeper


def main(url: str) -> None:
    election = backend_for(url)
    last = None
    try:
        while not select.select([sys.stdin], [], [], POLL)[0]:  # stdin closed or written: stop
            try:
                fingerprint = election.read()
                alive = fingerprint is not None and election.looks_alive(fingerprint)
            except (ServerFileError, OSError):
                continue
            now = (None, None, False) if fingerprint is None else (fingerprint.pid, fingerprint.epoch, alive)
            if now != last:
                last = now
                change = {"t": time.monotonic(), "pid": now[0], "epoch": now[1], "alive": now[2]}
                sys.stdout.write(json.dumps(change) + "\n")
                sys.stdout.flush()
    finally:
        election.close()


if __name__ == "__main__":
    main(sys.argv[1])
