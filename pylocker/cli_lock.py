"""``pylocker lock NAME... [options] -- COMMAND``: run a command while holding locks, as flock(1) does.

Exit status:

- the command's own status; 128+N when a signal N killed it (as shells report);
- 1, or ``--conflict-exit-code``: the locks were not granted within ``--timeout``;
- 75, or ``--lost-exit-code``: the lock was lost while the command ran (``maxLockTime``,
  lease, the serving locker stopped): the command and its descendants were sent
  SIGTERM, then SIGKILL after ``--kill-after`` seconds, and nothing the command did
  after the loss was protected;
- 127 the command was not found, 126 it could not be run;
- 2 bad arguments or no password, 69 the serving locker could not be reached;
- 128+N when signal N stopped ``pylocker lock`` while it waited for the locks.

The command gets ``PYLOCKER_TOKEN`` (the fencing token: larger than every earlier
grant's, give it to the storage it writes to) and ``PYLOCKER_LOCK_ID`` in its
environment. SIGINT, SIGTERM and SIGHUP are passed on to it (a SIGINT the terminal
sent to the whole process group has reached it already, and is not sent twice).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import subprocess
import sys
import threading
import time
from typing import Final, NamedTuple

import psutil

from .cli_common import CliError, exit_code, make_locker, report, seconds, server_options, start
from .cli_signals import Received, Signals, exit_status, same_process_group
from .errors import LockLost, PylockerError
from .holds import PLAIN, SHARED_CLAIM
from .lock import Lock
from .lockers import ServerLocker
from .validation import names as parse_names

LOST_EXIT: Final = 75  # sysexits' EX_TEMPFAIL: the lock was lost, the work may be done again
KILL_AFTER: Final = 5.0
WATCH_INTERVAL: Final = 1.0  # how often the lock is checked against our own clocks, besides the push
TOKEN_VARIABLE: Final = "PYLOCKER_TOKEN"  # noqa: S105  (an environment variable's name)
LOCK_ID_VARIABLE: Final = "PYLOCKER_LOCK_ID"


class _Granted(NamedTuple):
    lock: Lock


class _NotGranted(NamedTuple):
    pass


class _Exited(NamedTuple):
    returncode: int


class _Lost(NamedTuple):
    lock_id: str
    reason: str


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "lock", parents=[server_options()], help="run a command while holding locks (as flock(1))",
        usage="pylocker lock NAME... [options] -- COMMAND [ARGUMENT...]",
        description="Run COMMAND while holding the locks on every NAME (all at once), then release them.",
        epilog=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="+", metavar="NAME", help="a lock name (often a path)")
    parser.add_argument("--timeout", type=seconds, default=None, metavar="S",
                        help="give up if not granted within S seconds (default: wait as long as it takes)")
    parser.add_argument("--shared", action="store_true", help="shared (read) locks: shared holders coexist")
    parser.add_argument("--conflict-exit-code", type=exit_code, default=1, metavar="N",
                        help="exit status when not granted in time (default %(default)s)")
    parser.add_argument("--lost-exit-code", type=exit_code, default=LOST_EXIT, metavar="N",
                        help="exit status when the lock was lost while the command ran (default %(default)s)")
    parser.add_argument("--kill-after", type=seconds, default=KILL_AFTER, metavar="S",
                        help="after a lost lock's SIGTERM, SIGKILL the command after S seconds (default %(default)s)")
    parser.set_defaults(run=run, command_line=None)


def split_command(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """``pylocker lock ... -- COMMAND``: the arguments before ``--`` and the command after it.

    Only for the ``lock`` command (its first argument that is not an option); None: not ``lock``.
    """
    first = next((i for i, arg in enumerate(argv) if not arg.startswith("-")), None)
    if first is None or argv[first] != "lock":
        return argv, None
    try:
        separator = argv.index("--", first)
    except ValueError:
        return argv, []
    return argv[:separator], argv[separator + 1:]


def run(args: argparse.Namespace) -> int:
    command: list[str] = args.command_line or []
    if not command:
        return report(CliError("give the command after --: pylocker lock NAME... -- COMMAND [ARGUMENT...]"))
    try:
        names = parse_names(args.names)
    except (TypeError, ValueError) as exc:
        return report(CliError(f"lock names: {exc}"))
    events: queue.Queue[object] = queue.Queue()
    with Signals(events) as signals:  # before any thread starts (the locker's): see cli_signals
        try:
            locker = make_locker(args)
        except CliError as exc:
            return report(exc)
        try:
            return _Session(args, locker, names, command, events, signals).run()
        except CliError as exc:
            return report(exc)
        finally:
            locker.stop()


class _Session:
    """One run: connect and wait for the locks, run the command, watch the lock, release."""

    def __init__(self, args: argparse.Namespace, locker: ServerLocker, names: list[str], command: list[str],
                 events: queue.Queue[object], signals: Signals) -> None:
        self.args, self.locker, self.names, self.command = args, locker, names, command
        self.events, self.signals = events, signals
        self.shown = ", ".join(names)

    def run(self) -> int:
        lock = self._wait_for_locks()
        if isinstance(lock, int):
            return lock
        try:
            if not lock.is_acquired:  # lost between the grant and now
                raise CliError(f"the lock on {self.shown} was lost before {self.command[0]} started",
                               self.args.lost_exit_code)
            returncode, lost = self._run_command(lock)
        except BaseException:
            self._release(lock)
            raise
        self._release(lock)
        if lost is not None:
            print(f"pylocker: {self.command[0]} ran without the lock on {self.shown} after it was lost ({lost}); "
                  f"exit status {self.args.lost_exit_code}", file=sys.stderr)
            return int(self.args.lost_exit_code)
        return exit_status(-returncode) if returncode < 0 else returncode

    # ---------------------------------------------------------------- the locks
    def _wait_for_locks(self) -> Lock | int:
        """The lock once granted, or the exit status (not granted, no serving locker, a signal)."""
        self.locker.on_lock_lost(lambda lock_id, reason: self.events.put(_Lost(lock_id, reason)))
        threading.Thread(target=self._acquire, name="pylocker-acquire", daemon=True).start()
        while True:
            event = self.events.get()
            if isinstance(event, _Granted):
                return event.lock
            if isinstance(event, _NotGranted):
                timeout = self.args.timeout
                print(f"pylocker: the lock on {self.shown} was not granted within {timeout:g} s", file=sys.stderr)
                return int(self.args.conflict_exit_code)
            if isinstance(event, CliError):
                return report(event)
            if isinstance(event, Received):
                print(f"pylocker: {event.name} while waiting for the lock on {self.shown}; giving up",
                      file=sys.stderr)
                self.locker.stop()  # the waiting request goes (and a grant that crossed it is released)
                return exit_status(event.signum)

    def _acquire(self) -> None:
        """Connect and wait for the locks (on a thread of its own: the main thread waits for signals too)."""
        try:
            start(self.locker, self.args)
            claim = SHARED_CLAIM if self.args.shared else PLAIN
            lock = Lock(self.locker.node, self.names, self.args.timeout, claim)
            self.events.put(_Granted(lock) if lock.acquire() else _NotGranted())
        except CliError as exc:
            self.events.put(exc)
        except PylockerError as exc:
            self.events.put(CliError(f"the lock on {self.shown} failed: {exc}", 69))

    def _release(self, lock: Lock) -> None:
        try:
            lock.release()
        except LockLost:
            pass  # after the command ended (it was held then): nothing to report
        except PylockerError as exc:  # the serving locker frees it with our connection or lease
            print(f"pylocker: releasing the lock on {self.shown}: {exc}", file=sys.stderr)

    # -------------------------------------------------------------- the command
    def _run_command(self, lock: Lock) -> tuple[int, str | None]:
        """Run the command to its end; (its return code, why the lock was lost while it ran or None)."""
        env = dict(os.environ)
        env[TOKEN_VARIABLE], env[LOCK_ID_VARIABLE] = str(lock.token), str(lock.lock_id)
        try:
            with self.signals.unblocked():  # the child must not inherit our blocked signals
                child = subprocess.Popen(self.command, env=env)  # noqa: S603  (the user's own command)
        except FileNotFoundError as exc:
            raise CliError(f"{self.command[0]}: command not found ({exc.strerror})", 127) from None
        except OSError as exc:
            raise CliError(f"{self.command[0]}: cannot run it ({exc.strerror or exc})", 126) from None
        threading.Thread(target=lambda: self.events.put(_Exited(child.wait())), name="pylocker-child",
                         daemon=True).start()
        lost: str | None = None
        stopping: _Stopping | None = None
        while True:
            wait = WATCH_INTERVAL if stopping is None else max(0.0, min(WATCH_INTERVAL, stopping.left()))
            try:
                event: object = self.events.get(timeout=wait)
            except queue.Empty:
                event = None
            if isinstance(event, _Exited):
                if lost is None and not lock.is_acquired:  # lost just now, unreported yet: not protected
                    lost = self.locker.lost_reason(str(lock.lock_id)) or "found lost as the command ended"
                if stopping is not None:
                    stopping.finish()
                return event.returncode, lost
            if isinstance(event, Received):
                # The terminal's ^C went to the whole foreground group: the child has it already.
                if not (event.from_terminal and same_process_group(child.pid)):
                    _send(child.pid, event.signum)
            elif lost is None and ((isinstance(event, _Lost) and event.lock_id == lock.lock_id)
                                   or not lock.is_acquired):
                lost = event.reason if isinstance(event, _Lost) else (
                    self.locker.lost_reason(str(lock.lock_id)) or "this locker's lease ran out")
                print(f"pylocker: the lock on {self.shown} was lost ({lost}): SIGTERM to {self.command[0]}, "
                      f"SIGKILL in {self.args.kill_after:g} s", file=sys.stderr)
                stopping = _Stopping(child.pid, self.args.kill_after)
            if stopping is not None and stopping.left() <= 0:
                stopping.kill()


def _send(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it ended meanwhile: its exit is on the way
        os.kill(pid, signum)


class _Stopping:
    """A command being stopped because its lock is gone: SIGTERM to it and its descendants, SIGKILL after a grace."""

    def __init__(self, pid: int, grace: float) -> None:
        self.deadline = time.monotonic() + grace
        self.killed = False
        self.processes: dict[int, psutil.Process] = {}
        self._signal(pid, "terminate")
        self.pid = pid

    def left(self) -> float:
        return float("inf") if self.killed else self.deadline - time.monotonic()

    def kill(self) -> None:
        """The grace is over: SIGKILL whatever is left of the command (and what it started since)."""
        self._signal(self.pid, "kill")
        self.killed = True
        print("pylocker: the command did not stop within the grace: SIGKILL", file=sys.stderr)

    def finish(self) -> None:
        """The command ended: its descendants, if any outlive it, get what is left of the grace."""
        alive = [process for process in self.processes.values() if process.pid != self.pid]
        if not alive or self.killed:
            return
        _, survivors = psutil.wait_procs(alive, timeout=max(0.0, self.left()))
        for process in survivors:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                process.kill()

    def _signal(self, pid: int, how: str) -> None:
        try:
            root = psutil.Process(pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            tree = []
        for process in tree:
            self.processes.setdefault(process.pid, process)
        for process in list(self.processes.values()):
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                if how == "terminate":
                    process.terminate()
                else:
                    process.kill()
