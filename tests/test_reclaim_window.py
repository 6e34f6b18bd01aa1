"""After a failover, a locker's locks are its own while they are re-claimed on the new link.

Between a new connection and the end of its re-claims, a lock still held had looked
lost: ``holds`` asked the new link, which had not been given it back yet, and a
release in that window reported the lock lost and sent nothing, so the re-claim that
followed left it held at the new server by a locker that no longer knew of it.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from conftest import wait_for

from pylocker import ServerLocker
from pylocker.client import Client
from pylocker.election.memory import MemoryElectionStore


def test_a_lock_is_held_and_releasable_while_it_is_re_claimed(
        memory_store: MemoryElectionStore, make_memory_locker: Callable[..., ServerLocker], monkeypatch: Any) -> None:
    old = make_memory_locker("old", True)
    client = make_memory_locker("client", False)
    ok, lock_id = client.acquire_lock("precious")
    assert ok
    reclaiming, proceed = threading.Event(), threading.Event()
    original = Client.reclaim

    def slow_reclaim(link: Client, *args: Any, **kwargs: Any) -> bool:
        reclaiming.set()
        proceed.wait(10)  # the test looks at the locker meanwhile
        return original(link, *args, **kwargs)

    monkeypatch.setattr(Client, "reclaim", slow_reclaim)
    old.stop()  # a clean stop names its clients: the next server waits for their re-claims
    new = make_memory_locker("new", True)
    assert new.isServer
    assert reclaiming.wait(10), "the client never re-claimed"
    released: list[tuple[bool, int]] = []
    releaser = threading.Thread(target=lambda: released.append(client.release_lock(lock_id)))
    try:
        assert client.node.holds(lock_id), "a lock being re-claimed looked lost"
        releaser.start()
    finally:
        proceed.set()
    releaser.join(15)
    assert released == [(True, 1)]
    wait_for(lambda: "precious" not in new.lockedPaths, timeout=5)
    other = make_memory_locker("other", False)
    assert other.acquire_lock("precious", timeout=5)[0]
