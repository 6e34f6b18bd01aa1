"""The ``pylocker`` command line: demo, serve, status, top, lock, publish, listen.

``lock`` lives in ``cli_lock.py``, ``publish`` and ``listen`` in ``cli_messages.py``,
``status`` and ``top`` in ``cli_status.py``;
what the commands share (finding the serving locker, the password) in ``cli_common.py``.
"""

from __future__ import annotations

import argparse
import logging
import queue
import sys
import threading
from collections.abc import Sequence

from . import cli_lock, cli_messages, cli_status
from ._meta import get_version
from .cli_common import PASSWORD_VARIABLE, CliError, configure_logging, password_options, read_password, report
from .cli_signals import Received, Signals, exit_status
from .election import serverfile
from .errors import AddressError
from .lockers import ServerLocker

log = logging.getLogger("pylocker.cli")
STANDBY_RETRY = 2.0  # seconds between two attempts of a standby that found no election it could use


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


def _serve(args: argparse.Namespace) -> int:
    try:
        password = read_password(args)
    except CliError as exc:
        return report(exc)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    events: queue.Queue[object] = queue.Queue()
    # SIGTERM, SIGINT and SIGHUP wait in a queue (cli_signals) from before the locker starts
    # until it has stopped: none can cut a start or a stop short.
    with Signals(events):
        try:
            locker = ServerLocker(
                password,
                name=args.name,
                serverFile=args.server_file,
                port=args.port,
                maxLockTime=args.max_lock_time or None,
                autoconnect=False,
                listen_address=args.listen,
                advertise_address=args.advertise,
                reconnect=args.standby,
                realm=args.realm,
                metrics_port=args.metrics_port,
            )
        except AddressError as exc:
            print(f"--listen: {exc}", file=sys.stderr)
            return 2
        except (RuntimeError, OSError) as exc:  # metrics: no prometheus_client, or the port is taken
            print(f"--metrics-port: {exc}", file=sys.stderr)
            return 2
        try:
            return _serve_until_stopped(locker, events, args.standby)
        finally:
            locker.stop()
            log.info("stopped")


def _serve_until_stopped(locker: ServerLocker, events: queue.Queue[object], standby: bool) -> int:
    while not locker.start() and standby:
        # A standby outlives an election it cannot reach yet (a ZooKeeper ensemble still
        # starting, a server file's folder not mounted): it tries again until told to stop.
        log.warning("no serving locker found or elected through %s; trying again in %g s", locker.serverFile,
                    STANDBY_RETRY)
        try:
            event = events.get(timeout=STANDBY_RETRY)
        except queue.Empty:
            continue
        log.info("%s: stopping before serving", getattr(event, "name", event))
        return 0
    if not (locker.isServer or (standby and locker.isClient)):
        print("could not serve: another locker serves this server file, or it is unusable", file=sys.stderr)
        return 1
    metrics = locker._metrics
    if locker.isServer:
        print(f"serving on {_where(locker.serverAddress, locker.serverPort)} (server file {locker.serverFile}"
              + (f"; metrics at http://127.0.0.1:{metrics.port}/metrics" if metrics is not None else "")
              + "); Ctrl-C stops", flush=True)
    else:  # a standby: connected to the serving locker, it campaigns when that one fails
        print(f"standing by: {_where(locker.serverAddress, locker.serverPort)} serves {locker.serverFile}; "
              "this one takes over if it fails; Ctrl-C stops", flush=True)
    threading.Thread(target=lambda: events.put(locker.wait_stopped()), name="pylocker-serving",
                     daemon=True).start()
    event = events.get()
    if not isinstance(event, Received):  # the locker stopped serving by itself (logged why)
        print("stopped serving (see the log above)", file=sys.stderr)
        return 1
    server = locker.node.server
    clients = len(server.clients()) if server is not None else 0
    held = len(server.snapshot()) if server is not None else 0
    if not clients:
        log.info("%s: stopping; no client connected", event.name)
    else:
        log.info("%s: stopping; handing over %d client%s and %d held lock%s: the server file %s now says "
                 "this server stopped and names its clients, and the next locker to serve it gives them a "
                 "grace period to re-claim their locks (clients started with reconnect=True do)", event.name,
                 clients, "" if clients == 1 else "s", held, "" if held == 1 else "s", locker.serverFile)
    return 0


def _where(address: str | None, port: int | None) -> str:
    """A host with its port, or a URL as it is (ipc://, inproc:// carry no port)."""
    return f"{address}" if address is None or "://" in address else f"{address}:{port}"


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

    serve = commands.add_parser("serve", parents=[password_options()],
                                help=f"serve locks (password from ${PASSWORD_VARIABLE} or --password-file)")
    serve.add_argument("--server-file", default=serverfile.default_path(),
                       help="a path, or zookeeper://host:2181,.../path for machines without a shared disk")
    serve.add_argument("--port", type=int, default=3000)
    serve.add_argument("--listen", default="127.0.0.1",
                       help="a host (with --port; default loopback) or a URL: tcp://host:port, ipc:///path")
    serve.add_argument("--advertise", default=None, metavar="HOST",
                       help="where other machines reach this server, if not --listen (e.g. with --listen 0.0.0.0)")
    serve.add_argument("--standby", action="store_true",
                       help="if another locker serves, stay connected and take over when it fails")
    serve.add_argument("--name", default=None)
    serve.add_argument("--max-lock-time", type=float, default=120)
    serve.add_argument("--metrics-port", type=int, default=None, metavar="N",
                       help="serve Prometheus metrics on 127.0.0.1:N (needs pylocker[metrics])")
    serve.add_argument("--debug", action="store_true")
    serve.set_defaults(run=_serve)

    cli_status.add_parsers(commands)
    cli_lock.add_parser(commands)
    cli_messages.add_parsers(commands)

    head, command_line = cli_lock.split_command(list(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(head)
    if command_line is not None:
        args.command_line = command_line
    if getattr(args, "workers", 1) < 1 or getattr(args, "paths", 1) < 1 or getattr(args, "rounds", 1) < 1:
        parser.error("--workers, --paths and --rounds must be at least 1")
    if getattr(args, "address", None) is not None and getattr(args, "server_file", None) is not None:
        parser.error("give --server-file or --address, not both")
    if args.command not in ("demo", "serve"):
        configure_logging(args.verbose)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:  # a short command (publish, status) interrupted: no traceback
        return exit_status(2)
