"""A locker's received publications: the mailbox, blocking waits and callbacks (thread-safe).

Drivers hand raw publication items to ``deliver`` from their I/O threads; user
threads read, wait and pop. Callbacks run on the locker's callback thread (the
``Dispatcher``), never on an I/O thread.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from .dispatch import Dispatcher
from .errors import PylockerError
from .items import decode_items
from .mailbox import DEFAULT_CAPACITY_BYTES, Mailbox

log = logging.getLogger(__name__)

MessageCallback = Callable[[dict[str, Any]], None]
# Told on the delivering thread of every batch stored (for asyncio, without a thread per waiter):
# must only schedule work. Gets the publications that arrived, or [] when nobody asked for them.
ArrivalListener = Callable[[list[dict[str, Any]]], None]


class Inbox:
    """The mailbox of one locker, with a condition for waiters and a list of callbacks."""

    def __init__(self, capacity: int, dispatcher: Dispatcher, capacity_bytes: int = DEFAULT_CAPACITY_BYTES) -> None:
        self.mailbox = Mailbox(capacity, capacity_bytes)
        self._dispatcher = dispatcher
        self._mail = threading.Condition()
        self._callbacks: list[tuple[MessageCallback, str | None]] = []
        self._listeners: dict[ArrivalListener, bool] = {}  # listener -> wants the publications
        self._listeners_want = False  # some listener wants them

    @property
    def dropped(self) -> int:
        return self.mailbox.dropped

    def deliver(self, sender: str, sender_name: str, items: list[Any]) -> int:
        """Store publications (raw items, checked one by one); returns how many were malformed."""
        with self._mail:
            listeners = list(self._listeners.items()) if self._listeners else None
            malformed, arrived = self.mailbox.store(sender, sender_name, items, time.monotonic(),
                                                    bool(self._callbacks) or self._listeners_want)
            self._mail.notify_all()
        if malformed:
            log.warning("%d malformed publications from %s dropped", malformed, sender)
        if listeners:
            dicts = [publication.as_dict() for publication in arrived]
            for listener, with_publications in listeners:
                listener(dicts if with_publications else [])
        for publication in arrived:
            for callback, wanted in self._callbacks:
                if wanted is None or wanted == publication.message:
                    self._dispatcher.submit(callback, publication.as_dict())
        return malformed

    def deliver_packed(self, sender: str, sender_name: str, count: int, items: bytes) -> None:
        """Store a packed batch (as the serving locker receives its share of a publication)."""
        try:
            decoded = decode_items(items, count)
        except PylockerError as exc:
            log.warning("bad publication batch from %s: %s", sender, exc)
            return
        self.deliver(sender, sender_name, decoded)

    def on_message(self, callback: MessageCallback, message: str | None) -> None:
        self._callbacks.append((callback, message))

    def listen(self, listener: ArrivalListener, publications: bool = False) -> None:
        """Call ``listener`` after every delivery (with the publications that arrived, if asked)."""
        with self._mail:
            self._listeners[listener] = publications
            self._listeners_want = any(self._listeners.values())

    def unlisten(self, listener: ArrivalListener) -> None:
        with self._mail:
            self._listeners.pop(listener, None)
            self._listeners_want = any(self._listeners.values())

    def all(self) -> list[dict[str, Any]]:
        with self._mail:
            self.mailbox.expire(time.monotonic())
            return [publication.as_dict() for publication in self.mailbox.all()]

    def has(self, message: str) -> bool:
        with self._mail:
            self.mailbox.expire(time.monotonic())
            return message in self.mailbox

    def get(self, message: str, pop: bool = False) -> dict[str, Any] | None:
        with self._mail:
            self.mailbox.expire(time.monotonic())
            publication = self.mailbox.pop(message) if pop else self.mailbox.find(message)
        return None if publication is None else publication.as_dict()

    def remove(self, message: str, senders: list[str] | None) -> int:
        with self._mail:
            return self.mailbox.remove(message, senders)

    def wait(self, message: str | None, timeout: float | None, pop: bool) -> dict[str, Any] | None:
        """Block until a publication of ``message`` (None: any) is here; None on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._mail:
            while True:
                now = time.monotonic()
                found = self._find(message, pop, now)
                if found is not None:
                    return found
                remaining = None if deadline is None else deadline - now
                if remaining is not None and remaining <= 0:
                    return None
                self._mail.wait(remaining)

    def find(self, message: str | None, pop: bool) -> dict[str, Any] | None:
        """The oldest publication of ``message`` (None: any) here now, or None; never waits."""
        with self._mail:
            return self._find(message, pop, time.monotonic())

    def _find(self, message: str | None, pop: bool, now: float) -> dict[str, Any] | None:
        self.mailbox.expire(now)
        found = self.mailbox.oldest() if message is None else self.mailbox.find(message)
        if found is None:
            return None
        if pop:
            self.mailbox.remove_publication(found)
        return found.as_dict()
