"""Worker processes: ``python -m tests.faults.worker {candidate|client} ...`` (started by the runner).

A candidate may serve (it listens on ``--listen-port`` and advertises its proxy's
port) and otherwise idles. A client loops acquire -> read -> check -> fenced write ->
release on the lock "register", and writes its history as JSON lines, one flushed
line per event, with CLOCK_MONOTONIC times comparable across processes.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from typing import Any

from pylocker import ServerLocker
from tests.faults.register import FencedRegister

PASSWORD = "fault-injection"
LOCK_NAME = "register"
POLL = 0.1


class History:
    """Append-only JSON-lines history, safe to write from several threads."""

    def __init__(self, path: str, client: str) -> None:
        self._handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())
        self._lock = threading.Lock()
        self.client = client

    def record(self, event: str, t: float | None = None, **data: Any) -> None:
        entry = {"ev": event, "client": self.client, "t": time.monotonic() if t is None else t, **data}
        with self._lock:
            self._handle.write(json.dumps(entry) + "\n")
            self._handle.flush()

    def close(self) -> None:
        with self._lock:
            self._handle.close()


def candidate(args: argparse.Namespace) -> None:
    """Serve if elected (or later, on failover); idle until the stop file appears."""
    locker = ServerLocker(PASSWORD, name=args.name, serverFile=args.server_file, port=args.listen_port,
                          allowServing=True, reconnect=True, connectTimeout=args.connect_timeout,
                          maxLockTime=None, lease=args.lease, listen_address=args.listen_address,
                          advertise_address=f"tcp://127.0.0.1:{args.advertise_port}" if args.advertise_port else None,
                          receive_messages=False)
    stopped = threading.Event()
    try:
        while not os.path.exists(args.stop_file) and not stopped.wait(POLL):
            pass
    finally:
        locker.stop()


def client(args: argparse.Namespace) -> None:
    """Increment the fenced register under the lock until the stop file appears."""
    history = History(args.history, args.name)
    register = FencedRegister(args.register)
    history.record("start", pid=os.getpid())
    locker = ServerLocker(PASSWORD, name=args.name, serverFile=args.server_file, port=0, allowServing=False,
                          reconnect=True, connectTimeout=args.connect_timeout, maxLockTime=None,
                          lease=args.lease, receive_messages=False)
    locker.on_lock_lost(lambda lock_id, reason: history.record("lost", lock=lock_id, reason=reason))
    history.record("connected", client_role=locker.isClient)
    try:
        while not os.path.exists(args.stop_file):
            try:
                one_round(locker, register, history, args.acquire_timeout)
            except Exception as exc:  # noqa: BLE001 (recorded for the checker, which fails the run)
                history.record("error", error=repr(exc))
                threading.Event().wait(POLL)
    finally:
        locker.stop()
        history.record("stopped")
        history.close()


def one_round(locker: ServerLocker, register: FencedRegister, history: History, timeout: float) -> None:
    """acquire -> acquired(token) -> fenced read -> valid? -> fenced write -> release."""
    t0 = time.monotonic()
    ok, lock_id = locker.acquire_lock(LOCK_NAME, timeout=timeout)
    t = time.monotonic()
    if not ok:
        history.record("acquire_failed", t, t0=t0, code=lock_id)
        if lock_id != 0:  # not connected: no busy loop while failing over
            threading.Event().wait(POLL)
        return
    try:
        token = locker.fencing_token(lock_id)
    except KeyError:  # lost between the grant and this line
        history.record("acquired", t, t0=t0, lock=lock_id, token=None)
        history.record("released", lock=lock_id, result=list(locker.release_lock(lock_id)))
        return
    history.record("acquired", t, t0=t0, lock=lock_id, token=token)
    read_ok, value = register.read(token, history.client)
    history.record("read", lock=lock_id, token=token, accepted=read_ok, value=value)
    t_check = time.monotonic()  # taken before the check: the lock was believed held at least then
    if locker.node.holds(lock_id):
        history.record("valid", t_check, lock=lock_id)
    else:
        history.record("invalid", t_check, lock=lock_id)
    if read_ok:  # a refused read means a newer token has read: the write would be refused as well
        accepted = register.write(token, history.client, value, value + 1)
        history.record("write", lock=lock_id, token=token, accepted=accepted, read=value)
    history.record("released", lock=lock_id, result=list(locker.release_lock(lock_id)))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.worker")
    parser.add_argument("role", choices=["candidate", "client"])
    parser.add_argument("--name", required=True)
    parser.add_argument("--server-file", required=True)
    parser.add_argument("--stop-file", required=True)
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--connect-timeout", type=float, default=20.0)
    parser.add_argument("--listen-port", type=int, default=0)
    parser.add_argument("--listen-address", default="127.0.0.1")
    parser.add_argument("--advertise-port", type=int, default=0)
    parser.add_argument("--history", default="")
    parser.add_argument("--register", default="")
    parser.add_argument("--acquire-timeout", type=float, default=3.0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    candidate(args) if args.role == "candidate" else client(args)


if __name__ == "__main__":
    main()
