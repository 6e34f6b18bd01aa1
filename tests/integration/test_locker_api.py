"""The seed API on real sockets, within one process (server and clients on loopback)."""

from __future__ import annotations

import os
import pickle
import stat
import threading
import time
from typing import Any

import pytest

import pylocker
from conftest import PASSWORD, wait_for
from pylocker import FACTORY, LockersFactory, LockTimeout, ServerLocker, SingleLocker

pytestmark = pytest.mark.integration


def test_package_functions_describe_the_project() -> None:
    assert pylocker.get_version() == "4.0.0.dev0"
    assert pylocker.get_author() and "@" in pylocker.get_email()
    for url in (pylocker.get_doc(), pylocker.get_repository(), pylocker.get_pypi()):
        assert url.startswith("https://")


def test_client_acquire_release_codes(serving: ServerLocker, make_locker: Any) -> None:
    client = make_locker()
    assert client.isClient and not client.isServer
    ok, lock_id = client.acquire_lock("a")
    assert ok and isinstance(lock_id, str)
    assert client.ownedLocks == {lock_id: ["a"]}
    assert serving.lockedPaths["a"]["clientUniqueName"] == client.uniqueName
    assert serving.clientLocks == {lock_id: ["a"]}
    assert client.lockedPaths is None and client.clientLocks is None
    assert serving.acquire_lock("a", timeout=0) == (False, 0)
    assert client.release_lock(lock_id) == (True, 1)
    assert client.release_lock(lock_id) == (True, 0)
    assert client.ownedLocks == {}


def test_aliases_and_multi_path_all_or_nothing(serving: ServerLocker, make_locker: Any) -> None:
    client = make_locker()
    ok, held = serving.acquire("b")
    assert ok
    assert client.acquire(["a", "b", "c"], timeout=0.2) == (False, 0)
    assert serving.lockedPaths.keys() == {"b"}  # neither a nor c was taken
    assert serving.release(held) == (True, 1)
    ok, lock_id = client.acquire(("a", "b", "c"))
    assert ok and sorted(serving.lockedPaths) == ["a", "b", "c"]
    assert client.release(lock_id) == (True, 1)


def test_timeout_is_never_granted_late(serving: ServerLocker, make_locker: Any) -> None:
    client = make_locker()
    ok, held = serving.acquire_lock("a")
    started = time.monotonic()
    assert client.acquire_lock("a", timeout=0.3) == (False, 0)
    assert time.monotonic() - started >= 0.3
    serving.release_lock(held)
    # The given-up request must not be granted now that 'a' is free.
    assert serving.lockedPaths == {}
    assert client.ownedLocks == {}


def test_max_lock_time_expires_and_tells_the_holder(make_locker: Any) -> None:
    server = make_locker(maxLockTime=0.3)
    client = make_locker()
    lost = threading.Event()
    client.on_lock_lost(lambda lock_id, reason: lost.set())
    assert client.serverMaxLockTime == 0.3
    ok, lock_id = client.acquire_lock("a")
    assert ok
    assert lost.wait(5)
    assert client.ownedLocks == {}
    assert client.release_lock(lock_id) == (True, 0)
    assert server.acquire_lock("a", timeout=1)[0] is True


def test_server_expires_its_own_locks_too(make_locker: Any) -> None:
    server = make_locker(maxLockTime=0.2)
    ok, lock_id = server.acquire_lock("a")
    assert ok
    wait_for(lambda: server.ownedLocks == {})
    assert server.release_lock(lock_id) == (True, 0)


def test_fencing_tokens_only_grow(serving: ServerLocker, make_locker: Any) -> None:
    client = make_locker()
    tokens = []
    for locker in (serving, client, serving, client):
        ok, lock_id = locker.acquire_lock("a")
        tokens.append(locker.fencing_token(lock_id))
        locker.release_lock(lock_id)
    assert tokens == sorted(tokens) and len(set(tokens)) == 4


def test_neither_server_nor_client_codes(server_file: str) -> None:
    locker = ServerLocker(PASSWORD, serverFile=server_file, autoconnect=False)
    assert not locker.isServer and not locker.isClient
    assert locker.acquire_lock("a") == (False, 2)
    assert locker.release_lock("x") == (False, 3)


def test_wrong_password_is_refused_and_server_keeps_serving(serving: ServerLocker, make_locker: Any,
                                                            caplog: Any) -> None:
    intruder = make_locker(password="wrong", allowServing=False, connectTimeout=3)
    assert not intruder.isClient and not intruder.isServer
    assert "authentication failed" in caplog.text
    friend = make_locker(allowServing=False)
    assert friend.isClient
    ok, lock_id = friend.acquire_lock("a")
    assert ok


def test_threads_share_one_client_locker(serving: ServerLocker, make_locker: Any) -> None:
    client = make_locker()
    inside, overlaps, counts = [0], [0], [0]
    guard = threading.Lock()

    def work() -> None:
        for _ in range(25):
            ok, lock_id = client.acquire_lock("shared", timeout=20)
            assert ok
            with guard:
                inside[0] += 1
                overlaps[0] += inside[0] > 1
            with guard:
                inside[0] -= 1
                counts[0] += 1
            client.release_lock(lock_id)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert counts[0] == 100 and overlaps[0] == 0


def test_context_manager_locks_and_raises_on_timeout(serving: ServerLocker, make_locker: Any) -> None:
    client = make_locker()
    with client.lock(["a", "b"], timeout=1) as lock:
        assert lock.is_acquired and lock.token and sorted(serving.lockedPaths) == ["a", "b"]
        with pytest.raises(LockTimeout):
            with serving.lock("b", timeout=0.1):
                pass
    wait_for(lambda: serving.lockedPaths == {})  # a client's release is sent without waiting


def test_connect_by_address(serving: ServerLocker) -> None:
    remote = ServerLocker(PASSWORD, serverFile=False, autoconnect=False, connectTimeout=5)
    try:
        assert remote.start("127.0.0.1", serving.port) is True
        assert remote.isClient and remote.serverUniqueName == serving.uniqueName
        assert remote.serverName == "server"
        assert remote.acquire_lock("z")[0] is True
    finally:
        remote.stop()


def test_stop_reset_and_start_again(serving: ServerLocker, make_locker: Any) -> None:
    client = make_locker()
    assert client.reset() == (False, "locker is still serving or connected; stop it first")
    with pytest.raises(RuntimeError):
        client.reset(raiseError=True)
    client.stop()
    assert not client.isClient
    old = client.uniqueName
    assert client.reset() == (True, None)
    assert client.uniqueName != old
    assert client.start() is True and client.isClient


def test_server_file_is_private_and_symlinks_are_refused(serving: ServerLocker, server_file: str,
                                                         tmp_path: Any) -> None:
    assert stat.S_IMODE(os.stat(server_file).st_mode) == 0o600
    target = tmp_path / "target"
    target.write_text("keep")
    link = str(tmp_path / "linked")
    os.symlink(str(target), link)
    locker = ServerLocker(PASSWORD, serverFile=link, port=0, connectTimeout=2)
    try:
        assert not locker.isServer and not locker.isClient
    finally:
        locker.stop()
    assert target.read_text() == "keep"


def test_pickle_keeps_the_configuration_unstarted(serving: ServerLocker) -> None:
    copy = pickle.loads(pickle.dumps(serving))
    try:
        assert not copy.isServer and not copy.isClient
        assert (copy.password, copy.name, copy.serverFile) == (serving.password, serving.name, serving.serverFile)
        assert copy.start() is True and copy.isClient
    finally:
        copy.stop()


def test_single_locker_is_one_per_process(server_file: str) -> None:
    first = SingleLocker(PASSWORD, serverFile=server_file, port=0, autoconnect=False)
    second = SingleLocker("other", autoconnect=False)
    assert first is second and second.password == PASSWORD


def test_factory_returns_the_same_locker_per_key(server_file: str) -> None:
    assert LockersFactory() is FACTORY
    first = FACTORY(key=server_file, password=PASSWORD, serverFile=server_file, port=0, autoconnect=False)
    second = FACTORY(key=server_file, password="another")
    assert first is second and second.password == PASSWORD
    assert FACTORY.get(server_file, restart=True) is first and first.isServer
    first.stop()
    regenerated = FACTORY.get(server_file, False, True, PASSWORD, serverFile=server_file, port=0,
                              autoconnect=False)
    assert regenerated is not first
    assert FACTORY.pop(server_file) is regenerated and server_file not in FACTORY


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"password": 5}, TypeError),
    ({"port": -1}, ValueError),
    ({"port": "3000"}, ValueError),
    ({"defaultTimeout": -1}, ValueError),
    ({"defaultTimeout": "1"}, TypeError),
    ({"maxLockTime": -5}, ValueError),
    ({"serverFile": 3}, TypeError),
    ({"allowServing": 1}, TypeError),
    ({"connectTimeout": 0}, ValueError),
])
def test_bad_constructor_arguments_say_what_is_wrong(kwargs: dict[str, Any], error: type) -> None:
    kwargs.setdefault("password", PASSWORD)
    with pytest.raises(error) as info:
        ServerLocker(autoconnect=False, **kwargs)
    name = next(k for k in kwargs if k != "password") if len(kwargs) > 1 else "password"
    assert name in str(info.value)


@pytest.mark.parametrize(("path", "error"), [(5, TypeError), ([], ValueError), (["a", 3], TypeError),
                                             ("", ValueError), (["x" * 5000], ValueError)])
def test_bad_paths_say_what_is_wrong(serving: ServerLocker, path: Any, error: type) -> None:
    with pytest.raises(error, match="path"):
        serving.acquire_lock(path)
    with pytest.raises(TypeError, match="lockId"):
        serving.release_lock(5)  # type: ignore[arg-type]


def test_operations_on_a_lost_lock_say_it_was_lost(make_locker: Any) -> None:
    from pylocker import LockLost

    server = make_locker(maxLockTime=0.2)
    client = make_locker()
    lock = client.lock("a", timeout=5)
    with pytest.raises(LockLost) as lost:
        with lock:
            wait_for(lambda: not lock.is_acquired)  # maxLockTime takes it during the block
            # is_acquired reads the client's clock; the loss is recorded by its timer, a tick later.
            wait_for(lambda: client.lost_reason(lock.lock_id) is not None)
    assert lost.value.reason == "maxLockTime" and client.lost_reason(lost.value.lock_id) == "maxLockTime"
    ok, lock_id = server.acquire_lock("a", timeout=1)
    assert ok
    wait_for(lambda: server.ownedLocks == {})
    assert server.lost_reason(lock_id) == "maxLockTime" and server.release_lock(lock_id) == (True, 0)


def test_a_release_after_our_own_clock_gave_the_lock_up_says_it_was_lost(make_locker: Any,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # Between the client's maxLockTime clock running out and its timer recording the loss,
    # a release was taken as a normal one: a with-block that ran past maxLockTime (so partly
    # unprotected) ended without a word. Here the timer never records it, to hold that moment.
    from pylocker import LockLost
    from pylocker.client_core import ClientCore

    make_locker(maxLockTime=0.3)
    client = make_locker()
    monkeypatch.setattr(ClientCore, "tick", lambda self, now: None)  # no timer: only the clock's verdict
    lock = client.lock("a", timeout=5)
    with pytest.raises(LockLost) as lost:
        with lock:
            wait_for(lambda: not lock.is_acquired)  # the client's own clock gave it up
            assert client.lost_reason(lock.lock_id) is None  # and nothing recorded it yet
    assert lost.value.reason == "maxLockTime"
    assert client.lost_reason(lost.value.lock_id) == "maxLockTime"
    assert client.ownedLocks == {}


def test_blocking_keeps_the_caller_serving_until_stopped(server_file: str) -> None:
    made: list[ServerLocker] = []

    class Recorded(ServerLocker):
        def start(self, *args: Any, **kwargs: Any) -> bool:
            made.append(self)
            return super().start(*args, **kwargs)

    thread = threading.Thread(target=Recorded, args=(PASSWORD,),
                              kwargs={"serverFile": server_file, "port": 0, "blocking": True})
    thread.start()
    wait_for(lambda: made and made[0].isServer)
    client = ServerLocker(PASSWORD, serverFile=server_file, allowServing=False)
    try:
        assert client.isClient and thread.is_alive()
    finally:
        client.stop()
        made[0].stop()
    thread.join(10)
    assert not thread.is_alive()


def test_a_stopped_client_frees_its_locks_at_once(make_locker: Any) -> None:
    # A lease of a minute: only the client's goodbye can free its lock within the test.
    server = make_locker(lease=60.0)
    for _ in range(10):
        client = make_locker(allowServing=False)
        ok, _ = client.acquire_lock("a", timeout=5)
        assert ok
        client.stop()
        ok, lock_id = server.acquire_lock("a", timeout=2)
        assert ok, "the stopped client's goodbye did not reach the server"
        assert server.release_lock(lock_id) == (True, 1)
