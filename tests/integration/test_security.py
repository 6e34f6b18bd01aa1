"""Security on real sockets: CURVE, certificates, a strict wire, a server no input can break."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import random
import select
import socket
import struct
import threading
import time
from typing import Any, Iterator

import msgpack
import psutil
import pytest
import zmq
import zmq.auth

import _workers
from conftest import PASSWORD, wait_for
from pylocker import ServerLocker
from pylocker import protocol as p
from pylocker.errors import NOT_WELCOMED
from pylocker.transport.keys import derive_keys

pytestmark = pytest.mark.integration
SPAWN = multiprocessing.get_context("spawn")


@pytest.fixture
def server_process(server_file: str) -> Iterator[tuple[int, int]]:
    """A serving locker in its own process: (pid, port)."""
    ready, finished = SPAWN.Queue(), SPAWN.Event()
    process = SPAWN.Process(target=_workers.serve, args=(server_file, ready, finished))
    process.start()
    try:
        pid, port = ready.get(timeout=30)
        assert port is not None
        yield pid, port
    finally:
        finished.set()
        process.join(15)
        if process.is_alive():
            process.kill()
            process.join(5)


def _client(port: int, **kwargs: Any) -> ServerLocker:
    locker = ServerLocker(PASSWORD, serverFile=False, autoconnect=False, connectTimeout=5, **kwargs)
    assert locker.connect("127.0.0.1", port)
    return locker


def _still_serves(port: int) -> None:
    locker = _client(port)
    try:
        ok, lock_id = locker.acquire_lock("alive", timeout=5)
        assert ok
        assert locker.release_lock(lock_id) == (True, 1)
    finally:
        locker.stop()


class _Relay:
    """A loopback TCP relay that records every byte in both directions."""

    def __init__(self, target_port: int) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._target = target_port
        self.captured = bytearray()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self._listener.settimeout(10)
        try:
            inbound = self._listener.accept()[0]
        except OSError:
            return
        outbound = socket.create_connection(("127.0.0.1", self._target))
        peers = {inbound: outbound, outbound: inbound}
        while not self._stop.is_set():
            readable, _, _ = select.select(list(peers), [], [], 0.05)
            for sock in readable:
                data = sock.recv(65536)
                if not data:
                    self._stop.set()
                    break
                self.captured += data
                peers[sock].sendall(data)
        inbound.close()
        outbound.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()


def test_traffic_reveals_neither_password_nor_lock_names(serving: ServerLocker) -> None:
    # The relay carries the request connection, where locks are asked for and messages
    # published; the PUB connection is the same CURVE socket setup (see the next test).
    relay = _Relay(serving.port)
    secret_name = "/very/secret/lock-name-7f3a"
    secret_text, secret_payload = "quarterly-figures are ready", "payload-3c9e1d"
    locker = ServerLocker(PASSWORD, serverFile=False, autoconnect=False, connectTimeout=5)
    try:
        assert locker.connect("127.0.0.1", relay.port)
        ok, lock_id = locker.acquire_lock(secret_name)
        assert ok and serving.lockedPaths[secret_name]["clientUniqueName"] == locker.uniqueName
        assert locker.release_lock(lock_id) == (True, 1)
        assert locker.publish_message(secret_text, payload=secret_payload, toSelf=False)[0]
        assert serving.wait_message(secret_text, timeout=10)["payload"] == secret_payload
        serving.publish_message("reply " + secret_text, receivers=[locker.uniqueName], toSelf=False)
        assert locker.wait_message("reply " + secret_text, timeout=10) is not None
    finally:
        locker.stop()
        relay.close()
    assert len(relay.captured) > 200  # the traffic did go through the relay
    for needle in (PASSWORD.encode(), secret_name.encode(), b"lock-name-7f3a", lock_id.encode(),
                   secret_text.encode(), b"quarterly-figures", secret_payload.encode()):
        assert needle not in relay.captured


def test_the_serving_port_answers_no_peer_without_curve(serving: ServerLocker) -> None:
    # Publications now travel on the request connection: the serving locker's one port.
    context = zmq.Context()
    plain = context.socket(zmq.DEALER)
    plain.setsockopt(zmq.LINGER, 0)
    plain.setsockopt(zmq.SNDTIMEO, 1000)
    plain.connect(f"tcp://127.0.0.1:{serving.port}")
    try:
        listener = ServerLocker(PASSWORD, serverFile=False, autoconnect=False, connectTimeout=5)
        assert listener.connect("127.0.0.1", serving.port)
        for frame in (p.Hello(1, "plain", "plain", os.getpid()), p.SubscribeCheck(2)):
            try:
                plain.send(p.encode(frame))
            except zmq.Again:
                # Once the refused handshake has ended the session, libzmq drops the
                # connection's pipe and a DEALER has nowhere to queue: refused either way.
                pass
        serving.publish_message("for everybody", toSelf=False)
        assert listener.wait_message("for everybody", timeout=10) is not None  # a keyed peer gets it
        assert plain.poll(500) == 0  # the plain one never completes a handshake, so never hears it
        listener.stop()
    finally:
        plain.close(0)
        context.term()


def test_password_never_reaches_logs_or_the_server_file(server_file: str, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    server = ServerLocker(PASSWORD, serverFile=server_file, port=0, debugMode=True)
    client = ServerLocker(PASSWORD, serverFile=server_file, port=0, debugMode=True)
    try:
        assert client.isClient
        client.acquire_lock("a")
        with open(server_file, "rb") as handle:
            assert PASSWORD.encode() not in handle.read()
        keys = derive_keys(PASSWORD)
        assert keys.server.secret not in repr(keys).encode()
    finally:
        client.stop()
        server.stop()
    assert caplog.records and PASSWORD not in caplog.text


def test_wrong_password_fails_fast_and_others_keep_working(server_process: tuple[int, int],
                                                           caplog: Any) -> None:
    _, port = server_process
    for _ in range(3):
        intruder = ServerLocker("not-the-password", serverFile=False, autoconnect=False, connectTimeout=5)
        started = time.monotonic()
        assert intruder.connect("127.0.0.1", port, ntrials=1) is False
        assert time.monotonic() - started < 4  # told by the failed handshake, not by the timeout
        assert not intruder.isClient and not intruder.isServer
        assert intruder.acquire_lock("alive") == (False, 2)
    assert "authentication failed" in caplog.text
    _still_serves(port)


def test_certificates_admit_listed_machines_only(server_file: str, tmp_path: Any) -> None:
    authorized, private = tmp_path / "authorized", tmp_path / "private"
    authorized.mkdir()
    private.mkdir()
    _, listed_secret = zmq.auth.create_certificates(str(private), "listed")
    _, unlisted_secret = zmq.auth.create_certificates(str(private), "unlisted")
    os.replace(private / "listed.key", authorized / "listed.key")
    server = ServerLocker(PASSWORD, serverFile=server_file, port=0, authorized_keys=str(authorized))
    lockers = []
    try:
        listed = _client(server.port, key_file=listed_secret)
        lockers.append(listed)
        assert listed.acquire_lock("a")[0] is True
        for kwargs in ({"key_file": unlisted_secret}, {}):  # an unlisted machine, or the password alone
            other = ServerLocker(PASSWORD, serverFile=False, autoconnect=False, connectTimeout=3, **kwargs)
            lockers.append(other)
            assert other.connect("127.0.0.1", server.port, ntrials=1) is False
    finally:
        for locker in lockers:
            locker.stop()
        server.stop()


def test_with_machine_keys_a_connection_is_bound_to_its_machines_key(server_file: str, tmp_path: Any) -> None:
    # Issue 11, case 3: with per-machine keys, a session is also bound to the CURVE key that
    # opened it. Even with the victim's routing id (leaked: a log, a core dump), another
    # listed machine can neither say goodbye for it nor release its locks.
    authorized, private = tmp_path / "authorized", tmp_path / "private"
    authorized.mkdir()
    private.mkdir()
    secrets = {}
    for machine in ("victim", "mallory"):
        public, secrets[machine] = zmq.auth.create_certificates(str(private), machine)
        shutil.copy(public, authorized / os.path.basename(public))
    server = ServerLocker(PASSWORD, serverFile=server_file, port=0, authorized_keys=str(authorized))
    # No reconnect: with per-machine keys the routing id cannot even be taken over, so the
    # victim is never cut off (nor are its answers sent to the other machine).
    victim = _client(server.port, key_file=secrets["victim"])
    try:
        ok, lock_id = victim.acquire_lock("precious", timeout=5)
        assert ok
        mallory_public, mallory_secret = zmq.auth.load_certificate(secrets["mallory"])
        context = zmq.Context()
        mallory = context.socket(zmq.DEALER)
        mallory.setsockopt(zmq.LINGER, 0)
        mallory.setsockopt(zmq.SNDTIMEO, 5000)  # a failure, not a hang, if it has no pipe
        mallory.setsockopt(zmq.ROUTING_ID, victim.node._routing_id)
        mallory.curve_serverkey = derive_keys(PASSWORD).server.public
        mallory.curve_publickey, mallory.curve_secretkey = mallory_public, mallory_secret
        mallory.connect(f"tcp://127.0.0.1:{server.port}")
        try:
            mallory.send(p.encode(p.Heartbeat(1)))  # answered only once through the handshake
            assert not mallory.poll(3000), "a frame under another machine's session was answered"
            mallory.send(p.encode(p.Release(2, lock_id)))
            mallory.send(p.encode(p.Bye(3)))
            mallory.poll(1000)
        finally:
            mallory.close(0)
            context.term()
        got, _ = server.acquire_lock("precious", timeout=2)
        assert not got, "another machine freed the victim's lock"
        assert victim.release_lock(lock_id) == (True, 1)
    finally:
        victim.stop()
        server.stop()


def test_auth_guard_throttles_an_address_that_keeps_failing() -> None:
    from pylocker.transport.zeromq import AuthGuard

    now = [0.0]
    guard = AuthGuard({b"good"}, logging.getLogger("test"), clock=lambda: now[0])
    for _ in range(AuthGuard.MAX_FAILURES + 1):
        assert guard.check("10.0.0.1", b"bad") is False
    assert guard.is_blocked("10.0.0.1") and not guard.is_blocked("10.0.0.2")
    assert guard.check("10.0.0.2", b"good") is True
    now[0] += AuthGuard.FIRST_COOLDOWN + 0.01
    assert not guard.is_blocked("10.0.0.1")
    for _ in range(AuthGuard.MAX_FAILURES + 1):
        guard.check("10.0.0.1", b"bad")
    now[0] += AuthGuard.FIRST_COOLDOWN + 0.01
    assert guard.is_blocked("10.0.0.1")  # the second burst earns a doubled cool-down


@contextlib.contextmanager
def _authenticated_dealer(port: int, routing_id: bytes | None = None) -> Iterator[zmq.Socket]:
    """A raw DEALER that knows the password: a peer past authentication, free to misbehave."""
    keys = derive_keys(PASSWORD)
    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.setsockopt(zmq.SNDTIMEO, 10_000)  # a failure, not a hang, if it has no pipe
    if routing_id is not None:
        dealer.setsockopt(zmq.ROUTING_ID, routing_id)
    dealer.curve_serverkey, dealer.curve_publickey, dealer.curve_secretkey = (
        keys.server.public, keys.client.public, keys.client.secret)
    dealer.connect(f"tcp://127.0.0.1:{port}")
    try:
        yield dealer
    finally:
        dealer.close(0)
        context.term()


def _fuzz_frames(count: int, seed: int) -> Iterator[list[bytes]]:
    rng = random.Random(seed)
    kinds = list(range(0, 8)) + list(range(64, 72)) + [-1, 255, 2**40]
    junk_values: list[Any] = [None, True, -1, 2**63, 1.5, float("inf"), "x" * 5000, b"\x00" * 10,
                              [], {}, ["a"] * 2000, {"k": "v"}, [[["deep"]]], "", 0]
    for index in range(count):
        shape = index % 6
        if shape == 0:
            yield [rng.randbytes(rng.randrange(0, 300))]
        elif shape == 1:
            fields = [rng.choice(junk_values) for _ in range(rng.randrange(0, 7))]
            yield [msgpack.packb([p.VERSION, rng.choice(kinds), *fields])]
        elif shape == 2:  # well-formed header, fields of the wrong type or size
            yield [msgpack.packb([p.VERSION, 2, rng.randrange(2**20), rng.choice(junk_values),
                                  rng.choice(junk_values)])]
        elif shape == 3:  # valid requests for nonsense: releases of unknown ids, cancels
            yield [p.encode(rng.choice([p.Release(rng.randrange(2**20), "nope"), p.Cancel(7),
                                        p.Heartbeat(1), p.Acquire(rng.randrange(2**20), ["fz"], 0)]))]
        elif shape == 4:  # replies sent as requests, multi-part messages
            yield [p.encode(p.Grant(1, "x", 1)), b"extra"] if rng.random() < 0.5 else \
                [p.encode(p.Welcome(1, "a", "b", None, None, 1))]
        else:  # truncated valid frames, huge declared sizes
            frame = p.encode(p.Acquire(1, ["a", "b"], 1.0))
            yield [rng.choice([frame[: rng.randrange(1, len(frame))], b"\xdb\xff\xff\xff\xff",
                               b"\xdd\xff\xff\xff\xff", b"\xc1"])]


def test_ten_thousand_fuzzed_frames_leave_the_server_serving(server_process: tuple[int, int]) -> None:
    pid, port = server_process
    server = psutil.Process(pid)
    _still_serves(port)
    rss_before = server.memory_info().rss
    with _authenticated_dealer(port) as dealer:
        dealer.send(p.encode(p.Hello(1, "fuzzer", "fuzzer", os.getpid())))
        assert dealer.poll(10_000), "the fuzzer never got through the handshake"
        assert isinstance(p.decode(dealer.recv()), p.Welcome)
        errors = 0
        frames_list = list(_fuzz_frames(10_000, seed=20261127))
        # In windows of 100 frames, each closed by a heartbeat whose answer we wait for: a
        # peer that leaves more than 250 answers unread loses the rest, by design.
        for window in range(0, len(frames_list), 100):
            for frames in frames_list[window:window + 100]:
                dealer.send_multipart(frames)
            marker = 1_000_000 + window
            dealer.send(p.encode(p.Heartbeat(marker)))
            answered = False
            while not answered and dealer.poll(10_000):
                reply = p.decode(dealer.recv())
                errors += isinstance(reply, p.Error)
                # A fuzzed Bye may have ended its session: then the answer is "say hello first".
                answered = reply.request_id == marker and (isinstance(reply, p.Pong) or (
                    isinstance(reply, p.Error) and reply.code == NOT_WELCOMED))
            assert answered, f"the server stopped answering the fuzzing peer (window {window})"
        assert errors > 3000  # malformed frames were answered with errors, not silence
    _still_serves(port)
    assert server.is_running()
    assert server.memory_info().rss - rss_before < 30 * 2**20


def test_an_oversized_frame_costs_the_sender_its_connection_only(server_process: tuple[int, int]) -> None:
    _, port = server_process
    with _authenticated_dealer(port) as dealer:
        dealer.send(p.encode(p.Heartbeat(1)))
        assert dealer.poll(10_000)
        dealer.recv()
        dealer.send(b"\x00" * (p.MAX_FRAME + 1))
        _still_serves(port)


def test_garbage_half_open_and_reset_connections_do_not_hurt(server_process: tuple[int, int]) -> None:
    pid, port = server_process
    server = psutil.Process(pid)
    rss_before = server.memory_info().rss
    rng = random.Random(7)
    for _ in range(200):  # raw garbage, then close
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(rng.randbytes(rng.randrange(1, 2000)))
    for _ in range(100):  # reset right after connecting
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    half_open = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(200)]
    try:
        for sock in half_open[:100]:  # a ZMTP greeting that never finishes
            sock.sendall(b"\xff\x00\x00\x00\x00\x00\x00\x00\x01\x7f\x03")
        _still_serves(port)
    finally:
        for sock in half_open:
            sock.close()
    _still_serves(port)
    assert server.memory_info().rss - rss_before < 30 * 2**20


def test_serving_locker_listens_on_loopback_only(serving: ServerLocker) -> None:
    listening = [c.laddr for c in psutil.Process().net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == serving.port]
    assert listening and all(addr.ip == "127.0.0.1" for addr in listening)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to plant a file owned by another user")
def test_server_file_owned_by_another_user_is_refused(server_file: str) -> None:
    with open(server_file, "w") as handle:
        handle.write("{}")
    os.chown(server_file, 65534, 65534)
    locker = ServerLocker(PASSWORD, serverFile=server_file, port=0, connectTimeout=2)
    try:
        assert not locker.isServer and not locker.isClient
    finally:
        locker.stop()
    with pytest.raises(Exception, match="another user"):
        locker.get_running_server_fingerprint()


def test_a_lapsed_client_is_forgotten(make_locker: Any) -> None:
    server = make_locker(lease=0.5)
    client = make_locker()
    assert client.isClient
    server_side = server.node.server
    wait_for(lambda: len(server_side.clients()) == 1)
    client.node.client._running = False  # silence the client without saying goodbye
    wait_for(lambda: not server_side.clients(), timeout=10)


def test_a_flood_of_bad_frames_cannot_flood_the_log(serving: ServerLocker, caplog: Any) -> None:
    with _authenticated_dealer(serving.port) as dealer:
        dealer.send(p.encode(p.Hello(1, "flooder", "flooder", os.getpid())))
        for index in range(3000):
            dealer.send(b"\xc1garbage-%d" % index)
        # Each bad frame is refused with a reply this dealer does not read yet: on a loaded
        # machine its backlog may crowd a Pong out (a peer that does not read loses replies),
        # so a heartbeat left unanswered for a second is asked again.
        request_id = 77
        dealer.send(p.encode(p.Heartbeat(request_id)))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not dealer.poll(1_000):
                request_id += 1
                dealer.send(p.encode(p.Heartbeat(request_id)))
                continue
            reply = p.decode(dealer.recv())
            if isinstance(reply, p.Pong) and reply.request_id >= 77:
                break
        else:
            raise AssertionError("the server stopped answering")
    lines = [r for r in caplog.records if "bad frame" in r.getMessage()]
    assert 5 <= len(lines) <= 10  # the first few one by one, then a summary per thousand
    assert any("3000 bad frames" in r.getMessage() for r in lines)


def test_replies_to_a_peer_that_never_reads_are_bounded(server_process: tuple[int, int]) -> None:
    # Issue 11, case 9: the server's queue towards one peer must not grow without bound.
    pid, port = server_process
    server = psutil.Process(pid)
    with _authenticated_dealer(port) as dealer:
        dealer.send(p.encode(p.Hello(1, "deaf", "deaf", os.getpid())))
        assert dealer.poll(10_000)
        dealer.recv()
        rss_before = server.memory_info().rss
        heartbeat = p.encode(p.Heartbeat(7))
        for _ in range(300_000):  # and never read a Pong
            dealer.send(heartbeat)
        _wait_until_idle(server)  # every heartbeat handled, every Pong queued (or dropped)
        growth = server.memory_info().rss - rss_before
    assert growth < 20 * 2**20, f"the server grew by {growth / 2**20:.0f} MiB for a peer that never reads"
    _still_serves(port)


def _wait_until_idle(process: psutil.Process, timeout: float = 60.0) -> None:
    """Poll until ``process`` has used no CPU for half a second (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    last = sum(process.cpu_times()[:2])
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = sum(process.cpu_times()[:2])
        if now - last < 0.01:
            return
        last = now
    raise AssertionError("the server never went idle")


def test_a_directed_message_reaches_only_its_receiver(serving: ServerLocker, make_locker: Any) -> None:
    # Issue 11, case 11: a password holder subscribed to every PUB topic and read messages
    # addressed to others. Everything now travels on each receiver's own connection.
    receiver = make_locker(allowServing=False)
    with _authenticated_dealer(int(serving.port)) as spy:
        spy.send(p.encode(p.Hello(1, "spy", "spy", os.getpid())))
        spy.send(p.encode(p.SubscribeCheck(2)))  # a receiver of everything it may receive
        seen = b""
        deadline = time.monotonic() + 10
        while b"warm-up" not in seen:
            assert time.monotonic() < deadline, "the spy never heard a broadcast"
            serving.publish_message("warm-up", toSelf=False)
            while spy.poll(100):
                seen += spy.recv()
        for _ in range(5):
            serving.publish_message("secret-for-receiver-only", receivers=[receiver.uniqueName], toSelf=False)
        assert receiver.wait_message("secret-for-receiver-only", timeout=10) is not None
        while spy.poll(500):
            seen += spy.recv()
    assert b"secret-for-receiver-only" not in seen
    assert b"warm-up" in seen  # it did hear what was for everybody


def test_a_peer_posing_as_another_locker_cannot_free_its_locks(serving: ServerLocker, make_locker: Any) -> None:
    # Issue 11, case 3: ownership was the routing id each client chose (its public unique
    # name), with ROUTER_HANDOVER on: a password holder taking that id and saying goodbye
    # made the server free the victim's locks without telling it.
    victim = make_locker(allowServing=False)
    ok, lock_id = victim.acquire_lock("precious", timeout=5)
    assert ok
    name = victim.uniqueName
    assert name in [info.unique_name for info in serving.node.server.clients().values()]  # in the server file
    with _authenticated_dealer(int(serving.port), routing_id=name.encode()) as impostor:
        impostor.send(p.encode(p.Hello(1, "impostor", name, os.getpid())))
        impostor.poll(5000)
        impostor.send(p.encode(p.Bye(2)))
        impostor.send(p.encode(p.Release(3, lock_id)))
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and impostor.poll(200):
            impostor.recv()
        got, other_id = serving.acquire_lock("precious", timeout=1)
        assert not got, "the impostor freed the victim's lock"
    assert victim.release_lock(lock_id) == (True, 1)


def test_each_realm_derives_its_own_keys(server_file: str) -> None:
    # Issue 11, case 14: one fixed salt let one precomputed table serve against every deployment.
    first, second = derive_keys(PASSWORD, realm="factory-a"), derive_keys(PASSWORD, realm="factory-b")
    assert first.server.public != second.server.public and first.client.public != second.client.public
    server = ServerLocker(PASSWORD, serverFile=server_file, port=0, realm="factory-a")
    try:
        same = ServerLocker(PASSWORD, serverFile=False, autoconnect=False, connectTimeout=5, realm="factory-a")
        other = ServerLocker(PASSWORD, serverFile=False, autoconnect=False, connectTimeout=3, realm="factory-b")
        try:
            assert same.connect("127.0.0.1", server.port)
            assert not other.connect("127.0.0.1", server.port, ntrials=1)  # same password, another realm
        finally:
            same.stop()
            other.stop()
    finally:
        server.stop()


def test_with_machine_keys_a_revoked_machine_cannot_pose_as_the_server(tmp_path: Any) -> None:
    # Issue 11, case 14: the server's own key comes from its key file, not from the password.
    import zmq.auth

    private, authorized = tmp_path / "private", tmp_path / "authorized"
    private.mkdir()
    authorized.mkdir()
    server_public, server_secret = zmq.auth.create_certificates(str(private), "server")
    _, machine_secret = zmq.auth.create_certificates(str(private), "machine")
    shutil.copy(str(private / "machine.key"), str(authorized / "machine.key"))
    server = ServerLocker(PASSWORD, serverFile=str(tmp_path / "real"), port=0, authorized_keys=str(authorized),
                          server_key_file=server_secret)
    impostor = ServerLocker(PASSWORD, serverFile=str(tmp_path / "fake"), port=0)  # knows the password only
    try:
        assert server.isServer and impostor.isServer
        for port, expected in ((server.port, True), (impostor.port, False)):
            machine = ServerLocker(PASSWORD, serverFile=False, autoconnect=False, connectTimeout=3,
                                   key_file=machine_secret, server_key_file=server_public)
            try:
                assert machine.connect("127.0.0.1", port, ntrials=1) is expected
            finally:
                machine.stop()
    finally:
        server.stop()
        impostor.stop()
