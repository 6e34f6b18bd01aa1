"""pylocker's roles: the serving locker, a publisher and a receiver (all through one server file).

The receiver consumes through the public API (``pop_message``, and ``wait_message`` when
its mailbox is empty; a receiver ends after ``QUIET`` seconds without a message),
and raises ``mailbox_size`` and ``mailbox_bytes`` above the whole stream so that a
consumer that lags behind its I/O thread never evicts (flow credit is granted for what
is stored, not for what is read).
"""

from __future__ import annotations

import importlib
import sys
import time
from typing import Any

from .common import BULK, MESSAGE, PASSWORD, PAYLOAD
from .workers import START_WAIT, Tally, emit, publisher_result, wait_go, wait_stop

MAILBOX_SLACK = 1000
BYTES_PER_MESSAGE = 1024  # ~400 bytes of overhead + 100 of payload + id, rounded up generously


def _server_locker(spec: dict[str, Any]) -> Any:
    """``pylocker.ServerLocker`` from the source tree the run measures (``--code``), ahead of any installed one."""
    sys.path.insert(0, spec["code"])
    return importlib.import_module("pylocker").ServerLocker


def _server(spec: dict[str, Any]) -> None:
    ServerLocker = _server_locker(spec)
    locker = ServerLocker(PASSWORD, serverFile=spec["server_file"], port=0)
    deadline = time.monotonic() + 30
    while not locker.isServer and time.monotonic() < deadline:
        time.sleep(0.05)
    emit({"ready": True, "port": locker.port, "serving": bool(locker.isServer)})
    wait_stop()
    emit({"dropped": locker.dropped_messages})
    locker.stop()


def _receiver(spec: dict[str, Any]) -> None:
    ServerLocker = _server_locker(spec)
    count = spec["count"]
    size = count + MAILBOX_SLACK
    locker = ServerLocker(PASSWORD, serverFile=spec["server_file"], allowServing=False,
                          mailbox_size=size, mailbox_bytes=size * BYTES_PER_MESSAGE)
    emit({"ready": True, "name": locker.uniqueName})
    tally = Tally(count)
    # Consume through the public API, cheapest path first: pop_message costs about half
    # of wait_message(pop=True) per message; wait (without pop) only when the mailbox is empty.
    pop, wait, monotonic = locker.pop_message, locker.wait_message, time.monotonic
    if wait(MESSAGE, START_WAIT) is not None:
        received, last, quiet = 0, 0.0, tally.quiet
        while received < count:
            if pop(MESSAGE) is None:
                if wait(MESSAGE, quiet) is None:
                    break
                continue
            received += 1
            last = monotonic()
            if received == 1:
                tally.received = 1
                tally.start()
        tally.received, tally.last = received, last
    emit(tally.result(dropped=locker.dropped_messages, left_in_mailbox=len(locker.messages)))
    wait_stop()
    locker.stop()


def _publisher(spec: dict[str, Any]) -> None:
    ServerLocker = _server_locker(spec)
    count, bulk = spec["count"], spec["mode"] == "bulk"
    receivers = spec["receivers"]  # None: broadcast
    locker = ServerLocker(PASSWORD, serverFile=spec["server_file"], allowServing=False, receive_messages=False)
    emit({"ready": True})
    wait_go()
    failures, sent = 0, 0
    started = time.monotonic()
    if bulk:
        texts, payloads = [MESSAGE] * BULK, [PAYLOAD] * BULK
        publish_many = locker.publish_messages
        while sent < count:
            n = min(BULK, count - sent)
            ok, _ = publish_many(texts[:n], receivers, None, False, payloads=payloads[:n])
            failures += not ok
            sent += n
    else:
        publish = locker.publish_message
        for _ in range(count):
            ok, _ = publish(MESSAGE, receivers, None, False, payload=PAYLOAD)
            failures += not ok
        sent = count
    emit(publisher_result(sent, started, failures))
    wait_stop()
    locker.stop()


ROLES = {"pylocker-server": _server, "pylocker-receiver": _receiver, "pylocker-publisher": _publisher}
