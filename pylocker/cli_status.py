"""``pylocker status`` and ``pylocker top``: ask the live serving locker who holds what.

``status`` prints one summary (``--json`` for scripts: the dict ``server_status()``
returns); ``top`` redraws one every ``--interval`` seconds, with rates, until
interrupted (``--once`` draws one frame, from two statuses an interval apart).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time

from .cli_common import CliError, connect, report, seconds, server_options
from .election import read_fingerprint, serverfile
from .errors import PylockerError, ServerFileError
from .views import CLEAR, human_duration, render_status, render_top


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = commands.add_parser("status", parents=[server_options()],
                                 help="ask the serving locker who holds what, who waits, and what happened")
    status.add_argument("--json", action="store_true", help="print the whole status as JSON")
    status.set_defaults(run=_status)
    top = commands.add_parser("top", parents=[server_options()],
                              help="a live view of the serving locker: clients, busiest names, rates")
    top.add_argument("--interval", type=seconds, default=1.0, metavar="S", help="seconds between frames")
    top.add_argument("--once", action="store_true", help="draw one frame (an interval apart) and exit")
    top.set_defaults(run=_top)


def _recorded(args: argparse.Namespace) -> str | None:
    """What the server file says, for when the serving locker does not answer."""
    if args.address is not None:
        return None
    path = args.server_file or serverfile.default_path()
    try:
        fp = read_fingerprint(path)
    except (ServerFileError, OSError) as exc:
        return f"server file {path}: {exc}"
    if fp is None:
        return f"no serving locker recorded in {path}"
    return (f"server file {path} names {fp.name!r} ({fp.unique_name[:8]}) at {fp.address}:{fp.port}, pid {fp.pid}, "
            f"epoch {fp.epoch}, refreshed {human_duration(time.time() - fp.timestamp)} ago"
            + (", stopped" if fp.stopped else ""))


def _status(args: argparse.Namespace) -> int:
    try:
        locker = connect(args)
    except CliError as exc:
        recorded = _recorded(args)
        if recorded is not None:
            print(recorded, file=sys.stderr)
        return report(exc)
    try:
        status = locker.server_status()
    except PylockerError as exc:
        return report(CliError(f"the serving locker did not answer: {exc}"))
    finally:
        locker.stop()
    print(json.dumps(status, indent=2, sort_keys=True) if args.json else render_status(status))
    return 0


def _top(args: argparse.Namespace) -> int:
    try:
        locker = connect(args)
    except CliError as exc:
        return report(exc)
    stop = threading.Event()
    try:
        previous = locker.server_status()
        while not stop.wait(args.interval):
            status = locker.server_status()
            frame = render_top(status, previous, args.interval)
            print(frame if args.once else CLEAR + frame, flush=True)
            previous = status
            if args.once:
                break
    except PylockerError as exc:
        return report(CliError(f"the serving locker did not answer: {exc}"))
    except KeyboardInterrupt:
        pass
    finally:
        locker.stop()
    return 0
