"""The lock record: what a legacy lock file holds, and its byte format.

Pure data and codec: no I/O, no clock. ``locker.py`` reads and writes the record only while it holds
the kernel lock (``flock``) on the lock file, so a record is never seen half-updated by another
locker; the header still carries the body's length and CRC-32 so that a writer killed between its
``pwrite`` and ``ftruncate`` (or in the middle of a multi-page write) leaves a record that fails to
decode instead of one that decodes to nonsense.

Format (ASCII, one entry per line)::

    PLK1 <crc32 of body, 8 hex> <body length>\\n        header
    P <salt hex> <digest hex>\\n                        the pass of the holders (only when held)
    H <token> <pid> <ctime> <host> <ts>\\n               one line per holder
    W <token> <pid> <ctime> <host> <ts> <salt> <digest>\\n   one line per waiter, in arrival order

An empty file is an empty record: nobody holds the lock and nobody waits.
"""

from __future__ import annotations

import hashlib
import hmac
import zlib
from typing import NamedTuple

__all__ = ["HEADER_LEN", "Entry", "Record", "decode", "digests_equal", "encode", "pass_digest"]

MAGIC = b"PLK1"
# The header is "PLK1 xxxxxxxx <len>\n"; its first HEADER_LEN bytes identify a record version well
# enough for the waiters' cheap change check (crc and length of the body).
HEADER_LEN = 32
SALT_BYTES = 16
_PERSON = b"pylocker-legacy"


class Entry(NamedTuple):
    """One locker instance in the record: a holder, or a waiter (then with its pass's digest)."""

    token: str
    pid: int
    ctime: float  # the process's creation time, so that a recycled pid is not taken for the holder
    host: str
    ts: float  # wall-clock time of the grant (holders) or of the last refresh (waiters)
    salt: str = ""
    digest: str = ""


class Record:
    """The lock's state: the holders' pass (salted digest), the holders and the FIFO of waiters."""

    __slots__ = ("digest", "holders", "queue", "salt")

    def __init__(
        self,
        salt: str = "",
        digest: str = "",
        holders: list[Entry] | None = None,
        queue: list[Entry] | None = None,
    ) -> None:
        self.salt = salt
        self.digest = digest
        self.holders: list[Entry] = holders if holders is not None else []
        self.queue: list[Entry] = queue if queue is not None else []

    def __repr__(self) -> str:
        return f"Record(holders={self.holders!r}, queue={self.queue!r})"

    def holder_index(self, token: str) -> int:
        for i, entry in enumerate(self.holders):
            if entry.token == token:
                return i
        return -1

    def queue_index(self, token: str) -> int:
        for i, entry in enumerate(self.queue):
            if entry.token == token:
                return i
        return -1

    def grant_head(self) -> Entry | None:
        """Hand a free lock to the first waiter, which becomes the only holder; return it."""
        if self.holders or not self.queue:
            return None
        head = self.queue.pop(0)
        self.salt, self.digest = head.salt, head.digest
        self.holders = [head._replace(salt="", digest="")]
        return head


def pass_digest(lock_pass: str, salt: str) -> str:
    """The salted digest that stands for ``lock_pass`` in a record (the pass is never stored)."""
    return hashlib.blake2b(
        lock_pass.encode("utf-8", "surrogatepass"),
        digest_size=16,
        salt=bytes.fromhex(salt),
        person=_PERSON,
    ).hexdigest()


def digests_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a, b)


def encode(record: Record) -> bytes:
    """Serialize ``record``; an empty record (no holder, no waiter) is ``b""``."""
    if not record.holders and not record.queue:
        return b""
    lines = []
    if record.holders:
        lines.append(f"P {record.salt} {record.digest}\n")
        lines.extend(f"H {e.token} {e.pid} {e.ctime!r} {e.host} {e.ts!r}\n" for e in record.holders)
    lines.extend(f"W {e.token} {e.pid} {e.ctime!r} {e.host} {e.ts!r} {e.salt} {e.digest}\n" for e in record.queue)
    body = "".join(lines).encode("ascii")
    return b"%s %08x %d\n%s" % (MAGIC, zlib.crc32(body), len(body), body)


def decode(data: bytes) -> Record:
    """Parse the bytes of a lock file; raise ``ValueError`` if they are not a whole, valid record.

    Bytes after the body's declared length are ignored: they are the tail of a longer, older record
    left by a writer that died before truncating the file.
    """
    if not data:
        return Record()
    newline = data.find(b"\n")
    header = data[:newline].split() if newline > 0 else []
    if len(header) != 3 or header[0] != MAGIC:
        raise ValueError("not a pylocker lock record")
    crc, length = int(header[1], 16), int(header[2])
    body = data[newline + 1 : newline + 1 + length]
    if len(body) != length or zlib.crc32(body) != crc:
        raise ValueError("truncated or corrupted lock record")
    record = Record()
    for line in body.decode("ascii").splitlines():
        fields = line.split()
        kind = fields[0] if fields else ""
        if kind == "P" and len(fields) == 3:
            bytes.fromhex(fields[1])
            record.salt, record.digest = fields[1], fields[2]
        elif kind == "H" and len(fields) == 6:
            record.holders.append(Entry(fields[1], int(fields[2]), float(fields[3]), fields[4], float(fields[5])))
        elif kind == "W" and len(fields) == 8:
            bytes.fromhex(fields[6])
            record.queue.append(
                Entry(
                    fields[1],
                    int(fields[2]),
                    float(fields[3]),
                    fields[4],
                    float(fields[5]),
                    fields[6],
                    fields[7],
                )
            )
        else:
            raise ValueError(f"malformed lock record line {line!r}")
    if record.holders and not record.digest:
        raise ValueError("lock record has holders but no pass")
    return record
