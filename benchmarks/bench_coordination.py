#!/usr/bin/env python3
"""Coordination benchmark: pylocker's shared locks, semaphores and elections against kazoo on ZooKeeper.

Usage (from the repository root; never run by CI or the test suite)::

    python benchmarks/bench_coordination.py [--quick] [--only ours,kazoo] [--out benchmarks/results]

Writes ``coordination.json`` (every figure, the machine, the versions) and
``coordination.md`` (the table: pylocker's figure, kazoo's, the ratio, and a verdict
for each correctness check). Measured in one run, each client its own process:

* shared-lock throughput of P processes (default 4) on one name, the same loop with
  exclusive locks (the ratio), and P readers with 1 writer, where a shared-memory gauge
  counts a writer overlapping anyone (must be 0);
* semaphore throughput of P processes on a semaphore of k slots (default 2), and the
  most holders seen at once (must be <= k);
* leader change: N candidates (default 3) campaign, the leader is SIGKILLed (default 5
  times); from the kill to the next leader's ``campaign()`` return, bounded by the
  lease (``--lease``, default 1 s, on the serving locker and the candidates);
* the same figures for kazoo (ReadLock, WriteLock, Semaphore, Election), on a
  standalone ZooKeeper this script starts on loopback (Debian: ``apt-get install
  zookeeper``; ``pip install kazoo``), with the session timeout equal to the lease
  for the leader change; reported as skipped, with why, when it cannot run.

Every process is started by this script, speaks loopback only, works in a temp dir,
is bounded in time and is stopped by PID. The worker roles run through this file too
(``--worker ROLE --spec JSON``); the code is in the ``coordbench`` package next to it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent  # holds the coordbench package and harness.py
REPO = HERE.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 s per throughput figure and 3 kills (~30 s)")
    parser.add_argument("--only", default="ours,kazoo", help="comma-separated subset of ours,kazoo")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds per throughput figure (default 3)")
    parser.add_argument("--processes", type=int, default=4, help="client processes per throughput figure")
    parser.add_argument("--limit", type=int, default=2, help="the semaphore's slots")
    parser.add_argument("--candidates", type=int, default=3, help="processes campaigning at once")
    parser.add_argument("--kills", type=int, default=0, help="leaders killed (default 5, --quick 3)")
    parser.add_argument("--lease", type=float, default=1.0,
                        help="the leader change's lease (pylocker) and session timeout (ZooKeeper), seconds")
    parser.add_argument("--code", default=str(REPO),
                        help="the pylocker source tree to measure (default: this checkout, as it is on disk)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="output folder")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir with every worker's log")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if str(HERE) not in sys.path:  # run as a script it is there already; imported, or with -P, it is not
        sys.path.insert(0, str(HERE))
    if args.worker:  # a child process: one worker role
        from coordbench.workers import worker_main

        worker_main(args.worker, args.spec)
        return 0
    if min(args.processes, args.limit, args.candidates) < 1 or args.candidates < 2 or args.lease <= 0:
        parser.error("--processes, --limit >= 1, --candidates >= 2 and --lease > 0")
    from coordbench.run import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
