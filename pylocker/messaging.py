"""The message half of ServerLocker: publish, receive, wait, call back.

A mixin so that ServerLocker keeps the seed's one-class surface: publishing packs
and checks here, then hands the items to the locker node; receiving reads the
node's inbox.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Callable

from . import protocol
from .errors import NotConnected, NotStarted, PylockerError
from .items import encode_item, new_packer, pack_payload
from .mailbox import FLAG_REPLACE, FLAG_UNIQUE
from .validation import check_bool, check_message, check_number, code_for
from .validation import receivers as parse_receivers

if TYPE_CHECKING:
    from .node import LockerNode

PUBLISH_CODES: dict[type[PylockerError], int] = {NotConnected: 1, NotStarted: 2}
MAX_ITEM = protocol.MAX_FRAME // 2  # bytes in one packed publication


class MessagingMixin:
    """publish_message and friends; see ServerLocker."""

    _unique_name: str
    _name: str
    # Lossy publications: a receiver that lags misses them (counted) instead of slowing the
    # publisher; for telemetry that prefers freshness. Per call: ``publish_message(lossy=)``.
    lossy_messages: bool = False

    @property
    def node(self) -> LockerNode:
        raise NotImplementedError

    def _init_messaging(self) -> None:
        self._publication_ids = itertools.count(1)
        self._publication_prefix = self._unique_name[:12] + "-"
        self._packers = threading.local()

    @property
    def messages(self) -> list[dict[str, Any]]:
        """get list of received published messages (publication dictionaries, oldest first)"""
        return self.node.inbox.all()

    @property
    def dropped_messages(self) -> int:
        """Publications this locker missed (it fell behind) or evicted (mailbox full)."""
        node = self.node
        link = node.link
        return (link.dropped_publications if link is not None else 0) + node.inbox.dropped
    def publish_message(self, message: str, receivers: Iterable[str] | None = None,
                        timeout: float | None = None, toSelf: bool = True, unique: bool = False,
                        replace: bool = True, *, payload: Any = None, lossy: bool | None = None) -> tuple[bool, Any]:
        """Publish a message to connected lockers: (True, publicationId) or (False, 1|2|message).

        receivers: unique names (None: every connected locker); unknown names are
        ignored. timeout: seconds the message lives in each receiver's mailbox.
        toSelf: also deliver to this locker. unique: a receiver keeps one message of
        this text; replace: a newer unique one replaces the older (else is dropped).
        payload: any msgpack-able value carried with the message.
        lossy: None for the locker's ``lossy_messages``; True: receivers that lag miss it.
        Nothing is lost otherwise: the call waits while receivers lag (within their lease).
        1: connection to the serving locker lost; 2: neither a client nor a server.
        """
        # This is the message hot path: cheap exact-type checks first, explanations after.
        check_message(message)
        targets, flags = self._publication_options(receivers, timeout, toSelf, unique, replace)
        publication_id = f"{self._publication_prefix}{next(self._publication_ids):x}"
        sent_at = time.time()
        packer = self._packer()
        packed = None if payload is None else pack_payload(payload, packer)
        item = encode_item(message, packed, timeout, flags, publication_id, sent_at, packer)
        if len(item) > MAX_ITEM:
            raise ValueError(f"publication is {len(item)} bytes; at most {MAX_ITEM}")
        failure = self._send_publications(targets, item, lossy)
        if failure is not None:
            return False, failure
        if toSelf:
            self.node.inbox.deliver(self._unique_name, self._name,
                                    [[message, packed, timeout, flags, publication_id, sent_at]])
        return True, publication_id

    def publish_messages(self, messages: Iterable[str], receivers: Iterable[str] | None = None,
                         timeout: float | None = None, toSelf: bool = True, unique: bool = False,
                         replace: bool = True, *, payloads: Iterable[Any] | None = None,
                         lossy: bool | None = None) -> tuple[bool, Any]:
        """Publish many messages at once: (True, [publicationId, ...]) or (False, 1|2|message).

        Same options as ``publish_message``, applied to every message; ``payloads``,
        if given, pairs one payload with each message. Much cheaper per message than
        calling ``publish_message`` in a loop.
        """
        texts = list(messages)
        for message in texts:
            check_message(message)
        values = [None] * len(texts) if payloads is None else list(payloads)
        if len(values) != len(texts):
            raise ValueError(f"{len(values)} payloads for {len(texts)} messages")
        targets, flags = self._publication_options(receivers, timeout, toSelf, unique, replace)
        sent_at = time.time()
        pack, prefix, ids = self._packer().pack, self._publication_prefix, self._publication_ids
        try:
            raw = [[message, None if payload is None else pack(payload), timeout, flags, f"{prefix}{next(ids):x}",
                    sent_at] for message, payload in zip(texts, values)]
            items = [pack(entry) for entry in raw]
        except (TypeError, ValueError, OverflowError) as exc:
            self._packers.packer = new_packer()  # a failed pack may leave bytes behind
            raise TypeError(f"payload cannot be sent: {exc}") from None
        if any(len(item) > MAX_ITEM for item in items):
            raise ValueError(f"a publication is over {MAX_ITEM} bytes")
        if items:
            failure = self._send_publications(targets, items, lossy)
            if failure is not None:
                return False, failure
        if toSelf and raw:
            self.node.inbox.deliver(self._unique_name, self._name, raw)
        return True, [entry[4] for entry in raw]

    def _publication_options(self, receivers: Any, timeout: Any, toSelf: Any, unique: Any,
                             replace: Any) -> tuple[list[str] | None, int]:
        targets = None if receivers is None else parse_receivers(receivers)
        if timeout is not None:
            check_number(timeout, "timeout")
        if type(toSelf) is not bool or type(unique) is not bool or type(replace) is not bool:
            for value, argument in ((toSelf, "toSelf"), (unique, "unique"), (replace, "replace")):
                check_bool(value, argument)
        return targets, (FLAG_UNIQUE if unique else 0) | (FLAG_REPLACE if replace else 0)

    def _packer(self) -> Any:
        packer = getattr(self._packers, "packer", None)
        if packer is None:
            # One reusable Packer per thread: packb() builds a new one per call, at twice the cost.
            packer = self._packers.packer = new_packer()
        return packer

    def _send_publications(self, targets: list[str] | None, items: bytes | list[bytes],
                           lossy: bool | None) -> int | str | None:
        """Hand packed publications to the lock service; a seed code on failure."""
        try:
            self.node.publish(targets, items if isinstance(items, list) else [items],
                              self.lossy_messages if lossy is None else lossy)
        except PylockerError as exc:
            return code_for(exc, PUBLISH_CODES)
        return None

    def publish(self, *args: Any, **kwargs: Any) -> tuple[bool, Any]:
        """alias to publish_message"""
        return self.publish_message(*args, **kwargs)

    def has_message(self, message: str) -> bool:
        """Whether a message exists in the list of received published messages."""
        return self.node.inbox.has(message)

    def get_message(self, message: str) -> dict[str, Any] | None:
        """The (oldest) publication dictionary of ``message``, or None."""
        return self.node.inbox.get(message)

    def pop_message(self, message: str) -> dict[str, Any] | None:
        """Like get_message, and the publication leaves the mailbox."""
        return self.node.inbox.get(message, pop=True)

    def remove_published_message(self, message: str, senders: Iterable[str] | None = None) -> int:
        """Remove received publications of ``message`` (only from ``senders``' unique names, if given)."""
        wanted = None if senders is None else parse_receivers(senders)
        return self.node.inbox.remove(message, wanted)

    def remove_message(self, *args: Any, **kwargs: Any) -> int:
        """alias to remove_published_message"""
        return self.remove_published_message(*args, **kwargs)

    def wait_message(self, message: str | None = None, timeout: float | None = None,
                     pop: bool = False) -> dict[str, Any] | None:
        """Block until a publication of ``message`` (None: any) is in the mailbox; None on timeout.

        Woken by arrival, not by polling. With ``pop`` the publication leaves the mailbox.
        """
        if timeout is not None:
            check_number(timeout, "timeout")
        return self.node.inbox.wait(message, timeout, pop)

    def on_message(self, callback: Callable[[dict[str, Any]], None], message: str | None = None) -> None:
        """Call ``callback(publication)`` for every arriving publication (of ``message``, if given).

        Callbacks run one at a time on this locker's callback thread.
        """
        if not callable(callback):
            raise TypeError("callback must be callable")
        self.node.inbox.on_message(callback, message)
