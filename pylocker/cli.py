"""The ``pylocker`` command line: demo, serve, status."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence

from ._meta import get_version
from .election import serverfile
from .errors import AddressError, ServerFileError
from .lockers import ServerLocker

PASSWORD_VARIABLE = "PYLOCKER_PASSWORD"  # noqa: S105  (the name of an environment variable, not a password)


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    print(
        f"pylocker {get_version()} demo: {args.workers} worker processes, {args.paths} paths, "
        f"{args.rounds} lock rounds each, through one serving locker on loopback"
    )
    report = run_demo(args.workers, args.paths, args.rounds)
    print(f"serving locker: 127.0.0.1:{report.port}, server file in a temp dir (now removed)")
    for worker, grants in sorted(report.grants_per_worker.items()):
        print(f"  worker {worker}: {grants} locks granted")
    for path in report.paths:
        mark = "ok" if report.counters[path] == report.expected[path] else "LOST UPDATES"
        print(f"  {path}: counter {report.counters[path]}, expected {report.expected[path]} ({mark})")
    print(
        f"median wait for a lock: {report.median_wait_ms:.2f} ms; timeouts: {report.timeouts}; "
        f"elapsed: {report.elapsed:.1f} s"
    )
    verdict = "held" if report.overlaps == 0 else "BROKEN"
    print(
        f"mutual exclusion {verdict}: {report.overlaps} overlapping critical sections out of {report.critical_sections}"
    )
    return 0 if report.ok else 1


def _password() -> str | None:
    password = os.environ.get(PASSWORD_VARIABLE)
    if not password:
        print(f"set the password in the {PASSWORD_VARIABLE} environment variable", file=sys.stderr)
    return password


def _serve(args: argparse.Namespace) -> int:
    password = _password()
    if password is None:
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    try:
        locker = ServerLocker(
            password,
            name=args.name,
            serverFile=args.server_file,
            port=args.port,
            maxLockTime=args.max_lock_time or None,
            autoconnect=False,
            listen_address=args.listen,
        )
    except AddressError as exc:
        print(f"--listen: {exc}", file=sys.stderr)
        return 2
    if not locker.start() or not locker.isServer:
        print("could not serve: another locker serves this server file, or it is unusable", file=sys.stderr)
        locker.stop()
        return 1
    print(f"serving on {_where(locker.serverAddress, locker.serverPort)} (server file {locker.serverFile}); "
          "Ctrl-C stops")
    signal.signal(signal.SIGTERM, lambda *_: locker.stop())
    try:
        locker.wait_stopped()
    except KeyboardInterrupt:
        pass
    finally:
        locker.stop()
    return 0


def _where(address: str | None, port: int | None) -> str:
    """A host with its port, or a URL as it is (ipc://, inproc:// carry no port)."""
    return f"{address}" if address is None or "://" in address else f"{address}:{port}"


def _status(args: argparse.Namespace) -> int:
    try:
        fp = serverfile.read(args.server_file)
    except ServerFileError as exc:
        print(exc, file=sys.stderr)
        return 2
    if fp is None:
        print(f"no serving locker recorded in {args.server_file}")
        return 1
    print(
        f"server {fp.name!r} ({fp.unique_name}) at {_where(fp.address, fp.port)}, pid {fp.pid}, "
        f"epoch {fp.epoch}, refreshed {fp.timestamp:.0f}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pylocker`` command; returns the exit code."""
    parser = argparse.ArgumentParser(prog="pylocker", description="Locks and messages over ZeroMQ.")
    parser.add_argument("--version", action="version", version=f"pylocker {get_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run worker processes contending for locks, and check them")
    demo.add_argument("--workers", type=int, default=4)
    demo.add_argument("--paths", type=int, default=3)
    demo.add_argument("--rounds", type=int, default=100)
    demo.set_defaults(run=_demo)

    serve = commands.add_parser("serve", help=f"serve locks (password from ${PASSWORD_VARIABLE})")
    serve.add_argument("--server-file", default=serverfile.default_path())
    serve.add_argument("--port", type=int, default=3000)
    serve.add_argument("--listen", default="127.0.0.1",
                       help="a host (with --port; default loopback) or a URL: tcp://host:port, ipc:///path")
    serve.add_argument("--name", default=None)
    serve.add_argument("--max-lock-time", type=float, default=120)
    serve.add_argument("--debug", action="store_true")
    serve.set_defaults(run=_serve)

    status = commands.add_parser("status", help="show the serving locker recorded in a server file")
    status.add_argument("--server-file", default=serverfile.default_path())
    status.set_defaults(run=_status)

    args = parser.parse_args(argv)
    if getattr(args, "workers", 1) < 1 or getattr(args, "paths", 1) < 1 or getattr(args, "rounds", 1) < 1:
        parser.error("--workers, --paths and --rounds must be at least 1")
    return int(args.run(args))
