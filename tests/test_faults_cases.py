"""Issue 11's cases, one test each where a deterministic test can show it (the cores, files)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

from conftest import wait_for

from pylocker import protocol as p
from pylocker.errors import NotWelcomed
from pylocker.election import serverfile
from pylocker.election.base import first_token
from pylocker.server_core import ServerCore


def _recovering_core(epoch: int = 2, expected: frozenset[str] = frozenset({"holder"})) -> ServerCore:
    return ServerCore(name="s", unique_name="server", now=0.0, lease=5.0, epoch=epoch,
                      first_token=first_token(epoch), recover_from=set(expected), grace=10.0)


def _hello(core: ServerCore, peer: bytes, unique_name: str) -> None:
    core.receive(peer, [p.encode(p.Hello(1, unique_name, unique_name, 1))], 0.0)


def _reclaim(core: ServerCore, peer: bytes, lock_id: str, names: list[str], token: int) -> bool:
    core.take()
    core.receive(peer, [p.encode(p.Reclaim(7, lock_id, names, token))], 0.0)
    replies = [p.decode(frame) for to, frame in core.take().sends if to == peer]
    return any(isinstance(r, p.Reclaimed) and r.granted for r in replies)


def test_case6_a_reclaim_with_a_token_of_this_epoch_or_beyond_is_refused() -> None:
    core = _recovering_core()
    _hello(core, b"holder", "holder")
    assert not _reclaim(core, b"holder", "x1", ["a"], 2**63 - 1)  # would push every later token off the wire
    assert not _reclaim(core, b"holder", "x2", ["b"], first_token(2) + 5)  # a token this epoch never granted
    assert _reclaim(core, b"holder", "x3", ["c"], first_token(1) + 9)  # a grant of the previous epoch
    core.receive(b"holder", [p.encode(p.ReclaimDone(0))], 0.0)
    core.take()
    _hello(core, b"other", "other")
    core.receive(b"other", [p.encode(p.Acquire(3, ["z"], 0))], 0.0)
    grants = [p.decode(frame) for _, frame in core.take().sends if p.decode(frame).__class__ is p.Grant]
    assert len(grants) == 1 and first_token(2) <= grants[0].token < first_token(3)


def test_case6_only_the_previous_servers_clients_may_reclaim_while_recovering() -> None:
    core = _recovering_core(expected=frozenset({"holder"}))
    _hello(core, b"stranger", "stranger")
    assert not _reclaim(core, b"stranger", "x1", ["a"], first_token(1) + 1)  # not a client of epoch 1
    _hello(core, b"holder", "holder")
    assert _reclaim(core, b"holder", "x1", ["a"], first_token(1) + 1)


# ------------------------------------------------------------------ case 7: the election lock file
def test_case7_a_deleted_election_lock_does_not_let_a_second_locker_serve(make_locker: Any, server_file: str) -> None:
    first = make_locker()
    assert first.isServer
    os.unlink(server_file + ".lock")
    second = make_locker()
    assert not second.isServer, "two lockers serve one server file"
    assert second.isClient and second.serverUniqueName == first.uniqueName
    assert first.isServer


def test_case7_fencing_tokens_keep_growing_when_the_election_lock_is_lost(make_locker: Any, server_file: str) -> None:
    first = make_locker()
    ok, lock_id = first.acquire_lock("a")
    assert ok
    token = first.fencing_token(lock_id)
    first.stop()
    os.unlink(server_file + ".lock")  # the epoch it kept is gone with it
    second = make_locker()
    assert second.isServer
    ok, lock_id = second.acquire_lock("a")
    assert ok
    assert second.fencing_token(lock_id) > token


def test_case7_a_server_takes_back_a_deleted_election_lock_file(make_locker: Any, server_file: str) -> None:
    server = make_locker()
    assert server.isServer
    os.unlink(server_file + ".lock")
    wait_for(lambda: serverfile.someone_serves(server_file), timeout=10)  # locked again, by the server
    assert server.isServer
    assert not make_locker().isServer


def test_case7_a_server_whose_election_lock_another_locker_holds_stops_serving(
        make_locker: Any, server_file: str) -> None:
    server = make_locker()
    assert server.isServer
    os.unlink(server_file + ".lock")
    fd = os.open(server_file + ".lock", os.O_RDWR | os.O_CREAT, 0o600)  # another locker's lock file
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        wait_for(lambda: not server.isServer, timeout=10)
    finally:
        os.close(fd)


# ------------------------------------------------------------------ case 10: a dead serving loop
def test_case10_a_serving_locker_whose_loop_dies_gives_up_the_election(make_locker: Any) -> None:
    server = make_locker()
    assert server.isServer
    core = server.node.server._core

    def broken(now: float) -> None:
        raise RuntimeError("a bug in the serving loop")

    core.tick = broken  # type: ignore[method-assign]  # the next loop iteration dies
    server.node.server._wake()
    wait_for(lambda: not server.isServer, timeout=10)
    successor = make_locker()
    assert successor.isServer, "the dead server kept the election: nobody can serve"


# ------------------------------------------------------------------ case 8: the server file's size
def test_case8_peers_that_never_said_hello_never_reach_the_client_list() -> None:
    core = ServerCore(name="s", unique_name="server", now=0.0, lease=5.0)
    for index in range(50):  # a peer cycling routing ids, never saying hello
        core.receive(f"ghost-{index}".encode(), [p.encode(p.Heartbeat(1))], 0.0)
        core.receive(f"ghost-{index}".encode(), [p.encode(p.Acquire(2, [f"n{index}"], 0))], 0.0)
    out = core.take()
    assert core.successor_must_wait_for() == ()
    assert not any(isinstance(p.decode(frame), p.Grant) for _, frame in out.sends)
    refusals = [p.decode(frame) for _, frame in out.sends]
    assert refusals and all(isinstance(r, p.Error) and r.code == NotWelcomed.code for r in refusals)


def test_case8_a_server_file_naming_thousands_of_clients_is_read_whole(make_locker: Any, server_file: str) -> None:
    server = make_locker()
    fp = serverfile.read(server_file)
    assert fp is not None
    many = tuple(f"{index:032x}" for index in range(5000))  # about 180 KB of client names
    serverfile.write(server_file, fp._replace(clients=many))
    assert serverfile.read(server_file).clients == many
    client = make_locker()
    assert client.isClient and server.isServer


# ------------------------------------------------------------------ case 5: an old fingerprint
def test_case5_a_successor_waits_for_the_previous_clients_however_old_the_fingerprint(
        make_locker: Any, server_file: str) -> None:
    server = make_locker()
    fp = serverfile.read(server_file)
    server.stop()
    # As if the server had been stopped (SIGSTOP) for an hour with a client holding a lock, then killed:
    serverfile.write(server_file, fp._replace(timestamp=fp.timestamp - 3600, clients=("holder",), stopped=False,
                                              pid=_a_dead_pid()))
    successor = make_locker()
    assert successor.isServer
    assert successor.node.server.recovering  # the holder gets its grace period to re-claim


def _a_dead_pid() -> int:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# ------------------------------------------------------------------ case 12: lock-out of the innocent
def test_case12_failures_of_an_unlisted_key_never_lock_out_a_listed_one() -> None:
    import logging

    from pylocker.transport.zap import AuthGuard

    now = [0.0]
    guard = AuthGuard({b"listed"}, logging.getLogger("test"), clock=lambda: now[0])
    for _ in range(AuthGuard.MAX_FAILURES + 1):
        assert not guard.admit("10.0.0.7", b"stranger")
    assert not guard.admit("10.0.0.7", b"stranger")  # throttled now
    assert guard.admit("10.0.0.7", b"listed"), "a listed machine behind the same address is locked out"
    now[0] += 0.5
    assert not guard.admit("10.0.0.7", b"stranger")


# ------------------------------------------------------------------ case 9: what a peer can push
def test_case9_bad_frames_from_ever_new_routing_ids_cannot_flood_the_log(caplog: Any) -> None:
    import logging
    import threading

    from pylocker.server import Server
    from pylocker.transport import address
    from pylocker.transport.base import Security
    from pylocker.transport.keys import derive_keys
    from pylocker.transport.memory import MemoryTransport

    where = address.parse(f"memory://case9-{os.getpid()}-{threading.get_ident()}")
    security = Security(derive_keys("pw"))
    server = Server(where, security, name="s", unique_name="s", max_lock_time=None, lease=5.0)
    server.start()
    transport = MemoryTransport()
    try:
        with caplog.at_level(logging.WARNING, logger="pylocker.server"):
            for index in range(400):  # every peer new: a per-peer limit would log each of them
                peer = transport.connect(where, security, f"ghost-{index}".encode(), logging.getLogger("t"),
                                         lambda: None, lambda: None)
                peer.send(b"\xc1 garbage")
                peer.close()
            probe = transport.connect(where, security, b"probe", logging.getLogger("t"), lambda: None, lambda: None)
            probe.send(p.encode(p.Hello(9, "probe", "probe", 1)))
            deadline = 100
            while deadline and not probe.poll(0.1):
                deadline -= 1
            assert any(isinstance(p.decode(frame), p.Welcome) for frame in probe.receive())
            probe.close()
        lines = [r for r in caplog.records if "bad frame" in r.getMessage()]
        assert len(lines) <= 25, f"{len(lines)} log lines for 400 bad frames"
    finally:
        server.stop()


# ------------------------------------------------------------------ case 13: the legacy Locker
def test_case13_a_wall_clock_step_does_not_make_a_live_legacy_holder_look_dead(monkeypatch: Any) -> None:
    import subprocess
    import sys

    import psutil

    from pylocker.legacy import _liveness
    from pylocker.legacy._record import Entry

    holder = subprocess.Popen(
        [sys.executable, "-c", "from pylocker.legacy import _liveness; print(_liveness.current_ctime(), flush=True);"
                               " import time; time.sleep(30)"], stdout=subprocess.PIPE, text=True)
    try:
        recorded = float(holder.stdout.readline())  # what the holder writes in its record entry
        entry = Entry("token", holder.pid, recorded, _liveness.host_id(), 0.0)
        assert not _liveness.entry_is_dead(entry, 120.0, 1.0, check_pids=True)
        # The wall clock steps an hour: psutil's create_time is computed through it.
        real = psutil.Process.create_time
        monkeypatch.setattr(psutil.Process, "create_time", lambda self: real(self) + 3600.0)
        _liveness._alive_seen.clear()
        assert not _liveness.entry_is_dead(entry, 120.0, 1.0, check_pids=True), "a live holder taken for dead"
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def test_case13_a_corrupt_legacy_record_counts_as_held_until_dead_lock(tmp_path: Any) -> None:
    import time

    from pylocker.legacy import Locker

    lock_path = str(tmp_path / "file.lock")
    holder = Locker(None, lockPass="holder", lockPath=lock_path)
    assert holder.acquire_lock() == (True, 0)
    from pylocker.legacy._record import SLOT

    with open(lock_path, "r+b") as handle:  # damage every slot: a disk error under a live holder
        for offset in range(0, os.path.getsize(lock_path), SLOT):
            handle.seek(offset)
            handle.write(b"\xff" * 16)
    other = Locker(None, lockPass="other", lockPath=lock_path, timeout=0.3)
    assert other.acquire_lock() == (False, 3), "a corrupt record was broken while its holder may live"
    patient = Locker(None, lockPass="other", lockPath=lock_path, timeout=3, deadLock=0.5)
    started = time.monotonic()
    assert patient.acquire_lock() == (True, 2)  # past deadLock since the last write: broken
    assert time.monotonic() - started < 3
    patient.release_lock()


def test_case9_the_callback_queue_is_bounded_and_counts_what_it_drops() -> None:
    import logging
    import threading

    from pylocker.dispatch import Dispatcher

    dispatcher = Dispatcher("test-callbacks", logging.getLogger("test"), max_pending=100)
    release = threading.Event()
    ran = []
    dispatcher.submit(release.wait, 10)  # a slow callback holds the thread
    for index in range(1000):
        dispatcher.submit(ran.append, index)
    assert dispatcher.pending <= 100
    assert dispatcher.dropped >= 900 - 1
    release.set()
    dispatcher.stop()
    assert len(ran) + dispatcher.dropped == 1000


def test_case9_a_grant_that_could_not_be_sent_is_undone_not_held_by_nobody_who_knows() -> None:
    core = ServerCore(name="s", unique_name="server", now=0.0, lease=5.0)
    _hello(core, b"a", "a")
    _hello(core, b"b", "b")
    core.take()
    core.receive(b"a", [p.encode(p.Acquire(2, ["x"], None))], 0.0)
    [(peer, grant_frame)] = core.take().sends
    assert isinstance(p.decode(grant_frame), p.Grant)
    core.receive(b"b", [p.encode(p.Acquire(3, ["x"], None))], 0.0)  # b waits behind a
    core.take()
    core.undeliverable(peer, grant_frame, 0.1)  # a's queue was full: it never learns of the grant
    replies = [(to, p.decode(frame)) for to, frame in core.take().sends]
    assert [(to, type(m)) for to, m in replies] == [(b"b", p.Grant)]  # the name went on, to b
    assert core.table.holder("x").owner == b"b"


# ------------------------------------------------------------------ case 3: impersonation
def test_case3_a_peer_naming_itself_after_a_live_locker_gets_nothing_of_its() -> None:
    core = ServerCore(name="s", unique_name="server", now=0.0, lease=5.0)
    victim, impostor = p.new_routing_id(), p.new_routing_id()
    _hello(core, victim, "victim")
    core.receive(victim, [p.encode(p.SubscribeCheck(9))], 0.0)  # it receives messages
    core.take()
    core.receive(victim, [p.encode(p.Acquire(2, ["precious"], 0))], 0.0)
    (granted,) = [p.decode(frame) for _, frame in core.take().sends]
    assert isinstance(granted, p.Grant)
    _hello(core, impostor, "victim")  # names are public: the server file lists them
    (refusal,) = [p.decode(frame) for to, frame in core.take().sends if to == impostor]
    assert isinstance(refusal, p.Error) and "another connection" in refusal.detail
    for request in (p.Release(3, granted.lock_id), p.Bye(4)):
        core.receive(impostor, [p.encode(request)], 0.1)
    core.publish(["victim"], 1, b"\x91\xa6secret")  # a message for the victim reaches the victim alone
    sends = core.take().sends
    assert {to for to, _ in sends} == {victim, impostor}
    assert [type(p.decode(frame)) for to, frame in sends if to == victim] == [p.Deliver]
    held = core.table.get(granted.lock_id)
    assert held is not None and held.owner == victim
    # Once the victim's lease lapses its name is free again, for whoever comes next.
    core.tick(6.0)
    core.take()
    _hello(core, impostor, "victim")
    assert [type(p.decode(frame)) for _, frame in core.take().sends] == [p.Welcome]


def test_case3_routing_ids_are_unguessable_and_never_zero_led() -> None:
    ids = {p.new_routing_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(peer) == 17 and peer[0] != 0 for peer in ids)


# ------------------------------------- case 1, found by the fault-injection suite: a stale grant
def test_case1_a_grant_arriving_after_the_lease_ran_out_is_not_taken_as_held() -> None:
    # A waiter frozen (SIGSTOP) after sending its acquire, for longer than the lease: the
    # server granted, then freed the name on the lapse and granted it to another. Thawed,
    # the waiter took the old grant as held, with no loss reported (seeds 12 and 70051).
    from pylocker.client_core import LEASE_DRIFT, ClientCore, LeaseLapsed, Reply

    core = ClientCore(name="me", unique_name="me", pid=1, now=0.0)
    hello = core.hello(0.0)
    core.receive(p.encode(p.Welcome(hello, "srv", "srv", None, 2.0, 1)), 0.0)
    core.take()
    rid = core.request(lambda r: p.Acquire(r, ["x"], None), 1.0, is_acquire=True)
    core.take()
    late = 1.0 + 2.0 * (1 - LEASE_DRIFT) + 0.01  # thawed just past what the send can vouch for
    core.receive(p.encode(p.Grant(rid, "L1", 77)), late)
    sends, out = core.take()
    replies = [event for event in out if isinstance(event, Reply)]
    assert [type(event.message) for event in replies] == [p.Error], "a stale grant reached the caller"
    assert any(isinstance(event, LeaseLapsed) for event in out)
    assert not core.holds("L1", late)
    assert p.Release(0, "L1") in [p.decode(frame) for frame in sends]  # given back, in case it was still ours
    # Just in time, the same grant is the caller's.
    fresh = ClientCore(name="me", unique_name="me", pid=1, now=0.0)
    fresh.receive(p.encode(p.Welcome(fresh.hello(0.0), "srv", "srv", None, 2.0, 1)), 0.0)
    rid = fresh.request(lambda r: p.Acquire(r, ["x"], None), 1.0, is_acquire=True)
    fresh.take()
    fresh.receive(p.encode(p.Grant(rid, "L1", 77)), 1.0 + 2.0 * (1 - LEASE_DRIFT) - 0.01)
    assert [type(event.message) for event in fresh.take()[1] if isinstance(event, Reply)] == [p.Grant]


def test_case13_a_legacy_write_cut_short_leaves_the_previous_record(tmp_path: Any, monkeypatch: Any) -> None:
    # Records were rewritten in place: a write cut short (full disk, a writer killed) left no
    # valid record, and the lock counted as held by nobody who could be asked until deadLock.
    import errno

    from pylocker.legacy import Locker, _engine
    from pylocker.legacy._record import decode

    lock_path = str(tmp_path / "file.lock")
    holder = Locker(None, lockPass="holder", lockPath=lock_path)
    assert holder.acquire_lock() == (True, 0)
    before = decode(Path(lock_path).read_bytes())
    real_pwrite = os.pwrite

    def disk_full(fd: int, data: bytes, offset: int) -> int:
        if len(data) > 32:  # a record, not the stamp: half of it lands, then the disk is full
            real_pwrite(fd, data[: len(data) // 2], offset)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_pwrite(fd, data, offset)

    other = Locker(None, lockPass="other", lockPath=lock_path, timeout=0.2)
    monkeypatch.setattr(_engine.os, "pwrite", disk_full)
    other.acquire_lock()  # tries to queue itself: the write fails half way
    monkeypatch.undo()
    after = decode(Path(lock_path).read_bytes())  # still a valid record: the holder's
    assert [e.token for e in after.holders] == [e.token for e in before.holders]
    assert holder.release_lock() == (True, 2)
