"""Clients follow the election: a newer server named there is joined at once, locks re-claimed.

A server cut off silently (a cable, a firewall) keeps its clients' links open until
their lease runs out, although a successor may serve by then; a client that hears
the election name a newer epoch moves at once. Driven here through the in-memory
election and transport: the old server is made to miss its own term's end, as one
cut off from ZooKeeper does until its budget runs out.
"""

from __future__ import annotations

from typing import Any, Callable

from conftest import wait_for

from pylocker import ServerLocker
from pylocker.election.memory import MemoryElectionStore


def _unaware(server: ServerLocker) -> None:
    """Make ``server`` miss the end of its term, as a server cut off from ZooKeeper does for a while."""
    term: Any = server.node._term
    term.valid = lambda: True


def test_a_client_moves_to_a_newer_server_as_soon_as_the_election_names_it(
        memory_store: MemoryElectionStore, make_memory_locker: Callable[..., ServerLocker]) -> None:
    old = make_memory_locker("old", True)
    client = make_memory_locker("client", False)
    ok, lock_id = client.acquire_lock("precious")
    assert ok and old.isServer and client.isClient
    token = client.node.owned.token(lock_id)
    _unaware(old)
    memory_store.kill()  # the old server's term ends; it has not noticed (and its link to the client lives)
    new = make_memory_locker("new", True)
    assert new.isServer and memory_store.epoch == 2
    # The lease is 30 s: only the election can have told the client so soon.
    wait_for(lambda: client.node.fingerprint.epoch == 2 and client.isClient, timeout=5)
    assert old.isServer, "the old server noticed by itself: the test shows nothing"
    wait_for(lambda: "precious" in new.lockedPaths, timeout=5)
    assert new.lockedPaths["precious"]["clientUniqueName"] == client.uniqueName
    assert client.node.holds(lock_id) and client.node.owned.token(lock_id) == token
    other = make_memory_locker("other", False)
    assert not other.acquire_lock("precious", timeout=0.2)[0]
    assert client.release_lock(lock_id) == (True, 1)
    assert other.acquire_lock("precious", timeout=5)[0]


def test_a_standby_candidate_campaigns_as_soon_as_the_term_is_vacant(
        memory_store: MemoryElectionStore, make_memory_locker: Callable[..., ServerLocker]) -> None:
    old = make_memory_locker("old", True)
    standby = make_memory_locker("standby", True)  # a candidate: a client while another serves
    client = make_memory_locker("client", False)
    ok, lock_id = client.acquire_lock("precious")
    assert ok and standby.isClient
    _unaware(old)
    memory_store.kill()  # the term ends (ZooKeeper expired the old server's session): nobody holds it
    wait_for(lambda: standby.isServer, timeout=5)  # not a 30 s lease later
    assert memory_store.epoch == 2 and old.isServer
    wait_for(lambda: client.node.fingerprint.epoch == 2 and "precious" in standby.lockedPaths, timeout=5)
    assert standby.lockedPaths["precious"]["clientUniqueName"] == client.uniqueName
    assert client.release_lock(lock_id) == (True, 1)


def test_a_fingerprint_of_the_same_or_an_older_epoch_moves_nobody(
        memory_store: MemoryElectionStore, make_memory_locker: Callable[..., ServerLocker]) -> None:
    server = make_memory_locker("server", True)
    client = make_memory_locker("client", False)
    link = client.node.link
    current = memory_store.read()
    assert current is not None and link is not None
    memory_store.publish(current._replace(unique_name="impostor", address="memory://nowhere"))
    memory_store.publish(current._replace(unique_name="ancient", address="memory://nowhere", epoch=0))
    memory_store.publish(current._replace(epoch=9, stopped=True))  # a server that stopped is not joined
    memory_store._tell(None)  # a vacancy moves only candidates, and this client is none
    assert client.node.link is link and client.isClient and client.node.fingerprint.epoch == 1
    assert client.acquire_lock("still-here", timeout=5)[0] and server.isServer


def test_a_stopped_locker_follows_the_election_no_more(
        memory_store: MemoryElectionStore, make_memory_locker: Callable[..., ServerLocker]) -> None:
    make_memory_locker("server", True)
    client = make_memory_locker("client", False)
    assert len(memory_store._followers) == 2  # the server follows too (it may become a client)
    client.stop()
    assert len(memory_store._followers) == 1
