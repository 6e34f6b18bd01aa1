#!/usr/bin/env python3
"""Lock benchmark suite: pylocker against its peers, in one run on one machine.

Usage (from the repository root; never run by CI or the test suite)::

    python benchmarks/bench_locks.py [--quick] [--out benchmarks/results]

Writes ``locks.json`` (every figure, with the machine and versions), ``locks.md``
(the table: our figure, each peer's, the goal and PASS/FAIL) and ``locks.png``
(a matplotlib chart; skipped with a note when matplotlib is missing).

Peers, each measured in the same run (a missing one is reported as skipped):

* the echo floor: raw pyzmq DEALER -> ROUTER echo, server and client in separate
  processes (one round trip per acquire is the least a lock server can cost), plus
  the same echo over CURVE for context (pylocker encrypts every connection);
* pylocker 3.1.0 from PyPI, installed by this script into its own virtual
  environment (cached in the temp dir; ``--fresh-venv`` rebuilds it);
* Redis through python-redis-lock, when ``redis-server`` is installed (Debian:
  ``apt-get install redis-server``) and ``redis``/``python-redis-lock`` import;
  the suite starts its own redis-server on loopback and stops it by PID.

Every process is started by this script, speaks loopback only, works in a temp
dir, runs for a bounded time and is stopped by PID at the end. The worker roles
(``lockbench/workers.py``) run through this file too (``--worker ROLE --spec JSON``);
the pylocker 3.1.0 workers run this same file with the virtual environment's
interpreter, which is why the worker side loads only the standard library until a
role imports what it measures.

``--code DIR`` names the pylocker source tree to measure (default: this checkout).
The code lives in the ``lockbench`` package next to this file: ``suite`` (the
figures of each peer), ``process`` (worker processes), ``workers`` and ``adapters``
(the child side), ``report`` (goals, table, chart) and ``run`` (one whole run).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent  # holds the lockbench package
REPO = HERE.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs, 100 clients / 10,000 locks (< 1 min)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="output folder")
    parser.add_argument("--only", default="echo,ours,seed,redis,scale",
                        help="comma-separated subset of echo,ours,seed,redis,scale")
    parser.add_argument("--fresh-venv", action="store_true", help="reinstall pylocker 3.1.0 into a new venv")
    parser.add_argument("--seed-wheel", default=None, help="install the seed from this wheel, not PyPI")
    parser.add_argument("--code", default=str(REPO),
                        help="the pylocker source tree to measure (default: this checkout, as it is on disk)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir with every worker's log")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if str(HERE) not in sys.path:  # run as a script it is there already; imported, or with -P, it is not
        sys.path.insert(0, str(HERE))
    if args.worker:  # a child process: the worker side only (the seed's workers run under another venv)
        from lockbench.workers import worker_main

        worker_main(args.worker, args.spec)
        return 0
    from lockbench.run import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
