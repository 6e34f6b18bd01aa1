"""Publications on the wire: one packed item per message, joined into batches."""

from __future__ import annotations

from typing import Any

import msgpack

from .errors import RemoteProtocolError


# An item is [message, payload, timeout, flags, publication_id, time], the payload
# itself packed (bin) or nil: a receiver stores it as it came and decodes it only when
# read, so its mailbox costs what the wire carried (a megabyte of empty maps would
# otherwise be 70 MiB of dicts) and messages nobody reads are never decoded. Items
# are packed one by one by the publishing thread (so an unpackable payload fails
# there, in the caller's hands) and joined into one msgpack array per batch.
def new_packer() -> msgpack.Packer:
    """A Packer for ``encode_item``; not thread-safe: one per thread."""
    return msgpack.Packer(use_bin_type=True)


def encode_item(message: str, payload: Any, timeout: float | None, flags: int, publication_id: str,
                time: float, packer: msgpack.Packer | None = None) -> bytes:
    """One packed publication (``payload`` packed already, or None); see ``pack_payload``."""
    try:
        if packer is None:
            return msgpack.packb([message, payload, timeout, flags, publication_id, time], use_bin_type=True)
        return packer.pack([message, payload, timeout, flags, publication_id, time])
    except (TypeError, ValueError, OverflowError) as exc:
        if packer is not None:
            packer.reset()  # a failed pack may leave bytes behind in the packer's buffer
        raise TypeError(f"payload cannot be sent: {exc}") from None


def pack_payload(payload: Any, packer: msgpack.Packer | None = None) -> bytes | None:
    """A payload as it travels (None stays None); raises TypeError if msgpack cannot carry it."""
    if payload is None:
        return None
    try:
        return msgpack.packb(payload, use_bin_type=True) if packer is None else packer.pack(payload)
    except (TypeError, ValueError, OverflowError) as exc:
        if packer is not None:
            packer.reset()  # a failed pack may leave bytes behind in the packer's buffer
        raise TypeError(f"payload cannot be sent: {exc}") from None


def unpack_payload(packed: bytes | None) -> Any:
    """A received payload, decoded; raises RemoteProtocolError if it does not decode."""
    if packed is None:
        return None
    try:
        return msgpack.unpackb(packed, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # noqa: BLE001  msgpack raises many unrelated types for bad input
        raise RemoteProtocolError(f"undecodable payload: {exc.__class__.__name__}") from None


def join_items(items: list[bytes]) -> bytes:
    """A msgpack array made of already packed items."""
    count = len(items)
    if count < 16:
        header = bytes((0x90 | count,))
    elif count < 65536:
        header = b"\xdc" + count.to_bytes(2, "big")
    else:
        header = b"\xdd" + count.to_bytes(4, "big")
    return header + b"".join(items)


def decode_items(blob: bytes, count: int) -> list[Any]:
    """The items of a batch, unchecked one by one (the receiver checks each as it stores it)."""
    try:
        items = msgpack.unpackb(blob, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # noqa: BLE001  msgpack raises many unrelated types for bad input
        raise RemoteProtocolError(f"undecodable publication batch: {exc.__class__.__name__}") from None
    if type(items) is not list or len(items) != count:
        raise RemoteProtocolError("publication batch does not hold its announced count")
    return items
