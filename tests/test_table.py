from __future__ import annotations

# Tests of the pure lock table, ``pylocker.table``.
#
# The clock is a number passed to every call: nothing here sleeps, spawns a thread or
# opens a socket. The first part has one focused test per rule of the module
# docstring; the second part drives the table with a hypothesis state machine and
# compares every effect with a small reference model of its own, claim modes included
# (shared, slot and any-of requests; their focused tests are in test_table_claims.py).
from collections import Counter
from collections.abc import Hashable

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

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


def _ids(effects: list, kind: type) -> list[str]:
    return [e.lock_id for e in effects if isinstance(e, kind)]


# --------------------------------------------------------------------------- grants
def test_free_names_are_granted_at_once() -> None:
    table = LockTable()
    effects = table.acquire("l1", "o1", ["a", "b"], timeout=None, now=0.0, tag="t1")
    assert effects == [Granted("l1", "o1", "t1", ("a", "b"), 1)]
    held = table.get("l1")
    assert held is not None
    assert (held.owner, held.names, held.token, held.granted_at, held.expires_at) == ("o1", ("a", "b"), 1, 0.0, None)
    assert table.holder("a") is held
    assert table.holder("b") is held
    assert table.locks_of("o1") == [held]
    assert table.owners() == ["o1"]
    assert len(table) == 1
    assert not table.is_waiting("l1")


def test_multi_name_request_is_all_or_nothing() -> None:
    table = LockTable()
    table.acquire("hb", "h", ["b"], None, 0.0)
    # "a" is free, "b" is not: nothing is taken, the request waits for both.
    assert table.acquire("ab", "o", ["a", "b"], None, 1.0) == []
    assert table.holder("a") is None
    assert table.get("ab") is None
    assert table.is_waiting("ab")
    assert table.waiters("a") == ["ab"]
    assert table.waiters("b") == ["ab"]
    # With timeout 0 the refusal takes nothing either.
    assert table.acquire("ab0", "p", ["a", "b"], 0, 1.0) == [TimedOut("ab0", "p", None, ("a", "b"))]
    assert table.holder("a") is None
    ok, effects = table.release("hb", 2.0)
    assert ok
    assert effects == [Granted("ab", "o", None, ("a", "b"), 2)]
    assert table.holder("a") is table.holder("b") is table.get("ab")
    assert table.waiters("a") == table.waiters("b") == []


def test_fifo_per_name() -> None:
    table = LockTable()
    table.acquire("h", "o0", ["a"], None, 0.0)
    for i in (1, 2, 3):
        assert table.acquire(f"w{i}", f"o{i}", ["a"], None, float(i)) == []
    assert table.waiters("a") == ["w1", "w2", "w3"]
    order = []
    current = "h"
    for _ in range(3):
        ok, effects = table.release(current, 10.0)
        assert ok
        assert len(effects) == 1
        assert isinstance(effects[0], Granted)
        current = effects[0].lock_id
        order.append(current)
    assert order == ["w1", "w2", "w3"]


def test_later_single_name_request_never_overtakes_earlier_multi_name_request() -> None:
    table = LockTable()
    table.acquire("hb", "h", ["b"], None, 0.0)
    assert table.acquire("ab", "o1", ["a", "b"], None, 1.0) == []
    # "a" is free, but "ab" asked for it first: the newcomer queues behind it.
    assert table.acquire("a", "o2", ["a"], None, 2.0) == []
    assert table.holder("a") is None
    assert table.waiters("a") == ["ab", "a"]
    ok, effects = table.release("hb", 3.0)
    assert ok
    assert effects == [Granted("ab", "o1", None, ("a", "b"), 2)]
    assert table.is_waiting("a")
    ok, effects = table.release("ab", 4.0)
    assert ok
    assert effects == [Granted("a", "o2", None, ("a",), 3)]


def test_request_freed_on_one_name_does_not_overtake_on_another() -> None:
    table = LockTable()
    table.acquire("hc", "h1", ["c"], None, 0.0)
    table.acquire("hx", "h2", ["x"], None, 0.0)
    assert table.acquire("q", "o1", ["m", "c"], None, 1.0) == []  # "m" free, waits for "c"
    assert table.acquire("r", "o2", ["x", "m"], None, 2.0) == []  # behind "q" on "m"
    # "x" frees up and "m" is not held, but "q" asked for "m" first.
    assert table.release("hx", 3.0) == (True, [])
    assert table.holder("m") is None
    assert table.holder("x") is None
    assert table.waiters("m") == ["q", "r"]
    ok, effects = table.release("hc", 4.0)
    assert effects == [Granted("q", "o1", None, ("m", "c"), 3)]
    ok, effects = table.release("q", 5.0)
    assert ok
    assert effects == [Granted("r", "o2", None, ("x", "m"), 4)]


def _drain(table: LockTable, held: list[str], now: float) -> list[str]:
    """Release granted locks one by one until nothing is held; the grant order."""
    grants: list[str] = []
    queue = list(held)
    while queue:
        ok, effects = table.release(queue.pop(0), now)
        assert ok
        assert all(isinstance(e, Granted) for e in effects)
        grants.extend(_ids(effects, Granted))
        queue.extend(_ids(effects, Granted))
    return grants


@pytest.mark.parametrize(
    "patterns",
    [
        [("a", "b"), ("b", "a")],
        [("b", "a"), ("a", "b"), ("b", "a"), ("a", "b")],
        [("a", "b"), ("b", "c"), ("c", "a")],
        [("a", "b", "c"), ("c", "b"), ("b", "a"), ("c", "a", "b")],
    ],
)
def test_crossing_multi_name_requests_do_not_deadlock(patterns: list[tuple[str, ...]]) -> None:
    table = LockTable()
    names = sorted({n for p in patterns for n in p})
    holders = [f"h{n}" for n in names]
    for n in names:
        table.acquire(f"h{n}", "h", [n], None, 0.0)
    ids = [f"r{i}" for i in range(len(patterns))]
    for i, pattern in enumerate(patterns):
        assert table.acquire(ids[i], f"o{i}", list(pattern), None, 1.0 + i) == []
    # Every queue is a slice of one arrival order.
    for n in names:
        assert table.waiters(n) == [ids[i] for i, p in enumerate(patterns) if n in p]
    grants = _drain(table, holders, 10.0)
    assert sorted(grants) == sorted(ids), "a waiter was left stuck"
    assert grants == ids  # all pairs share a name here: strictly arrival order
    assert len(table) == 0
    assert table.owners() == []


def test_crossing_requests_oldest_is_granted_as_soon_as_its_names_free() -> None:
    table = LockTable()
    table.acquire("ha", "h1", ["a"], None, 0.0)
    table.acquire("hb", "h2", ["b"], None, 0.0)
    table.acquire("ab", "o1", ["a", "b"], None, 1.0)
    table.acquire("ba", "o2", ["b", "a"], None, 2.0)
    assert table.release("ha", 3.0) == (True, [])  # "ab" still needs "b"; "ba" is behind it
    assert table.holder("a") is None
    ok, effects = table.release("hb", 4.0)
    assert effects == [Granted("ab", "o1", None, ("a", "b"), 3)]
    ok, effects = table.release("ab", 5.0)
    assert ok
    assert effects == [Granted("ba", "o2", None, ("b", "a"), 4)]


# ------------------------------------------------------------------------ timeouts
def test_timeout_zero_is_refused_when_not_free_and_leaves_no_trace() -> None:
    table = LockTable(max_lock_time=50.0)
    table.acquire("h", "o1", ["a"], None, 0.0)
    assert table.acquire("z", "o2", ["a"], 0, 1.0, tag=7) == [TimedOut("z", "o2", 7, ("a",))]
    assert not table.is_waiting("z")
    assert table.get("z") is None
    assert table.waiters("a") == []
    assert table.owners() == ["o1"]
    assert table.next_deadline() == 50.0
    # The id is free again, and timeout 0 on free names is an ordinary grant.
    assert table.acquire("z", "o2", ["b"], 0, 1.0) == [Granted("z", "o2", None, ("b",), 2)]
    # A free name that someone waits for is not free: timeout 0 refuses it too.
    table.acquire("ab", "o3", ["c", "a"], None, 2.0)
    assert table.holder("c") is None
    assert table.acquire("c0", "o2", ["c"], 0, 3.0) == [TimedOut("c0", "o2", None, ("c",))]


def test_timeout_none_waits_forever() -> None:
    table = LockTable()
    table.acquire("h", "o1", ["a"], None, 0.0)
    assert table.acquire("w", "o2", ["a"], None, 0.0) == []
    assert table.next_deadline() is None
    assert table.expire(1e12) == []
    assert table.is_waiting("w")
    ok, effects = table.release("h", 1e12 + 1)
    assert ok
    assert effects == [Granted("w", "o2", None, ("a",), 2)]


def test_expire_answers_timed_out_exactly_when_due_and_not_before() -> None:
    table = LockTable()
    table.acquire("h", "o1", ["a"], None, 0.0)
    assert table.acquire("w", "o2", ["a", "b"], 5.0, 10.0, tag="x") == []
    assert table.next_deadline() == 15.0
    assert table.expire(14.999) == []
    assert table.is_waiting("w")
    assert table.expire(15.0) == [TimedOut("w", "o2", "x", ("a", "b"))]
    assert not table.is_waiting("w")
    assert table.waiters("a") == []
    assert table.waiters("b") == []
    assert table.next_deadline() is None
    assert table.expire(100.0) == []  # answered once only
    assert table.owners() == ["o1"]


@pytest.mark.parametrize("release_at", [5.0, 6.0])
def test_request_past_its_deadline_is_never_granted_late(release_at: float) -> None:
    table = LockTable()
    table.acquire("h", "o1", ["a"], None, 0.0)
    table.acquire("late", "o2", ["a"], 5.0, 0.0)  # deadline 5
    table.acquire("next", "o3", ["a"], None, 1.0)  # no deadline
    # The release comes at or after the deadline, before anyone called expire().
    ok, effects = table.release("h", release_at)
    assert ok
    assert effects == [TimedOut("late", "o2", None, ("a",)), Granted("next", "o3", None, ("a",), 2)]
    assert table.holder("a") is table.get("next")
    assert not table.is_waiting("late")
    assert table.get("late") is None
    assert table.expire(release_at) == []  # not answered a second time


def test_request_past_its_deadline_is_not_granted_by_cancel_or_drop_either() -> None:
    table = LockTable()
    table.acquire("hb", "o1", ["b"], None, 0.0)
    table.acquire("ab", "o2", ["a", "b"], None, 0.0)
    table.acquire("late", "o3", ["a"], 2.0, 0.0)  # deadline 2, behind "ab" on "a"
    ok, effects = table.cancel("ab", 3.0)
    assert ok
    assert effects == [TimedOut("late", "o3", None, ("a",))]
    assert table.holder("a") is None
    table.acquire("late2", "o3", ["b"], 1.0, 3.0)  # deadline 4, waits for "hb"
    effects = table.drop_owner("o1", 4.0)
    assert Counter(effects) == Counter(
        [Expired("hb", "o1", ("b",), 1, REASON_DISCONNECTED), TimedOut("late2", "o3", None, ("b",))]
    )
    assert table.holder("b") is None


# -------------------------------------------------------------- cancel and release
def test_cancel_frees_the_queue_head_for_the_next() -> None:
    table = LockTable()
    table.acquire("hb", "h", ["b"], None, 0.0)
    table.acquire("ab", "o1", ["a", "b"], None, 1.0, tag="t-ab")
    table.acquire("a", "o2", ["a"], None, 2.0, tag="t-a")
    assert table.cancel("ab", 3.0, owner="o2") == (False, [])  # not o2's request
    assert table.is_waiting("ab")
    ok, effects = table.cancel("ab", 3.0, owner="o1")
    assert ok
    assert effects == [Granted("a", "o2", "t-a", ("a",), 2)]
    assert table.waiters("b") == []
    assert table.cancel("ab", 3.0) == (False, [])  # no longer waiting
    assert table.cancel("a", 3.0) == (False, [])  # held, not waiting
    assert table.cancel("nope", 3.0) == (False, [])
    assert table.get("a") is not None


def test_release_by_wrong_owner_is_refused() -> None:
    table = LockTable()
    table.acquire("l", "o1", ["a"], None, 0.0)
    table.acquire("w", "o2", ["a"], None, 0.0)
    assert table.release("l", 1.0, owner="o2") == (False, [])
    assert table.holder("a") is table.get("l")
    assert table.is_waiting("w")
    ok, effects = table.release("l", 2.0, owner="o1")
    assert ok
    assert effects == [Granted("w", "o2", None, ("a",), 2)]


def test_release_of_unknown_or_waiting_id_is_refused() -> None:
    table = LockTable()
    assert table.release("ghost", 0.0) == (False, [])
    table.acquire("l", "o1", ["a"], None, 0.0)
    table.acquire("w", "o2", ["a"], None, 0.0)
    assert table.release("w", 1.0) == (False, [])  # waiting, not held
    assert table.is_waiting("w")
    assert table.holder("a") is table.get("l")
    assert table.release("l", 1.0)[0]
    assert table.release("l", 1.0) == (False, [])  # twice
    assert table.last_token == 2


def test_duplicate_lock_id_raises_value_error() -> None:
    table = LockTable(max_lock_time=10.0)
    table.acquire("l", "o1", ["a"], None, 0.0)
    table.acquire("w", "o2", ["a"], 5.0, 0.0)
    with pytest.raises(ValueError, match="already in use"):
        table.acquire("l", "o3", ["b"], None, 1.0)  # id of a held lock
    with pytest.raises(ValueError, match="already in use"):
        table.acquire("w", "o3", ["c"], None, 1.0)  # id of a waiting request
    assert table.holder("b") is None
    assert table.holder("c") is None
    assert table.waiters("a") == ["w"]
    assert table.waiters("c") == []
    assert sorted(table.owners()) == ["o1", "o2"]
    assert table.last_token == 1
    table.release("l", 2.0)  # grants "w"
    table.release("w", 2.0)
    assert table.acquire("l", "o3", ["b"], None, 3.0) == [Granted("l", "o3", None, ("b",), 3)]


@pytest.mark.parametrize("names", [[], (), ""])
def test_empty_names_raise_value_error(names) -> None:
    table = LockTable()
    with pytest.raises(ValueError, match="at least one name"):
        table.acquire("l", "o1", names, None, 0.0)
    assert len(table) == 0
    assert table.owners() == []
    assert table.last_token == 0
    assert table.next_deadline() is None


def test_duplicate_names_in_one_request_are_collapsed() -> None:
    table = LockTable()
    assert table.acquire("l", "o1", ["a", "b", "a", "b"], None, 0.0) == [Granted("l", "o1", None, ("a", "b"), 1)]
    assert table.acquire("w", "o2", ["b", "b", "c", "b"], None, 0.0) == []
    assert table.waiters("b") == ["w"]
    assert table.waiters("c") == ["w"]
    ok, effects = table.release("l", 1.0)
    assert ok
    assert effects == [Granted("w", "o2", None, ("b", "c"), 2)]
    assert table.release("w", 2.0) == (True, [])
    assert table.holder("b") is None
    assert len(table) == 0


# ------------------------------------------------------------------ maxLockTime
def test_max_lock_time_expires_the_holder_and_hands_the_names_on() -> None:
    table = LockTable(max_lock_time=10.0)
    assert table.acquire("l1", "o1", ["a", "b"], None, 0.0) == [Granted("l1", "o1", None, ("a", "b"), 1)]
    assert table.get("l1").expires_at == 10.0
    assert table.acquire("l2", "o2", ["b"], None, 3.0) == []
    assert table.next_deadline() == 10.0
    assert table.expire(9.999) == []
    assert table.get("l1") is not None
    assert table.expire(10.0) == [
        Expired("l1", "o1", ("a", "b"), 1, REASON_MAX_LOCK_TIME),
        Granted("l2", "o2", None, ("b",), 2),
    ]
    assert table.get("l1") is None
    assert table.holder("a") is None
    held = table.get("l2")
    assert held.granted_at == 10.0
    assert held.expires_at == 20.0
    assert table.next_deadline() == 20.0
    assert table.release("l1", 11.0) == (False, [])  # the expired holder no longer holds it


# ------------------------------------------------------------------------- leases
def test_touch_keeps_an_owner_alive() -> None:
    table = LockTable(lease=10.0)
    table.register("o", 0.0)
    table.acquire("l", "o", ["a"], None, 0.0)
    for now in (8.0, 16.0, 24.0, 32.0):
        table.touch("o", now)
        assert table.expire(now) == []
    deadline = table.next_deadline()
    assert deadline is not None
    assert deadline <= 42.0  # never later than the lease itself
    assert table.expire(41.999) == []
    assert table.get("l") is not None
    assert table.expire(42.0) == [Expired("l", "o", ("a",), 1, REASON_LEASE)]
    assert table.owners() == []


def test_touch_registers_unknown_owner_and_register_does_not_renew() -> None:
    table = LockTable(lease=10.0)
    table.touch("o", 0.0)  # registers: lapses at 10
    table.register("o", 5.0)  # already registered: no renewal
    table.acquire("l", "o", ["a"], None, 5.0)
    assert table.expire(9.999) == []
    assert table.expire(10.0) == [Expired("l", "o", ("a",), 1, REASON_LEASE)]
    # An owner never registered has no lease to lose.
    table.acquire("m", "p", ["b"], None, 10.0)
    assert table.expire(1e9) == []
    assert table.get("m") is not None


def test_lease_lapse_drops_held_and_waiting_and_grants_in_fifo_order() -> None:
    table = LockTable(lease=10.0)
    table.register("o", 0.0)
    table.acquire("h1", "o", ["a"], None, 0.0)
    table.acquire("h2", "o", ["b"], None, 0.0)
    table.acquire("p1", "p", ["c"], None, 0.0)
    table.acquire("w", "o", ["c", "d"], None, 1.0, tag="tw")  # o also waits
    table.acquire("q1", "q", ["a"], None, 2.0)
    table.acquire("q2", "r", ["a"], None, 3.0)
    table.acquire("q3", "q", ["b"], None, 4.0)
    table.acquire("q4", "r", ["d"], None, 5.0)  # "d" is free but "w" asked first
    assert table.expire(9.999) == []
    effects = table.expire(10.0)
    granted = [e for e in effects if isinstance(e, Granted)]
    others = [e for e in effects if not isinstance(e, Granted)]
    assert Counter(others) == Counter(
        [
            Expired("h1", "o", ("a",), 1, REASON_LEASE),
            Expired("h2", "o", ("b",), 2, REASON_LEASE),
            Dropped("w", "o", "tw", ("c", "d"), REASON_LEASE),
        ]
    )
    assert sorted(e.lock_id for e in granted) == ["q1", "q3", "q4"]  # q2 is behind q1
    assert sorted(e.token for e in granted) == [4, 5, 6]
    for e in granted:  # each grant comes after the expiry that freed its name
        assert all(effects.index(x) < effects.index(e) for x in others if set(x.names) & set(e.names))
    assert table.is_waiting("q2")
    assert table.waiters("a") == ["q2"]
    assert "o" not in table.owners()
    assert table.next_deadline() is None
    ok, effects = table.release("q1", 11.0)
    assert ok
    assert effects == [Granted("q2", "r", None, ("a",), 7)]


def test_lease_touched_late_lapses_only_at_its_renewed_end() -> None:
    table = LockTable(lease=10.0)
    table.register("o", 0.0)
    table.acquire("l", "o", ["a"], None, 0.0)
    table.touch("o", 5.0)  # now lapses at 15
    assert table.expire(10.0) == []
    assert table.expire(14.999) == []
    assert table.next_deadline() == 15.0
    assert table.expire(15.0) == [Expired("l", "o", ("a",), 1, REASON_LEASE)]


def test_drop_owner_removes_everything_it_holds_or_waits_for() -> None:
    table = LockTable()
    table.acquire("h", "o", ["a"], None, 0.0)
    table.acquire("pb", "p", ["b"], None, 0.0)
    table.acquire("wb", "o", ["b"], None, 1.0, tag="t")
    table.acquire("qa", "q", ["a"], None, 2.0)
    table.acquire("qb", "q", ["b"], None, 3.0)
    effects = table.drop_owner("o", 5.0)
    assert Counter(effects) == Counter(
        [
            Expired("h", "o", ("a",), 1, REASON_DISCONNECTED),
            Dropped("wb", "o", "t", ("b",), REASON_DISCONNECTED),
            Granted("qa", "q", None, ("a",), 3),
        ]
    )
    assert effects.index(Expired("h", "o", ("a",), 1, REASON_DISCONNECTED)) < effects.index(
        Granted("qa", "q", None, ("a",), 3)
    )
    assert table.waiters("b") == ["qb"]
    assert sorted(table.owners()) == ["p", "q"]
    assert table.drop_owner("o", 6.0) == []
    assert table.drop_owner("nobody", 6.0) == []
    table.acquire("h2", "o", ["c"], None, 7.0)
    assert table.drop_owner("o", 8.0, reason="bye") == [Expired("h2", "o", ("c",), 4, "bye")]


def test_drop_owner_ends_its_lease() -> None:
    table = LockTable(lease=10.0)
    table.register("o", 0.0)
    table.drop_owner("o", 1.0)
    table.acquire("l", "o", ["a"], None, 2.0)  # not registered any more: no lease
    assert table.expire(100.0) == []
    assert table.get("l") is not None


# ------------------------------------------------------------------------ tokens
def test_fencing_tokens_strictly_increase_from_first_token() -> None:
    table = LockTable(max_lock_time=10.0, lease=100.0, first_token=1000)
    assert table.last_token == 999
    tokens = []
    tokens += [e.token for e in table.acquire("a1", "o1", ["a"], None, 0.0)]
    table.acquire("a2", "o2", ["a"], None, 0.0)
    tokens += [e.token for e in table.release("a1", 1.0)[1]]  # queue grant
    table.acquire("a3", "o1", ["a"], None, 1.0)
    tokens += [e.token for e in table.expire(11.0) if isinstance(e, Granted)]  # after maxLockTime
    table.register("o1", 11.0)
    table.acquire("a4", "o2", ["a"], None, 12.0)
    tokens += [e.token for e in table.drop_owner("o1", 13.0) if isinstance(e, Granted)]
    tokens += [e.token for e in table.acquire("b1", "o3", ["b"], 0, 14.0)]
    assert tokens == [1000, 1001, 1002, 1003, 1004]
    assert table.last_token == 1004
    # A successor table continues the sequence.
    successor = LockTable(first_token=table.last_token + 1)
    assert successor.acquire("x", "o", ["a"], None, 0.0)[0].token == 1005


# ------------------------------------------------------------------ next_deadline
def test_next_deadline_is_the_earliest_live_deadline() -> None:
    table = LockTable(max_lock_time=100.0)
    assert table.next_deadline() is None
    table.acquire("h", "o1", ["a"], None, 0.0)  # expires 100
    assert table.next_deadline() == 100.0
    table.acquire("r1", "o2", ["a"], 50.0, 0.0)  # deadline 50
    table.acquire("r2", "o3", ["a"], 20.0, 1.0)  # deadline 21
    assert table.next_deadline() == 21.0
    table.acquire("e", "o4", ["c"], None, -90.0)  # expires 10
    assert table.next_deadline() == 10.0
    assert table.release("e", 0.0)[0]  # its expiry is stale now
    assert table.next_deadline() == 21.0
    assert table.cancel("r2", 2.0)[0]  # so is the cancelled deadline
    assert table.next_deadline() == 50.0
    assert table.cancel("r1", 3.0)[0]
    assert table.next_deadline() == 100.0
    assert table.release("h", 4.0)[0]
    assert table.next_deadline() is None
    assert table.expire(1000.0) == []


def test_next_deadline_ignores_a_deadline_of_a_request_granted_in_time() -> None:
    table = LockTable()
    table.acquire("h", "o1", ["a"], None, 0.0)
    table.acquire("w", "o2", ["a"], 5.0, 0.0)
    table.acquire("x", "o3", ["b"], None, 0.0)
    table.acquire("y", "o4", ["b"], 9.0, 0.0)
    assert table.next_deadline() == 5.0
    table.release("h", 1.0)  # "w" granted before its deadline
    assert table.next_deadline() == 9.0
    assert table.expire(5.0) == []
    assert table.get("w") is not None


def test_heap_compaction_keeps_the_heap_bounded_and_next_deadline_right() -> None:
    table = LockTable(max_lock_time=1000.0)
    table.acquire("keeper", "k", ["z"], None, 0.0)  # expires 1000
    table.acquire("waiter", "w", ["z"], 500.0, 0.0)  # deadline 500
    biggest = 0
    for i in range(5000):
        now = i * 0.01
        assert table.acquire(f"c{i}", "o", ["a"], None, now)[0].token == i + 2
        assert table.release(f"c{i}", now)[0]
        biggest = max(biggest, len(table._heap))
        if i % 250 == 0:
            assert table.next_deadline() == 500.0
    assert biggest <= 1100
    assert table.next_deadline() == 500.0
    assert table.cancel("waiter", 60.0)[0]
    assert table.next_deadline() == 1000.0
    assert table.expire(999.0) == []
    assert table.expire(1000.0) == [Expired("keeper", "k", ("z",), 1, REASON_MAX_LOCK_TIME)]
    assert table.next_deadline() is None


def test_heap_compaction_during_expire_keeps_next_deadline_in_the_future() -> None:
    # A compaction triggered by a grant made inside expire() must not leave a due lease
    # wake-up behind: after expire(now), next_deadline() is None or later than now.
    # (Regression: expire() once popped from a local alias of the heap that the
    # compaction had replaced, so the re-armed lease kept a copy due at 5.)
    table = LockTable(max_lock_time=2.0, lease=5.0)
    table.register("o", 0.0)  # lease wake-up due at 5
    table.acquire("h1", "p", ["a"], None, 1.0)  # expires 3
    table.acquire("w", "q", ["a"], None, 1.0)  # granted when h1 expires
    for i in range(254):  # live objects with no heap entry
        table.acquire(f"x{i}", "q", ["a"], None, 1.0)
    i = 0
    while len(table._heap) < 1025:  # stale entries up to the threshold
        table.acquire(f"f{i}", "p", ["z"], None, 1.0)
        table.release(f"f{i}", 1.0)
        i += 1
    # 1025 entries for 257 live objects (1 held, 255 waiting, 1 lease): no compaction
    # yet. Inside expire(6), h1 goes (256 live) and w's grant pushes the 1025th entry.
    assert len(table._heap) == 1025
    table.touch("o", 4.0)  # the lease now ends at 9
    effects = table.expire(6.0)
    assert effects == [Expired("h1", "p", ("a",), 1, REASON_MAX_LOCK_TIME), Granted("w", "q", None, ("a",), i + 2)]
    deadline = table.next_deadline()
    assert deadline is not None
    assert deadline > 6.0, f"next_deadline() {deadline} is in the past"
    assert deadline == 8.0  # "w" expires at 8, the lease at 9
    assert table.expire(8.0) == [
        Expired("w", "q", ("a",), i + 2, REASON_MAX_LOCK_TIME),
        Granted("x0", "q", None, ("a",), i + 3),
    ]
    assert table.next_deadline() == 9.0


# ================================================================= state machine
NAMES = ("a", "b", "c", "d")
OWNERS = ("o0", "o1", "o2")
TIMEOUTS = (None, 0, 0.5, 1.0, 2.5)
MAX_LOCK_TIME = 3.0
LEASE = 4.0
MODES = (EXCLUSIVE, SHARED, SHARED, SLOT, SLOT)
# A slot request's limit is drawn from LIMITS; mostly ("same") it is replaced by the one its
# names are in use with, if any; otherwise, when they are in use, it conflicts half the time.
LIMITS = (1, 2)
SAME = (True, True, True, False)


class _MRequest:
    __slots__ = ("arrival", "claim", "deadline", "lock_id", "names", "owner", "seq", "tag")

    def __init__(
        self,
        lock_id: str,
        owner: Hashable,
        names: tuple[str, ...],
        deadline: float | None,
        tag: object,
        seq: int | None,
        arrival: int,
        claim: Claim = PLAIN,
    ) -> None:
        self.lock_id, self.owner, self.names, self.deadline = lock_id, owner, names, deadline
        self.tag, self.seq, self.arrival, self.claim = tag, seq, arrival, claim


class _MHeld:
    __slots__ = ("arrival", "claim", "expires_at", "granted_at", "lock_id", "names", "owner", "seq", "token")

    def __init__(
        self, request: _MRequest, names: tuple[str, ...], now: float, expires_at: float | None, seq: int | None
    ) -> None:
        self.lock_id, self.owner, self.names, self.claim = request.lock_id, request.owner, names, request.claim
        self.arrival, self.granted_at, self.expires_at, self.seq = request.arrival, now, expires_at, seq
        self.token: int | None = None  # taken from the table's Granted effect


class _Model:
    """The reference: a list of waiting requests in arrival order, and the held locks.

    A name's holders are the held locks naming it, in grant order (``held`` keeps it).
    A claim is admitted by a name with no holder; else only a shared claim by shared
    holders, or a slot claim by fewer slot holders than their limit. A slot request's
    limit must be the one every slot request waiting for or holding one of its names
    has (``limit_conflict``). An any-of request is granted the first of its names, in the
    order asked, where it is first in line and admitted, and holds that name alone.

    Effects are produced token-less (``_norm`` form); the machine checks tokens apart.
    ``seq`` counts scheduled wake-ups exactly as the table does, so that events due at
    the same instant are applied in the same order. Lease wake-ups (``arms``) follow the
    documented design: ``touch`` does not move a wake-up, it is re-armed when it comes due
    (and the wake-up of an owner dropped, then registered again before the table
    discarded it, counts again). So next_deadline() may be early for a lease, never late.
    """

    def __init__(self, max_lock_time: float | None, lease: float | None, first_token: int) -> None:
        self.max_lock_time, self.lease = max_lock_time, lease
        self.now = 0.0
        self.seq = 0
        self.waiting: list[_MRequest] = []
        self.held: dict[str, _MHeld] = {}
        self.lease_expiry: dict[Hashable, float] = {}
        self.arms: list[tuple[float, int, Hashable]] = []
        self.last_token = first_token - 1

    # queries
    def queue(self, name: str) -> list[_MRequest]:
        return [r for r in self.waiting if name in r.names]

    def holders(self, name: str) -> list[_MHeld]:
        return [held for held in self.held.values() if name in held.names]

    def admits(self, name: str, claim: Claim) -> bool:
        holders = self.holders(name)
        if not holders:
            return True
        if claim.mode == EXCLUSIVE or any(h.claim.mode != claim.mode for h in holders):
            return False
        return claim.mode == SHARED or len(holders) < holders[0].claim.limit

    def slot_limits(self, name: str) -> set[int]:
        """The limits of the slot requests waiting for or holding ``name`` (one at most)."""
        using = [r.claim for r in self.waiting if name in r.names]
        using += [h.claim for h in self.held.values() if name in h.names]
        return {c.limit for c in using if c.mode == SLOT}

    def limit_conflict(self, names: tuple[str, ...], claim: Claim) -> bool:
        return claim.mode == SLOT and any(self.slot_limits(n) - {claim.limit} for n in names)

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    # rules
    def _grant(self, request: _MRequest, names: tuple[str, ...], out: list) -> None:
        expires_at = None if not self.max_lock_time else self.now + self.max_lock_time
        seq = None if expires_at is None else self._next_seq()
        self.held[request.lock_id] = _MHeld(request, names, self.now, expires_at, seq)
        out.append(("G", request.lock_id, request.owner, request.tag, names))

    def _takes(self, request: _MRequest) -> tuple[str, ...] | None:
        """What ``request`` is granted now, if anything: first in line and admitted."""
        ready = [n for n in request.names if self.queue(n)[0] is request and self.admits(n, request.claim)]
        if request.claim.any_of:
            return tuple(ready[:1]) or None
        return request.names if len(ready) == len(request.names) else None

    def _promote(self, names: list[str], out: list) -> None:
        # The names are looked at in the table's order (last first): when several free up
        # at once, which name an any-of request takes may depend on it.
        work = list(names)
        while work:
            name = work.pop()
            queue = self.queue(name)
            if not queue or any(h.claim.mode == EXCLUSIVE for h in self.holders(name)):
                continue
            head = queue[0]
            if head.deadline is not None and head.deadline <= self.now:
                out.append(("T", head.lock_id, head.owner, head.tag, head.names))
                self.waiting.remove(head)
                work.extend(head.names)
                continue
            taken = self._takes(head) if self.admits(name, head.claim) else None
            if taken is not None:
                self.waiting.remove(head)
                self._grant(head, taken, out)
                work.extend(head.names)

    def acquire(
        self,
        lock_id: str,
        owner: Hashable,
        names: list[str],
        timeout: float | None,
        tag: object,
        arrival: int,
        claim: Claim = PLAIN,
    ) -> list | None:
        """The effects, or None for a slot limit conflict (the table must raise, and change nothing)."""
        unique = tuple(dict.fromkeys(names))
        if self.limit_conflict(unique, claim):
            return None
        out: list = []
        free = [n for n in unique if not self.queue(n) and self.admits(n, claim)]
        request = _MRequest(lock_id, owner, unique, None, tag, None, arrival, claim)
        if claim.any_of and free:
            self._grant(request, (free[0],), out)
        elif not claim.any_of and len(free) == len(unique):
            self._grant(request, unique, out)
        elif timeout is not None and timeout <= 0:
            out.append(("T", lock_id, owner, tag, unique))
        else:
            request.deadline = None if timeout is None else self.now + timeout
            request.seq = None if request.deadline is None else self._next_seq()
            self.waiting.append(request)
        return out

    def release(self, lock_id: str, owner: Hashable | None) -> tuple[bool, list]:
        held = self.held.get(lock_id)
        if held is None or (owner is not None and held.owner != owner):
            return False, []
        del self.held[lock_id]
        out: list = []
        self._promote(list(held.names), out)
        return True, out

    def cancel(self, lock_id: str, owner: Hashable | None) -> tuple[bool, list]:
        found = [r for r in self.waiting if r.lock_id == lock_id]
        if not found or (owner is not None and found[0].owner != owner):
            return False, []
        request = found[0]
        was_head = [n for n in request.names if self.queue(n)[0] is request]
        self.waiting.remove(request)
        out: list = []
        self._promote(was_head, out)
        return True, out

    def register(self, owner: Hashable) -> None:
        if self.lease is None or owner in self.lease_expiry:
            return
        self.lease_expiry[owner] = self.now + self.lease
        self.arms.append((self.now + self.lease, self._next_seq(), owner))

    def touch(self, owner: Hashable) -> None:
        if self.lease is None:
            return
        if owner in self.lease_expiry:
            self.lease_expiry[owner] = self.now + self.lease
        else:
            self.register(owner)

    def drop_owner(self, owner: Hashable, reason: str) -> list:
        self.lease_expiry.pop(owner, None)
        out: list = []
        freed: list[str] = []
        # In the order the owner asked for them: the order its names are freed in, which
        # may decide the name an any-of waiter takes (see _promote).
        mine: list[_MHeld | _MRequest] = [h for h in self.held.values() if h.owner == owner]
        mine += [r for r in self.waiting if r.owner == owner]
        for item in sorted(mine, key=lambda i: i.arrival):
            if isinstance(item, _MHeld):
                del self.held[item.lock_id]
                out.append(("E", item.lock_id, owner, item.names, reason))
            else:
                self.waiting.remove(item)
                out.append(("D", item.lock_id, owner, item.tag, item.names, reason))
            freed.extend(item.names)
        self._promote(freed, out)
        return out

    def expire(self) -> list:
        now = self.now
        out: list = []
        while True:
            due: list[tuple[float, int, int, object]] = []
            due += [(r.deadline, r.seq, 0, r) for r in self.waiting if r.deadline is not None and r.deadline <= now]
            due += [
                (h.expires_at, h.seq, 1, h)
                for h in self.held.values()
                if h.expires_at is not None and h.expires_at <= now
            ]
            due += [(a[0], a[1], 2, a) for a in self.arms if a[0] <= now]
            if not due:
                return out
            _, _, kind, item = min(due, key=lambda d: (d[0], d[1]))
            if kind == 0:
                request: _MRequest = item  # type: ignore[assignment]
                out.append(("T", request.lock_id, request.owner, request.tag, request.names))
                was_head = [n for n in request.names if self.queue(n)[0] is request]
                self.waiting.remove(request)
                self._promote(was_head, out)
            elif kind == 1:
                held: _MHeld = item  # type: ignore[assignment]
                del self.held[held.lock_id]
                out.append(("E", held.lock_id, held.owner, held.names, REASON_MAX_LOCK_TIME))
                self._promote(list(held.names), out)
            else:
                self.arms.remove(item)  # type: ignore[arg-type]
                owner = item[2]  # type: ignore[index]
                expiry = self.lease_expiry.get(owner)
                if expiry is None:
                    continue
                if expiry > now:
                    self.arms.append((expiry, self._next_seq(), owner))
                else:
                    out.extend(self.drop_owner(owner, REASON_LEASE))

    def next_deadline(self) -> float | None:
        live = [(r.deadline, r.seq) for r in self.waiting if r.deadline is not None]
        live += [(h.expires_at, h.seq) for h in self.held.values() if h.expires_at is not None]
        live += [(a[0], a[1]) for a in self.arms if a[2] in self.lease_expiry]
        first = min(live) if live else None
        # Wake-ups of owners gone (and not back) that come first are forgotten for good.
        self.arms = [a for a in self.arms if a[2] in self.lease_expiry or (first is not None and (a[0], a[1]) > first)]
        return None if first is None else first[0]


def _norm(effect: object) -> tuple:
    if isinstance(effect, Granted):
        return ("G", effect.lock_id, effect.owner, effect.tag, effect.names)
    if isinstance(effect, TimedOut):
        return ("T", effect.lock_id, effect.owner, effect.tag, effect.names)
    if isinstance(effect, Dropped):
        return ("D", effect.lock_id, effect.owner, effect.tag, effect.names, effect.reason)
    if isinstance(effect, Expired):
        return ("E", effect.lock_id, effect.owner, effect.names, effect.reason)
    raise AssertionError(f"unknown effect {effect!r}")


class LockTableMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._start(1)

    def _start(self, first_token: int) -> None:
        self.table = LockTable(max_lock_time=MAX_LOCK_TIME, lease=LEASE, first_token=first_token)
        self.model = _Model(MAX_LOCK_TIME, LEASE, first_token)
        self.now = 0.0
        self.counter = 0
        self.arrival: dict[str, int] = {}

    @initialize(first_token=st.integers(-5, 10_000))
    def start(self, first_token: int) -> None:
        self._start(first_token)

    # ------------------------------------------------------------ helpers
    def _set_now(self, now: float) -> None:
        assert now >= self.now
        self.now = self.model.now = now

    def _next_deadline(self) -> float | None:
        actual, expected = self.table.next_deadline(), self.model.next_deadline()
        assert actual == expected
        # Never later than any deadline, maxLockTime or lease still to come.
        ends = [r.deadline for r in self.model.waiting if r.deadline is not None]
        ends += [h.expires_at for h in self.model.held.values() if h.expires_at is not None]
        ends += list(self.model.lease_expiry.values())
        assert (actual is None) == (not ends)
        assert actual is None or actual <= min(ends)
        return actual

    def _apply(self, actual: list, expected: list) -> None:
        """Compare one call's effects with the model's and check the token rules."""
        model = self.model
        assert Counter(map(_norm, actual)) == Counter(expected), (actual, expected)
        deadlines = self._pre_deadlines  # the waiting requests before the call
        tokens = {lock_id: h.token for lock_id, h in self._pre_held.items()}
        last = model.last_token
        for effect in actual:
            if isinstance(effect, Granted):
                assert effect.token > last, "fencing tokens must strictly increase"
                last = effect.token
                tokens[effect.lock_id] = effect.token
                deadline = deadlines.get(effect.lock_id)
                assert deadline is None or deadline > self.now, "granted at or after its deadline"
                # FIFO: nobody that arrived earlier and shares a name is still waiting.
                arrival = self.arrival[effect.lock_id]
                for request in model.waiting:
                    assert not (request.arrival < arrival and set(request.names) & set(effect.names)), (
                        f"{effect.lock_id} overtook {request.lock_id}"
                    )
            elif isinstance(effect, Expired):
                # The token of the grant it ends; a grant made by this call comes first.
                assert tokens.get(effect.lock_id) == effect.token
        model.last_token = last
        for lock_id, held in model.held.items():
            if held.token is None:
                held.token = tokens[lock_id]

    def _before(self) -> None:
        self._pre_deadlines = {r.lock_id: r.deadline for r in self.model.waiting}
        self._pre_held = dict(self.model.held)

    def _check_after_expire(self) -> None:
        now = self.now
        assert all(r.deadline is None or r.deadline > now for r in self.model.waiting)
        assert all(h.expires_at is None or h.expires_at > now for h in self.table.held_locks())
        assert all(expiry > now for expiry in self.model.lease_expiry.values())
        deadline = self._next_deadline()
        assert deadline is None or deadline > now

    def _pick(self, ids: list[str], index: int) -> str:
        return sorted(ids)[index % len(ids)]

    # -------------------------------------------------------------- rules
    def _acquire(self, owner: str, names: list[str], timeout: float | None, claim: Claim = PLAIN) -> None:
        self.counter += 1
        lock_id = f"L{self.counter}"
        self.arrival[lock_id] = self.counter
        tag = ("tag", self.counter)
        self._before()
        expected = self.model.acquire(lock_id, owner, names, timeout, tag, self.counter, claim)
        if expected is None:
            before = self._snapshot()
            with pytest.raises(LimitConflict):
                self.table.acquire(lock_id, owner, names, timeout, self.now, tag, claim)
            assert self._snapshot() == before, "a refused slot request changed the table"
            for name in dict.fromkeys(names):  # nor counted its limit on any of them
                self._probe_limit(name, claim.limit % 4 + 1)
            return
        actual = self.table.acquire(lock_id, owner, names, timeout, self.now, tag, claim)
        self._apply(actual, expected)

    def _snapshot(self) -> tuple:
        table = self.table
        return (
            [(h.lock_id, h.names, h.token) for h in table.held_locks()],
            [table.waiters(name) for name in NAMES],
            table.owners(),
            table.last_token,
            table.next_deadline(),
        )

    def _claim(self, names: list[str], mode: int, limit: int, same: bool, any_of: bool) -> Claim:
        if mode != SLOT:
            return Claim(mode, 0, any_of)
        if same:
            limit = next((min(used) for used in map(self.model.slot_limits, names) if used), limit)
        return Claim(SLOT, limit, any_of)

    # Six acquire rules (three plain, three with claims), so that about half of the steps ask
    # for locks and queues form.
    @rule(
        owner=st.sampled_from(OWNERS),
        names=st.lists(st.sampled_from(NAMES), min_size=1, max_size=5),
        timeout=st.sampled_from(TIMEOUTS),
    )
    def acquire(self, owner: str, names: list[str], timeout: float | None) -> None:
        self._acquire(owner, names, timeout)

    @rule(
        owner=st.sampled_from(OWNERS),
        names=st.sets(st.sampled_from(NAMES), min_size=2, max_size=3),
        timeout=st.sampled_from([None, 2.5]),
    )
    def acquire_several_and_wait(self, owner: str, names: set[str], timeout: float | None) -> None:
        self._acquire(owner, sorted(names, reverse=len(names) == 2), timeout)

    @rule(owner=st.sampled_from(OWNERS), name=st.sampled_from(NAMES), timeout=st.sampled_from(TIMEOUTS))
    def acquire_one(self, owner: str, name: str, timeout: float | None) -> None:
        self._acquire(owner, [name], timeout)

    # Two more with claims: shared, slot or exclusive; for all the names or any one of them.
    @rule(
        owner=st.sampled_from(OWNERS),
        names=st.lists(st.sampled_from(NAMES), min_size=1, max_size=3),
        mode=st.sampled_from(MODES),
        limit=st.sampled_from(LIMITS),
        same=st.sampled_from(SAME),
        timeout=st.sampled_from(TIMEOUTS),
    )
    def acquire_claim(
        self, owner: str, names: list[str], mode: int, limit: int, same: bool, timeout: float | None
    ) -> None:
        self._acquire(owner, names, timeout, self._claim(names, mode, limit, same, False))

    @rule(
        owner=st.sampled_from(OWNERS),
        names=st.lists(st.sampled_from(NAMES), min_size=2, max_size=3, unique=True),
        mode=st.sampled_from(MODES),
        limit=st.sampled_from(LIMITS),
        same=st.sampled_from(SAME),
        timeout=st.sampled_from(TIMEOUTS),
    )
    def acquire_any_of(
        self, owner: str, names: list[str], mode: int, limit: int, same: bool, timeout: float | None
    ) -> None:
        self._acquire(owner, names, timeout, self._claim(names, mode, limit, same, True))

    @rule(
        owner=st.sampled_from(OWNERS),
        name=st.sampled_from(NAMES),
        mode=st.sampled_from([SHARED, SLOT]),
        limit=st.sampled_from(LIMITS),
        timeout=st.sampled_from([None, None, 2.5, 1.0, 0]),
    )
    def acquire_one_shared(self, owner: str, name: str, mode: int, limit: int, timeout: float | None) -> None:
        """Readers and slot takers of one name (crowds, and their queues, form)."""
        self._acquire(owner, [name], timeout, self._claim([name], mode, limit, True, False))

    @rule(
        owners=st.lists(st.sampled_from(OWNERS), min_size=2, max_size=3),
        name=st.sampled_from(NAMES),
        mode=st.sampled_from([SHARED, SLOT]),
        limit=st.sampled_from(LIMITS),
        timeout=st.sampled_from([None, 2.5, 1.0]),
    )
    def acquire_crowd(self, owners: list[str], name: str, mode: int, limit: int, timeout: float | None) -> None:
        """Readers (or slot takers) one after the other: queued together, granted together."""
        for owner in owners:
            self._acquire(owner, [name], timeout, self._claim([name], mode, limit, True, False))

    @precondition(lambda self: self.model.held or self.model.waiting)
    @rule(
        index=st.integers(0, 100),
        owner=st.sampled_from(OWNERS),
        names=st.sampled_from([["a"], ["d", "c"]]),
        claim=st.sampled_from([PLAIN, Claim(SHARED), Claim(SLOT, 3), Claim(SLOT, 1, True)]),
    )
    def acquire_with_id_in_use(self, index: int, owner: str, names: list[str], claim: Claim) -> None:
        lock_id = self._pick(list(self.model.held) + [r.lock_id for r in self.model.waiting], index)
        before = self._snapshot()
        # Refused for its id before its slot limit is looked at (or counted).
        with pytest.raises(ValueError, match="already in use"):
            self.table.acquire(lock_id, owner, names, None, self.now, claim=claim)
        assert self._snapshot() == before

    @rule(name=st.sampled_from(NAMES), limit=st.integers(1, 4))
    def probe_slot_limit(self, name: str, limit: int) -> None:
        self._probe_limit(name, limit)

    def _probe_limit(self, name: str, limit: int) -> None:
        """Only a limit other than the one a name is in use with conflicts; any is fine on a name no slot uses."""
        used = self.model.slot_limits(name)
        before = self._snapshot()
        if used:
            with pytest.raises(LimitConflict):
                self.table.acquire("probe", "prober", [name], 0, self.now, claim=Claim(SLOT, max(used) + limit))
            assert self._snapshot() == before
            return
        # Timeout 0: refused without a trace, or granted (then released: nothing waits for it).
        effects = self.table.acquire("probe", "prober", [name], 0, self.now, claim=Claim(SLOT, limit))
        if self.model.queue(name) or self.model.holders(name):
            assert effects == [TimedOut("probe", "prober", None, (name,))]
        else:
            self.model.last_token += 1
            assert effects == [Granted("probe", "prober", None, (name,), self.model.last_token)]
            assert self.table.release("probe", self.now) == (True, [])
            before = (*before[:3], self.model.last_token, *before[4:])
        assert self._snapshot() == before

    @rule(index=st.integers(0, 100), how=st.sampled_from(["owner", "any", "wrong", "unknown", "waiting"]))
    def release(self, index: int, how: str) -> None:
        held, waiting = list(self.model.held), [r.lock_id for r in self.model.waiting]
        if how == "unknown" or not held:
            lock_id, owner = "L0", None
        elif how == "waiting":
            lock_id, owner = (self._pick(waiting, index) if waiting else "L0"), None
        else:
            lock_id = self._pick(held, index)
            real = self.model.held[lock_id].owner
            owner = {"owner": real, "any": None, "wrong": OWNERS[(OWNERS.index(real) + 1) % len(OWNERS)]}[how]
        self._before()
        ok_expected, expected = self.model.release(lock_id, owner)
        ok, actual = self.table.release(lock_id, self.now, owner)
        assert ok == ok_expected
        if how in ("wrong", "unknown", "waiting"):
            assert not ok
            assert actual == []
        self._apply(actual, expected)

    @rule(index=st.integers(0, 100), how=st.sampled_from(["owner", "any", "wrong", "held"]))
    def cancel(self, index: int, how: str) -> None:
        held, waiting = list(self.model.held), [r.lock_id for r in self.model.waiting]
        if how == "held" or not waiting:
            lock_id, owner = (self._pick(held, index) if held else "L0"), None
        else:
            lock_id = self._pick(waiting, index)
            real = next(r.owner for r in self.model.waiting if r.lock_id == lock_id)
            owner = {"owner": real, "any": None, "wrong": OWNERS[(OWNERS.index(real) + 1) % len(OWNERS)]}[how]
        self._before()
        ok_expected, expected = self.model.cancel(lock_id, owner)
        ok, actual = self.table.cancel(lock_id, self.now, owner)
        assert ok == ok_expected
        if how in ("wrong", "held"):
            assert not ok
            assert actual == []
        self._apply(actual, expected)

    @rule(dt=st.sampled_from([0.0, 0.5, 1.0, 2.0, 5.0]), call_expire=st.booleans())
    def advance(self, dt: float, call_expire: bool) -> None:
        """Time passes; expire() is called, or not yet (the next calls then come late)."""
        self._set_now(self.now + dt)
        if call_expire:
            self._before()
            expected = self.model.expire()
            actual = self.table.expire(self.now)
            self._apply(actual, expected)
            self._check_after_expire()

    @rule()
    def expire_at_next_deadline(self) -> None:
        """A well-behaved server: wake up exactly at next_deadline() (nothing happens before)."""
        deadline = self._next_deadline()
        if deadline is None:
            return
        if deadline - 0.25 >= self.now:
            self._set_now(deadline - 0.25)
            self._before()
            assert self.model.expire() == []
            assert self.table.expire(self.now) == []
        self._set_now(max(self.now, deadline))
        self._before()
        expected = self.model.expire()
        actual = self.table.expire(self.now)
        self._apply(actual, expected)
        self._check_after_expire()

    @rule(owner=st.sampled_from(OWNERS), what=st.sampled_from(["touch", "touch", "register", "drop", "bye"]))
    def owner_call(self, owner: str, what: str) -> None:
        if what == "touch":
            self.model.touch(owner)
            self.table.touch(owner, self.now)
        elif what == "register":
            self.model.register(owner)
            self.table.register(owner, self.now)
        else:
            reason = REASON_DISCONNECTED if what == "drop" else "bye"
            self._before()
            expected = self.model.drop_owner(owner, reason)
            actual = self.table.drop_owner(owner, self.now, reason)
            self._apply(actual, expected)

    # --------------------------------------------------------- invariants
    @invariant()
    def holders_are_compatible(self) -> None:
        table, model = self.table, self.model
        for name in NAMES:
            holders = table.holders(name)
            assert table.holder(name) is (holders[0] if holders else None)
            assert all(table.get(h.lock_id) is h and name in h.names for h in holders)
            modes = {h.claim.mode for h in holders}
            assert len(modes) <= 1, f"{name} is held in modes {modes}"
            if EXCLUSIVE in modes:
                assert len(holders) == 1, f"{name} has an exclusive holder beside others"
            if SLOT in modes:
                limits = {h.claim.limit for h in holders}
                assert len(limits) == 1, f"{name} is held with slot limits {limits}"
                assert len(holders) <= limits.pop(), f"{name} has more slot holders than its limit"
            assert len(model.slot_limits(name)) <= 1
            assert [h.lock_id for h in holders] == [h.lock_id for h in model.holders(name)]
        for held in table.held_locks():
            assert all(held in table.holders(n) for n in held.names)
            assert len(held.names) == 1 or not held.claim.any_of

    @invariant()
    def nothing_grantable_is_left_waiting(self) -> None:
        """No lost wake-up: a request first in line where it is admitted would have been granted."""
        table = self.table
        for name in NAMES:
            for request in table.waiting(name):
                ready = [
                    n
                    for n in request.names
                    if table.waiters(n)[0] == request.lock_id and self._admits(table.holders(n), request.claim)
                ]
                assert not (ready if request.claim.any_of else len(ready) == len(request.names)), (
                    f"{request.lock_id} waits, but may take {ready}"
                )

    @staticmethod
    def _admits(holders: list, claim: Claim) -> bool:
        if not holders:
            return True
        if claim.mode == EXCLUSIVE or any(h.claim.mode != claim.mode for h in holders):
            return False
        return claim.mode == SHARED or len(holders) < holders[0].claim.limit

    @invariant()
    def table_matches_model(self) -> None:
        table, model = self.table, self.model
        for name in NAMES:
            assert table.waiters(name) == [r.lock_id for r in model.queue(name)]
            assert [(r.lock_id, r.names, r.claim) for r in table.waiting(name)] == [
                (r.lock_id, r.names, r.claim) for r in model.queue(name)
            ]
        assert {
            h.lock_id: (h.owner, h.names, h.token, h.granted_at, h.expires_at, h.claim) for h in table.held_locks()
        } == {
            lock_id: (h.owner, h.names, h.token, h.granted_at, h.expires_at, h.claim)
            for lock_id, h in model.held.items()
        }
        assert all(table.is_waiting(r.lock_id) for r in model.waiting)
        assert not any(table.is_waiting(lock_id) for lock_id in model.held)
        assert sorted(table.owners()) == sorted(
            {h.owner for h in model.held.values()} | {r.owner for r in model.waiting}
        )
        for owner in OWNERS:
            assert sorted(h.lock_id for h in table.locks_of(owner)) == sorted(
                lock_id for lock_id, h in model.held.items() if h.owner == owner
            )
        assert len(table) == len(model.held)
        assert table.last_token == model.last_token
        self._next_deadline()


TestLockTableMachine = LockTableMachine.TestCase
TestLockTableMachine.settings = settings(
    max_examples=200, stateful_step_count=50, deadline=None, derandomize=True, database=None
)
