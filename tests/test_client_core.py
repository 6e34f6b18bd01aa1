"""The connecting side's protocol logic, ``pylocker.client_core``, fed frames encoded as the server would.

Time is a float passed in; nothing here opens a socket, starts a thread or reads a clock.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pylocker import protocol as p
from pylocker.client_core import (
    HEARTBEAT_MAX,
    HEARTBEAT_MIN,
    HEARTBEATS_PER_LEASE,
    LEASE_DRIFT,
    BadFrame,
    ClientCore,
    LeaseLapsed,
    LockExpired,
    Publications,
    Refused,
    Reply,
)
from pylocker.errors import BAD_FRAME, DROPPED, NOT_HOLDER, NOT_WELCOMED
from pylocker.flow import CREDIT_EVERY, PUBLISH_WINDOW
from pylocker.items import encode_item, join_items

LEASE = 2.0
ME = "me-unique"


def new_core(now: float = 0.0) -> ClientCore:
    return ClientCore(name="me", unique_name=ME, pid=4321, now=now)


def welcome(rid: int, lease: float | None = LEASE, max_lock_time: float | None = None) -> bytes:
    return p.encode(p.Welcome(rid, "srv-unique", "srv", max_lock_time, lease, 7))


def welcomed(now: float = 0.0, lease: float | None = LEASE, max_lock_time: float | None = None) -> ClientCore:
    core = new_core(now)
    rid = core.hello(now)
    core.receive(welcome(rid, lease, max_lock_time), now)
    core.take()
    return core


def frames(core: ClientCore) -> list[p.Message]:
    sends, _ = core.take()
    return [p.decode(frame) for frame in sends]


def events(core: ClientCore) -> list[Any]:
    _, out = core.take()
    return out


def take(core: ClientCore) -> tuple[list[p.Message], list[Any]]:
    sends, out = core.take()
    return [p.decode(frame) for frame in sends], out


def acquire(core: ClientCore, now: float, names: list[str] | None = None, timeout: float | None = None) -> int:
    rid = core.request(lambda r: p.Acquire(r, names or ["x"], timeout), now, is_acquire=True)
    core.take()
    return rid


def heartbeat_rids(messages: list[p.Message]) -> list[int]:
    return [m.request_id for m in messages if isinstance(m, p.Heartbeat)]


# ------------------------------------------------------------------ hello, welcome
def test_hello_and_welcome() -> None:
    core = new_core()
    assert core.welcome is None
    assert core.lease is None
    assert core.valid_until is None
    assert core.next_deadline() is None
    rid = core.hello(0.0)
    assert frames(core) == [p.Hello(rid, "me", ME, 4321)]
    assert core.waiting == 1
    core.tick(100.0)  # before the welcome: no heartbeat, no lapse
    assert core.take() == ([], [])
    reply = p.Welcome(rid, "srv-unique", "srv", None, LEASE, 7)
    core.receive(p.encode(reply), 0.1)
    assert events(core) == [Reply(rid, reply)]
    assert core.welcome == reply
    assert core.lease == LEASE
    assert core.waiting == 0


def test_request_ids_never_repeat() -> None:
    core = welcomed()
    seen: list[int] = [1]  # the hello's
    beats = 0
    now = 0.0
    for i in range(300):
        now += 0.3
        rids = []
        if i % 3 == 0:
            rid = core.request(lambda r: p.Acquire(r, ["x"], None), now, is_acquire=True)
            rids.append(rid)
            if i % 2:
                core.abandon(rid)
        elif i % 3 == 1:
            rids.append(core.request(lambda r: p.Release(r, "l"), now))
        core.tick(now)
        sent = frames(core)
        beats += len(heartbeat_rids(sent))
        rids.extend(m.request_id for m in sent if isinstance(m, p.Heartbeat))
        seen.extend(rids)
        for rid in rids:  # keep the lease alive
            core.receive(p.encode(p.Pong(rid)), now)
        core.take()
    assert not core.lapsed
    assert beats > 50
    assert len(seen) == len(set(seen))
    assert seen == sorted(seen)
    assert 0 not in seen


def test_connections_sharing_a_counter_never_reuse_an_id() -> None:
    shared = itertools.count(1)
    first = ClientCore(name="me", unique_name=ME, pid=1, now=0.0, request_ids=shared)
    old = first.request(p.Heartbeat, 0.0)
    second = ClientCore(name="me", unique_name=ME, pid=1, now=1.0, request_ids=shared)
    new = second.hello(1.0)
    assert new != old
    # A late answer meant for the first connection answers nothing on the second.
    second.receive(p.encode(p.Pong(old)), 1.1)
    assert second.take()[1] == []
    assert second.waiting == 1


def test_send_uses_no_request_id_and_waits_for_nothing() -> None:
    core = welcomed()
    core.send(p.Release(0, "lock"))
    assert frames(core) == [p.Release(0, "lock")]
    assert core.waiting == 0


# ---------------------------------------------------------------------- replies
def test_one_reply_event_per_answer() -> None:
    core = welcomed()
    acquire_rid = acquire(core, 0.1)
    release_rid = core.request(lambda r: p.Release(r, "L9"), 0.1)
    core.take()
    assert core.waiting == 2
    core.receive(p.encode(p.Released(release_rid, 1)), 0.2)
    core.receive(p.encode(p.Grant(acquire_rid, "L1", 12)), 0.3)
    assert take(core) == ([], [Reply(release_rid, p.Released(release_rid, 1)),
                               Reply(acquire_rid, p.Grant(acquire_rid, "L1", 12))])
    assert core.waiting == 0
    # The same answer again answers nothing: a duplicate grant is given back.
    core.receive(p.encode(p.Grant(acquire_rid, "L1", 12)), 0.4)
    assert take(core) == ([p.Release(0, "L1")], [])
    core.receive(p.encode(p.Released(release_rid, 1)), 0.4)
    assert take(core) == ([], [])


def test_an_error_answering_a_request_is_its_reply() -> None:
    core = welcomed()
    rid = core.request(lambda r: p.Release(r, "L1"), 0.1)
    core.take()
    refusal = p.Error(rid, NOT_HOLDER, "held by another")
    core.receive(p.encode(refusal), 0.2)
    assert events(core) == [Reply(rid, refusal)]


@pytest.mark.parametrize("rid", [0, 999])
def test_an_error_for_no_waiting_request_is_refused(rid: int) -> None:
    core = welcomed()
    core.receive(p.encode(p.Error(rid, BAD_FRAME, "bad frame: undecodable")), 0.1)
    assert take(core) == ([], [Refused(BAD_FRAME, "bad frame: undecodable")])
    core.receive(p.encode(p.Error(rid, DROPPED, "request dropped")), 0.1)
    assert events(core) == [Refused(DROPPED, "request dropped")]


def test_a_grant_for_an_abandoned_acquire_is_released() -> None:
    core = welcomed()
    rid = acquire(core, 0.1)
    core.abandon(rid)
    assert frames(core) == [p.Cancel(rid)]  # withdraw it from the queue
    assert core.waiting == 0
    # Too late: the server had granted it already.
    core.receive(p.encode(p.Grant(rid, "L5", 3)), 0.2)
    assert take(core) == ([p.Release(0, "L5")], [])


def test_a_late_timeout_for_an_abandoned_acquire_is_ignored() -> None:
    core = welcomed()
    rid = acquire(core, 0.1)
    core.abandon(rid)
    core.take()
    core.receive(p.encode(p.Timeout(rid)), 0.2)
    assert core.take() == ([], [])


def test_abandoning_a_request_that_is_not_an_acquire_sends_nothing() -> None:
    core = welcomed()
    rid = core.request(lambda r: p.Release(r, "L1"), 0.1)
    core.take()
    core.abandon(rid)
    assert core.take() == ([], [])
    assert core.waiting == 0
    core.receive(p.encode(p.Released(rid, 1)), 0.2)
    assert core.take() == ([], [])
    core.abandon(12345)  # unknown: nothing
    assert core.take() == ([], [])


def test_expire_is_a_lock_expired_event() -> None:
    core = welcomed()
    rid = acquire(core, 0.1)
    core.receive(p.encode(p.Expire(0, "L7", "lease")), 0.2)
    assert take(core) == ([], [LockExpired("L7", "lease")])
    assert core.waiting == 1  # it answers no request
    core.receive(p.encode(p.Grant(rid, "L8", 1)), 0.3)
    assert events(core) == [Reply(rid, p.Grant(rid, "L8", 1))]


@pytest.mark.parametrize("frame", [b"", b"\xc1", b"\x93\x02\x05", p.encode(p.Pong(1))[:-1], b"\x00" * 100])
def test_a_malformed_frame_is_a_bad_frame_event(frame: bytes) -> None:
    core = welcomed()
    rid = acquire(core, 0.1)
    core.receive(frame, 0.2)
    sent, out = take(core)
    assert sent == []
    assert len(out) == 1
    assert isinstance(out[0], BadFrame)
    assert core.waiting == 1
    core.receive(p.encode(p.Grant(rid, "L1", 1)), 0.3)
    assert events(core) == [Reply(rid, p.Grant(rid, "L1", 1))]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=128))
def test_arbitrary_frames_never_raise(frame: bytes) -> None:
    core = welcomed()
    core.receive(frame, 0.1)
    core.take()


# -------------------------------------------------------------------- heartbeats
@pytest.mark.parametrize(("lease", "interval"), [(2.0, 0.5), (40.0, 1.0), (4.0, 1.0), (0.04, 0.02), (None, 1.0)])
def test_heartbeat_interval(lease: float | None, interval: float) -> None:
    core = welcomed(lease=lease)
    assert core.heartbeat_interval() == interval
    if lease is not None:
        assert interval == max(HEARTBEAT_MIN, min(HEARTBEAT_MAX, lease / HEARTBEATS_PER_LEASE))
    assert core.next_deadline() == interval
    core.tick(interval * 0.99)
    assert core.take() == ([], [])
    core.tick(interval)
    [beat] = frames(core)
    assert isinstance(beat, p.Heartbeat)
    assert beat.request_id > 1


def test_heartbeats_every_quarter_lease_while_answered() -> None:
    core = welcomed()  # lease 2: a heartbeat every 0.5 s
    now = 0.0
    for _ in range(20):
        due = core.next_deadline()
        assert due == pytest.approx(now + 0.5)
        assert due is not None
        core.tick(due - 0.01)
        assert core.take() == ([], [])
        core.tick(due)
        [beat] = frames(core)
        assert isinstance(beat, p.Heartbeat)
        now = due
        core.receive(p.encode(p.Pong(beat.request_id)), now + 0.05)
        assert events(core) == [Reply(beat.request_id, p.Pong(beat.request_id))]
    assert not core.lapsed


def test_an_answered_request_postpones_the_heartbeat() -> None:
    core = welcomed()
    rid = core.request(lambda r: p.Release(r, "L"), 0.3)
    core.take()
    core.receive(p.encode(p.Released(rid, 0)), 0.35)
    core.take()
    assert core.next_deadline() == pytest.approx(0.8)
    core.tick(0.5)
    assert core.take() == ([], [])
    core.tick(0.8)
    assert len(heartbeat_rids(frames(core))) == 1


def test_unanswered_heartbeats_keep_going_out_once_per_interval() -> None:
    core = welcomed()
    sent = []
    for now in (0.5, 0.6, 0.9, 1.0, 1.2, 1.5):
        core.tick(now)
        sent.append(len(heartbeat_rids(frames(core))))
    assert sent == [1, 0, 0, 1, 0, 1]


# ---------------------------------------------------------------- the lease clock
def test_valid_until_is_the_latest_answered_send_plus_the_drifted_lease() -> None:
    core = welcomed(now=10.0)
    assert core.valid_until == pytest.approx(10.0 + LEASE * (1 - LEASE_DRIFT))
    rid = core.request(p.Heartbeat, 10.4)
    core.take()
    assert core.valid_until == pytest.approx(10.0 + LEASE * (1 - LEASE_DRIFT))  # not answered yet
    core.receive(p.encode(p.Pong(rid)), 11.5)
    # The send time counts, not the time the answer arrived.
    assert core.valid_until == pytest.approx(10.4 + LEASE * (1 - LEASE_DRIFT))
    valid_until = core.valid_until
    assert valid_until is not None
    assert valid_until < 10.4 + LEASE  # before the server can free our locks


def test_no_answer_lapses_the_lease_exactly_once_at_valid_until() -> None:
    core = welcomed()
    valid_until = core.valid_until
    assert valid_until is not None
    now = 0.0
    while now + 0.05 < valid_until:
        now += 0.05
        core.tick(now)
        _, out = take(core)
        assert not any(isinstance(e, LeaseLapsed) for e in out)
        deadline = core.next_deadline()
        assert deadline is not None
        assert deadline <= valid_until
    assert not core.lapsed
    core.tick(valid_until)
    sent, out = take(core)
    assert sent == []
    assert len(out) == 1
    assert isinstance(out[0], LeaseLapsed)
    assert core.lapsed
    assert core.next_deadline() is None
    for later in (valid_until, valid_until + 1, valid_until + 100):
        core.tick(later)
        assert core.take() == ([], [])


def test_an_answer_after_the_lapse_does_not_revive_the_lease() -> None:
    core = welcomed()
    rid = acquire(core, 0.1)
    core.tick(10.0)
    assert [type(e) for e in events(core)] == [LeaseLapsed]
    core.receive(p.encode(p.Grant(rid, "L", 1)), 10.1)
    core.tick(10.2)
    sends, out = core.take()
    # Too late to be ours (the server may have given it to another): refused and given back.
    assert out == [Reply(rid, p.Error(rid, NOT_WELCOMED, "granted after our lease ran out"))]
    assert [p.decode(frame) for frame in sends] == [p.Release(0, "L")]
    assert not core.holds("L", 10.2)


def test_an_answer_to_an_old_request_extends_the_lease_only_from_its_send_time() -> None:
    core = welcomed()
    rid = acquire(core, 0.2)  # queued at the server for a while
    for now in (0.5, 1.0, 1.5):  # heartbeats nobody answers
        core.tick(now)
        core.take()
    core.receive(p.encode(p.Grant(rid, "L1", 1)), 1.7)
    assert events(core) == [Reply(rid, p.Grant(rid, "L1", 1))]
    old_limit = 0.2 + LEASE * (1 - LEASE_DRIFT)
    assert core.valid_until == pytest.approx(old_limit)  # not 1.7 + ...
    core.tick(old_limit)
    assert [type(e) for e in events(core)] == [LeaseLapsed]


def test_an_old_answer_never_moves_valid_until_back() -> None:
    core = welcomed()
    old = acquire(core, 0.1)
    core.tick(0.5)
    [beat] = frames(core)
    assert isinstance(beat, p.Heartbeat)
    core.receive(p.encode(p.Pong(beat.request_id)), 0.6)
    expected = 0.5 + LEASE * (1 - LEASE_DRIFT)
    assert core.valid_until == pytest.approx(expected)
    core.receive(p.encode(p.Grant(old, "L1", 1)), 1.0)
    assert core.valid_until == pytest.approx(expected)


def test_an_abandoned_request_answered_late_does_not_renew_the_lease() -> None:
    core = welcomed()
    rid = acquire(core, 0.4)
    core.abandon(rid)
    core.take()
    core.receive(p.encode(p.Grant(rid, "L1", 1)), 0.5)
    assert core.valid_until == pytest.approx(LEASE * (1 - LEASE_DRIFT))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.floats(0.0, 0.3), min_size=1, max_size=12), st.data())
def test_valid_until_follows_the_latest_answered_send(gaps: list[float], data: st.DataObject) -> None:
    core = welcomed(lease=100.0)
    now = 0.0
    sent: dict[int, float] = {}
    for gap in gaps:
        now += gap
        sent[core.request(p.Heartbeat, now)] = now
    core.take()
    answered = data.draw(st.permutations(list(sent)))
    answered = answered[: data.draw(st.integers(0, len(answered)))]
    latest = 0.0
    for rid in answered:
        now += 0.01
        core.receive(p.encode(p.Pong(rid)), now)
        latest = max(latest, sent[rid])
        assert core.valid_until == pytest.approx(latest + 100.0 * (1 - LEASE_DRIFT))
    assert [e.request_id for e in events(core)] == answered


# ---------------------------------------------------------- the maxLockTime clock
MAX_LOCK_TIME = 10.0


def _granted(core: ClientCore, sent_at: float, answered_at: float, lock_id: str = "L1") -> int:
    rid = acquire(core, sent_at)
    core.receive(p.encode(p.Grant(rid, lock_id, 1)), answered_at)
    assert events(core) == [Reply(rid, p.Grant(rid, lock_id, 1))]
    return rid


def test_a_lock_under_max_lock_time_expires_by_the_clients_own_clock_once() -> None:
    core = welcomed(lease=1000.0, max_lock_time=MAX_LOCK_TIME)
    _granted(core, 1.0, 3.0)
    expires_at = 1.0 + MAX_LOCK_TIME * (1 - LEASE_DRIFT)  # from the acquire's send time
    assert core.expiry("L1") == pytest.approx(expires_at)
    # Heartbeats (answered) come first; the expiry is the next deadline once it is the nearest.
    now = 1.0
    while now + 1.0 < expires_at:
        now += 1.0
        core.tick(now)
        for beat in frames(core):
            core.receive(p.encode(p.Pong(beat.request_id)), now)
        core.take()
        deadline = core.next_deadline()
        assert deadline is not None
        assert deadline <= expires_at
    assert core.next_deadline() == pytest.approx(expires_at)
    assert core.holds("L1", expires_at - 0.01)
    core.tick(expires_at - 0.01)
    assert not [e for e in events(core) if isinstance(e, LockExpired)]
    core.tick(expires_at)
    assert [e for e in events(core) if isinstance(e, LockExpired)] == [LockExpired("L1", "maxLockTime")]
    assert core.expiry("L1") is None
    # The server's own Expire, arriving later, is not reported a second time.
    core.receive(p.encode(p.Expire(0, "L1", "maxLockTime")), expires_at + 1)
    core.tick(expires_at + 2)
    assert not [e for e in events(core) if isinstance(e, LockExpired)]


@pytest.mark.parametrize("how", ["client-clock", "server-expire"])
def test_an_expired_lock_is_not_held_any_more(how: str) -> None:
    core = welcomed(lease=1000.0, max_lock_time=MAX_LOCK_TIME)
    _granted(core, 1.0, 1.1)
    expires_at = 1.0 + MAX_LOCK_TIME * (1 - LEASE_DRIFT)
    if how == "client-clock":
        core.tick(expires_at)
    else:
        core.receive(p.encode(p.Expire(0, "L1", "maxLockTime")), 2.0)
    assert [e for e in events(core) if isinstance(e, LockExpired)] == [LockExpired("L1", "maxLockTime")]
    assert not core.holds("L1", expires_at)


def test_an_early_expire_from_the_server_is_reported_once() -> None:
    core = welcomed(lease=1000.0, max_lock_time=MAX_LOCK_TIME)
    _granted(core, 1.0, 1.1)
    core.receive(p.encode(p.Expire(0, "L1", "maxLockTime")), 2.0)
    assert events(core) == [LockExpired("L1", "maxLockTime")]
    core.tick(100.0)
    assert not [e for e in events(core) if isinstance(e, LockExpired)]


def test_a_released_lock_does_not_expire() -> None:
    core = welcomed(lease=1000.0, max_lock_time=MAX_LOCK_TIME)
    _granted(core, 1.0, 1.1)
    core.send(p.Release(0, "L1"))
    core.take()
    assert core.expiry("L1") is None
    core.tick(100.0)
    assert not [e for e in events(core) if isinstance(e, LockExpired)]


def test_a_lock_released_with_an_answered_request_does_not_expire() -> None:
    core = welcomed(lease=1000.0, max_lock_time=MAX_LOCK_TIME)
    _granted(core, 1.0, 1.1)
    rid = core.request(lambda r: p.Release(r, "L1"), 2.0)
    core.take()
    core.receive(p.encode(p.Released(rid, 1)), 2.1)
    core.take()
    core.tick(100.0)
    assert not [e for e in events(core) if isinstance(e, LockExpired)]


@pytest.mark.parametrize("reason", ["lease", "disconnected", "revoked"])
def test_an_expire_for_another_reason_is_always_reported(reason: str) -> None:
    core = welcomed(lease=1000.0, max_lock_time=MAX_LOCK_TIME)
    core.receive(p.encode(p.Expire(0, "unknown-lock", reason)), 1.0)
    assert events(core) == [LockExpired("unknown-lock", reason)]


def test_a_max_lock_time_expire_is_reported_without_a_client_clock() -> None:
    core = welcomed(lease=1000.0, max_lock_time=None)  # the server had no maxLockTime at the welcome
    _granted(core, 1.0, 1.1)
    assert core.expiry("L1") is None
    core.receive(p.encode(p.Expire(0, "L1", "maxLockTime")), 5.0)  # ... and has one now
    assert events(core) == [LockExpired("L1", "maxLockTime")]
    assert not core.holds("L1", 5.0)


def test_a_leadership_is_not_given_up_at_max_lock_time_by_the_client_clock() -> None:
    core = welcomed(lease=1000.0, max_lock_time=2.0)
    rid = core.request(lambda r: p.Claim(r, ["\x00election\x00job"], None, 0, 0, False, None), 1.0,
                       is_acquire=True)
    plain = core.request(lambda r: p.Acquire(r, ["x"], None), 1.0, is_acquire=True)
    core.receive(p.encode(p.Grant(rid, "E1", 7)), 1.1)
    core.receive(p.encode(p.Grant(plain, "P1", 8)), 1.1)
    events(core)
    assert core.expiry("E1") is None
    assert core.expiry("P1") is not None
    core.tick(10.0)
    assert events(core) == [LockExpired("P1", "maxLockTime")]
    assert core.holds("E1", 10.0)


# ------------------------------------------------------------------ publications
def _items(*messages: str) -> bytes:
    return join_items([encode_item(m, {"n": m}, None, 0, f"id-{m}", 5.0) for m in messages])


def _deliver(sender: str, before: int, *messages: str) -> bytes:
    return p.encode(p.Deliver(0, sender, f"{sender}-name", before, len(messages), _items(*messages)))


def test_publications_are_delivered_with_their_sender() -> None:
    core = welcomed()
    core.receive(_deliver("other", 0, "a", "b"), 0.1)
    assert events(core) == [Publications("other", "other-name", [["a", {"n": "a"}, None, 0, "id-a", 5.0],
                                                                 ["b", {"n": "b"}, None, 0, "id-b", 5.0]])]
    core.receive(_deliver("other", 2, "c"), 0.1)
    [delivered] = events(core)
    assert isinstance(delivered, Publications)
    assert [item[0] for item in delivered.items] == ["c"]
    assert core.dropped_publications == 0


def test_a_gap_in_before_counts_what_lossy_batches_missed() -> None:
    core = welcomed()
    core.receive(_deliver("other", 0, "a", "b"), 0.1)
    core.receive(_deliver("other", 2, "c"), 0.1)
    assert core.dropped_publications == 0
    core.receive(_deliver("other", 6, "d"), 0.1)  # 3, 4, 5 went missing
    assert core.dropped_publications == 3
    assert len(events(core)) == 3  # every publication that arrived was delivered


def test_received_batches_are_credited_back_a_quarter_window_at_a_time() -> None:
    core = welcomed()
    credits = []
    for before in range(CREDIT_EVERY * 2 + 3):
        core.receive(_deliver("other", before, "m"), 0.1)
        credits += [m.batches for m in frames(core) if isinstance(m, p.Credit)]
    assert credits == [CREDIT_EVERY, CREDIT_EVERY]


def test_our_publications_wait_for_the_servers_acknowledgements() -> None:
    core = welcomed()
    sent = 0
    while core.can_publish:
        core.publish(None, 1, _items("m"))
        sent += 1
    assert sent == PUBLISH_WINDOW
    core.receive(p.encode(p.PubAck(0, 3)), 0.1)
    assert core.unacked_publications == PUBLISH_WINDOW - 3 and core.can_publish


def test_a_malformed_batch_is_counted_and_reported() -> None:
    core = welcomed()
    core.receive(p.encode(p.Deliver(0, "other", "other-name", 0, 3, _items("a", "b"))), 0.1)  # says 3, has 2
    [event] = events(core)
    assert isinstance(event, BadFrame)
    assert core.malformed_publications == 3


def test_a_probe_answers_a_subscribe_check() -> None:
    core = welcomed()
    rid = core.request(p.SubscribeCheck, 0.3)
    assert frames(core) == [p.SubscribeCheck(rid)]
    core.receive(p.encode(p.Probe(rid)), 0.4)
    assert events(core) == [Reply(rid, p.Probe(rid))]
    assert core.waiting == 0
    # The server heard the check: the lease clock moves to its send time.
    assert core.valid_until == pytest.approx(0.3 + LEASE * (1 - LEASE_DRIFT))
