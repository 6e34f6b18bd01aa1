"""The serving core's claims, inspections and watches, driven frame by frame (no sockets, no clock)."""

from __future__ import annotations

import msgpack
import pytest

from pylocker import protocol as p
from pylocker.errors import BAD_FRAME, LIMIT_MISMATCH, NOT_WELCOMED, TOO_MANY_WATCHES
from pylocker.holds import EXCLUSIVE, SHARED, SLOT, Claim
from pylocker.server_core import LOCAL
from pylocker.server_events import LocalHolders
from pylocker.watches import MAX_WATCHES
from tests.test_server_core import SERVER, A, B, C, hello, make_core, send, to


def claim(rid: int, names: list[str], mode: int = EXCLUSIVE, limit: int = 0, any_of: bool = False,
          info: bytes | None = None, timeout: float | None = None) -> p.Claim:
    return p.Claim(rid, names, timeout, mode, limit, any_of, info)


def test_shared_claims_coexist_and_an_exclusive_one_waits_for_them() -> None:
    core = make_core(first_token=10)
    for peer in (A, B, C):
        hello(core, peer)
    [first] = to(send(core, A, claim(1, ["r"], SHARED), 0.0), A)
    [second] = to(send(core, B, claim(2, ["r"], SHARED), 0.0), B)
    assert isinstance(first, p.Grant)
    assert isinstance(second, p.Grant)
    assert (first.token, second.token) == (10, 11)
    assert to(send(core, C, p.Acquire(3, ["r"], None), 0.1), C) == []  # a writer waits
    # A reader that comes after the waiting writer waits too: writers do not starve.
    assert to(send(core, A, claim(4, ["r"], SHARED), 0.2), A) == []
    send(core, A, p.Release(5, first.lock_id), 0.3)
    out = send(core, B, p.Release(6, second.lock_id), 0.4)
    [writer] = to(out, C)
    assert isinstance(writer, p.Grant)
    assert writer.token == 12
    assert to(out, A) == []  # still behind the writer
    out = send(core, C, p.Release(7, writer.lock_id), 0.5)
    [reader] = to(out, A)
    assert isinstance(reader, p.Grant)
    assert reader.request_id == 4


def test_slot_claims_stop_at_the_limit_and_a_mismatching_limit_is_refused_with_its_code() -> None:
    core = make_core()
    for peer in (A, B, C):
        hello(core, peer)
    slots = [to(send(core, peer, claim(rid, ["api"], SLOT, 2), 0.0), peer)[0] for rid, peer in ((1, A), (2, B))]
    assert all(isinstance(slot, p.Grant) for slot in slots)
    assert to(send(core, C, claim(3, ["api"], SLOT, 2, timeout=0), 0.1), C) == [p.Timeout(3)]
    [refusal] = to(send(core, C, claim(4, ["api"], SLOT, 3), 0.1), C)
    assert isinstance(refusal, p.Error)
    assert refusal.code == LIMIT_MISMATCH
    assert "'api'" in refusal.detail
    assert "limit of 2" in refusal.detail
    assert len(core.table.holders("api")) == 2


@pytest.mark.parametrize(("mode", "limit"), [(SHARED, 2), (EXCLUSIVE, 1), (SLOT, 0)])
def test_a_claim_with_a_limit_that_does_not_fit_its_mode_is_refused(mode: int, limit: int) -> None:
    core = make_core()
    hello(core, A)
    [refusal] = to(send(core, A, claim(1, ["x"], mode, limit), 0.0), A)
    assert isinstance(refusal, p.Error)
    assert refusal.code == BAD_FRAME
    assert "limit" in refusal.detail
    assert core.table.holders("x") == []


def test_a_claim_before_hello_is_refused_and_a_malformed_claim_is_a_bad_frame() -> None:
    core = make_core()
    [refusal] = to(send(core, A, claim(1, ["x"]), 0.0), A)
    assert isinstance(refusal, p.Error)
    assert refusal.code == NOT_WELCOMED
    hello(core, A)
    frame = msgpack.packb([p.VERSION, 12, 2, ["x"], None, 7, 0, False, None])  # mode 7
    core.receive(A, [frame], 0.0)
    [bad] = to(core.take(), A)
    assert isinstance(bad, p.Error)
    assert bad.code == BAD_FRAME
    assert "mode" in bad.detail


def test_an_any_of_claim_is_answered_with_the_name_it_got() -> None:
    core = make_core()
    hello(core, A)
    hello(core, B)
    held = to(send(core, A, p.Acquire(1, ["gpu0"], None), 0.0), A)[0]
    assert isinstance(held, p.Grant)
    [got] = to(send(core, B, claim(2, ["gpu0", "gpu1"], any_of=True), 0.0), B)
    assert isinstance(got, p.GrantNames)
    assert got.names == ["gpu1"]
    # Both taken: the next any-of request waits, and gets the first that frees.
    assert to(send(core, B, claim(3, ["gpu0", "gpu1"], any_of=True), 0.1), B) == []
    [freed] = to(send(core, A, p.Release(4, held.lock_id), 0.2), B)
    assert isinstance(freed, p.GrantNames)
    assert (freed.request_id, freed.names) == (3, ["gpu0"])
    assert core.table.waiters("gpu1") == []  # it left the other queue


def test_inspect_names_holders_and_waiters_in_order_with_their_info() -> None:
    core = make_core(first_token=5)
    for peer in (A, B, C):
        hello(core, peer)
    send(core, A, claim(1, ["team"], SHARED, info=msgpack.packb({"host": "a"})), 1.0)
    send(core, B, claim(2, ["team"], SHARED), 2.0)
    send(core, C, p.Acquire(3, ["team"], None), 2.5)
    [answer] = to(send(core, A, p.Inspect(4, "team"), 3.0), A)
    assert answer == p.Holders(4, "team", [["a", SHARED, 2.0, 5, msgpack.packb({"host": "a"})],
                                           ["b", SHARED, 1.0, 6, None]], [["c", EXCLUSIVE]])
    assert to(send(core, A, p.Inspect(5, "nobody"), 3.0), A) == [p.Holders(5, "nobody", [], [])]


def test_a_watcher_is_pushed_the_holders_on_grant_release_and_lease_lapse() -> None:
    core = make_core(lease=2.0)
    hello(core, A, 0.0)
    hello(core, B, 0.0)
    assert to(send(core, A, p.Watch(1, "job", True), 0.0), A) == [p.Holders(1, "job", [], [])]
    out = send(core, B, p.Acquire(2, ["job"], None), 0.5)
    [grant] = to(out, B)
    assert isinstance(grant, p.Grant)
    [push] = to(out, A)
    assert isinstance(push, p.Holders)
    assert (push.request_id, push.name, [row[0] for row in push.holders]) == (0, "job", ["b"])
    send(core, A, p.Heartbeat(3), 1.9)  # A stays alive; B says nothing and lapses
    core.tick(2.6)
    [lapse] = to(core.take(), A)
    assert lapse == p.Holders(0, "job", [], [])
    # Unwatched: no more pushes.
    send(core, A, p.Watch(4, "job", False), 2.7)
    hello(core, C, 2.7)
    assert to(send(core, C, p.Acquire(5, ["job"], None), 2.8), A) == []


def test_pushes_of_one_call_are_one_per_name_and_watches_end_with_the_session() -> None:
    core = make_core()
    for peer in (A, B):
        hello(core, peer)
    send(core, A, p.Watch(1, "x", True), 0.0)
    grant = to(send(core, B, p.Acquire(2, ["x"], None), 0.0), B)[0]
    assert isinstance(grant, p.Grant)
    send(core, B, p.Acquire(3, ["x"], None), 0.0)  # waits behind its own lock
    out = send(core, B, p.Release(4, grant.lock_id), 0.1)  # released, then granted again: one push
    assert [(m.request_id, len(m.holders)) for m in to(out, A) if isinstance(m, p.Holders)] == [(0, 1)]
    send(core, A, p.Bye(0), 0.2)
    assert core.watches.watched(A) == []


def test_watches_are_bounded_per_session() -> None:
    core = make_core()
    hello(core, A)
    for i in range(MAX_WATCHES):
        core.receive(A, [p.encode(p.Watch(i + 1, f"n{i}", True))], 0.0)
    core.take()
    [refusal] = to(send(core, A, p.Watch(99_999, "one-too-many", True), 0.0), A)
    assert isinstance(refusal, p.Error)
    assert refusal.code == TOO_MANY_WATCHES
    assert len(core.watches.watched(A)) == MAX_WATCHES


def test_the_serving_locker_watches_through_events() -> None:
    core = make_core()
    hello(core, A)
    holders, waiters = core.local_watch("job", True, 0.0)
    assert (holders, waiters) == ([], [])
    out = send(core, A, p.Acquire(1, ["job"], None), 0.5)
    [event] = [e for e in out.events if isinstance(e, LocalHolders)]
    assert event.name == "job"
    assert [row[0] for row in event.holders] == ["a"]
    effect = core.local_claim("mine", ["job"], 0, Claim(SHARED), 0.6)
    assert effect is not None
    assert type(effect).__name__ == "TimedOut"  # exclusively held: a shared claim with timeout 0 is refused
    assert core.describe("job", 1.0)[0][0][0] == "a"
    assert core.describe("free", 1.0) == ([], [])
    assert SERVER == core.unique_name
    assert LOCAL == b""


def test_shared_holds_and_slots_are_reclaimed_after_a_failover_with_their_claim() -> None:
    core = make_core(first_token=100, recover_from={"a", "b"}, grace=5.0)
    hello(core, A)
    hello(core, B)
    reclaims = [
        (A, p.Reclaim(1, "old-1", ["r"], 40, SHARED, 0, False, None), True),
        (B, p.Reclaim(2, "old-2", ["r"], 41, SHARED, 0, False, None), True),  # shared: both come back
        (B, p.Reclaim(3, "old-3", ["r"], 42, EXCLUSIVE, 0, False, None), False),  # not beside readers
        (A, p.Reclaim(4, "old-4", ["s"], 43, SLOT, 1, False, None), True),
        (B, p.Reclaim(5, "old-5", ["s"], 44, SLOT, 1, False, None), False),  # the limit holds
        (B, p.Reclaim(6, "old-6", ["t"], 45, SHARED, 3, False, None), False),  # a claim that makes no sense
    ]
    for peer, message, granted in reclaims:
        assert to(send(core, peer, message, 0.1), peer) == [p.Reclaimed(message.request_id, granted)]
    assert sorted(h.token for h in core.table.holders("r")) == [40, 41]
    assert [h.token for h in core.table.holders("s")] == [43]


def test_an_any_of_grant_that_cannot_be_delivered_is_undone() -> None:
    core = make_core()
    hello(core, A)
    hello(core, B)
    [got] = to(send(core, A, claim(1, ["p", "q"], any_of=True), 0.0), A)
    assert isinstance(got, p.GrantNames)
    send(core, B, p.Acquire(2, ["p"], None), 0.0)
    core.undeliverable(A, p.encode(got), 0.1)
    [moved] = to(core.take(), B)
    assert isinstance(moved, p.Grant)
    assert core.table.holders("p")[0].owner == B


def test_a_goodbye_tells_the_watchers_that_its_holds_are_gone() -> None:
    core = make_core()
    hello(core, A)
    hello(core, B)
    send(core, A, p.Watch(1, "job", True), 0.0)
    send(core, B, p.Acquire(2, ["job"], None), 0.1)
    assert to(send(core, B, p.Bye(0), 0.2), A) == [p.Holders(0, "job", [], [])]


def test_any_of_requests_withdrawn_or_dropped_leave_no_bookkeeping_behind() -> None:
    core = make_core()
    hello(core, A)
    hello(core, B)
    send(core, A, p.Acquire(1, ["p", "q"], None), 0.0)
    for rid in range(2, 50):
        send(core, B, claim(rid, ["p", "q"], any_of=True), 0.0)
        send(core, B, p.Cancel(rid), 0.0)
    send(core, B, claim(50, ["p", "q"], any_of=True), 0.0)
    send(core, B, p.Bye(0), 0.1)
    core.local_claim("local-1", ["p", "q"], None, Claim(any_of=True), 0.2)
    core.local_cancel("local-1", 0.3)
    assert core._any_of == set()  # one entry per waiting any-of request, none once they are gone


def test_leaderships_and_memberships_are_not_ended_by_max_lock_time() -> None:
    core = make_core(max_lock_time=1.0)
    hello(core, A)
    send(core, A, p.Acquire(1, ["\x00election\x00job"], None), 0.0)
    send(core, A, claim(2, ["\x00group\x00workers"], SHARED), 0.0)
    send(core, A, p.Acquire(3, ["plain"], None), 0.0)
    send(core, A, p.Acquire(4, ["\x00election\x00job2", "plain2"], None), 0.0)  # not only an election's names
    core.tick(1.5)
    expired = sorted(m.lock_id for m in to(core.take(), A) if isinstance(m, p.Expire))
    assert len(expired) == 2
    assert [len(core.table.holders(n)) for n in ("\x00election\x00job", "\x00group\x00workers", "plain")] == [1, 1, 0]


def test_while_recovering_watchers_get_no_partial_view_and_the_whole_one_when_it_ends() -> None:
    core = make_core(first_token=100, recover_from={"a", "b"}, grace=5.0)
    hello(core, A)
    hello(core, B)
    [reply] = to(send(core, A, p.Watch(1, "\x00group\x00g", True), 0.0), A)
    assert reply == p.Holders(1, "\x00group\x00g", [], [], False)  # not settled: a push will follow
    core.local_watch("\x00group\x00g", True, 0.0)
    out = send(core, A, p.Reclaim(2, "old-a", ["\x00group\x00g"], 40, SHARED, 0, False, None), 0.1)
    assert to(out, A) == [p.Reclaimed(2, True)]  # and no push of a view without b
    assert not [e for e in out.events if isinstance(e, LocalHolders)]
    send(core, A, p.ReclaimDone(0), 0.2)
    send(core, B, p.Reclaim(3, "old-b", ["\x00group\x00g"], 41, SHARED, 0, False, None), 0.3)
    out = send(core, B, p.ReclaimDone(0), 0.4)  # recovery ends: the whole view, once
    [push] = to(out, A)
    assert isinstance(push, p.Holders)
    assert (push.request_id, push.settled, [row[0] for row in push.holders]) == (0, True, ["a", "b"])
    [event] = [e for e in out.events if isinstance(e, LocalHolders)]
    assert [row[0] for row in event.holders] == ["a", "b"]


def test_a_watched_name_nobody_reclaimed_is_pushed_when_recovery_ends_by_its_grace() -> None:
    core = make_core(first_token=100, recover_from={"a", "old-leader"}, grace=2.0)
    hello(core, A)
    send(core, A, p.Watch(1, "\x00election\x00job", True), 0.0)  # its leader died with the old server
    send(core, A, p.ReclaimDone(0), 0.1)
    core.tick(2.5)
    assert to(core.take(), A) == [p.Holders(0, "\x00election\x00job", [], [], True)]


def test_status_names_holders_waiters_clients_and_counts_what_happened() -> None:
    core = make_core(first_token=7, lease=5.0, max_lock_time=60.0)
    for peer in (A, B):
        hello(core, peer)
    held = to(send(core, A, p.Acquire(1, ["x"], None), 1.0), A)[0]
    assert isinstance(held, p.Grant)
    send(core, B, p.Acquire(2, ["x"], None), 2.0)  # waits
    send(core, B, claim(3, ["\x00semaphore\x00api"], SLOT, 2), 2.0)
    assert to(send(core, B, p.Acquire(4, ["y", "x"], 0), 2.5), B) == [p.Timeout(4)]
    [reply] = to(send(core, A, p.Status(5), 3.0), A)
    assert isinstance(reply, p.StatusReply)
    status = msgpack.unpackb(reply.status)
    server = status["server"]
    assert (server["unique_name"], server["clients"], server["held"], server["waiting"]) == (SERVER, 2, 2, 1)
    locks = {(row["kind"], row["name"]): row for row in status["locks"]}
    x = locks[("lock", "x")]
    assert [(h["unique_name"], h["mode"], h["held_for"], h["token"]) for h in x["holders"]] == [("a", "exclusive", 2.0, 7)]
    assert [(w["unique_name"], w["waiting_for"]) for w in x["waiters"]] == [("b", 1.0)]
    assert locks[("semaphore", "api")]["holders"][0]["mode"] == "slot"
    assert {row["unique_name"]: (row["holds"], row["waits"]) for row in status["clients"]} == {"a": (1, 0),
                                                                                              "b": (1, 1)}
    assert {row["unique_name"]: (row["acquires"], row["timeouts"], row["expiries"])
            for row in status["clients"]} == {"a": (1, 0, 0), "b": (1, 1, 0)}
    send(core, A, p.Release(6, held.lock_id), 4.0)  # held 3 s; b then waited 2 s
    after = msgpack.unpackb(to(send(core, A, p.Status(7), 4.0), A)[0].status)
    stats = after["stats"]
    clients = {row["unique_name"]: row for row in after["clients"]}
    assert clients["b"]["acquires"] == 2
    assert 2.0 <= clients["b"]["wait"]["p99"] < 4.0  # b waited 2 s for x
    assert 3.0 <= clients["a"]["hold"]["p50"] < 6.0  # a held x 3 s
    assert (stats["grants"], stats["timeouts"], stats["releases"]) == (3, 1, 1)
    assert stats["names"]["x"]["acquires"] == 2
    assert stats["names"]["x"]["timeouts"] == 1
    assert 2.0 <= stats["names"]["x"]["wait"]["p99"] < 4.0  # an upper bound: buckets are powers of two
    assert 3.0 <= stats["names"]["x"]["hold"]["p50"] < 6.0
    assert stats["names"]["semaphore:api"]["acquires"] == 1
    assert status["truncated"] is False
