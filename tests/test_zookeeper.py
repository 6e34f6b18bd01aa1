"""The ZooKeeper election backend: URLs, terms, epochs, guarded writes and ACLs, against a real ZooKeeper."""

from __future__ import annotations

import gc
import os
import time
import uuid
from typing import Any

import pytest
from conftest import wait_for

from pylocker import ServerLocker
from pylocker.election import backend_for, read_fingerprint
from pylocker.election.base import Fingerprint
from pylocker.election.zk_config import AUTH_ENV, parse_url
from pylocker.errors import ServerFileError

kazoo = pytest.importorskip("kazoo")
from pylocker.election.zookeeper import ZooKeeperElection  # noqa: E402  (needs kazoo)


# ------------------------------------------------------------------ the URL
def test_a_url_names_hosts_path_and_session() -> None:
    config = parse_url("zookeeper://zk1:2181,zk2:2181/pylocker/app/?session_timeout=6.5")
    assert (config.hosts, config.path, config.session_timeout) == ("zk1:2181,zk2:2181", "/pylocker/app", 6.5)
    assert config.url == "zookeeper://zk1:2181,zk2:2181/pylocker/app"
    assert (config.user, config.password, config.tls) == (None, None, False)


@pytest.mark.parametrize(("url", "says"), [
    ("zookeeper://bob:secret@zk:2181/app", "never carry secrets"),
    ("zookeeper://zk:2181", "no election path"),
    ("zookeeper:///app", "no ZooKeeper host"),
    ("zookeeper://zk:2181/app?sesion_timeout=5", "unknown option"),
    ("zookeeper://zk:2181/app?session_timeout=1", "at least 4"),
    ("zookeeper://zk:2181/app?session_timeout=soon", "not a number"),
])
def test_a_bad_url_says_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(ServerFileError, match=says):
        parse_url(url)
    with pytest.raises(ServerFileError, match=says):  # and so does the locker, when it is made
        ServerLocker("pw", serverFile=url, autoconnect=False)


def test_the_digest_secret_comes_from_a_file_or_the_environment(tmp_path: Any, monkeypatch: Any) -> None:
    secret = tmp_path / "zk.secret"
    secret.write_text("pylocker:s3cret\n")
    os.chmod(secret, 0o644)
    with pytest.raises(ServerFileError, match="readable by others"):
        parse_url(f"zookeeper://zk:2181/app?auth_file={secret}")
    os.chmod(secret, 0o600)
    config = parse_url(f"zookeeper://zk:2181/app?auth_file={secret}")
    assert (config.user, config.password) == ("pylocker", "s3cret")
    assert "s3cret" not in repr(config)
    monkeypatch.setenv(AUTH_ENV, "env-user:env-pass")
    assert parse_url("zookeeper://zk:2181/app").user == "env-user"
    monkeypatch.setenv(AUTH_ENV, "no-colon")
    with pytest.raises(ServerFileError, match="user:password"):
        parse_url("zookeeper://zk:2181/app")


# ----------------------------------------------------------------- elections
def _url(zookeeper: Any, extra: str = "") -> str:
    return f"zookeeper://{zookeeper.hosts}/pylocker/unit-{uuid.uuid4().hex[:10]}?session_timeout=4{extra}"


def _fingerprint(name: str, epoch: int, **changes: Any) -> Fingerprint:
    return Fingerprint(name, time.time(), "10.0.0.1", 4000, 1, name, epoch, ("c1",), "host")._replace(**changes)


def _wait_read(election: ZooKeeperElection, predicate: Any, timeout: float = 5.0) -> Fingerprint | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fingerprint = election.read()
        if predicate(fingerprint):
            return fingerprint
        time.sleep(0.02)  # publishing is asynchronous: poll ZooKeeper with a deadline
    raise AssertionError(f"condition not met within {timeout} s: last read {fingerprint}")


def _campaign_within(election: ZooKeeperElection, timeout: float) -> Any:
    """The term ``election`` wins by campaigning again and again for ``timeout`` s; None if none."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        term = election.campaign()
        if term is not None:
            return term
        time.sleep(0.02)  # polling ZooKeeper with a deadline
    return None


@pytest.fixture
def pair(zookeeper: Any) -> Any:
    url = _url(zookeeper)
    a, b = ZooKeeperElection(url), ZooKeeperElection(url)
    yield a, b
    a.close()
    b.close()


def test_one_campaign_wins_and_epochs_keep_growing(pair: Any) -> None:
    a, b = pair
    term = a.campaign()
    assert term is not None
    assert term.epoch == 1
    assert term.valid()
    assert b.campaign() is None  # held: never blocks, never wins twice
    term.resign()
    second = b.campaign()
    assert second is not None
    assert second.epoch == 2
    a.close()  # a session's end takes nothing from a term another session holds
    assert second.valid()


def test_a_term_given_up_past_its_budget_frees_the_election_while_its_session_lives(pair: Any) -> None:
    # A server paused for longer than its budget but shorter than the session timeout stops
    # serving when it wakes; its session lives on, and so would its leader znode, barring
    # every campaign for as long as its process lives (found by the fault suite through ZooKeeper).
    a, b = pair
    term = a.campaign()
    assert term is not None
    term._confirmed_at -= 100.0  # its last answered heartbeat, long ago as far as its budget goes
    assert not term.valid()
    term.resign()
    second = _campaign_within(b, 5)
    assert second is not None, "the leader znode of a term given up outlived it"
    assert second.epoch == term.epoch + 1


def test_a_session_that_ends_without_resigning_frees_the_election(pair: Any) -> None:
    a, b = pair
    first = a.campaign()
    assert first is not None
    a.close()  # the process died: its session (and the ephemeral leader znode) end
    second = _campaign_within(b, 10)
    assert second is not None
    assert second.epoch == first.epoch + 1


def test_publish_read_and_looks_alive(pair: Any) -> None:
    a, b = pair
    term = a.campaign()
    assert term is not None
    a.publish(_fingerprint("a", term.epoch))
    seen = _wait_read(b, lambda fp: fp is not None)
    assert (seen.unique_name, seen.epoch, seen.clients, seen.address) == ("a", term.epoch, ("c1",), "10.0.0.1")
    assert b.looks_alive(seen)
    assert not b.looks_alive(seen._replace(stopped=True))
    assert not b.looks_alive(seen._replace(epoch=term.epoch - 1))
    term.resign()
    assert not b.looks_alive(seen)  # the fingerprint stays (a successor reads its clients); its term is gone
    assert b.read() == seen


def test_followers_hear_every_new_fingerprint_until_they_unfollow_or_the_session_ends(pair: Any) -> None:
    a, b = pair
    heard: list[str] = []
    stays: list[str] = []
    # None (nobody holds the election) may come first, depending on when the watch first reads.
    unfollow = b.follow(lambda fp: fp is not None and heard.append(fp.unique_name))
    b.follow(lambda fp: fp is not None and stays.append(fp.unique_name))
    term = a.campaign()
    assert term is not None
    a.publish(_fingerprint("first", term.epoch))
    wait_for(lambda: heard == ["first"] and stays == ["first"], timeout=5)
    unfollow()
    a.publish(_fingerprint("second", term.epoch))
    wait_for(lambda: stays == ["first", "second"], timeout=5)
    b.close()  # the watch ends with the session
    a.publish(_fingerprint("third", term.epoch))
    _wait_read(a, lambda fp: fp is not None and fp.unique_name == "third")
    b.follow(lambda fp: fp is not None and stays.append(fp.unique_name))  # a new session: what is there now
    wait_for(lambda: stays == ["first", "second", "third"], timeout=5)
    assert heard == ["first"]


def test_followers_hear_none_when_a_term_ends_without_a_successor(pair: Any) -> None:
    a, b = pair
    term = a.campaign()
    assert term is not None
    a.publish(_fingerprint("serving", term.epoch))
    told: list[str | None] = []
    b.follow(lambda fp: told.append(None if fp is None else fp.unique_name))
    wait_for(lambda: told == ["serving"], timeout=5)  # the leader znode is there: only the fingerprint
    a.close()  # the session ends (a crash, an expiry): the leader znode goes with it
    wait_for(lambda: told == ["serving", None], timeout=5)
    assert b.campaign() is not None  # vacant indeed


def _cut_off_unaware(server: ServerLocker) -> None:
    """End ``server``'s ZooKeeper session (its leader znode goes) without its knowing, as during
    a real partition's budget: its term check says all is well, its links to clients stay open."""
    term: Any = server.node._term
    term.valid = lambda: True
    server.node.config.election.close()


def test_a_client_of_a_server_cut_off_silently_moves_when_zookeeper_names_its_successor(zookeeper: Any) -> None:
    url = _url(zookeeper)
    old = ServerLocker("pw", serverFile=url, port=0, lease=30)
    client = ServerLocker("pw", serverFile=url, port=0, lease=30, reconnect=True, allowServing=False)
    new = None
    try:
        assert old.isServer
        assert client.isClient
        ok, lock_id = client.acquire_lock("x", timeout=5)
        assert ok
        _cut_off_unaware(old)
        new = ServerLocker("pw", serverFile=url, port=0, lease=30, connectTimeout=15)
        wait_for(lambda: new.isServer, timeout=15)
        wait_for(lambda: client.node.fingerprint.epoch == 2 and client.isClient, timeout=5)  # not a 30 s lease
        assert old.isServer, "the old server noticed by itself: the test shows nothing"
        wait_for(lambda: "x" in new.lockedPaths, timeout=5)  # re-claimed just after connecting
        assert new.lockedPaths["x"]["clientUniqueName"] == client.uniqueName
        assert client.node.holds(lock_id)
    finally:
        client.stop()
        if new is not None:
            new.stop()
        old.stop()


def test_a_term_that_lost_its_election_can_never_overwrite_its_successors_fingerprint(pair: Any) -> None:
    a, b = pair
    old = a.campaign()
    assert old is not None
    a.publish(_fingerprint("a", old.epoch))
    _wait_read(b, lambda fp: fp is not None and fp.unique_name == "a")
    # a's session ends behind its back (as when ZooKeeper expires it); b wins and publishes.
    b.client().delete(a.leader_path)  # the leader znode vanishes, as a session expiry removes it
    new = b.campaign()
    assert new is not None
    assert new.epoch == old.epoch + 1
    b.publish(_fingerprint("b", new.epoch))
    _wait_read(a, lambda fp: fp is not None and fp.unique_name == "b")
    a.publish(_fingerprint("a", old.epoch, address="10.9.9.9"))  # the old server, still believing
    time.sleep(0.3)  # nothing to wait on: a write that must *not* land
    assert b.read().unique_name == "b"
    deadline = time.monotonic() + 5
    while old.valid() and time.monotonic() < deadline:
        time.sleep(0.02)  # its next heartbeat finds the leader znode gone
    assert not old.valid()


def test_a_term_ends_when_zookeeper_stops_answering(pair: Any, zookeeper: Any) -> None:
    a, _ = pair
    term = a.campaign()
    assert term is not None
    assert term.valid()
    budget = a.term_budget()
    assert 0 < budget < 4.0 * 0.75
    os.kill(zookeeper.pid, 19)  # SIGSTOP: the ensemble is silent (a partition, as seen from here)
    try:
        stopped = time.monotonic()
        while term.valid() and time.monotonic() - stopped < 4.0:
            time.sleep(0.05)
        ended_after = time.monotonic() - stopped
    finally:
        os.kill(zookeeper.pid, 18)  # SIGCONT
    assert not term.valid()
    assert ended_after <= budget + 1.2, f"the term outlived its budget: {ended_after:.2f} s"


def test_publishing_only_a_new_timestamp_writes_nothing(pair: Any) -> None:
    a, b = pair
    term = a.campaign()
    assert term is not None
    a.publish(_fingerprint("a", term.epoch))
    _wait_read(b, lambda fp: fp is not None)
    zk = b.client()
    _, before = zk.get(a.server_path)
    a.publish(_fingerprint("a", term.epoch))  # a second later: only the timestamp differs
    a.publish(_fingerprint("a", term.epoch, clients=("c1", "c2")))
    _wait_read(b, lambda fp: fp is not None and fp.clients == ("c1", "c2"))
    _, after = zk.get(a.server_path)
    assert after.version == before.version + 1


def test_with_a_digest_secret_other_users_cannot_read_or_touch_the_election(zookeeper: Any, tmp_path: Any) -> None:
    secret = tmp_path / "secret"
    secret.write_text("fleet:hunter2")
    os.chmod(secret, 0o600)
    url = _url(zookeeper, f"&auth_file={secret}")
    election = ZooKeeperElection(url)
    term = election.campaign()
    assert term is not None
    election.publish(_fingerprint("a", term.epoch))
    _wait_read(election, lambda fp: fp is not None)
    from kazoo.client import KazooClient
    from kazoo.exceptions import NoAuthError

    stranger = KazooClient(hosts=zookeeper.hosts, auth_data=[("digest", "mallory:guess")])
    stranger.start(timeout=10)
    try:
        with pytest.raises(NoAuthError):
            stranger.get(election.server_path)
        with pytest.raises(NoAuthError):
            stranger.set(election.epoch_path, b"999")
        with pytest.raises(NoAuthError):
            stranger.create(election.leader_path + "-x", b"")
    finally:
        stranger.stop()
        stranger.close()
        term.resign()
        election.close()


def test_lockers_elect_lock_and_fail_over_through_zookeeper(zookeeper: Any) -> None:
    url = _url(zookeeper)
    first = ServerLocker("pw", serverFile=url, port=0, lease=1.0)
    second = ServerLocker("pw", serverFile=url, port=0, lease=1.0, reconnect=True)
    try:
        assert first.isServer
        assert second.isClient
        assert second.serverFile == url  # a URL is kept as given, not made a path
        ok, lock_id = second.acquire_lock("x", timeout=5)
        assert ok
        token = second.fencing_token(lock_id)
        assert read_fingerprint(url).unique_name == first.uniqueName
        first.stop()  # a clean stop resigns: the other candidate wins at once, not a session later
        deadline = time.monotonic() + 10
        while not second.isServer and time.monotonic() < deadline:
            time.sleep(0.02)
        assert second.isServer
        assert second.node.holds(lock_id), "the lock was not re-claimed across the failover"
        ok, other = second.acquire_lock("y", timeout=5)
        assert ok
        assert second.fencing_token(other) > token
        assert backend_for(url).description.startswith("zookeeper://")
    finally:
        second.stop()
        first.stop()


def test_a_standby_candidate_campaigns_when_zookeeper_ends_the_silent_servers_session(zookeeper: Any) -> None:
    url = _url(zookeeper)
    old = ServerLocker("pw", serverFile=url, port=0, lease=30)
    standby = ServerLocker("pw", serverFile=url, port=0, lease=30, reconnect=True)
    client = ServerLocker("pw", serverFile=url, port=0, lease=30, reconnect=True, allowServing=False)
    try:
        assert old.isServer
        assert standby.isClient
        ok, lock_id = client.acquire_lock("x", timeout=5)
        assert ok
        _cut_off_unaware(old)
        wait_for(lambda: standby.isServer, timeout=5)  # not when its 30 s lease runs out
        assert old.isServer, "the old server noticed by itself: the test shows nothing"
        wait_for(lambda: client.node.fingerprint.epoch == 2 and "x" in standby.lockedPaths, timeout=5)
        assert standby.lockedPaths["x"]["clientUniqueName"] == client.uniqueName
        assert client.node.holds(lock_id)
    finally:
        client.stop()
        standby.stop()
        old.stop()


# ----------------------------------------------------------------------- TLS
# kazoo 2.11 does not close its SSLSocket when the TLS handshake fails (create_tcp_connection re-raises
# the ssl.SSLError without closing it): the refused attempts below leave it to the garbage collector.
@pytest.mark.filterwarnings("ignore:unclosed <ssl.SSLSocket:ResourceWarning")
def test_tls_elects_through_the_secure_port_and_refuses_clients_without_tls_or_certificate(tmp_path: Any) -> None:
    from urllib.parse import quote

    from zkserver import make_tls_files, start_zookeeper, zookeeper_unavailable

    from pylocker.election.zookeeper import ElectionUnavailable

    reason = zookeeper_unavailable(tls=True)
    if reason is not None:
        pytest.skip(reason)
    tls = make_tls_files(tmp_path / "certs")
    # ssl.clientAuth=need: a TLS client must present a certificate signed by the CA.
    zk = start_zookeeper(tmp_path / "zookeeper", "127.0.0.1", min_session_ms=1000, max_session_ms=60000,
                         tls=tls, client_auth="need", timeout=30)
    elections: list[ZooKeeperElection] = []

    def election(path: str, options: str) -> ZooKeeperElection:
        made = ZooKeeperElection(f"zookeeper://{zk.secure_hosts}{path}?session_timeout=4{options}")
        elections.append(made)
        return made

    ca, cert, key = (quote(str(path), safe="/") for path in (tls.ca, tls.client_cert, tls.client_key))
    path = f"/pylocker/tls-{uuid.uuid4().hex[:10]}"
    try:
        # (a) TLS with the client certificate: campaign, publish, and read back from a second session.
        a, b = (election(path, f"&connect_timeout=10&tls=1&ca={ca}&cert={cert}&key={key}") for _ in range(2))
        assert a.config.tls
        term = a.campaign()
        assert term is not None
        assert term.valid()
        assert b.campaign() is None
        a.publish(_fingerprint("tls", term.epoch))
        seen = _wait_read(b, lambda fp: fp is not None and fp.unique_name == "tls")
        assert (seen.epoch, seen.address, seen.clients) == (term.epoch, "10.0.0.1", ("c1",))
        assert a.read() == seen
        assert b.looks_alive(seen)
        term.resign()

        # (b) the same options without tls=1: a plain client cannot speak to the secure port.
        # (c) TLS without a client certificate: refused (ssl.clientAuth=need).
        for options in (f"&connect_timeout=2&ca={ca}&cert={cert}&key={key}", f"&connect_timeout=2&tls=1&ca={ca}"):
            refused = election(path, options)
            started = time.monotonic()
            with pytest.raises(ElectionUnavailable, match="cannot reach ZooKeeper") as caught:
                refused.campaign()
            took = time.monotonic() - started
            assert isinstance(caught.value, ServerFileError)
            assert took < 2 + 3, f"refused only after {took:.1f} s ({options})"
    finally:
        for made in elections:
            made.close()
        zk.stop()
        gc.collect()  # kazoo's unclosed sockets are finalised now, while the warning filter above applies
