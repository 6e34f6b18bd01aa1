"""The serving side's protocol logic, ``pylocker.server_core``, driven with encoded frames and a fake time.

Nothing here opens a socket, starts a thread or reads a clock: every time is a
float passed in, every input an encoded frame, every output read back from
``take()`` and decoded.
"""

from __future__ import annotations

import random
from typing import Any, Callable

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pylocker import protocol as p
from pylocker.errors import BAD_FRAME, DROPPED, NOT_HOLDER, NOT_WELCOMED
from pylocker.flow import WINDOW
from pylocker.items import encode_item, join_items
from pylocker.server_core import (
    BAD_FRAMES_LOGGED,
    MAX_DETAIL,
    BadFrame,
    ClientsChanged,
    LocalGranted,
    LocalLost,
    LocalPublications,
    LocalPublishAcked,
    LocalTimedOut,
    LockExpired,
    Output,
    ServerCore,
)
from pylocker.table import REASON_LEASE, REASON_MAX_LOCK_TIME, Granted, TimedOut

SERVER = "srv-unique"
A, B, C = b"a", b"b", b"c"


def make_core(now: float = 0.0, **kwargs: Any) -> ServerCore:
    kwargs.setdefault("name", "srv")
    kwargs.setdefault("unique_name", SERVER)
    return ServerCore(now=now, **kwargs)


def send(core: ServerCore, peer: bytes, message: p.Message, now: float) -> Output:
    core.receive(peer, [p.encode(message)], now)
    return core.take()


def replies(out: Output) -> list[tuple[bytes, p.Message]]:
    return [(peer, p.decode(frame)) for peer, frame in out.sends]


def to(out: Output, peer: bytes) -> list[p.Message]:
    return [message for who, message in replies(out) if who == peer]


def hello(core: ServerCore, peer: bytes, now: float = 0.0, name: str | None = None) -> Output:
    out = send(core, peer, p.Hello(1, name or f"{peer.decode()}-name", peer.decode(), 100), now)
    assert [type(m) for m in to(out, peer)] == [p.Welcome]
    return out


def grant(core: ServerCore, peer: bytes, names: list[str], now: float, rid: int = 10) -> p.Grant:
    out = send(core, peer, p.Acquire(rid, names, None), now)
    [message] = to(out, peer)
    assert isinstance(message, p.Grant)
    assert message.request_id == rid
    return message


def items(*messages: str) -> bytes:
    return join_items([encode_item(m, None, None, 0, f"id-{m}", 1.0) for m in messages])


# ------------------------------------------------------------------ hello, welcome
def test_hello_is_answered_with_a_welcome_describing_the_server() -> None:
    core = make_core(max_lock_time=7.5, lease=3.0, epoch=4)
    out = send(core, A, p.Hello(9, "alice", "a", 1234), 0.0)
    assert replies(out) == [(A, p.Welcome(9, SERVER, "srv", 7.5, 3.0, 4))]
    welcome = to(out, A)[0]
    assert isinstance(welcome, p.Welcome)
    assert (welcome.lease, welcome.max_lock_time, welcome.epoch) == (3.0, 7.5, 4)
    assert core.clients()[A] == ("alice", "a", 1234)


def test_welcome_without_lease_or_max_lock_time() -> None:
    core = make_core()
    out = send(core, A, p.Hello(1, "alice", "a", 1), 0.0)
    assert to(out, A) == [p.Welcome(1, SERVER, "srv", None, None, 0)]


def test_clients_changed_is_emitted_by_take_after_hello_and_bye() -> None:
    core = make_core()
    core.receive(A, [p.encode(p.Hello(1, "alice", "a", 1))], 0.0)
    core.receive(B, [p.encode(p.Hello(1, "bob", "b", 2))], 0.0)
    assert core.has_output
    out = core.take()
    # Two hellos, one notification: the list is computed when taken.
    assert [e for e in out.events if isinstance(e, ClientsChanged)] == [ClientsChanged(("a", "b"))]
    assert not core.has_output
    assert core.take() == Output([], [])

    # Saying hello again with the same names changes nothing.
    out = send(core, A, p.Hello(2, "alice", "a", 1), 0.1)
    assert not [e for e in out.events if isinstance(e, ClientsChanged)]
    # A new name does.
    out = send(core, A, p.Hello(3, "alice2", "a", 1), 0.1)
    assert [e for e in out.events if isinstance(e, ClientsChanged)] == [ClientsChanged(("a", "b"))]

    out = send(core, A, p.Bye(0), 0.2)
    assert out.events == [ClientsChanged(("b",))]
    assert out.sends == []
    out = send(core, B, p.Bye(0), 0.3)
    assert out.events == [ClientsChanged(())]
    assert core.clients() == {}


# ------------------------------------------------------------------- acquire, release
def test_acquire_is_granted_then_queued_then_granted_on_release() -> None:
    core = make_core(first_token=40)
    hello(core, A)
    hello(core, B)
    first = grant(core, A, ["x"], 1.0, rid=5)
    assert first.token == 40
    # B waits: no answer yet.
    out = send(core, B, p.Acquire(77, ["x"], None), 2.0)
    assert out == Output([], [])
    assert len(core.table.waiters("x")) == 1
    # A releases (and waits for the answer): B's Grant carries B's request id.
    out = send(core, A, p.Release(6, first.lock_id), 3.0)
    assert to(out, A) == [p.Released(6, 1)]
    [granted] = to(out, B)
    assert isinstance(granted, p.Grant)
    assert granted.request_id == 77
    assert granted.token == 41
    assert granted.lock_id != first.lock_id
    holder = core.table.holder("x")
    assert holder is not None
    assert (holder.owner, holder.lock_id) == (B, granted.lock_id)


def test_multi_name_acquire_and_release_without_answer() -> None:
    core = make_core()
    hello(core, A)
    hello(core, B)
    held = grant(core, A, ["x", "y"], 0.0)
    assert send(core, B, p.Acquire(3, ["y"], None), 0.0).sends == []
    # request id 0: nobody waits for the answer, so only the grant to B goes out.
    out = send(core, A, p.Release(0, held.lock_id), 1.0)
    assert [peer for peer, _ in out.sends] == [B]
    assert core.table.holder("x") is None


def test_timeout_zero_is_answered_timeout_when_held_and_grant_when_free() -> None:
    core = make_core()
    hello(core, A)
    hello(core, B)
    grant(core, A, ["x"], 0.0)
    out = send(core, B, p.Acquire(8, ["x"], 0), 1.0)
    assert replies(out) == [(B, p.Timeout(8))]
    assert core.table.waiters("x") == []
    out = send(core, B, p.Acquire(9, ["z"], 0), 1.0)
    [message] = to(out, B)
    assert isinstance(message, p.Grant)
    assert message.request_id == 9


def test_queued_acquire_times_out_at_its_deadline_via_tick() -> None:
    core = make_core()
    hello(core, A)
    hello(core, B)
    held = grant(core, A, ["x"], 0.0)
    assert send(core, B, p.Acquire(4, ["x"], 2.0), 1.0).sends == []
    assert core.next_deadline() == 3.0
    core.tick(2.999)
    assert core.take().sends == []
    core.tick(3.0)
    assert replies(core.take()) == [(B, p.Timeout(4))]
    assert core.next_deadline() is None
    # Timed out means never granted afterwards.
    out = send(core, A, p.Release(5, held.lock_id), 4.0)
    assert replies(out) == [(A, p.Released(5, 1))]
    assert core.table.holder("x") is None


def test_release_by_a_non_holder_is_refused_with_not_holder() -> None:
    core = make_core()
    hello(core, A)
    hello(core, B)
    held = grant(core, A, ["x"], 0.0)
    out = send(core, B, p.Release(3, held.lock_id), 1.0)
    [refusal] = to(out, B)
    assert isinstance(refusal, p.Error)
    assert (refusal.request_id, refusal.code) == (3, NOT_HOLDER)
    assert to(out, A) == []
    holder = core.table.holder("x")
    assert holder is not None
    assert holder.owner == A
    # A release sent without waiting (request id 0) is refused all the same.
    out = send(core, B, p.Release(0, held.lock_id), 1.0)
    [refusal] = to(out, B)
    assert isinstance(refusal, p.Error)
    assert (refusal.request_id, refusal.code) == (0, NOT_HOLDER)
    # Releasing what nobody holds is no refusal: the answer says 0.
    assert to(send(core, B, p.Release(4, "no-such-lock"), 1.0), B) == [p.Released(4, 0)]
    assert to(send(core, A, p.Release(5, held.lock_id), 1.0), A) == [p.Released(5, 1)]


def test_request_id_in_use_is_refused() -> None:
    core = make_core()
    hello(core, A)
    hello(core, B)
    grant(core, A, ["x"], 0.0)
    assert send(core, B, p.Acquire(5, ["x"], None), 0.0).sends == []
    out = send(core, B, p.Acquire(5, ["y"], None), 0.0)
    [refusal] = to(out, B)
    assert isinstance(refusal, p.Error)
    assert (refusal.request_id, refusal.code) == (5, BAD_FRAME)
    assert core.table.holder("y") is None


def test_heartbeat_is_answered_with_a_pong() -> None:
    core = make_core()
    hello(core, A)
    assert replies(send(core, A, p.Heartbeat(12), 0.0)) == [(A, p.Pong(12))]


# ----------------------------------------------------------------------- bad input
def _check_refusal(out: Output, peer: bytes) -> p.Error:
    [(who, frame)] = out.sends
    assert who == peer
    assert len(frame) <= MAX_DETAIL + 64
    refusal = p.decode(frame)
    assert isinstance(refusal, p.Error)
    assert refusal.code == BAD_FRAME
    assert refusal.request_id == 0
    assert len(refusal.detail) <= MAX_DETAIL
    return refusal


GARBAGE = {
    "invalid-byte": b"\xc1",
    "empty": b"",
    "1MB-invalid": b"\xc1" * 1_000_000,
    "1MB-random": random.Random(7).randbytes(1_000_000),
    "1MB-version-string": msgpack.packb(["v" * 1_000_000, 1, 0]),
    "1MB-type-string": msgpack.packb([p.VERSION, "t" * 1_000_000, 0]),
    "over-max-frame": b"\x90" * (p.MAX_FRAME + 1),
    "not-an-array": msgpack.packb({"a": 1}),
    "short-array": msgpack.packb([p.VERSION, 1]),
    "wrong-field-count": msgpack.packb([p.VERSION, 2, 1, ["x"]]),
    "invalid-field": msgpack.packb([p.VERSION, 2, 1, [], None]),
    "negative-timeout": msgpack.packb([p.VERSION, 2, 1, ["x"], -1.0]),
}


@pytest.mark.parametrize("frame", list(GARBAGE.values()), ids=list(GARBAGE))
def test_a_malformed_frame_costs_a_short_refusal_and_a_bad_frame_event(frame: bytes) -> None:
    core = make_core()
    hello(core, A)
    core.receive(A, [frame], 1.0)
    out = core.take()
    _check_refusal(out, A)
    [event] = out.events
    assert isinstance(event, BadFrame)
    assert event.peer == A
    assert event.seen == 1
    assert len(event.reason) <= MAX_DETAIL
    assert core.table.held_locks() == []


def test_a_multi_part_message_is_dropped_with_a_bad_frame_event() -> None:
    core = make_core()
    hello(core, A)
    acquire = p.encode(p.Acquire(3, ["x"], None))
    core.receive(A, [acquire, acquire], 0.0)
    out = core.take()
    assert out.sends == []
    assert out.events == [BadFrame(A, "a 2-part message (dropped)", 1)]
    assert core.table.holder("x") is None
    core.receive(A, [], 0.0)
    assert core.take().events == [BadFrame(A, "a 0-part message (dropped)", 2)]


def test_bad_frame_events_are_rate_limited_per_peer() -> None:
    core = make_core()
    for _ in range(2000):
        core.receive(A, [b"\xc1"], 0.0)
    core.receive(B, [b"\xc1"], 0.0)
    out = core.take()
    assert len(out.sends) == 2001  # every bad frame is still refused
    seen = [(e.peer, e.seen) for e in out.events if isinstance(e, BadFrame)]
    logged = [(A, n) for n in range(1, BAD_FRAMES_LOGGED + 1)]
    assert seen == [*logged, (A, 1000), (A, 2000), (B, 1)]


NOT_REQUESTS = [
    p.Welcome(7, "u", "n", None, 1.0, 0),
    p.Grant(7, "lock", 1),
    p.Timeout(7),
    p.Released(7, 1),
    p.Expire(7, "lock", "r"),
    p.Error(7, 1, "d"),
    p.Pong(7),
    p.Reclaimed(7, True),
    p.PubAck(7, 1),
    p.Probe(7),
]


@pytest.mark.parametrize("message", NOT_REQUESTS, ids=[type(m).__name__ for m in NOT_REQUESTS])
def test_a_message_that_is_not_a_request_is_refused_with_bad_frame(message: p.Message) -> None:
    assert not isinstance(message, p.REQUESTS)
    core = make_core()
    hello(core, A)
    out = send(core, A, message, 0.0)
    [(who, frame)] = out.sends
    refusal = p.decode(frame)
    assert who == A
    assert isinstance(refusal, p.Error)
    assert (refusal.request_id, refusal.code) == (7, BAD_FRAME)
    assert type(message).__name__ in refusal.detail
    assert core.table.held_locks() == []


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=256))
def test_arbitrary_bytes_never_raise(frame: bytes) -> None:
    core = make_core(lease=2.0)
    core.receive(A, [frame], 0.0)
    out = core.take()
    for _, reply in out.sends:
        assert len(reply) < 1024
        message = p.decode(reply)  # what the core says is always well-formed
        if isinstance(message, p.Error):
            assert len(message.detail) <= MAX_DETAIL


_texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=8)
_fields = st.one_of(st.none(), st.booleans(), st.integers(-3, 2**64 - 1), st.floats(allow_nan=True), _texts,
                    st.binary(max_size=8), st.lists(_texts, max_size=3))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([A, B]), st.sampled_from(sorted(p._TYPE_CODES.values())),
                          st.lists(_fields, max_size=5)), max_size=10))
def test_near_miss_frames_from_several_peers_never_raise(frames: list[tuple[bytes, int, list[Any]]]) -> None:
    core = make_core(lease=2.0, max_lock_time=3.0, recover_from={"a"}, grace=2.0)
    now = 0.0
    for peer, code, fields in frames:
        now += 0.5
        core.receive(peer, [msgpack.packb([p.VERSION, code, *fields])], now)
        core.tick(now)
        out = core.take()
        for _, reply in out.sends:
            message = p.decode(reply)
            if isinstance(message, p.Error):
                assert len(message.detail) <= MAX_DETAIL


# ---------------------------------------------------------------------- cancel, bye
def test_cancel_withdraws_a_queued_acquire() -> None:
    core = make_core()
    for peer in (A, B, C):
        hello(core, peer)
    held = grant(core, A, ["x"], 0.0)
    send(core, B, p.Acquire(5, ["x"], None), 1.0)
    send(core, C, p.Acquire(6, ["x"], None), 2.0)
    assert len(core.table.waiters("x")) == 2
    out = send(core, B, p.Cancel(5), 3.0)
    assert out.sends == []  # a cancel is not answered
    assert len(core.table.waiters("x")) == 1
    # Cancelling what is not waiting does nothing.
    assert send(core, B, p.Cancel(99), 3.0).sends == []
    assert send(core, A, p.Cancel(6), 3.0).sends == []  # C's request id, from another peer
    out = send(core, A, p.Release(0, held.lock_id), 4.0)
    assert to(out, B) == []
    [granted] = to(out, C)
    assert isinstance(granted, p.Grant)
    assert granted.request_id == 6


def test_cancel_of_the_head_waiter_lets_the_next_one_through() -> None:
    core = make_core()
    for peer in (A, B, C):
        hello(core, peer)
    grant(core, A, ["x"], 0.0)
    send(core, B, p.Acquire(5, ["x", "y"], None), 1.0)
    # C waits behind B for y (FIFO), although y is free.
    assert send(core, C, p.Acquire(6, ["y"], None), 1.0).sends == []
    out = send(core, B, p.Cancel(5), 2.0)
    [granted] = to(out, C)
    assert isinstance(granted, p.Grant)
    assert granted.request_id == 6


def test_bye_frees_the_peers_locks_and_requests_and_grants_the_next_waiter() -> None:
    core = make_core()
    for peer in (A, B, C):
        hello(core, peer)
    grant(core, A, ["x"], 0.0)
    held_y = grant(core, C, ["y"], 0.0)
    send(core, A, p.Acquire(11, ["y"], None), 0.5)  # A also waits for y
    send(core, B, p.Acquire(3, ["x"], None), 1.0)
    out = send(core, A, p.Bye(0), 2.0)
    assert to(out, A) == []  # nothing is sent to a peer that said goodbye
    [granted] = to(out, B)
    assert isinstance(granted, p.Grant)
    assert granted.request_id == 3
    assert ClientsChanged(("b", "c")) in out.events
    assert not any(isinstance(e, LockExpired) for e in out.events)
    assert core.table.waiters("y") == []
    out = send(core, C, p.Release(4, held_y.lock_id), 3.0)
    assert replies(out) == [(C, p.Released(4, 1))]
    assert core.table.holder("y") is None


def test_forget_acts_as_a_bye() -> None:
    core = make_core()
    hello(core, A)
    hello(core, B)
    grant(core, A, ["x"], 0.0)
    send(core, B, p.Acquire(3, ["x"], None), 1.0)
    core.forget(A, 2.0)
    out = core.take()
    [granted] = to(out, B)
    assert isinstance(granted, p.Grant)
    assert A not in core.clients()


# -------------------------------------------------------------------------- leases
def test_a_silent_peer_loses_its_locks_to_a_waiter_after_the_lease() -> None:
    core = make_core(lease=2.0)
    hello(core, A, 0.0)
    hello(core, B, 0.0)
    held = grant(core, A, ["x"], 0.0)
    send(core, B, p.Acquire(21, ["x"], None), 0.5)
    assert to(send(core, B, p.Heartbeat(22), 1.9), B) == [p.Pong(22)]
    deadline = core.next_deadline()
    assert deadline is not None
    assert deadline <= 2.0
    core.tick(1.99)
    assert core.take().sends == []
    core.tick(2.0)
    out = core.take()
    assert to(out, A) == [p.Expire(0, held.lock_id, REASON_LEASE)]
    [granted] = to(out, B)
    assert isinstance(granted, p.Grant)
    assert granted.request_id == 21
    assert LockExpired(A, held.lock_id, REASON_LEASE) in out.events
    assert ClientsChanged(("b",)) in out.events
    assert A not in core.clients()


def test_a_lapsed_waiter_is_told_its_request_was_dropped() -> None:
    core = make_core(lease=2.0)
    hello(core, A, 0.0)
    hello(core, B, 0.0)
    grant(core, A, ["x"], 0.0)
    send(core, B, p.Acquire(21, ["x"], None), 0.0)
    send(core, A, p.Heartbeat(1), 1.5)
    core.tick(2.0)
    out = core.take()
    [refusal] = to(out, B)
    assert isinstance(refusal, p.Error)
    assert (refusal.request_id, refusal.code) == (21, DROPPED)
    assert core.table.waiters("x") == []
    assert core.clients().keys() == {A}


def _renewers() -> dict[str, Callable[[int], p.Message]]:
    return {
        "publish": lambda i: p.Publish(0, None, 1, items(f"m{i}")),
        "publish-to-nobody": lambda i: p.Publish(0, ["nobody"], 1, items(f"m{i}")),
        "heartbeat": lambda i: p.Heartbeat(i),
        "subscribe-check": lambda i: p.SubscribeCheck(i),
        "release-of-nothing": lambda i: p.Release(i, "nothing"),
        "cancel-of-nothing": lambda i: p.Cancel(i),
        "acquire": lambda i: p.Acquire(i, [f"other-{i}"], 0),
        "hello": lambda i: p.Hello(i, "a-name", "a", 100),
        "reclaim-done": lambda i: p.ReclaimDone(0),
    }


@pytest.mark.parametrize("renew", list(_renewers().values()), ids=list(_renewers()))
def test_any_traffic_renews_the_lease(renew: Callable[[int], p.Message]) -> None:
    lease = 2.0
    core = make_core(lease=lease)
    hello(core, A, 0.0)
    hello(core, B, 0.0)
    held = grant(core, A, ["x"], 0.0)
    send(core, B, p.Acquire(31, ["x"], None), 0.0)
    now = 0.0
    for i in range(1, 9):  # four leases of A saying nothing but ``renew``
        now = i * lease * 0.75
        send(core, A, renew(100 + i), now)
        send(core, B, p.Heartbeat(100 + i), now)
        core.tick(now)
        out = core.take()
        assert to(out, B) == []
        assert not any(isinstance(e, LockExpired) for e in out.events)
    assert now > 4 * lease
    holder = core.table.holder("x")
    assert holder is not None
    assert holder.lock_id == held.lock_id
    # Then A falls silent: one lease later, B has the lock.
    send(core, B, p.Heartbeat(500), now + lease - 0.1)
    core.tick(now + lease)
    out = core.take()
    [granted] = to(out, B)
    assert isinstance(granted, p.Grant)
    assert granted.request_id == 31


def test_a_forgotten_peer_must_say_hello_again() -> None:
    core = make_core(lease=1.0)
    hello(core, A, 0.0)
    core.tick(1.0)
    assert core.take().events == [ClientsChanged(())]
    # Its lease lapsed: whatever it held is gone, and so is the connection, until it says hello.
    [refusal] = replies(send(core, A, p.Acquire(2, ["x"], None), 5.0))
    assert refusal == (A, p.Error(2, NOT_WELCOMED, refusal[1].detail))
    assert A not in core.clients()
    hello(core, A, 5.0)
    grant(core, A, ["x"], 5.0)
    assert A in core.clients()
    core.tick(5.5)
    holder = core.table.holder("x")
    assert holder is not None
    assert holder.owner == A


# --------------------------------------------------------------------- maxLockTime
def test_max_lock_time_expiry_sends_expire_to_the_holder_and_grants_the_waiter() -> None:
    core = make_core(max_lock_time=5.0)
    hello(core, A)
    hello(core, B)
    held = grant(core, A, ["x"], 1.0)
    send(core, B, p.Acquire(41, ["x"], None), 2.0)
    assert core.next_deadline() == 6.0
    core.tick(5.999)
    assert core.take().sends == []
    core.tick(6.0)
    out = core.take()
    assert to(out, A) == [p.Expire(0, held.lock_id, REASON_MAX_LOCK_TIME)]
    [granted] = to(out, B)
    assert isinstance(granted, p.Grant)
    assert granted.request_id == 41
    assert out.events == [LockExpired(A, held.lock_id, REASON_MAX_LOCK_TIME)]
    # The expired lock is no longer A's to release, and B keeps its lock.
    assert to(send(core, A, p.Release(7, held.lock_id), 6.5), A) == [p.Released(7, 0)]
    holder = core.table.holder("x")
    assert holder is not None
    assert holder.owner == B


# ------------------------------------------------------------------------ recovery
def test_recovery_grants_nothing_new_until_reclaim_done() -> None:
    core = make_core(recover_from={"a"}, grace=5.0, first_token=1000)  # re-claimed tokens are earlier ones
    assert core.recovering
    hello(core, A)
    hello(core, B)
    # The holder under the previous server takes its lock back, with its token.
    assert to(send(core, A, p.Reclaim(2, "old-1", ["x"], 41), 0.1), A) == [p.Reclaimed(2, True)]
    # Nobody else can reclaim a held name.
    assert to(send(core, B, p.Reclaim(3, "old-2", ["x"], 50), 0.1), B) == [p.Reclaimed(3, False)]
    # New requests wait, even for free names; timeout 0 is a refusal.
    assert send(core, B, p.Acquire(4, ["y"], None), 0.2).sends == []
    assert replies(send(core, B, p.Acquire(5, ["z"], 0), 0.2)) == [(B, p.Timeout(5))]
    assert core.local_acquire("local-1", ["w"], 0, 0.2) == TimedOut("local-1", b"", None, ("w",))
    # Somebody else being done does not end the recovery.
    core.reclaim_done("c", 0.3)
    assert core.take().sends == []
    assert core.recovering
    core.reclaim_done("a", 1.0)
    assert not core.recovering
    out = core.take()
    [granted] = to(out, B)
    assert isinstance(granted, p.Grant)
    assert granted.request_id == 4
    assert granted.token > 41  # tokens continue past what was reclaimed
    holder = core.table.holder("x")
    assert holder is not None
    assert (holder.owner, holder.lock_id, holder.token) == (A, "old-1", 41)
    # Recovery is over: reclaiming a free name is refused now.
    assert to(send(core, B, p.Reclaim(6, "old-3", ["v"], 60), 1.1), B) == [p.Reclaimed(6, False)]


def test_recovery_ends_with_a_reclaim_done_message_from_the_last_expected_client() -> None:
    core = make_core(recover_from={"a", "c"}, grace=5.0)
    for peer in (A, B, C):
        hello(core, peer)
    send(core, B, p.Acquire(4, ["y"], None), 0.2)
    assert send(core, A, p.ReclaimDone(0), 0.3).sends == []
    assert core.recovering
    out = send(core, C, p.ReclaimDone(0), 0.4)
    assert not core.recovering
    [granted] = to(out, B)
    assert isinstance(granted, p.Grant)
    assert granted.request_id == 4


def test_recovery_ends_when_grace_passes() -> None:
    core = make_core(now=10.0, recover_from={"a"}, grace=5.0)
    hello(core, B, 10.0)
    send(core, B, p.Acquire(4, ["y"], None), 10.5)
    assert core.next_deadline() == 15.0
    core.tick(14.999)
    assert core.take().sends == []
    assert core.recovering
    core.tick(15.0)
    assert not core.recovering
    [granted] = to(core.take(), B)
    assert isinstance(granted, p.Grant)
    assert granted.request_id == 4


def test_deadlines_still_apply_while_recovering() -> None:
    core = make_core(recover_from={"a"}, grace=5.0)
    hello(core, B)
    send(core, B, p.Acquire(4, ["y"], 1.0), 0.0)
    core.tick(1.0)
    assert replies(core.take()) == [(B, p.Timeout(4))]
    core.reclaim_done("a", 2.0)
    assert core.take().sends == []
    assert core.table.holder("y") is None


def test_a_reclaimed_lock_id_is_never_generated_for_a_new_lock() -> None:
    core = make_core(recover_from={"a"}, grace=5.0, first_token=1000)
    hello(core, A)
    hello(core, B)
    # Lock ids the core itself would hand out next ("1", "2", ...) come back from the old server.
    for rid, lock_id in enumerate(("1", "2", "3"), start=2):
        assert to(send(core, A, p.Reclaim(rid, lock_id, [f"old-{lock_id}"], rid), 0.1), A) == [p.Reclaimed(rid, True)]
    core.reclaim_done("a", 0.2)
    [granted] = to(send(core, B, p.Acquire(9, ["y"], None), 0.3), B)
    assert isinstance(granted, p.Grant)
    assert granted.lock_id not in {"1", "2", "3"}
    local_id = core.new_lock_id()
    assert local_id not in {"1", "2", "3", granted.lock_id}
    assert isinstance(core.local_acquire(local_id, ["z"], None, 0.4), Granted)


def test_local_reclaim_during_recovery() -> None:
    core = make_core(recover_from={SERVER}, grace=5.0, first_token=1000)
    assert core.local_reclaim("mine", ["x"], 9, 0.0)
    assert not core.local_reclaim("again", ["x"], 10, 0.0)
    core.reclaim_done(SERVER, 0.1)
    assert core.local_release("mine", 0.2)
    # The new epoch's own sequence: a re-claimed token never moves it.
    assert core.local_acquire("next", ["x"], None, 0.3) == Granted("next", b"", None, ("x",), 1000)


# --------------------------------------------------------------------------- local
def test_local_acquire_and_release_contend_with_clients() -> None:
    core = make_core(first_token=5)
    hello(core, A)
    assert core.local_acquire("L1", ["x"], None, 0.0) == Granted("L1", b"", None, ("x",), 5)
    assert send(core, A, p.Acquire(3, ["x"], None), 1.0).sends == []
    # A client cannot release the serving locker's lock.
    [refusal] = to(send(core, A, p.Release(4, "L1"), 1.0), A)
    assert isinstance(refusal, p.Error)
    assert refusal.code == NOT_HOLDER
    assert core.local_release("L1", 2.0)
    [granted] = to(core.take(), A)
    assert isinstance(granted, p.Grant)
    assert (granted.request_id, granted.token) == (3, 6)
    assert not core.local_release("L1", 2.0)
    # The serving locker waits in turn: answered by an event.
    assert core.local_acquire("L2", ["x"], None, 3.0) is None
    assert core.local_acquire("L3", ["x"], 0, 3.0) == TimedOut("L3", b"", None, ("x",))
    out = send(core, A, p.Release(0, granted.lock_id), 4.0)
    assert out.events == [LocalGranted("L2", 7)]
    assert out.sends == []


def test_local_queued_acquire_times_out_with_an_event() -> None:
    core = make_core()
    hello(core, A)
    grant(core, A, ["x"], 0.0)
    assert core.local_acquire("L1", ["x"], 1.5, 1.0) is None
    assert core.next_deadline() == 2.5
    core.tick(2.4)
    assert core.take().events == []
    core.tick(2.5)
    assert core.take().events == [LocalTimedOut("L1")]
    assert core.table.waiters("x") == []


def test_local_cancel_withdraws_a_waiting_local_request() -> None:
    core = make_core()
    hello(core, A)
    held = grant(core, A, ["x"], 0.0)
    assert core.local_acquire("L1", ["x"], None, 0.0) is None
    assert core.local_cancel("L1", 1.0)
    assert not core.local_cancel("L1", 1.0)
    out = send(core, A, p.Release(0, held.lock_id), 2.0)
    assert out.events == []
    assert core.table.holder("x") is None


def test_local_lock_lost_to_max_lock_time() -> None:
    core = make_core(max_lock_time=3.0)
    hello(core, A)
    core.local_acquire("L1", ["x"], None, 0.0)
    send(core, A, p.Acquire(8, ["x"], None), 1.0)
    core.tick(3.0)
    out = core.take()
    assert out.events == [LocalLost("L1", REASON_MAX_LOCK_TIME)]
    [granted] = to(out, A)
    assert isinstance(granted, p.Grant)
    assert granted.request_id == 8


def test_local_locks_have_no_lease() -> None:
    core = make_core(lease=1.0)
    core.local_acquire("L1", ["x"], None, 0.0)
    core.tick(100.0)
    out = core.take()
    assert out.events == []
    holder = core.table.holder("x")
    assert holder is not None
    assert holder.lock_id == "L1"


# -------------------------------------------------------------------- publications
def receiver(core: ServerCore, peer: bytes) -> None:
    """``peer`` says hello and asks for publications."""
    hello(core, peer)
    send(core, peer, p.SubscribeCheck(99), 0.0)


def _publish(core: ServerCore, peer: bytes, receivers: list[str] | None, *messages: str,
             lossy: bool = False) -> Output:
    return send(core, peer, p.Publish(0, receivers, len(messages), items(*messages), lossy), 1.0)


def delivered(out: Output) -> list[tuple[bytes, p.Deliver]]:
    """The batches in ``out``: each on its receiver's own connection (issue 11, case 11)."""
    found = [(peer, p.decode(frame)) for peer, frame in out.sends]
    return [(peer, message) for peer, message in found if isinstance(message, p.Deliver)]


def acks(out: Output) -> list[tuple[bytes, int]]:
    return [(peer, m.batches) for peer, m in replies(out) if isinstance(m, p.PubAck)]


def test_a_publication_goes_to_each_named_receiver_and_unknowns_are_ignored() -> None:
    core = make_core()
    for peer in (A, B, C):
        receiver(core, peer)
    batch = items("m1", "m2")
    out = send(core, A, p.Publish(0, ["b", "c", "nobody", "b"], 2, batch), 1.0)
    assert out.events == []
    assert sorted(delivered(out)) == [
        (B, p.Deliver(0, "a", "a-name", 0, 2, batch)),
        (C, p.Deliver(0, "a", "a-name", 0, 2, batch)),
    ]
    assert acks(out) == [(A, 1)]  # passed on to all its receivers: acknowledged
    # Nothing for receivers nobody knows, nor for the sender itself; acknowledged all the same.
    assert delivered(_publish(core, A, ["nobody"], "m3")) == []
    assert [peer for peer, _ in delivered(_publish(core, A, ["a", "b"], "m4"))] == [B]


def test_a_broadcast_goes_to_every_receiver_but_its_sender_and_to_the_serving_locker() -> None:
    core = make_core()
    receiver(core, A)
    receiver(core, B)
    hello(core, C)  # a lock-only client: not a receiver
    batch = items("m1")
    out = send(core, A, p.Publish(0, None, 1, batch), 1.0)
    assert delivered(out) == [(B, p.Deliver(0, "a", "a-name", 0, 1, batch))]
    assert out.events == [LocalPublications("a", "a-name", 1, batch)]


def test_the_before_counter_counts_per_receiver() -> None:
    core = make_core()
    for peer in (A, B, C):
        receiver(core, peer)
    _publish(core, A, ["b"], "1", "2", "3")
    _publish(core, A, None, "4", "5")
    out = _publish(core, C, ["b", "a"], "6")
    counted = {peer: (d.sender, d.before, d.item_count) for peer, d in delivered(out)}
    assert counted[B] == ("c", 5, 1)
    assert counted[A] == ("c", 0, 1)
    out = _publish(core, A, ["b"], "8", "9")
    assert [(d.before, d.item_count) for _, d in delivered(out)] == [(6, 2)]
    core.publish(["b"], 1, items("10"))  # the serving locker's own count on the same streams
    assert [(d.sender, d.before) for _, d in delivered(core.take())] == [(SERVER, 8)]


def test_a_publication_addressed_to_the_serving_locker_is_a_local_event() -> None:
    core = make_core()
    receiver(core, A)
    receiver(core, B)
    batch = items("m1", "m2")
    out = send(core, A, p.Publish(0, [SERVER], 2, batch), 1.0)
    assert out.events == [LocalPublications("a", "a-name", 2, batch)]
    out = send(core, A, p.Publish(0, [SERVER, "b"], 2, batch), 1.0)
    assert [peer for peer, _ in delivered(out)] == [B]
    assert out.events == [LocalPublications("a", "a-name", 2, batch)]


def test_the_serving_lockers_own_publications_are_acknowledged_to_it() -> None:
    core = make_core()
    receiver(core, A)
    batch = items("m1")
    core.publish(None, 1, batch)
    out = core.take()
    assert delivered(out) == [(A, p.Deliver(0, SERVER, "srv", 0, 1, batch))]
    assert out.events == [LocalPublishAcked(1)]  # its own broadcast is not handed back to it
    core.publish([SERVER, "a", "nobody"], 1, batch)
    out = core.take()
    assert delivered(out) == [(A, p.Deliver(0, SERVER, "srv", 1, 1, batch))]
    assert out.events == [LocalPublishAcked(1)]


def test_subscribe_check_makes_a_receiver_and_is_answered_on_its_connection() -> None:
    core = make_core()
    hello(core, A)
    hello(core, B)
    assert delivered(_publish(core, B, None, "before")) == []
    out = send(core, A, p.SubscribeCheck(17), 0.0)
    assert replies(out) == [(A, p.Probe(17))]
    assert [peer for peer, _ in delivered(_publish(core, B, None, "after"))] == [A]


def test_a_forgotten_peer_gets_no_more_publications() -> None:
    core = make_core()
    receiver(core, A)
    receiver(core, B)
    send(core, B, p.Bye(0), 0.5)
    assert delivered(_publish(core, A, ["b"], "m1")) == []
    assert delivered(_publish(core, A, None, "m2")) == []


# ----------------------------------------------------------- credit (issue 12)
def test_a_receiver_without_credit_gets_a_window_and_its_publishers_wait() -> None:
    core = make_core()
    receiver(core, A)
    receiver(core, B)
    outs = [_publish(core, A, ["b"], f"m{i}") for i in range(WINDOW + 5)]
    sent = [d.before for out in outs for _, d in delivered(out)]
    assert sent == list(range(WINDOW))  # the rest wait at the server, in order
    assert sum(n for out in outs for _, n in acks(out)) == WINDOW  # ... unacknowledged
    out = send(core, B, p.Credit(0, 3), 1.0)
    assert [d.before for _, d in delivered(out)] == [WINDOW, WINDOW + 1, WINDOW + 2]
    assert acks(out) == [(A, 3)]
    out = send(core, B, p.Credit(0, 16), 1.0)
    assert [d.before for _, d in delivered(out)] == [WINDOW + 3, WINDOW + 4]
    assert core.flow.queued(B) == 0


def test_lossy_batches_skip_a_receiver_without_credit_and_it_sees_the_gap() -> None:
    core = make_core()
    receiver(core, A)
    receiver(core, B)
    for i in range(WINDOW):
        _publish(core, A, ["b"], f"m{i}")
    out = _publish(core, A, ["b"], "lost-1", "lost-2", lossy=True)
    assert delivered(out) == [] and acks(out) == [(A, 1)]  # acknowledged at once, not queued
    send(core, B, p.Credit(0, WINDOW), 1.0)
    out = _publish(core, A, ["b"], "next")
    assert [d.before for _, d in delivered(out)] == [WINDOW + 2]  # B counts 2 missed


def test_a_receiver_that_goes_away_lets_its_publishers_go_on() -> None:
    core = make_core(lease=2.0)
    receiver(core, A)
    receiver(core, B)
    receiver(core, C)
    for i in range(WINDOW + 10):
        _publish(core, A, None, f"m{i}")  # C credits as it goes; B is frozen
        send(core, C, p.Credit(0, 1), 1.0)
    assert core.flow.queued(B) == 10
    send(core, A, p.Heartbeat(5), 2.5)  # A and C stay in touch; B says nothing
    send(core, C, p.Heartbeat(6), 2.5)
    core.tick(3.5)  # B's lease lapsed: it is cut off, and what waited for it is acknowledged
    assert acks(core.take()) == [(A, 10)]
    assert not core.flow.has_receiver(B)


def test_a_receiver_that_subscribes_again_starts_a_fresh_stream() -> None:
    # A reconnection (same routing id, a new connection) loses what was in flight on the
    # old one, and its credits with it: without a fresh window the receiver would never
    # be sent anything again, and its publishers would wait forever.
    core = make_core()
    receiver(core, A)
    receiver(core, B)
    for i in range(WINDOW + 3):
        _publish(core, A, ["b"], f"m{i}")
    again = send(core, B, p.SubscribeCheck(100), 1.0)  # B's new connection
    out = _publish(core, A, ["b"], "after")
    befores = [d.before for _, d in delivered(again)] + [d.before for _, d in delivered(out)]
    assert befores == [0, 1, 2, 3]  # the 3 that waited, then the new one, numbered afresh
