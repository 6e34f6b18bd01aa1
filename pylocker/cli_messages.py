"""``pylocker publish`` and ``pylocker listen``: the serving locker's messages from a shell.

``publish TEXT [--payload JSON] [--to UNIQUE_NAME]...`` exits 0 once the serving
locker has taken the message (it goes to every locker connected then, or to the
``--to`` ones; unknown names are ignored). ``listen [TEXT]`` prints one line per
message (of TEXT, if given) until interrupted, ``--count`` messages, or ``--timeout``
seconds without one; on stderr first, the unique name to ``--to`` it by.
"""

from __future__ import annotations

import argparse
import datetime
import json
import queue
import sys
import threading
from typing import Any, Final, NamedTuple

from .cli_common import EXIT_UNAVAILABLE, CliError, connect, make_locker, report, seconds, server_options, start
from .cli_signals import Received, Signals
from .client import Client
from .lockers import ServerLocker

ACK_TIMEOUT: Final = 10.0  # seconds a publication may take to reach the serving locker
READ_INTERVAL: Final = 0.5  # the reader's wait for a message, between looks at the connection


class _Message(NamedTuple):
    publication: dict[str, Any]


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    publish = commands.add_parser("publish", parents=[server_options()], help="publish a message",
                                  description="Publish TEXT (with a JSON payload) to the serving locker's lockers.")
    publish.add_argument("text", metavar="TEXT", help="the message's text")
    publish.add_argument("--payload", metavar="JSON", help="a JSON value carried with the message")
    publish.add_argument("--to", action="append", metavar="UNIQUE_NAME",
                         help="only to this locker (repeat for more; `pylocker listen` prints its name)")
    publish.set_defaults(run=publish_command)

    listen = commands.add_parser("listen", parents=[server_options()], help="print the messages that arrive",
                                 description="Print one line per message, as it arrives.",
                                 epilog="Exit status: 0 when --count messages came, or (without --count) when "
                                        "interrupted or idle for --timeout; 1 when --count messages did not come "
                                        "first; 69 when the serving locker cannot be reached or goes away.")
    listen.add_argument("text", nargs="?", metavar="TEXT", help="only messages of this text (default: every one)")
    listen.add_argument("--json", action="store_true",
                        help="JSON lines: text, payload, sender, sender_name, time, id")
    listen.add_argument("--count", type=_positive, metavar="N", help="stop after N messages")
    listen.add_argument("--timeout", type=seconds, metavar="S", help="stop after S seconds without a message")
    listen.set_defaults(run=listen_command)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


# ------------------------------------------------------------------- publish
def publish_command(args: argparse.Namespace) -> int:
    payload = None
    if args.payload is not None:
        try:
            payload = json.loads(args.payload)
        except ValueError as exc:
            return report(CliError(f"--payload is not JSON: {exc}"))
    try:
        locker = connect(args)
    except CliError as exc:
        return report(exc)
    try:
        try:
            ok, result = locker.publish_message(args.text, receivers=args.to, toSelf=False, payload=payload)
        except (TypeError, ValueError) as exc:
            raise CliError(f"cannot publish: {exc}") from None
        if not ok:
            raise CliError(f"cannot publish: {'connection lost' if result == 1 else result}", EXIT_UNAVAILABLE)
        link = locker.node.link
        if isinstance(link, Client) and not link.wait_published(ACK_TIMEOUT):
            raise CliError(f"the serving locker did not take the message within {ACK_TIMEOUT:g} s", EXIT_UNAVAILABLE)
    except CliError as exc:
        return report(exc)
    finally:
        locker.stop()
    return 0


# -------------------------------------------------------------------- listen
def listen_command(args: argparse.Namespace) -> int:
    events: queue.Queue[object] = queue.Queue()
    with Signals(events) as _:  # before the locker's threads start: see cli_signals
        try:
            locker = make_locker(args, receive_messages=True)
        except CliError as exc:
            return report(exc)
        done = threading.Event()
        try:
            start(locker, args)
            what = f"messages {args.text!r}" if args.text is not None else "every message"
            print(f"pylocker: listening as {locker.uniqueName} ({locker.name}) for {what}",
                  file=sys.stderr, flush=True)
            threading.Thread(target=_read, args=(locker, args.text, events, done), name="pylocker-reader",
                             daemon=True).start()
            return _print_messages(args, events)
        except CliError as exc:
            return report(exc)
        finally:
            done.set()
            locker.stop()


def _read(locker: ServerLocker, text: str | None, events: queue.Queue[object], done: threading.Event) -> None:
    """Move arriving messages to the event queue (the main thread also waits for signals there)."""
    while not done.is_set():
        publication = locker.wait_message(text, timeout=READ_INTERVAL, pop=True)
        if publication is not None:
            events.put(_Message(publication))
        elif not locker.isClient and not done.is_set():
            events.put(CliError("the serving locker went away", EXIT_UNAVAILABLE))
            return


def _print_messages(args: argparse.Namespace, events: queue.Queue[object]) -> int:
    count: int | None = args.count
    received = 0
    while count is None or received < count:
        try:
            event = events.get(timeout=args.timeout)
        except queue.Empty:
            return _ended(f"no message for {args.timeout:g} s", count, received)
        if isinstance(event, Received):
            return _ended(event.name, count, received)
        if isinstance(event, CliError):
            raise event
        if isinstance(event, _Message):
            print(_line(event.publication, args.json), flush=True)
            received += 1
    return 0


def _ended(why: str, count: int | None, received: int) -> int:
    if count is None:
        return 0
    print(f"pylocker: {why}: {received} of {count} messages came", file=sys.stderr)
    return 1


def _line(publication: dict[str, Any], as_json: bool) -> str:
    if as_json:
        return json.dumps({"text": publication["message"], "payload": _jsonable(publication["payload"]),
                           "sender": publication["sender"], "sender_name": publication["senderName"],
                           "time": publication["time"], "id": publication["publicationId"]}, ensure_ascii=False)
    when = datetime.datetime.fromtimestamp(publication["time"]).isoformat(timespec="milliseconds")
    line = f"{when} {publication['senderName']} {publication['message']}"
    payload = publication["payload"]
    return line if payload is None else f"{line} {json.dumps(_jsonable(payload), ensure_ascii=False)}"


def _jsonable(value: Any) -> Any:
    """A msgpack value as JSON can carry it (bytes as text, any key as a string)."""
    if isinstance(value, dict):
        return {key if isinstance(key, str) else json.dumps(_jsonable(key)): _jsonable(item)
                for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "backslashreplace")
    return value
