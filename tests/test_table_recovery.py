"""The lock table after a failover: reclaims during a grace period, nothing granted twice."""

from __future__ import annotations

from pylocker.table import Granted, LockTable, TimedOut


def test_nothing_new_is_granted_while_recovering() -> None:
    table = LockTable(recover_until=5.0)
    assert table.acquire("new", "b", ["a"], None, 1.0) == []
    assert table.acquire("now", "b", ["z"], 0, 1.0) == [TimedOut("now", "b", None, ("z",))]
    assert table.next_deadline() == 5.0
    assert table.expire(4.9) == []
    assert table.expire(5.0) == [Granted("new", "b", None, ("a",), 1)]
    assert table.recover_until is None


def test_reclaims_keep_ids_and_tokens_and_win_over_waiters() -> None:
    table = LockTable(recover_until=5.0, first_token=(2 << 40) + 1)
    assert table.acquire("new", "b", ["a"], None, 1.0) == []
    assert table.reclaim("old-1", "a-owner", ["a"], 7, 1.5) is True
    held = table.holder("a")
    assert held is not None
    assert (held.lock_id, held.token, held.owner) == ("old-1", 7, "a-owner")
    assert table.end_recovery(2.0) == []  # 'a' is re-claimed: the newcomer keeps waiting
    released, effects = table.release("old-1", 3.0)
    assert released
    assert effects == [Granted("new", "b", None, ("a",), (2 << 40) + 1)]


def test_a_name_cannot_be_reclaimed_twice_nor_after_recovery() -> None:
    table = LockTable(recover_until=5.0)
    assert table.reclaim("x", "o1", ["a", "b"], 3, 1.0) is True
    assert table.reclaim("y", "o2", ["b"], 4, 1.0) is False  # b is held by x now
    assert table.reclaim("x", "o2", ["c"], 3, 1.0) is False  # the lock id is taken
    table.end_recovery(2.0)
    assert table.reclaim("z", "o3", ["c"], 5, 3.0) is False  # too late: no recovery any more


def test_reclaiming_a_lock_one_still_holds_is_a_no_op() -> None:
    table = LockTable()
    table.acquire("mine", "o", ["a"], None, 0.0)
    assert table.reclaim("mine", "o", ["a"], 1, 1.0) is True  # reconnected to the same server
    assert table.reclaim("mine", "other", ["a"], 1, 1.0) is False


def test_deadlines_still_hold_while_recovering() -> None:
    table = LockTable(recover_until=10.0)
    table.acquire("w", "o", ["a"], 2.0, 1.0)
    assert table.next_deadline() == 3.0
    assert table.expire(3.0) == [TimedOut("w", "o", None, ("a",))]


def test_tokens_keep_growing_past_reclaimed_ones() -> None:
    table = LockTable(recover_until=5.0, first_token=100)
    table.reclaim("old", "o", ["a"], 150, 1.0)
    table.end_recovery(1.0)
    granted = table.acquire("new", "o", ["b"], None, 1.0)
    assert granted[0].token == 151
