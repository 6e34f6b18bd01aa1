"""The receiver's mailbox rules, pure and deterministic."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pylocker.mailbox import FLAG_REPLACE, FLAG_UNIQUE, Mailbox, Publication

_ids = iter(range(10**9))


def pub(
    message: str, payload: object = None, sender: str = "s", flags: int = 0, expires_at: float | None = None
) -> Publication:
    packed = None if payload is None else msgpack.packb(payload)
    return Publication(message, packed, sender, "name", f"id-{next(_ids)}", 0.0, None, flags, expires_at)


def test_publications_keep_arrival_order() -> None:
    box = Mailbox()
    for index in range(5):
        box.add(pub(f"m{index % 2}", index))
    assert [p.payload for p in box.all()] == [0, 1, 2, 3, 4]
    assert box.find("m1").payload == 1
    assert "m0" in box
    assert "m9" not in box


def test_unique_with_replace_keeps_only_the_newest() -> None:
    box = Mailbox()
    box.add(pub("state", 1))
    box.add(pub("state", 2))
    assert box.add(pub("state", 3, flags=FLAG_UNIQUE | FLAG_REPLACE))
    assert [p.payload for p in box.all()] == [3]


def test_unique_without_replace_discards_the_newcomer() -> None:
    box = Mailbox()
    box.add(pub("state", 1))
    assert box.add(pub("state", 2, flags=FLAG_UNIQUE)) is False
    assert [p.payload for p in box.all()] == [1]
    assert box.add(pub("other", 3, flags=FLAG_UNIQUE)) is True  # unique only against the same text


def test_expiry_is_applied_when_due() -> None:
    box = Mailbox()
    box.add(pub("a", expires_at=5.0))
    box.add(pub("b"))
    assert box.next_expiry() == 5.0
    assert box.expire(4.999) == 0
    assert "a" in box
    assert box.expire(5.0) == 1
    assert "a" not in box
    assert "b" in box


def test_a_removed_publication_does_not_expire_twice() -> None:
    box = Mailbox()
    box.add(pub("a", expires_at=1.0))
    box.pop("a")
    assert box.expire(2.0) == 0
    assert len(box) == 0


def test_remove_filters_by_sender() -> None:
    box = Mailbox()
    box.add(pub("job", 1, sender="alice"))
    box.add(pub("job", 2, sender="bob"))
    box.add(pub("job", 3, sender="carol"))
    assert box.remove("job", ["bob", "carol"]) == 2
    assert [p.payload for p in box.all()] == [1]
    assert box.remove("job") == 1
    assert box.remove("job") == 0


def test_capacity_evicts_the_oldest_and_counts_it() -> None:
    box = Mailbox(capacity=3)
    for index in range(5):
        box.add(pub("m", index))
    assert [p.payload for p in box.all()] == [2, 3, 4]
    assert box.dropped == 2
    assert box.received == 5
    with pytest.raises(ValueError, match="capacity must be at least 1"):
        Mailbox(capacity=0)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from("abc"),
            st.sampled_from([0, FLAG_UNIQUE, FLAG_UNIQUE | FLAG_REPLACE]),
            st.sampled_from(["add", "pop", "remove"]),
        ),
        max_size=40,
    )
)
def test_index_and_order_stay_consistent(operations: list[tuple[str, int, str]]) -> None:
    box = Mailbox(capacity=10)
    for message, flags, action in operations:
        if action == "add":
            box.add(pub(message, flags=flags))
        elif action == "pop":
            box.pop(message)
        else:
            box.remove(message)
        everything = box.all()
        assert len(everything) == len(box) <= 10
        for text in "abc":
            mine = [p for p in everything if p.message == text]
            assert (text in box) == bool(mine)
            assert box.find(text) is (mine[0] if mine else None)
            if any(p.flags & FLAG_UNIQUE for p in mine[-1:]):
                assert len(mine) == 1


def _packed(payload: object) -> bytes:
    return msgpack.packb(payload)


def test_store_checks_each_wire_item_and_applies_the_same_rules() -> None:
    box = Mailbox(capacity=3)
    items = [
        ["a", _packed(1), None, 0, "i1", 1.0],
        ["a", _packed(2), None, 0, "i2", 1.0],
        ["b", _packed(3), 5.0, 0, "i3", 1.0],  # a timeout: stored through the full rules
        ["a", _packed(4), None, FLAG_UNIQUE | FLAG_REPLACE, "i4", 1.0],
        ["bad"],  # malformed shapes and types are skipped
        [1, _packed(2), None, 0, "i5", 1.0],
        ["c", _packed(5), -1, 0, "i6", 1.0],
        ["c", _packed(6), None, 0, 7, 1.0],
        "not a list",
        ["c", 6, None, 0, "i9", 1.0],  # a payload must come packed (or be nil)
    ]
    malformed, arrived = box.store("s", "name", items, now=10.0, collect=True)
    assert malformed == 6
    assert [p.payload for p in arrived] == [1, 2, 3, 4]
    assert [p.payload for p in box.all()] == [3, 4]  # unique+replace removed 1 and 2
    assert box.find("b").expires_at == 15.0
    assert box.received == 4
    box.store("s", "name", [["d", _packed(7), None, 0, "i7", 1.0], ["e", _packed(8), None, 0, "i8", 1.0]], now=11.0)
    assert [p.payload for p in box.all()] == [4, 7, 8]
    assert box.dropped == 1  # capacity 3


def test_the_mailbox_is_bounded_in_bytes_as_well_as_in_count() -> None:
    # Issue 11, case 9: bounded by count alone, a mailbox of large publications had no bound.
    box = Mailbox(capacity=1000, capacity_bytes=11_000)
    big = _packed("x" * 3000)
    box.store("s", "name", [[f"m{i}", big, None, 0, f"i{i}", 1.0] for i in range(5)], now=0.0)
    assert [p.message for p in box.all()] == ["m2", "m3", "m4"]  # the oldest made room
    assert box.dropped == 2 and box.bytes <= 11_000
    box.add(pub("huge", "y" * 20_000))  # larger than the whole mailbox: dropped, nothing evicted
    assert len(box) == 3 and box.dropped == 3
    assert sum(p.size for p in box.all()) == box.bytes
    while len(box):
        box.pop(box.all()[0].message)
    assert box.bytes == 0


def test_a_payload_costs_the_mailbox_what_it_weighed_on_the_wire() -> None:
    # Issue 11, case 9: 2 MB of empty maps decoded on arrival cost a receiver ~138 MiB.
    empty_maps = msgpack.packb([{}] * 100_000)
    box = Mailbox()
    box.store("s", "name", [["maps", empty_maps, None, 0, "i1", 1.0]], now=0.0)
    (stored,) = box.all()
    assert stored.packed is empty_maps and stored.size < len(empty_maps) + 1000
    assert stored.payload == [{}] * 100_000  # decoded when read, not before
    broken = Publication("m", b"\xc1", "s", "name", "i2", 0.0, None, 0, None)
    assert broken.payload is None  # a payload that does not decode reads as None (and is logged)
