"""How a legacy locker waits: bounded takes of the in-process and kernel locks, wake-up sockets."""

from __future__ import annotations

import fcntl
import logging
import math
import select
import socket
import sys
import threading
import time
from typing import Final

logger = logging.getLogger("pylocker.legacy.locker")

WAKEUPS: Final = sys.platform.startswith("linux")
WAKE_PREFIX: Final = "\0pylocker-legacy/"
GUARD_CAP: Final = 1e-3  # longest sleep while another locker is inside its record update


def take(lock: threading.Lock, deadline: float | None) -> bool:
    if deadline is None or deadline == math.inf:
        return lock.acquire()
    remaining = deadline - time.monotonic()
    return lock.acquire(timeout=min(max(remaining, 0.0), threading.TIMEOUT_MAX))


def flock(fd: int, deadline: float | None) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pass
    else:
        return True
    if deadline is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return True
    # Another locker is inside its record update, which takes microseconds: sleep briefly rather
    # than block, so that a stopped process cannot make us overrun our timeout.
    delay = 20e-6
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, GUARD_CAP)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue
        return True


class Wait:
    """State of one acquire call across its polls."""

    __slots__ = ("bind_tried", "deadline", "enqueued", "head", "sock")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.enqueued = False
        self.head = False
        self.sock: socket.socket | None = None
        self.bind_tried = not WAKEUPS


def bind_wake_socket(token: str) -> socket.socket | None:
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    except OSError as err:
        logger.debug("no wake-up socket (%s): polling instead", err)
        return None
    try:
        sock.setblocking(False)
        sock.bind(WAKE_PREFIX + token)
    except OSError as err:
        sock.close()
        logger.debug("no wake-up socket (%s): polling instead", err)
        return None
    return sock


def sleep_on_socket(sock: socket.socket, timeout: float) -> None:
    readable, _, _ = select.select([sock], [], [], max(timeout, 0.0))
    while readable:
        try:
            sock.recv(64)
        except BlockingIOError:
            break
