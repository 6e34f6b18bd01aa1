"""The receiver's store of published messages: pure (no threads, no clock of its own).

Rules, as pylocker 3.1 documented them:

* A publication that arrives with ``unique`` set may exist only once per message
  text in this mailbox: with ``replace`` it replaces the one already there, without
  it the newcomer is discarded.
* A publication with a ``timeout`` leaves the mailbox that many seconds after it
  arrived (``now`` is passed in; ``expire`` applies what is due).
* The mailbox holds at most ``capacity`` publications and ``capacity_bytes`` bytes
  (payloads as they came off the wire, texts, and a fixed cost per publication):
  past either the oldest are evicted and counted in ``dropped``, so a receiver that
  never reads stays bounded however small or large the publications.
* Payloads stay packed until read: a publication costs what the wire carried.
"""

from __future__ import annotations

import heapq
import logging
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, Final, cast

from .errors import RemoteProtocolError
from .items import unpack_payload
from .protocol import MAX_MESSAGE, valid_seconds

FLAG_UNIQUE = 1
FLAG_REPLACE = 2
# What a stored publication costs beyond its texts and payload bytes: the object, its
# two index entries, the strings' headers (measured with tracemalloc: ~330 bytes).
PUBLICATION_OVERHEAD: Final = 400
DEFAULT_CAPACITY_BYTES: Final = 128 * 2**20

log = logging.getLogger(__name__)


class Publication:
    """One received message; ``as_dict`` is the seed's publication dictionary."""

    __slots__ = (
        "expires_at",
        "flags",
        "message",
        "packed",
        "publication_id",
        "sender",
        "sender_name",
        "time",
        "timeout",
    )

    def __init__(
        self,
        message: str,
        packed: bytes | None,
        sender: str,
        sender_name: str,
        publication_id: str,
        time: float,
        timeout: float | None,
        flags: int,
        expires_at: float | None,
    ) -> None:
        self.message = message
        self.packed = packed  # the payload as it travelled (None: no payload)
        self.sender = sender
        self.sender_name = sender_name
        self.publication_id = publication_id
        self.time = time
        self.timeout = timeout
        self.flags = flags
        self.expires_at = expires_at

    @property
    def payload(self) -> Any:
        """The payload, decoded at each read (None, logged, if the sender's bytes do not decode)."""
        try:
            return unpack_payload(self.packed)
        except RemoteProtocolError as exc:
            log.warning("publication %s from %s: %s", self.publication_id, self.sender, exc)
            return None

    @property
    def size(self) -> int:
        """What this publication costs a mailbox, in bytes (see PUBLICATION_OVERHEAD)."""
        packed = self.packed
        return (PUBLICATION_OVERHEAD + len(self.message) + len(self.publication_id)
                + (0 if packed is None else len(packed)))

    def as_dict(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "payload": self.payload,
            "sender": self.sender,
            "senderName": self.sender_name,
            "publicationId": self.publication_id,
            "time": self.time,
            "timeout": self.timeout,
            "unique": bool(self.flags & FLAG_UNIQUE),
            "replace": bool(self.flags & FLAG_REPLACE),
        }


class Mailbox:
    """Publications in arrival order, indexed by message text."""

    def __init__(self, capacity: int = 100_000, capacity_bytes: int = DEFAULT_CAPACITY_BYTES) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        if capacity_bytes < 1:
            raise ValueError("capacity_bytes must be at least 1")
        self.capacity = capacity
        self.capacity_bytes = capacity_bytes
        self.bytes = 0  # what the publications held cost (Publication.size)
        self.dropped = 0
        self.received = 0
        # OrderedDicts, not dicts: the oldest entry of a dict is found by skipping every
        # deleted one before it, so evicting oldest-first from a full dict costs O(n) each time
        # (42 µs at 100,000 entries, against 0.6 µs): a full mailbox stalled its I/O thread.
        self._all: OrderedDict[str, Publication] = OrderedDict()
        self._by_message: dict[str, OrderedDict[str, Publication]] = {}
        self._expiry: list[tuple[float, str]] = []

    def add(self, publication: Publication) -> bool:
        """Store ``publication``; False when ``unique`` without ``replace`` discarded it."""
        self.received += 1
        same = self._by_message.get(publication.message)
        if same and publication.flags & FLAG_UNIQUE:
            if not publication.flags & FLAG_REPLACE:
                return False
            for old in list(same.values()):
                self._remove(old)
        if publication.publication_id in self._all:
            self._remove(self._all[publication.publication_id])
        if publication.size > self.capacity_bytes:
            self.dropped += 1  # it would not fit even alone
            return False
        self._make_room(publication.size)
        self._all[publication.publication_id] = publication
        self.bytes += publication.size
        same = self._by_message.get(publication.message)  # the removals above may have dropped it
        if same is None:
            self._by_message[publication.message] = same = OrderedDict()
        same[publication.publication_id] = publication
        if publication.expires_at is not None:
            heapq.heappush(self._expiry, (publication.expires_at, publication.publication_id))
        return True

    def store(
        self, sender: str, sender_name: str, items: list[Any], now: float, collect: bool = False
    ) -> tuple[int, list[Publication]]:
        """Check and add raw wire items ``[message, payload, timeout, flags, id, time]``.

        Returns how many were malformed (and skipped) and, with ``collect``, the
        publications that were added. This loop is the receiving hot path.
        """
        if self._expiry:
            self.expire(now)
        malformed = added = 0
        arrived: list[Publication] = []
        limit = MAX_MESSAGE
        add, everything, by_message, capacity = self.add, self._all, self._by_message, self.capacity
        capacity_bytes = self.capacity_bytes
        for item in items:
            if type(item) is not list or len(item) != 6:
                malformed += 1
                continue
            message, packed, timeout, flags, publication_id, sent_at = item
            if (
                type(message) is not str
                or len(message) > limit
                or (packed is not None and type(packed) is not bytes)
                or type(publication_id) is not str
                or type(flags) is not int
                or type(sent_at) is not float
                or (timeout is not None and not valid_seconds(timeout))
            ):
                malformed += 1
                continue
            publication = Publication(
                message,
                packed,
                sender,
                sender_name,
                publication_id,
                sent_at,
                timeout,
                flags,
                None if timeout is None else now + timeout,
            )
            if (
                timeout is None
                and not flags & FLAG_UNIQUE
                and publication_id not in everything
                and len(everything) < capacity
                and self.bytes + (size := publication.size) <= capacity_bytes
            ):
                # The common case, inlined: what add() does when no rule applies.
                self.bytes += size
                everything[publication_id] = publication
                same = by_message.get(message)
                if same is None:
                    by_message[message] = same = OrderedDict()
                same[publication_id] = publication
                added += 1
            elif not add(publication):
                continue
            if collect:
                arrived.append(publication)
        self.received += added
        return malformed, arrived

    def expire(self, now: float) -> int:
        """Remove every publication whose timeout is due; returns how many."""
        removed = 0
        heap = self._expiry
        while heap and heap[0][0] <= now:
            _, publication_id = heapq.heappop(heap)
            publication = self._all.get(publication_id)
            if publication is not None and publication.expires_at is not None and publication.expires_at <= now:
                self._remove(publication)
                removed += 1
        if len(heap) > 1024 and len(heap) > 4 * len(self._all):
            self._expiry = [e for e in heap if e[1] in self._all]
            heapq.heapify(self._expiry)
        return removed

    def next_expiry(self) -> float | None:
        return self._expiry[0][0] if self._expiry else None

    def find(self, message: str) -> Publication | None:
        """The oldest publication of ``message``, if any."""
        same = self._by_message.get(message)
        return next(iter(same.values())) if same else None

    def pop(self, message: str) -> Publication | None:
        publication = self.find(message)
        if publication is not None:
            self._remove(publication)
        return publication

    def remove_publication(self, publication: Publication) -> None:
        if self._all.get(publication.publication_id) is publication:
            self._remove(publication)

    def remove(self, message: str, senders: Iterable[str] | None = None) -> int:
        """Remove the publications of ``message`` (only from ``senders``, if given)."""
        same = self._by_message.get(message)
        if not same:
            return 0
        wanted = None if senders is None else set(senders)
        doomed = [p for p in same.values() if wanted is None or p.sender in wanted]
        for publication in doomed:
            self._remove(publication)
        return len(doomed)

    def all(self) -> list[Publication]:
        return list(self._all.values())

    def oldest(self) -> Publication | None:
        """The publication that arrived first, in O(1)."""
        return next(iter(self._all.values()), None)

    def __len__(self) -> int:
        return len(self._all)

    def __contains__(self, message: object) -> bool:
        # A message that is not a str is simply not found (an unhashable one raises TypeError, as a dict does).
        return bool(self._by_message.get(cast(str, message)))

    def _make_room(self, size: int) -> None:
        """Evict the oldest publications until one of ``size`` bytes fits (counted as dropped)."""
        everything = self._all
        while everything and (len(everything) >= self.capacity or self.bytes + size > self.capacity_bytes):
            self._remove(next(iter(everything.values())))
            self.dropped += 1

    def _remove(self, publication: Publication) -> None:
        self.bytes -= publication.size
        del self._all[publication.publication_id]
        same = self._by_message[publication.message]
        del same[publication.publication_id]
        if not same:
            del self._by_message[publication.message]
