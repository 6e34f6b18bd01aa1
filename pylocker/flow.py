"""Credit-based flow of publications from the serving locker to its receivers: pure, no I/O.

The zguide's credit pattern, end to end:

* **Receivers grant credit.** The server sends a receiver at most ``window`` batches
  it has not credited back (a receiver credits what it has stored); the rest wait in
  that receiver's queue, in order.
* **Publishers wait for acknowledgements.** A batch is acknowledged to its publisher
  once it has left the server for every receiver it was meant for; a publisher keeps
  at most its own window of unacknowledged batches (client side), so a receiver that
  falls behind slows the publishers that feed it instead of losing what they send.
  What the server holds is bounded by the publishers' windows.
* **Lossy batches** never wait: a receiver without credit misses them (counted, and
  the receiver sees the gap), and their publisher is acknowledged at once.
* **A receiver that goes away** (goodbye, lapsed lease) takes its queue with it: the
  batches waiting there count as passed on, so its publishers go on.

Frames are built only when a batch leaves, since each carries the count of what its
receiver was sent before (``Deliver.before``), by which a receiver counts what it missed.
"""

from __future__ import annotations

from collections import deque
from typing import Final

from . import protocol as p

WINDOW: Final = 64  # batches (each at most ~64 KiB) a receiver may hold uncredited
CREDIT_EVERY: Final = WINDOW // 4  # a receiver credits its batches back this many at a time
PUBLISH_WINDOW: Final = 32  # batches a publisher may have unacknowledged (what the server holds of it)
PUBLISH_WAIT: Final = 30.0  # seconds a publisher waits for receivers before giving up the call
BATCH_ITEMS: Final = 4096  # publications per batch at most
BATCH_BYTES: Final = 64 * 1024  # ... and about this many bytes


class _Batch:
    """One publication batch on its way to several receivers."""

    __slots__ = ("count", "items", "pending", "publisher", "sender", "sender_name")

    def __init__(self, publisher: bytes, sender: str, sender_name: str, count: int, items: bytes,
                 pending: int) -> None:
        self.publisher = publisher
        self.sender = sender
        self.sender_name = sender_name
        self.count = count
        self.items = items
        self.pending = pending  # receivers it has not left for yet


class _Receiver:
    __slots__ = ("in_flight", "queue", "sent")

    def __init__(self) -> None:
        self.in_flight = 0  # batches sent and not credited back
        self.sent = 0  # publications sent (or skipped, when lossy) so far: the next ``before``
        self.queue: deque[_Batch] = deque()


class Flow:
    """Windows and queues of every receiver; acknowledgements owed to every publisher."""

    def __init__(self, window: int = WINDOW) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self.window = window
        self.dropped = 0  # lossy publications not sent for want of credit
        self._receivers: dict[bytes, _Receiver] = {}
        self._acks: dict[bytes, int] = {}  # publisher (its routing id; b"" the serving locker) -> batches
        self._sends: list[tuple[bytes, bytes]] = []

    # ---------------------------------------------------------------- receivers
    def add_receiver(self, peer: bytes) -> None:
        """``peer`` receives from now on; again (a new connection): a fresh stream and window.

        What was in flight on its previous connection went with it, credits included:
        without a fresh window it would never be sent anything again.
        """
        receiver = self._receivers.get(peer)
        if receiver is None:
            self._receivers[peer] = _Receiver()
            return
        receiver.in_flight = receiver.sent = 0
        self.credit(peer, 0)  # send what waited

    def remove_receiver(self, peer: bytes) -> None:
        """``peer`` is gone: what waited for it counts as passed on."""
        receiver = self._receivers.pop(peer, None)
        if receiver is not None:
            for batch in receiver.queue:
                self._left(batch)

    def receivers(self) -> list[bytes]:
        return list(self._receivers)

    def has_receiver(self, peer: bytes) -> bool:
        return peer in self._receivers

    def queued(self, peer: bytes) -> int:
        """Batches waiting at the server for ``peer``'s credit."""
        receiver = self._receivers.get(peer)
        return 0 if receiver is None else len(receiver.queue)

    # -------------------------------------------------------------- publishing
    def publish(self, publisher: bytes, sender: str, sender_name: str, count: int, items: bytes,
                targets: list[bytes], lossy: bool = False) -> None:
        """Pass a batch on to ``targets`` (distinct; unknown ones skipped), as their credit allows."""
        receivers = self._receivers
        chosen = [(peer, receivers[peer]) for peer in targets if peer in receivers]
        # One extra pending count while sending, so that the batch is acknowledged once, here.
        batch = _Batch(publisher, sender, sender_name, count, items, len(chosen) + 1)
        window = self.window
        for peer, receiver in chosen:
            if receiver.in_flight < window and not receiver.queue:
                self._send(peer, receiver, batch)
            elif lossy:
                receiver.sent += count  # the receiver will see the gap
                self.dropped += count
                batch.pending -= 1
            else:
                receiver.queue.append(batch)
        self._left(batch)

    def credit(self, peer: bytes, batches: int) -> None:
        """``peer`` stored ``batches`` more: send what waited for that credit."""
        receiver = self._receivers.get(peer)
        if receiver is None:
            return
        receiver.in_flight = max(0, receiver.in_flight - batches)
        queue, window = receiver.queue, self.window
        while queue and receiver.in_flight < window:
            self._send(peer, receiver, queue.popleft())

    # ------------------------------------------------------------------ output
    def take_sends(self) -> list[tuple[bytes, bytes]]:
        """Frames to send now, in order; the flow forgets them."""
        sends, self._sends = self._sends, []
        return sends

    def take_acks(self) -> dict[bytes, int]:
        """Batches to acknowledge to each publisher since the last call."""
        acks, self._acks = self._acks, {}
        return acks

    @property
    def has_output(self) -> bool:
        return bool(self._sends or self._acks)

    # --------------------------------------------------------------- internals
    def _send(self, peer: bytes, receiver: _Receiver, batch: _Batch) -> None:
        receiver.in_flight += 1
        before = receiver.sent
        receiver.sent = before + batch.count
        self._sends.append((peer, p.encode(p.Deliver(0, batch.sender, batch.sender_name, before, batch.count,
                                                     batch.items))))
        self._left(batch)

    def _left(self, batch: _Batch) -> None:
        batch.pending -= 1
        if batch.pending == 0:
            self._acks[batch.publisher] = self._acks.get(batch.publisher, 0) + 1
