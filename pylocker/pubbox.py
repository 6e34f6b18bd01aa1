"""A connection's outgoing publications: queued by any thread, batched onto the wire as the window allows.

``publish_message`` calls return once their packed items are queued here; the thread
that holds the connection's socket takes them in batches (``take_batches``) while the
server's window (``ClientCore.can_publish``) has room. The queue is bounded in entries
and bytes: a publisher that outruns its receivers waits in ``put`` for room, which is
how a slow receiver slows its publishers down instead of losing their messages.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterator
from typing import Callable, Final, cast

from .errors import NotConnected
from .flow import BATCH_BYTES, BATCH_ITEMS, PUBLISH_WAIT

MAX_PENDING: Final = 100_000  # queued publish calls before put() waits for the window
MAX_PENDING_BYTES: Final = 16 * 2**20  # ... or queued bytes of publications


class _Publication:
    """Packed publications waiting to leave; ``key`` groups those for the same receivers, alike lossy."""

    __slots__ = ("items", "key", "lossy", "receivers")

    def __init__(self, key: object, receivers: list[str] | None, items: bytes | list[bytes], lossy: bool) -> None:
        self.key = key
        self.receivers = receivers
        self.items = items
        self.lossy = lossy


class Batch:
    """Consecutive publications to the same receivers, alike lossy, joined for one Publish frame."""

    __slots__ = ("items", "lossy", "receivers", "size")

    def __init__(self, receivers: list[str] | None, lossy: bool, items: list[bytes], size: int) -> None:
        self.receivers = receivers
        self.lossy = lossy
        self.items = items
        self.size = size


class PublicationQueue:
    """Bounded FIFO of packed publications; ``put`` from any thread, ``take_batches`` by the socket's holder."""

    def __init__(self) -> None:
        self._queue: collections.deque[_Publication] = collections.deque()
        self._lock = threading.Lock()  # guards the byte count (the deque is thread-safe itself)
        self.pending_bytes = 0
        self._room = threading.Event()  # set while there is room (or the connection failed)
        self._room.set()
        self._room_hooks: list[Callable[[], None]] = []  # publishers waiting for room without a thread

    def __len__(self) -> int:
        return len(self._queue)

    def put(self, receivers: list[str] | None, items: bytes | list[bytes], lossy: bool,
            check_usable: Callable[[], None], wake: Callable[[], None]) -> None:
        """Queue packed items (one, or a list); waits while the queue is full.

        ``check_usable`` raises when the connection failed; ``wake`` asks the socket's holder to send.
        """
        while len(self._queue) > MAX_PENDING or self.pending_bytes > MAX_PENDING_BYTES:
            self._room.clear()
            if len(self._queue) <= MAX_PENDING and self.pending_bytes <= MAX_PENDING_BYTES:
                break
            check_usable()  # failed since: fail() set the event before we cleared it
            wake()
            if not self._room.wait(PUBLISH_WAIT):
                raise NotConnected(f"receivers have taken no publication for {PUBLISH_WAIT:.0f} s "
                                   "(frozen, and still within their lease)")
            check_usable()
        key = None if receivers is None else receivers[0] if len(receivers) == 1 else tuple(receivers)
        size = len(items) if isinstance(items, bytes) else sum(map(len, items))
        with self._lock:
            self.pending_bytes += size
        self._queue.append(_Publication((key, lossy), receivers, items, lossy))

    def take_batches(self, may_send: Callable[[], bool]) -> Iterator[Batch]:
        """Batches of at most BATCH_ITEMS items or about BATCH_BYTES bytes, while ``may_send()``."""
        queue = self._queue
        while queue and may_send():
            first = queue[0]
            batch: list[bytes] = []
            size = 0
            while queue and queue[0].key == first.key and len(batch) < BATCH_ITEMS and size < BATCH_BYTES:
                entry = queue[0]
                queued = entry.items
                if type(queued) is bytes:
                    batch.append(queued)
                    size += len(queued)
                    queue.popleft()
                    continue
                many = cast("list[bytes]", queued)
                room = BATCH_ITEMS - len(batch)
                taken, rest = many[:room], many[room:]
                batch.extend(taken)
                size += sum(map(len, taken))
                if rest:
                    entry.items = rest
                    break
                queue.popleft()
            with self._lock:
                self.pending_bytes -= size
            yield Batch(first.receivers, first.lossy, batch, size)

    def note_room(self) -> None:
        """Let waiting publishers go on when the queue has room again (after sending)."""
        if len(self._queue) <= MAX_PENDING and self.pending_bytes <= MAX_PENDING_BYTES:
            self._room.set()
            if self._room_hooks:
                self._tell_room()

    def fail(self) -> None:
        """The connection failed: a publisher waiting for room hears of it at once."""
        self._room.set()
        self._tell_room()

    def room(self, hook: Callable[[], None]) -> bool:
        """Whether ``put`` would not wait now; if it would, ``hook()`` is called once there is room
        (or the connection failed), on the thread that sent. ``hook`` must only schedule work."""
        with self._lock:
            if len(self._queue) <= MAX_PENDING and self.pending_bytes <= MAX_PENDING_BYTES:
                return True
            self._room_hooks.append(hook)
        if len(self._queue) <= MAX_PENDING and self.pending_bytes <= MAX_PENDING_BYTES:
            self._tell_room()  # room came meanwhile, and note_room may have looked before the hook was in
        return False

    def _tell_room(self) -> None:
        with self._lock:
            hooks, self._room_hooks = self._room_hooks, []
        for hook in hooks:
            hook()
