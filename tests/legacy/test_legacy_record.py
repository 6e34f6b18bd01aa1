"""The lock record codec: round trips, and corrupted bytes always fail as ValueError."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pylocker.legacy._record import SLOT, Entry, Record, Stored, decode, encode, pass_digest, read_image, slot_for, stamp

SALT = "00112233445566778899aabbccddeeff"


def _record() -> Record:
    holder = Entry("aa" * 8, 1234, 1700000000.25, "host/boot/1", 1700000001.5)
    waiter = Entry("bb" * 8, 4321, 1700000000.5, "other/boot/2", 1700000002.75, SALT, "cd" * 16)
    return Record(SALT, pass_digest("secret", SALT), [holder], [waiter])


def test_an_empty_file_is_the_empty_record() -> None:
    assert decode(encode(Record())).holders == []
    decoded = decode(b"")
    assert decoded.holders == []
    assert decoded.queue == []


def test_round_trip_keeps_every_field() -> None:
    record = _record()
    decoded = decode(encode(record))
    assert (decoded.salt, decoded.digest) == (record.salt, record.digest)
    assert decoded.holders == record.holders
    assert decoded.queue == record.queue


def test_pass_is_stored_only_as_a_salted_digest() -> None:
    data = encode(_record())
    assert b"secret" not in data
    assert pass_digest("secret", SALT) != pass_digest("secret", "ff" * 16)
    assert pass_digest("secret", SALT) != pass_digest("secrets", SALT)


def test_tail_of_an_older_longer_record_is_ignored() -> None:
    record = _record()
    data = encode(record) + b"W leftover of a longer record that was not truncated\n"
    assert decode(data).holders == record.holders


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d[:-5],  # truncated body
        lambda d: d.replace(b"H aa", b"H ab"),  # body changed, crc stale
        lambda d: b"XXXX" + d[4:],  # bad magic
        lambda d: b"pass\n1700000000.0\n1234",  # a pylocker 3.x record
    ],
)
def test_damaged_records_are_rejected(mutate: object) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the codec's only error
        decode(mutate(encode(_record())))  # type: ignore[operator]


def test_grant_head_makes_the_first_waiter_the_only_holder() -> None:
    record = _record()
    record.holders = []
    head = record.grant_head()
    assert head is not None
    assert head.token == "bb" * 8
    assert [e.token for e in record.holders] == ["bb" * 8]
    assert record.queue == []
    assert (record.salt, record.digest) == (SALT, "cd" * 16)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_decode_or_raise_value_error(data: bytes) -> None:
    with contextlib.suppress(ValueError):
        decode(data)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2**22),
            st.floats(0, 2e9, allow_nan=False),
            st.floats(0, 2e9, allow_nan=False),
        ),
        max_size=5,
    ),
    st.integers(0, 5),
)
def test_round_trip_for_any_entries(entries: list[tuple[int, float, float]], n_holders: int) -> None:
    made = [Entry(f"{i:016x}", pid, ctime, "h/b/1", ts, SALT, "ab" * 16) for i, (pid, ctime, ts) in enumerate(entries)]
    holders = [e._replace(salt="", digest="") for e in made[:n_holders]]
    record = Record(SALT if holders else "", "ab" * 16 if holders else "", holders, made[n_holders:])
    decoded = decode(encode(record))
    assert decoded.holders == record.holders
    assert decoded.queue == record.queue


def _image(*records: tuple[int, Record, int]) -> bytes:
    """A file image with ``(seq, record, offset)`` written in that order, then the stamp."""
    data = bytearray()
    for seq, record, offset in records:
        blob = encode(record, seq)
        data.extend(b"\0" * max(0, offset + len(blob) - len(data)))
        data[offset:offset + len(blob)] = blob
    data[0:32] = stamp(records[-1][0], records[-1][2])
    return bytes(data)


def test_the_newest_valid_slot_is_the_record() -> None:
    older, newer = _record(), _record()
    newer.queue = []
    image = _image((1, older, SLOT), (2, newer, 2 * SLOT))
    assert read_image(image).seq == 2 and decode(image).queue == []


def test_a_torn_write_leaves_the_previous_record_current() -> None:
    # Issue 11, case 13: records were rewritten in place, so a writer killed mid-write (or a
    # full disk) left no valid record at all: the lock read as held by nobody who could be asked.
    current = _record()
    whole = _image((1, current, SLOT))
    stored = read_image(whole)
    nxt = _record()
    nxt.holders = []
    blob = encode(nxt, stored.seq + 1)
    offset = slot_for(len(blob), stored)
    assert offset >= stored.offset + stored.length or offset + len(blob) <= stored.offset  # never over it
    for cut in (1, len(blob) // 2, len(blob) - 1):  # the write stops anywhere
        torn = bytearray(whole) + b"\0" * max(0, offset + cut - len(whole))
        torn[offset:offset + cut] = blob[:cut]
        assert read_image(bytes(torn)).record.holders == current.holders


def test_slots_alternate_and_grow_past_a_long_record() -> None:
    short = Stored(Record(), 3, SLOT, 100, b"")
    assert slot_for(200, short) == 2 * SLOT  # the first slot is taken: the next one
    assert slot_for(200, Stored(Record(), 3, 2 * SLOT, 100, b"")) == SLOT  # back to the first
    long = Stored(Record(), 3, SLOT, 3 * SLOT + 5, b"")
    assert slot_for(10, long) == 5 * SLOT
    assert slot_for(SLOT + 1, Stored(Record(), 3, 2 * SLOT, 10, b"")) == 3 * SLOT  # would overlap it
