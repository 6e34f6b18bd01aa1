"""The coordination calls through ServerLocker, in one process: what a user sees of their rules."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from pylocker import ServerLocker, TooManyWatches


def test_lock_global_never_hands_a_shared_lock_to_an_exclusive_request(serving: ServerLocker,
                                                                         make_locker: Any) -> None:
    client = make_locker()
    ok, reader = client.acquire_lock("data", lockGlobal=True, shared=True)
    assert ok
    ok, writer = client.acquire_lock("data", lockGlobal=True, timeout=0.3)
    assert (ok, writer) == (False, 0)  # it waits for the read lock, even its own: no upgrade in place
    # And while the read lock is held, another reader may come in: nobody writes.
    ok, other = serving.acquire_lock("data", timeout=1, shared=True)
    assert ok
    assert client.acquire_lock("data", lockGlobal=True, shared=True) == (True, reader)
    assert serving.release_lock(other) == (True, 1)
    assert client.release_lock(reader) == (True, 1)


def test_watchers_hear_of_a_lock_the_serving_locker_takes_at_once(serving: ServerLocker, make_locker: Any) -> None:
    client = make_locker()
    leaders: list[str | None] = []
    changed = threading.Event()

    def heard(leader: str | None) -> None:
        leaders.append(leader)
        changed.set()

    client.election("boss").on_change(heard)
    election = serving.election("boss")
    election.campaign(timeout=1)
    assert changed.wait(5)
    assert leaders == [serving.uniqueName]
    changed.clear()
    election.resign()
    assert changed.wait(5)
    assert leaders == [serving.uniqueName, None]


def test_leadership_and_membership_outlive_max_lock_time(make_locker: Any) -> None:
    serving = make_locker(maxLockTime=0.3)
    client = make_locker()
    election, group = client.election("job"), client.group("workers")
    election.campaign(timeout=1)
    group.join({"n": 1})
    lost = threading.Event()
    client.on_lock_lost(lambda lock_id, reason: lost.set())
    ok, plain = client.acquire_lock("plain")
    assert ok
    assert lost.wait(5)  # maxLockTime still ends plain locks...
    assert client.lost_reason(plain) == "maxLockTime"
    assert election.is_leader  # ...not leaderships or memberships: only their lease does
    assert group.joined
    assert serving.election("job").leader == client.uniqueName
    assert serving.group("workers").members == {client.uniqueName: {"n": 1}}


def test_on_change_works_after_a_refused_watch(serving: ServerLocker, make_locker: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    client = make_locker()
    group = client.group("g")
    calls = {"n": 0}
    original = client.node.watch

    def refuse_once(name: str, listener: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise TooManyWatches("refused")
        return original(name, listener)

    monkeypatch.setattr(client.node, "watch", refuse_once)
    with pytest.raises(TooManyWatches):
        group.on_change(lambda members: None)
    seen = threading.Event()
    group.on_change(lambda members: seen.set())
    serving.group("g").join()
    assert seen.wait(5)


def test_close_after_stop_and_names_in_errors(make_locker: Any) -> None:
    serving = make_locker()
    election, group = serving.election("e"), serving.group("g")
    election.campaign(timeout=1)
    group.join()
    serving.stop()
    election.close()  # the locker is gone, and its holds with it: nothing to refuse
    group.close()
    with pytest.raises(TypeError, match="an election name"):
        serving.election("")

