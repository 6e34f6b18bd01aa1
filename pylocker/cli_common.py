"""What the ``pylocker`` commands share: finding the serving locker, the password, exit codes, errors.

Every command that talks to a serving locker finds it the same way: ``--server-file
PATH`` (the server file the library's lockers use; the default one if neither option
is given) or ``--address URL`` (``tcp://host:3000``, ``ipc:///path``), and takes the
password from ``$PYLOCKER_PASSWORD`` or ``--password-file FILE``, never from the
command line (where ``ps`` would show it). Lockers made here never serve.
"""

from __future__ import annotations

import argparse
import logging
import os
import stat
import sys
from typing import Final

from .election import serverfile
from .errors import AddressError
from .lockers import ServerLocker
from .transport import address as addresses
from .transport.keys import DEFAULT_REALM

PASSWORD_VARIABLE: Final = "PYLOCKER_PASSWORD"  # noqa: S105  (an environment variable's name, not a password)
DEFAULT_PORT: Final = 3000  # a bare host given to --address (the port ``serve`` listens on by default)

EXIT_USAGE: Final = 2  # bad arguments, no password (as argparse exits)
EXIT_UNAVAILABLE: Final = 69  # the serving locker could not be reached (sysexits' EX_UNAVAILABLE, as flock(1))
_HANDLER_NAME: Final = "pylocker-cli"  # our stderr handler on the "pylocker" logger


class CliError(Exception):
    """A failure the command reports in one line on stderr, exiting with ``code``."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def exit_code(text: str) -> int:
    """argparse type: an exit status, 0 to 255."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= value <= 255:
        raise argparse.ArgumentTypeError(f"an exit status is 0 to 255, not {value}")
    return value


def seconds(text: str) -> float:
    """argparse type: a duration in seconds, zero or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"seconds must be zero or more, not {text}")
    return value


def password_options() -> argparse.ArgumentParser:
    """A parent parser: --password-file and --realm (the password itself is never an argument)."""
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("password")
    group.add_argument("--password-file", metavar="FILE",
                       help=f"read the password from FILE (its first line); default: ${PASSWORD_VARIABLE}")
    group.add_argument("--realm", default=DEFAULT_REALM, help="the deployment's realm (default %(default)s)")
    return parser


def server_options() -> argparse.ArgumentParser:
    """A parent parser: how a command finds the serving locker, its name, and how verbose it is."""
    parser = argparse.ArgumentParser(add_help=False, parents=[password_options()])
    group = parser.add_argument_group("serving locker")
    where = group.add_mutually_exclusive_group()
    where.add_argument("--server-file", metavar="PATH",
                       help=f"the serving locker named in this server file (default {serverfile.default_path()})")
    where.add_argument("--address", metavar="URL",
                       help=f"connect to this address: tcp://host:port, ipc:///path (a bare host: port {DEFAULT_PORT})")
    group.add_argument("--connect-timeout", type=seconds, default=10.0, metavar="S",
                       help="seconds to find and reach the serving locker (default %(default)s)")
    group.add_argument("--name", help="this locker's name, as others see it (default pylocker-COMMAND-PID)")
    group.add_argument("-v", "--verbose", action="store_true", help="log what the locker does (INFO)")
    return parser


def read_password(args: argparse.Namespace) -> str:
    """The password from --password-file, else from $PYLOCKER_PASSWORD; CliError if neither has one."""
    path = getattr(args, "password_file", None)
    if path is None:
        password = os.environ.get(PASSWORD_VARIABLE, "")
        if not password:
            raise CliError(f"no password: set the {PASSWORD_VARIABLE} environment variable, "
                           "or give --password-file FILE")
        return password
    try:
        with open(path, encoding="utf-8") as file:
            mode = os.fstat(file.fileno()).st_mode
            password = file.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"--password-file: cannot read {path!r}: {exc}") from None
    if not password:
        raise CliError(f"--password-file: {path!r} holds no password on its first line")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        print(f"pylocker: warning: --password-file {path!r} can be read by other users (chmod 600 it)",
              file=sys.stderr)
    return password


def configure_logging(verbose: bool) -> None:
    """The library's errors on stderr, as ``pylocker: message``; from INFO on with --verbose.

    Its warnings are left out by default: the commands say what went wrong themselves.
    """
    logger = logging.getLogger("pylocker")
    logger.setLevel(logging.INFO if verbose else logging.ERROR)
    if not any(handler.get_name() == _HANDLER_NAME for handler in logger.handlers):  # once per process
        handler = logging.StreamHandler(sys.stderr)
        handler.set_name(_HANDLER_NAME)
        handler.setFormatter(logging.Formatter("pylocker: %(message)s"))
        logger.addHandler(handler)


def describe(args: argparse.Namespace) -> str:
    """Where the command looks for the serving locker, for error messages."""
    if args.address is not None:
        return f"at {args.address}"
    return f"in server file {args.server_file or serverfile.default_path()}"


def make_locker(args: argparse.Namespace, *, receive_messages: bool = False) -> ServerLocker:
    """A locker, not started, that never serves; CliError for a missing password or a bad address."""
    password = read_password(args)
    name = args.name or f"pylocker-{args.command}-{os.getpid()}"
    if args.address is not None:
        try:
            addresses.parse(args.address, DEFAULT_PORT)
        except AddressError as exc:
            raise CliError(f"--address: {exc}") from None
        server_file: str | bool = False
    else:
        server_file = args.server_file or serverfile.default_path()
    return ServerLocker(password, name=name, serverFile=server_file, allowServing=False, autoconnect=False,
                        connectTimeout=args.connect_timeout, receive_messages=receive_messages, realm=args.realm)


def start(locker: ServerLocker, args: argparse.Namespace) -> None:
    """Connect ``locker`` to the serving locker the options name; CliError (EXIT_UNAVAILABLE) if it cannot."""
    if args.address is not None:
        url = args.address if addresses.is_url(args.address) else addresses.parse(args.address, DEFAULT_PORT).url
        connected = locker.connect(url, ntrials=1)
    else:
        connected = locker.start()
    if not connected or not locker.isClient:
        locker.stop()
        raise CliError(f"cannot reach the serving locker {describe(args)} within {args.connect_timeout:g} s "
                       "(is it running? same password and realm?)", EXIT_UNAVAILABLE)


def connect(args: argparse.Namespace, *, receive_messages: bool = False) -> ServerLocker:
    """A started client locker (see ``make_locker`` and ``start``)."""
    locker = make_locker(args, receive_messages=receive_messages)
    start(locker, args)
    return locker


def report(error: CliError) -> int:
    """Print ``error`` on stderr; its exit code."""
    print(f"pylocker: {error}", file=sys.stderr)
    return error.code
