"""Claim modes of the pure lock table: shared holders, slots (semaphores), any-of requests.

The clock is a number passed to every call: nothing here sleeps, spawns a thread or
opens a socket. One focused test (or a few) per rule of ``pylocker.holds`` and the
claim paragraphs of ``pylocker.table``; ``test_table.py`` drives the same rules with a
hypothesis state machine.
"""

from __future__ import annotations

from collections import Counter

import pytest

from pylocker.holds import EXCLUSIVE, PLAIN, SHARED, SLOT, Claim, LimitConflict
from pylocker.table import (
    REASON_DISCONNECTED,
    REASON_LEASE,
    REASON_MAX_LOCK_TIME,
    Dropped,
    Expired,
    Granted,
    LockTable,
    TimedOut,
)

READ = Claim(SHARED)
WRITE = Claim(EXCLUSIVE)


def slot(limit: int, any_of: bool = False) -> Claim:
    return Claim(SLOT, limit, any_of)


def any_of(mode: int = EXCLUSIVE, limit: int = 0) -> Claim:
    return Claim(mode, limit, True)


def _holders(table: LockTable, name: str) -> list[str]:
    return [h.lock_id for h in table.holders(name)]


def _waiting(table: LockTable, name: str) -> list[str]:
    return [r.lock_id for r in table.waiting(name)]


def _granted(effects: list) -> list[str]:
    return [e.lock_id for e in effects if isinstance(e, Granted)]


def _tokens(effects: list) -> list[int]:
    return [e.token for e in effects if isinstance(e, Granted)]


def _release(table: LockTable, lock_id: str, now: float) -> list:
    ok, effects = table.release(lock_id, now)
    assert ok, f"{lock_id} was not held"
    return effects


def _check_name(table: LockTable, name: str) -> None:
    """The holder rules of one name: a lone exclusive holder, or one mode (and limit) within its limit."""
    held = table.holders(name)
    if not held:
        assert table.holder(name) is None
        return
    assert table.holder(name) is held[0]
    modes = {h.claim.mode for h in held}
    assert len(modes) == 1, f"modes mixed on {name}: {held}"
    mode = modes.pop()
    if mode == EXCLUSIVE:
        assert len(held) == 1
    elif mode == SLOT:
        limits = {h.claim.limit for h in held}
        assert len(limits) == 1
        assert len(held) <= limits.pop()
    assert all(table.get(h.lock_id) is h and name in h.names for h in held)


# ----------------------------------------------------------------- shared holders
def test_shared_holders_coexist_in_grant_order() -> None:
    table = LockTable()
    info = Claim(SHARED, info=b"member-1")
    assert table.acquire("r1", "o1", ["a"], None, 0.0, tag="t1", claim=info) == [Granted("r1", "o1", "t1", ("a",), 1)]
    assert table.acquire("r2", "o2", ["a"], None, 1.0, claim=READ) == [Granted("r2", "o2", None, ("a",), 2)]
    assert table.acquire("r3", "o1", ["a", "b"], 0, 2.0, claim=READ) == [Granted("r3", "o1", None, ("a", "b"), 3)]
    assert _holders(table, "a") == ["r1", "r2", "r3"]
    assert _holders(table, "b") == ["r3"]
    assert table.holder("a") is table.get("r1")
    assert table.waiting("a") == []
    r1 = table.get("r1")
    assert r1 is not None
    assert (r1.mode, r1.claim.info, r1.names, r1.token) == (SHARED, b"member-1", ("a",), 1)
    assert len(table) == 3
    assert sorted(h.lock_id for h in table.locks_of("o1")) == ["r1", "r3"]
    # The first holder leaves: holder() is the next in grant order.
    assert _release(table, "r1", 3.0) == []
    assert table.holder("a") is table.get("r2")
    assert _holders(table, "a") == ["r2", "r3"]
    for lock_id in ("r2", "r3"):
        assert _release(table, lock_id, 4.0) == []
    assert table.holders("a") == []
    assert table.holder("a") is None
    assert len(table) == 0
    assert table.owners() == []


def test_shared_request_waits_for_an_exclusive_holder() -> None:
    table = LockTable()
    table.acquire("w", "o1", ["a"], None, 0.0)  # plain: exclusive
    assert table.acquire("r0", "o2", ["a"], 0, 0.0, claim=READ) == [TimedOut("r0", "o2", None, ("a",))]
    assert table.acquire("r1", "o2", ["a"], None, 1.0, claim=READ) == []
    assert table.acquire("r2", "o3", ["a"], None, 2.0, claim=READ) == []
    assert _waiting(table, "a") == ["r1", "r2"]
    assert [r.claim for r in table.waiting("a")] == [READ, READ]
    effects = _release(table, "w", 3.0)
    assert effects == [Granted("r1", "o2", None, ("a",), 2), Granted("r2", "o3", None, ("a",), 3)]
    assert _holders(table, "a") == ["r1", "r2"]
    _check_name(table, "a")


def test_exclusive_request_waits_for_every_shared_holder() -> None:
    table = LockTable()
    for i in (1, 2, 3):
        table.acquire(f"r{i}", f"o{i}", ["a"], None, 0.0, claim=READ)
    assert table.acquire("w0", "o4", ["a"], 0, 1.0) == [TimedOut("w0", "o4", None, ("a",))]
    assert table.acquire("w", "o4", ["a"], None, 1.0, claim=WRITE) == []
    assert _release(table, "r2", 2.0) == []
    assert _release(table, "r1", 3.0) == []
    assert table.is_waiting("w")
    assert _holders(table, "a") == ["r3"]
    assert _release(table, "r3", 4.0) == [Granted("w", "o4", None, ("a",), 4)]
    assert _holders(table, "a") == ["w"]
    assert table.get("w").mode == EXCLUSIVE


def test_readers_behind_a_waiting_writer_wait_then_are_granted_together() -> None:
    table = LockTable()
    table.acquire("r1", "o1", ["a"], None, 0.0, claim=READ)
    assert table.acquire("w", "o2", ["a"], None, 1.0) == []
    # "a" is held shared, but a writer waits: readers queue behind it (no writer starvation).
    assert table.acquire("r2", "o3", ["a"], None, 2.0, claim=READ) == []
    assert table.acquire("r3", "o1", ["a"], None, 3.0, claim=READ) == []
    assert table.acquire("r0", "o3", ["a"], 0, 3.0, claim=READ) == [TimedOut("r0", "o3", None, ("a",))]
    assert table.acquire("w2", "o4", ["a"], None, 4.0) == []
    assert table.acquire("r4", "o3", ["a"], None, 5.0, claim=READ) == []
    assert _holders(table, "a") == ["r1"]
    assert _waiting(table, "a") == ["w", "r2", "r3", "w2", "r4"]
    assert _release(table, "r1", 6.0) == [Granted("w", "o2", None, ("a",), 2)]
    # The writer leaves: every reader up to the next writer is granted, in one call.
    effects = _release(table, "w", 7.0)
    assert effects == [Granted("r2", "o3", None, ("a",), 3), Granted("r3", "o1", None, ("a",), 4)]
    assert _holders(table, "a") == ["r2", "r3"]
    assert _waiting(table, "a") == ["w2", "r4"]  # r4 stays behind w2
    assert _release(table, "r3", 8.0) == []
    assert _release(table, "r2", 9.0) == [Granted("w2", "o4", None, ("a",), 5)]
    assert _release(table, "w2", 10.0) == [Granted("r4", "o3", None, ("a",), 6)]
    _check_name(table, "a")


def test_multi_name_shared_request_needs_every_name_admitting_it() -> None:
    table = LockTable()
    table.acquire("ra", "o1", ["a"], None, 0.0, claim=READ)
    table.acquire("xb", "o2", ["b"], None, 0.0)
    # "a" admits a reader, "b" does not: nothing is taken.
    assert table.acquire("rab", "o3", ["a", "b"], None, 1.0, claim=READ) == []
    assert _holders(table, "a") == ["ra"]
    assert _waiting(table, "a") == _waiting(table, "b") == ["rab"]
    # A later reader of "a" alone queues behind it: it never overtakes.
    assert table.acquire("ra2", "o4", ["a"], None, 2.0, claim=READ) == []
    assert _release(table, "xb", 3.0) == [
        Granted("rab", "o3", None, ("a", "b"), 3),
        Granted("ra2", "o4", None, ("a",), 4),
    ]
    assert _holders(table, "a") == ["ra", "rab", "ra2"]
    assert _holders(table, "b") == ["rab"]


def test_multi_name_request_first_in_line_everywhere_still_waits_for_a_name_that_does_not_admit_it() -> None:
    table = LockTable()
    table.acquire("xa", "o1", ["a"], None, 0.0)
    table.acquire("sb", "o2", ["b"], None, 0.0, claim=slot(1))
    assert table.acquire("rab", "o3", ["a", "b"], None, 1.0, claim=READ) == []
    # "a" frees up and "rab" is first in line on both names, but "b" is held by a slot.
    assert _release(table, "xa", 2.0) == []
    assert table.is_waiting("rab")
    assert table.holders("a") == []
    assert _release(table, "sb", 3.0) == [Granted("rab", "o3", None, ("a", "b"), 3)]


def test_multi_name_exclusive_request_over_a_shared_name_is_all_or_nothing() -> None:
    table = LockTable()
    table.acquire("ra", "o1", ["a"], None, 0.0, claim=READ)
    assert table.acquire("xab", "o2", ["a", "b"], None, 1.0) == []
    assert table.holders("b") == []  # free, but not taken
    # "b" is free and not held, yet queued on: a reader of "b" queues behind the writer.
    assert table.acquire("rb", "o3", ["b"], None, 2.0, claim=READ) == []
    assert table.acquire("rb0", "o3", ["b"], 0, 2.0, claim=READ) == [TimedOut("rb0", "o3", None, ("b",))]
    assert _release(table, "ra", 3.0) == [Granted("xab", "o2", None, ("a", "b"), 2)]
    assert _release(table, "xab", 4.0) == [Granted("rb", "o3", None, ("b",), 3)]


def test_shared_and_exclusive_names_in_one_table_do_not_disturb_each_other() -> None:
    table = LockTable()
    table.acquire("ra", "o1", ["a"], None, 0.0, claim=READ)
    table.acquire("xb", "o2", ["b"], None, 0.0)
    table.acquire("sc", "o3", ["c"], None, 0.0, claim=slot(2))
    assert table.acquire("ra2", "o4", ["a", "d"], None, 0.0, claim=READ) == [Granted("ra2", "o4", None, ("a", "d"), 4)]
    assert table.acquire("sc2", "o4", ["c"], None, 0.0, claim=slot(2)) == [Granted("sc2", "o4", None, ("c",), 5)]
    for name in "abcd":
        _check_name(table, name)


@pytest.mark.parametrize(
    ("first", "second"),
    [(READ, slot(2)), (slot(2), READ), (READ, WRITE), (slot(3), WRITE), (WRITE, READ), (WRITE, slot(1))],
    ids=[
        "shared-then-slot",
        "slot-then-shared",
        "shared-then-excl",
        "slot-then-excl",
        "excl-then-shared",
        "excl-then-slot",
    ],
)
def test_modes_never_mix_on_a_name(first: Claim, second: Claim) -> None:
    table = LockTable()
    assert _granted(table.acquire("h", "o1", ["a"], None, 0.0, claim=first)) == ["h"]
    assert table.acquire("z", "o2", ["a"], 0, 1.0, claim=second) == [TimedOut("z", "o2", None, ("a",))]
    assert table.acquire("w", "o2", ["a"], None, 1.0, claim=second) == []
    assert _holders(table, "a") == ["h"]
    assert _release(table, "h", 2.0) == [Granted("w", "o2", None, ("a",), 2)]
    assert table.get("w").claim == second


# ------------------------------------------------------------------------ slots
def test_slots_never_exceed_their_limit_and_are_granted_in_fifo_order() -> None:
    table = LockTable()
    two = slot(2)
    assert _granted(table.acquire("s1", "o1", ["a"], None, 0.0, claim=two)) == ["s1"]
    assert _granted(table.acquire("s2", "o2", ["a"], None, 1.0, claim=two)) == ["s2"]
    assert table.acquire("s0", "o3", ["a"], 0, 1.0, claim=two) == [TimedOut("s0", "o3", None, ("a",))]
    for i in (3, 4, 5):
        assert table.acquire(f"s{i}", f"o{i}", ["a"], None, float(i), claim=two) == []
    assert _holders(table, "a") == ["s1", "s2"]
    assert _waiting(table, "a") == ["s3", "s4", "s5"]
    assert _release(table, "s2", 6.0) == [Granted("s3", "o3", None, ("a",), 3)]
    _check_name(table, "a")
    assert _release(table, "s1", 7.0) == [Granted("s4", "o4", None, ("a",), 4)]
    _check_name(table, "a")
    assert table.drop_owner("o3", 8.0) == [
        Expired("s3", "o3", ("a",), 3, REASON_DISCONNECTED),
        Granted("s5", "o5", None, ("a",), 5),
    ]
    assert _holders(table, "a") == ["s4", "s5"]
    _check_name(table, "a")
    # A freed slot with nobody waiting is free at once again.
    assert _release(table, "s4", 9.0) == []
    assert _granted(table.acquire("s6", "o6", ["a"], 0, 9.0, claim=two)) == ["s6"]
    assert _holders(table, "a") == ["s5", "s6"]


def test_limit_one_slot_is_a_mutex() -> None:
    table = LockTable()
    one = slot(1)
    table.acquire("s1", "o1", ["a"], None, 0.0, claim=one)
    assert table.acquire("s2", "o2", ["a"], None, 0.0, claim=one) == []
    assert _holders(table, "a") == ["s1"]
    assert _release(table, "s1", 1.0) == [Granted("s2", "o2", None, ("a",), 2)]


def test_multi_name_slot_request_takes_a_slot_of_every_name() -> None:
    table = LockTable()
    two = slot(2)
    table.acquire("sa", "o1", ["a"], None, 0.0, claim=two)
    table.acquire("sab", "o2", ["a", "b"], None, 0.0, claim=two)
    assert _holders(table, "a") == ["sa", "sab"]
    assert _holders(table, "b") == ["sab"]
    # "b" has a free slot but "a" is full: all or nothing, and "b" is then queued on.
    assert table.acquire("sba", "o3", ["b", "a"], None, 1.0, claim=two) == []
    assert table.acquire("sb", "o4", ["b"], None, 2.0, claim=two) == []
    assert _holders(table, "b") == ["sab"]
    assert _release(table, "sa", 3.0) == [Granted("sba", "o3", None, ("b", "a"), 3)]
    assert _holders(table, "a") == ["sab", "sba"]
    assert _holders(table, "b") == ["sab", "sba"]  # full again: "sb" waits
    assert _waiting(table, "b") == ["sb"]
    assert _release(table, "sab", 4.0) == [Granted("sb", "o4", None, ("b",), 4)]
    assert _holders(table, "b") == ["sba", "sb"]


def test_limit_mismatch_raises_and_leaves_no_trace() -> None:
    table = LockTable(max_lock_time=50.0)
    table.acquire("s1", "o1", ["a"], None, 0.0, claim=slot(2))
    table.acquire("xc", "o1", ["c"], None, 0.0)
    table.acquire("s2", "o2", ["c"], None, 0.0, claim=slot(2))  # waits (c held), c now in use with 2
    before = (table.owners(), table.last_token, table.next_deadline(), len(table))
    for names in (["a"], ["b", "a"], ["c"], ["b", "c"]):
        for timeout in (None, 0, 5.0):
            with pytest.raises(LimitConflict) as caught:
                table.acquire("m", "o3", names, timeout, 1.0, claim=slot(3))
            assert isinstance(caught.value, ValueError)
            assert (caught.value.name, caught.value.limit, caught.value.in_use) == (names[-1], 3, 2)
            assert not table.in_use("m")
            assert table.holders("b") == []
            assert table.waiting("b") == []
            assert _holders(table, "a") == ["s1"]
            assert table.waiting("a") == []
            assert _waiting(table, "c") == ["s2"]
            assert (table.owners(), table.last_token, table.next_deadline(), len(table)) == before
    # An any-of slot request must agree on every name it asks for, even a free one it could take.
    with pytest.raises(LimitConflict):
        table.acquire("m", "o3", ["b", "a"], None, 1.0, claim=slot(1, any_of=True))
    assert table.holders("b") == []
    # "b" was never counted (with 3, 1 or any limit), and the conflicting id is free.
    assert table.acquire("m", "o3", ["b"], None, 2.0, claim=slot(4)) == [Granted("m", "o3", None, ("b",), 3)]
    assert _granted(table.acquire("s3", "o3", ["a"], None, 2.0, claim=slot(2))) == ["s3"]


def test_shared_and_exclusive_holders_put_no_limit_on_a_name() -> None:
    table = LockTable()
    table.acquire("r", "o1", ["a"], None, 0.0, claim=READ)
    table.acquire("x", "o1", ["b"], None, 0.0)
    assert table.acquire("s1", "o2", ["a"], None, 1.0, claim=slot(2)) == []
    assert table.acquire("s2", "o2", ["b"], None, 1.0, claim=slot(5)) == []
    with pytest.raises(LimitConflict):  # but a waiting slot request does
        table.acquire("s3", "o3", ["a"], None, 1.0, claim=slot(3))


@pytest.mark.parametrize("how", ["release", "cancel", "timeout", "timeout-on-release", "drop", "lease", "maxLockTime"])
def test_any_limit_is_accepted_again_once_no_slot_request_uses_the_name(how: str) -> None:
    table = LockTable(max_lock_time=100.0, lease=50.0)
    if how == "lease":
        table.register("o1", 0.0)
    if how in ("cancel", "timeout", "timeout-on-release"):
        table.acquire("x", "o2", ["a"], None, 0.0)
        table.acquire("s", "o1", ["a"], 10.0, 0.0, claim=slot(2))  # waits
    else:
        table.acquire("s", "o1", ["a"], None, 0.0, claim=slot(2))  # holds
    with pytest.raises(LimitConflict):
        table.acquire("m", "o3", ["a"], None, 0.0, claim=slot(3))
    if how == "release":
        assert _release(table, "s", 1.0) == []
    elif how == "cancel":
        assert table.cancel("s", 1.0) == (True, [])
    elif how == "timeout":
        assert table.expire(10.0) == [TimedOut("s", "o1", None, ("a",))]
    elif how == "timeout-on-release":
        assert table.release("x", 10.0) == (True, [TimedOut("s", "o1", None, ("a",))])
    elif how == "drop":
        assert table.drop_owner("o1", 1.0) == [Expired("s", "o1", ("a",), 1, REASON_DISCONNECTED)]
    elif how == "lease":
        assert table.expire(50.0) == [Expired("s", "o1", ("a",), 1, REASON_LEASE)]
    else:
        assert table.expire(100.0) == [Expired("s", "o1", ("a",), 1, REASON_MAX_LOCK_TIME)]
    table.release("x", 100.0)
    assert not table.in_use("s")
    assert _granted(table.acquire("m", "o3", ["a"], None, 100.0, claim=slot(3))) == ["m"]
    assert table.get("m").claim.limit == 3


def test_a_refused_slot_request_leaves_no_trace() -> None:
    table = LockTable()
    table.acquire("x", "o1", ["a"], None, 0.0)
    assert table.acquire("s", "o2", ["a"], 0, 1.0, claim=slot(2)) == [TimedOut("s", "o2", None, ("a",))]
    assert not table.in_use("s")
    assert table.waiting("a") == []
    # A lock id in use is refused before anything is counted either.
    with pytest.raises(ValueError, match="already in use"):
        table.acquire("x", "o2", ["c"], None, 1.0, claim=slot(2))
    # Nothing counted "a" or "c" with a limit of 2.
    assert table.acquire("s3", "o3", ["a"], None, 2.0, claim=slot(3)) == []
    assert table.acquire("u3", "o3", ["c"], None, 2.0, claim=slot(3)) == [Granted("u3", "o3", None, ("c",), 2)]


def test_a_refused_any_of_slot_request_leaves_no_trace() -> None:
    table = LockTable()
    table.acquire("x", "o1", ["a", "b"], None, 0.0)
    claim = slot(2, any_of=True)
    assert table.acquire("n", "o2", ["b", "a"], 0, 1.0, claim=claim) == [TimedOut("n", "o2", None, ("b", "a"))]
    assert table.waiting("a") == table.waiting("b") == []
    assert table.acquire("m", "o2", ["a"], None, 1.0, claim=slot(4)) == []
    assert table.acquire("k", "o2", ["b"], None, 1.0, claim=slot(5)) == []


def test_an_any_of_slot_grant_frees_the_limit_of_the_names_it_did_not_take() -> None:
    table = LockTable()
    claim = slot(2, any_of=True)
    assert table.acquire("n", "o1", ["a", "b"], None, 0.0, claim=claim) == [Granted("n", "o1", None, ("a",), 1)]
    assert table.acquire("b3", "o2", ["b"], None, 0.0, claim=slot(3)) == [Granted("b3", "o2", None, ("b",), 2)]
    with pytest.raises(LimitConflict):
        table.acquire("a3", "o2", ["a"], None, 0.0, claim=slot(3))
    # The same once granted from the queues.
    table.acquire("xc", "o3", ["c", "d"], None, 0.0)
    assert table.acquire("q", "o1", ["d", "c"], None, 1.0, claim=claim) == []
    with pytest.raises(LimitConflict):
        table.acquire("c3", "o2", ["c"], None, 1.0, claim=slot(3))
    assert _release(table, "xc", 2.0) == [Granted("q", "o1", None, ("d",), 4)]
    assert table.get("q").names == ("d",)
    assert _granted(table.acquire("c3", "o2", ["c"], None, 3.0, claim=slot(3))) == ["c3"]
    with pytest.raises(LimitConflict):
        table.acquire("d3", "o2", ["d"], None, 3.0, claim=slot(3))


# ------------------------------------------------------------------------ any-of
@pytest.mark.parametrize("mode", [EXCLUSIVE, SHARED, SLOT])
def test_any_of_takes_the_first_free_name_in_the_order_asked(mode: int) -> None:
    table = LockTable()
    claim = any_of(mode, 1 if mode == SLOT else 0)
    table.acquire("xa", "o1", ["a"], None, 0.0)
    assert table.acquire("n", "o2", ["a", "c", "b"], None, 1.0, tag="t", claim=claim) == [
        Granted("n", "o2", "t", ("c",), 2)
    ]
    held = table.get("n")
    assert held is not None
    assert (held.names, held.claim) == (("c",), claim)
    assert _holders(table, "c") == ["n"]
    assert table.holders("b") == []
    assert table.waiting("a") == table.waiting("b") == table.waiting("c") == []
    assert table.locks_of("o2") == [held]
    # Released, it gives back only the name it took.
    assert _release(table, "n", 2.0) == []
    assert table.holders("c") == []
    assert _holders(table, "a") == ["xa"]


def test_any_of_skips_a_free_name_that_others_wait_for() -> None:
    table = LockTable()
    table.acquire("xz", "o1", ["z"], None, 0.0)
    table.acquire("w", "o2", ["a", "z"], None, 0.0)  # "a" is free but queued on
    assert table.acquire("n", "o3", ["a", "b"], None, 1.0, claim=any_of()) == [Granted("n", "o3", None, ("b",), 2)]
    assert table.acquire("m", "o3", ["a"], 0, 1.0, claim=any_of()) == [TimedOut("m", "o3", None, ("a",))]


def test_any_of_shared_joins_a_crowd_and_any_of_slots_form_a_pool() -> None:
    table = LockTable()
    table.acquire("r", "o1", ["b"], None, 0.0, claim=READ)
    table.acquire("x", "o1", ["a"], None, 0.0)
    assert _granted(table.acquire("n", "o2", ["a", "b"], None, 1.0, claim=any_of(SHARED))) == ["n"]
    assert _holders(table, "b") == ["r", "n"]
    # A pool of three one-slot resources: three takers, each a different one, then a queue.
    pool = ["p1", "p2", "p3"]
    one = slot(1, any_of=True)
    taken = []
    for i in range(3):
        effects = table.acquire(f"t{i}", f"o{i}", pool, None, 2.0, claim=one)
        assert _granted(effects) == [f"t{i}"]
        taken.append(effects[0].names)
    assert taken == [("p1",), ("p2",), ("p3",)]
    assert table.acquire("t3", "o3", pool, None, 3.0, claim=one) == []
    assert table.acquire("t4", "o4", pool, None, 4.0, claim=one) == []
    assert _release(table, "t1", 5.0) == [Granted("t3", "o3", None, ("p2",), 7)]
    assert _waiting(table, "p1") == _waiting(table, "p2") == _waiting(table, "p3") == ["t4"]
    assert _release(table, "t0", 6.0) == [Granted("t4", "o4", None, ("p1",), 8)]
    for name in pool:
        assert len(table.holders(name)) == 1
        assert table.waiting(name) == []


def test_any_of_waits_on_every_name_and_takes_the_first_that_frees() -> None:
    table = LockTable()
    for name in "abc":
        table.acquire(f"x{name}", "o1", [name], None, 0.0)
    assert table.acquire("n", "o2", ["a", "b", "c"], None, 1.0, claim=any_of()) == []
    assert table.acquire("q", "o3", ["a"], None, 2.0) == []
    assert _waiting(table, "a") == ["n", "q"]
    assert _waiting(table, "b") == _waiting(table, "c") == ["n"]
    assert _release(table, "xc", 3.0) == [Granted("n", "o2", None, ("c",), 4)]
    # It left the other queues: "q" is first on "a" now, and "b" has nobody waiting.
    assert _waiting(table, "a") == ["q"]
    assert table.waiting("b") == []
    assert _release(table, "xb", 4.0) == []
    assert table.holders("b") == []
    assert _release(table, "xa", 5.0) == [Granted("q", "o3", None, ("a",), 5)]
    assert table.get("n").names == ("c",)


@pytest.mark.parametrize(("order", "expected"), [(["a", "b"], "a"), (["b", "a"], "b")])
def test_any_of_takes_the_first_in_order_when_several_free_at_once(order: list[str], expected: str) -> None:
    table = LockTable()
    table.acquire("x", "o1", ["a", "b"], None, 0.0)
    assert table.acquire("n", "o2", order, None, 1.0, claim=any_of()) == []
    assert _release(table, "x", 2.0) == [Granted("n", "o2", None, (expected,), 2)]
    assert table.waiting("a") == table.waiting("b") == []


def test_any_of_takes_a_name_only_where_it_is_first_in_line() -> None:
    table = LockTable()
    table.acquire("x", "o1", ["a", "b"], None, 0.0)
    table.acquire("w", "o2", ["a"], None, 1.0)  # first on "a"
    assert table.acquire("n", "o3", ["a", "b"], None, 2.0, claim=any_of()) == []
    assert _waiting(table, "a") == ["w", "n"]
    effects = _release(table, "x", 3.0)
    assert sorted((e.lock_id, e.names) for e in effects) == [("n", ("b",)), ("w", ("a",))]
    assert sorted(_tokens(effects)) == [2, 3]
    assert _holders(table, "a") == ["w"]
    assert _holders(table, "b") == ["n"]
    assert table.waiting("a") == table.waiting("b") == []  # it left the queue of "a" too
    assert not table.is_waiting("n")
    assert _release(table, "w", 4.0) == []


def test_any_of_times_out_on_all_its_names() -> None:
    table = LockTable()
    table.acquire("x", "o1", ["a", "b"], None, 0.0)
    assert table.acquire("z", "o2", ["a", "b", "a"], 0, 0.0, claim=any_of()) == [TimedOut("z", "o2", None, ("a", "b"))]
    assert table.acquire("n", "o2", ["b", "a"], 2.0, 1.0, tag="t", claim=any_of(SHARED)) == []
    table.acquire("q", "o3", ["b"], None, 1.5)
    assert table.next_deadline() == 3.0
    assert table.expire(2.999) == []
    assert table.expire(3.0) == [TimedOut("n", "o2", "t", ("b", "a"))]
    assert table.waiting("a") == []
    assert _waiting(table, "b") == ["q"]
    assert _release(table, "x", 4.0) == [Granted("q", "o3", None, ("b",), 2)]
    # Past its deadline when a name frees up: answered TimedOut, never granted late.
    table.acquire("y", "o1", ["a"], None, 4.5)
    assert table.acquire("m", "o2", ["b", "a"], 1.0, 5.0, claim=any_of()) == []
    table.acquire("p", "o4", ["a"], None, 5.0)
    assert _waiting(table, "a") == ["m", "p"]
    effects = _release(table, "y", 6.0)
    assert effects == [TimedOut("m", "o2", None, ("b", "a")), Granted("p", "o4", None, ("a",), 4)]
    assert table.waiting("b") == []


def test_any_of_cancel_leaves_every_queue() -> None:
    table = LockTable()
    table.acquire("x", "o1", ["a", "b"], None, 0.0)
    table.acquire("n", "o2", ["a", "b"], None, 1.0, claim=any_of())
    table.acquire("q", "o3", ["b"], None, 2.0)
    assert table.cancel("n", 3.0, owner="o3") == (False, [])
    assert table.cancel("n", 3.0) == (True, [])
    assert table.waiting("a") == []
    assert _waiting(table, "b") == ["q"]
    assert not table.in_use("n")
    assert table.owners() == ["o1", "o3"]
    assert _release(table, "x", 4.0) == [Granted("q", "o3", None, ("b",), 2)]


def test_any_of_dropped_with_its_owner_names_every_name() -> None:
    table = LockTable()
    table.acquire("x", "o1", ["a", "b"], None, 0.0)
    table.acquire("n", "o2", ["a", "b"], None, 1.0, tag="t", claim=any_of())
    assert table.drop_owner("o2", 2.0) == [Dropped("n", "o2", "t", ("a", "b"), REASON_DISCONNECTED)]
    assert table.waiting("a") == table.waiting("b") == []


# ------------------------------------------------------ leases, drops, maxLockTime
def test_lease_lapse_frees_shared_holders_and_slots_and_promotes_waiters() -> None:
    table = LockTable(lease=10.0)
    table.register("o", 0.0)
    table.acquire("ro", "o", ["a"], None, 0.0, claim=READ)
    table.acquire("rp", "p", ["a"], None, 0.0, claim=READ)
    table.acquire("so", "o", ["b"], None, 0.0, claim=slot(1))
    table.acquire("w", "q", ["a"], None, 1.0)  # waits for both readers
    table.acquire("sq", "q", ["b"], None, 1.0, claim=slot(1))
    table.acquire("wo", "o", ["b"], None, 2.0, claim=slot(1))  # o also waits
    effects = table.expire(10.0)
    assert Counter(effects) == Counter(
        [
            Expired("ro", "o", ("a",), 1, REASON_LEASE),
            Expired("so", "o", ("b",), 3, REASON_LEASE),
            Dropped("wo", "o", None, ("b",), REASON_LEASE),
            Granted("sq", "q", None, ("b",), 4),
        ]
    )
    assert table.lapsed == ["o"]
    assert table.is_waiting("w")  # "rp" still reads
    assert _holders(table, "a") == ["rp"]
    assert _holders(table, "b") == ["sq"]
    assert table.drop_owner("p", 11.0) == [
        Expired("rp", "p", ("a",), 2, REASON_DISCONNECTED),
        Granted("w", "q", None, ("a",), 5),
    ]


def test_drop_owner_frees_its_shared_holds_and_grants_the_waiting_readers() -> None:
    table = LockTable()
    table.acquire("x", "o", ["a"], None, 0.0)
    table.acquire("r1", "p", ["a", "b"], None, 1.0, claim=READ)
    table.acquire("r2", "q", ["a"], None, 2.0, claim=READ)
    table.acquire("s1", "o", ["c"], None, 0.0, claim=slot(2))
    table.acquire("s2", "o", ["c"], None, 0.0, claim=slot(2))
    table.acquire("s3", "p", ["c"], None, 3.0, claim=slot(2))
    table.acquire("s4", "q", ["c"], None, 3.0, claim=slot(2))
    table.acquire("s5", "q", ["c"], None, 3.0, claim=slot(2))
    effects = table.drop_owner("o", 4.0)
    assert [e for e in effects if not isinstance(e, Granted)] == [
        Expired("x", "o", ("a",), 1, REASON_DISCONNECTED),
        Expired("s1", "o", ("c",), 2, REASON_DISCONNECTED),
        Expired("s2", "o", ("c",), 3, REASON_DISCONNECTED),
    ]
    granted = {e.lock_id: e for e in effects if isinstance(e, Granted)}
    assert {i: (e.owner, e.names) for i, e in granted.items()} == {
        "r1": ("p", ("a", "b")),
        "r2": ("q", ("a",)),
        "s3": ("p", ("c",)),
        "s4": ("q", ("c",)),
    }
    assert sorted(_tokens(effects)) == [4, 5, 6, 7]
    # Each grant comes after the expiry that freed its name; one name's grants in FIFO order.
    assert effects.index(granted["r1"]) > 0
    assert granted["r1"].token < granted["r2"].token
    assert granted["s3"].token < granted["s4"].token
    assert _holders(table, "a") == ["r1", "r2"]
    assert _holders(table, "c") == ["s3", "s4"]
    assert _waiting(table, "c") == ["s5"]


def test_max_lock_time_expires_each_shared_holder_on_its_own() -> None:
    table = LockTable(max_lock_time=10.0)
    table.acquire("r1", "o1", ["a"], None, 0.0, claim=READ)
    table.acquire("r2", "o2", ["a"], None, 5.0, claim=READ)
    assert table.acquire("w", "o3", ["a"], None, 6.0) == []
    assert (table.get("r1").expires_at, table.get("r2").expires_at) == (10.0, 15.0)
    assert table.next_deadline() == 10.0
    assert table.expire(10.0) == [Expired("r1", "o1", ("a",), 1, REASON_MAX_LOCK_TIME)]
    assert table.is_waiting("w")
    assert table.next_deadline() == 15.0
    assert table.expire(15.0) == [
        Expired("r2", "o2", ("a",), 2, REASON_MAX_LOCK_TIME),
        Granted("w", "o3", None, ("a",), 3),
    ]
    assert table.get("w").expires_at == 25.0
    assert table.release("r1", 16.0) == (False, [])


# ---------------------------------------------------------------------- recovery
def test_reclaim_shared_and_slot_claims_while_recovering() -> None:
    table = LockTable(recover_until=5.0, first_token=100)
    assert table.acquire("new", "n", ["a"], None, 0.5, claim=READ) == []  # nothing new before 5
    # Two shared reclaims of one name both succeed; an exclusive one then fails.
    assert table.reclaim("r1", "o1", ["a"], 7, 1.0, claim=READ) is True
    assert table.reclaim("r2", "o2", ["a", "b"], 9, 1.0, claim=READ) is True
    assert _holders(table, "a") == ["r1", "r2"]
    assert table.get("r2").token == 9
    assert table.reclaim("x", "o3", ["a"], 8, 1.0) is False
    assert table.reclaim("x", "o3", ["c", "b"], 8, 1.0, claim=WRITE) is False
    assert table.reclaim("x", "o3", ["a"], 8, 1.0, claim=slot(5)) is False  # modes never mix
    assert table.holders("c") == []
    assert table.reclaim("x", "o3", ["c"], 8, 1.0) is True
    assert table.reclaim("y", "o4", ["c"], 6, 1.0, claim=READ) is False  # "c" is held exclusively
    # Slots: up to the limit, with one limit.
    assert table.reclaim("s1", "o1", ["d"], 3, 1.0, claim=slot(2)) is True
    assert table.reclaim("s2", "o2", ["d"], 4, 1.0, claim=slot(3)) is False  # in use with 2
    assert table.reclaim("s2", "o2", ["d"], 4, 1.0, claim=slot(2)) is True
    assert table.reclaim("s3", "o3", ["d"], 5, 1.0, claim=slot(2)) is False  # beyond the limit
    assert _holders(table, "d") == ["s1", "s2"]
    # An any-of lock comes back with the one name it had.
    assert table.reclaim("n1", "o4", ["e", "f"], 10, 1.0, claim=any_of(SHARED)) is False
    assert table.reclaim("n1", "o4", ["e"], 10, 1.0, claim=any_of(SHARED)) is True
    # Reconnecting to the same server: the lock never left.
    assert table.reclaim("r1", "o1", ["a"], 7, 2.0, claim=READ) is True
    assert table.reclaim("r1", "o1", ["a"], 7, 2.0) is False  # not the same claim
    assert table.reclaim("s1", "o9", ["d"], 3, 2.0, claim=slot(2)) is False  # id in use
    with pytest.raises(LimitConflict):
        table.acquire("m", "o5", ["d"], None, 2.0, claim=slot(3))
    for name in "abcdef":
        _check_name(table, name)
    # Recovery ends: the waiting reader joins the reclaimed readers, with a fresh token.
    assert table.end_recovery(5.0) == [Granted("new", "n", None, ("a",), 100)]
    assert _holders(table, "a") == ["r1", "r2", "new"]
    assert table.reclaim("late", "o5", ["g"], 12, 6.0, claim=READ) is False


def test_readers_waiting_for_recovery_are_granted_together_at_its_end() -> None:
    table = LockTable(recover_until=5.0)
    for i in (1, 2, 3):
        assert table.acquire(f"r{i}", f"o{i}", ["a"], None, float(i), claim=READ) == []
    assert table.acquire("w", "o4", ["a"], None, 4.0) == []
    assert table.acquire("s", "o4", ["b"], None, 4.0, claim=slot(1)) == []
    effects = table.expire(5.0)
    assert all(isinstance(e, Granted) for e in effects)
    assert sorted((e.lock_id, e.names) for e in effects) == [
        ("r1", ("a",)),
        ("r2", ("a",)),
        ("r3", ("a",)),
        ("s", ("b",)),
    ]
    assert sorted(_tokens(effects)) == [1, 2, 3, 4]
    assert [h.token for h in table.holders("a")] == sorted(h.token for h in table.holders("a"))
    assert _holders(table, "a") == ["r1", "r2", "r3"]
    assert _waiting(table, "a") == ["w"]


# ------------------------------------------------------------------------ tokens
def test_every_holder_gets_its_own_strictly_increasing_token() -> None:
    table = LockTable(first_token=500)
    tokens: list[int] = []
    for i in range(3):
        tokens += _tokens(table.acquire(f"r{i}", "o", ["a"], None, 0.0, claim=READ))
    for i in range(2):
        tokens += _tokens(table.acquire(f"s{i}", "o", ["b"], None, 0.0, claim=slot(2)))
    assert table.acquire("s2", "p", ["b"], None, 0.0, claim=slot(2)) == []
    assert table.acquire("w", "p", ["a"], None, 0.0) == []
    table.acquire("r3", "p", ["a"], None, 0.0, claim=READ)
    table.acquire("r4", "p", ["a"], None, 0.0, claim=READ)
    tokens += _tokens(_release(table, "s0", 1.0))
    for i in range(3):
        tokens += _tokens(_release(table, f"r{i}", 1.0))
    tokens += _tokens(_release(table, "w", 2.0))
    tokens += _tokens(table.acquire("n", "p", ["b", "c"], None, 3.0, claim=any_of(SLOT, 2)))
    assert tokens == list(range(500, 500 + 10))
    holders = [h.token for name in "abc" for h in table.holders(name)]
    assert len(holders) == len(set(holders)) == len(table)
    assert table.last_token == 509


def test_claims_are_plain_by_default() -> None:
    assert PLAIN == Claim() == Claim(EXCLUSIVE, 0, False, None)
    table = LockTable()
    table.acquire("l", "o", ["a"], None, 0.0)
    assert table.get("l").claim == PLAIN
    assert table.get("l").mode == EXCLUSIVE
    assert table.acquire("w", "o", ["a"], None, 0.0, claim=Claim()) == []
    assert table.waiting("a")[0].claim == PLAIN
