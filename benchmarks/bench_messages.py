#!/usr/bin/env python3
"""Message benchmark suite: pylocker's publications against their peers, in one run on one machine.

Usage (from the repository root; never run by CI or the test suite)::

    python benchmarks/bench_messages.py [--quick] [--only floor,pylocker,nats,redis] [--out benchmarks/results]

Writes ``messages.json`` (every figure, every receiver, the machine and versions) and
``messages.md`` (the table, the goals of issue 12 with ratio and PASS/FAIL).

Each stream is 500,000 messages (``--quick``: 50,000) of a 100-byte payload from one
publisher process to 1 or 4 receiver processes; goodput (received/s, first to last
arrival) and loss are reported apart. Peers, measured in the same run (a missing one
is reported as skipped, never as zero):

* the credit-based raw pyzmq floor: ROUTER publisher, DEALER receivers, credit flow;
* NATS core through nats-py, on a ``nats-server -a 127.0.0.1 -p <free>`` this suite
  starts and stops by PID (Debian: ``apt-get install nats-server``; ``pip install nats-py``);
* Redis pub/sub through redis-py with hiredis, on a redis-server this suite starts
  and stops by PID (``apt-get install redis-server``; ``pip install redis hiredis``).

Every process is started by this script, speaks loopback only, works in a temp dir,
is bounded in time and stopped by PID. The worker roles run through this file too
(``--worker ROLE --spec JSON``). The code lives in the ``msgbench`` package next to
this file (see its docstring and ``benchmarks/README.md``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent  # holds the msgbench package
REPO = HERE.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="50,000 messages per stream instead of 500,000")
    parser.add_argument("--count", type=int, default=0, help="messages per stream (overrides --quick)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="output folder")
    parser.add_argument("--only", default="floor,pylocker,nats,redis",
                        help="comma-separated subset of floor,pylocker,nats,redis")
    parser.add_argument("--streams", default="",
                        help="only the streams whose key contains one of these comma-separated words "
                             "(keys: 1to1|1to4|frozen / call|bulk / targeted|broadcast)")
    parser.add_argument("--code", default=str(REPO),
                        help="the pylocker source tree to measure (default: this checkout, as it is on disk)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir with every worker's log")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if str(HERE) not in sys.path:  # run as a script it is there already; imported, or with -P, it is not
        sys.path.insert(0, str(HERE))
    if args.worker:  # a child process: one worker role
        from msgbench.workers import worker_main

        worker_main(args.worker, args.spec)
        return 0
    from msgbench.run import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
