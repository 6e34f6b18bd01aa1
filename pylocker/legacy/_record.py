"""The lock record: what a legacy lock file holds, and its byte format.

Pure data and codec: no I/O, no clock. ``locker.py`` reads and writes the record only while it holds
the kernel lock (``flock``) on the lock file, so no other locker sees a write in progress.

Writes cannot tear. A new record never overwrites the current one: it goes to a free slot (an
offset that is a multiple of ``SLOT`` and does not overlap the current record), and readers take the
valid record with the highest sequence number. A writer killed mid-write, or a full disk, leaves the
previous record intact and current; a record whose CRC fails is simply not a candidate.

File layout::

    offset 0      PLKS <seq> <offset> <nonce>\n (32 bytes)  a hint for waiters: "something changed"
    offset k*SLOT PLK2 <seq> <crc32 of body> <length>\n      a record (k >= 1), then its body:
    P <salt hex> <digest hex>\n                        the pass of the holders (only when held)
    H <token> <pid> <ctime> <host> <ts>\n               one line per holder
    W <token> <pid> <ctime> <host> <ts> <salt> <digest>\n   one line per waiter, in arrival order

An empty file is the empty record (nobody holds the lock and nobody waits); emptying is one
truncation. A file written by an earlier release (``PLK1 <crc> <length>`` at offset 0) is read as
its record, and replaced on the first write.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import zlib
from typing import NamedTuple

__all__ = ["HEADER_LEN", "Entry", "Record", "Stored", "decode", "digests_equal", "encode", "pass_digest",
           "read_image", "slot_for", "stamp"]

MAGIC = b"PLK2"
OLD_MAGIC = b"PLK1"
STAMP_MAGIC = b"PLKS"
SLOT = 4096
# The first HEADER_LEN bytes of the file change with every write (the stamp, or an old record's
# header): the waiters' cheap change check.
HEADER_LEN = STAMP_LEN = 32
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


class Stored(NamedTuple):
    """The current record of a file image, and where it lies (offset 0, length 0: none yet)."""

    record: Record
    seq: int
    offset: int
    length: int
    head: bytes  # the file's first HEADER_LEN bytes, for the change check


def encode(record: Record, seq: int = 0) -> bytes:
    """One record as written at a slot (on its own, also a valid file image)."""
    lines = []
    if record.holders:
        lines.append(f"P {record.salt} {record.digest}\n")
        lines.extend(f"H {e.token} {e.pid} {e.ctime!r} {e.host} {e.ts!r}\n" for e in record.holders)
    lines.extend(f"W {e.token} {e.pid} {e.ctime!r} {e.host} {e.ts!r} {e.salt} {e.digest}\n" for e in record.queue)
    body = "".join(lines).encode("ascii")
    return b"%s %d %08x %d\n%s" % (MAGIC, seq, zlib.crc32(body), len(body), body)


def stamp(seq: int, offset: int) -> bytes:
    """The change hint written at offset 0 after each record (a nonce: sequences restart when emptied)."""
    return (b"%s %d %d %s" % (STAMP_MAGIC, seq, offset, os.urandom(4).hex().encode()))[: STAMP_LEN - 1].ljust(
        STAMP_LEN - 1) + b"\n"


def slot_for(length: int, current: Stored) -> int:
    """Where a new record of ``length`` bytes goes: the first slot clear of the current record."""
    offset = SLOT
    if offset < current.offset + current.length and current.offset < offset + length:
        offset = -(-(current.offset + current.length) // SLOT) * SLOT
    return offset


def read_image(data: bytes) -> Stored:
    """The current record of a whole file image; ``ValueError`` if it holds no valid one.

    Every slot is a candidate: the valid record with the highest sequence number wins
    (a torn or stale slot fails its CRC, or loses on its sequence number).
    """
    head = data[:HEADER_LEN]
    if not data:
        return Stored(Record(), 0, 0, 0, head)
    best: Stored | None = None
    for offset in range(0, len(data), SLOT):
        found = _record_at(data, offset)
        if found is not None and (best is None or found.seq > best.seq):
            best = found._replace(head=head)
    if best is None:
        raise ValueError("truncated or corrupted lock record")
    return best


def decode(data: bytes) -> Record:
    """The current record of a whole file image; ``ValueError`` if it holds no valid one."""
    return read_image(data).record


def _record_at(data: bytes, offset: int) -> Stored | None:
    magic = data[offset : offset + 4]
    if magic != MAGIC and not (magic == OLD_MAGIC and offset == 0):
        return None
    newline = data.find(b"\n", offset, offset + 64)
    header = data[offset:newline].split() if newline > 0 else []
    try:
        if magic == MAGIC and len(header) == 4:
            seq, crc, length = int(header[1]), int(header[2], 16), int(header[3])
        elif magic == OLD_MAGIC and len(header) == 3:
            seq, crc, length = -1, int(header[1], 16), int(header[2])
        else:
            return None
        body = data[newline + 1 : newline + 1 + length]
        if len(body) != length or zlib.crc32(body) != crc:
            return None
        return Stored(_parse(body), seq, offset, newline + 1 + length - offset, b"")
    except ValueError:
        return None


def _parse(body: bytes) -> Record:
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
