from __future__ import annotations

import logging
import os
import threading
import uuid
from typing import Any, Callable, Iterator

import pytest
from zkserver import ZooKeeper, ZooKeeperUnavailable, start_zookeeper

from pylocker import ServerLocker
from pylocker.election.memory import MemoryElectionStore

PASSWORD = "test-password"


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01) -> Any:
    """Poll ``predicate`` until it is truthy or ``timeout`` passes (then fail)."""
    event = threading.Event()
    deadline = timeout
    waited = 0.0
    while waited < deadline:
        value = predicate()
        if value:
            return value
        event.wait(interval)
        waited += interval
    raise AssertionError(f"condition not met within {timeout} s")


@pytest.fixture
def server_file(tmp_path: Any) -> str:
    return os.path.join(str(tmp_path), "server")


@pytest.fixture
def serving(server_file: str) -> Iterator[ServerLocker]:
    locker = ServerLocker(PASSWORD, name="server", serverFile=server_file, port=0, connectTimeout=10)
    assert locker.isServer
    yield locker
    locker.stop()


@pytest.fixture
def make_locker(server_file: str) -> Iterator[Callable[..., ServerLocker]]:
    made: list[ServerLocker] = []

    def make(**kwargs: Any) -> ServerLocker:
        kwargs.setdefault("serverFile", server_file)
        kwargs.setdefault("port", 0)
        kwargs.setdefault("connectTimeout", 10)
        locker = ServerLocker(kwargs.pop("password", PASSWORD), **kwargs)
        made.append(locker)
        return locker

    yield make
    for locker in made:
        locker.stop()


@pytest.fixture
def memory_store() -> MemoryElectionStore:
    """An election held in memory, for lockers in this process."""
    return MemoryElectionStore(f"test-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def make_memory_locker(memory_store: MemoryElectionStore) -> Iterator[Callable[..., ServerLocker]]:
    """``make(name, serve)``: a started locker elected through ``memory_store``, on the memory
    transport, reconnecting, with a 30 s lease (so that only the election moves it quickly)."""
    made: list[ServerLocker] = []
    tag = uuid.uuid4().hex[:8]

    def make(name: str, serve: bool) -> ServerLocker:
        locker = ServerLocker(PASSWORD, name=name, serverFile=False, autoconnect=False, reconnect=True,
                              allowServing=serve, listen_address=f"memory://{name}-{tag}", lease=30)
        locker.node.config.election = memory_store
        made.append(locker)
        assert locker.start()
        return locker

    yield make
    for locker in reversed(made):
        locker.stop()


@pytest.fixture(autouse=True)
def _quiet_logs(caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="pylocker")


@pytest.fixture(scope="session")
def zookeeper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeper]:
    """One standalone ZooKeeper on 127.0.0.1 for the session; skips, saying why, when it is not installed."""
    try:
        # tickTime 100 ms: session expiry is judged on tick boundaries, so it lands close to the timeout.
        zk = start_zookeeper(tmp_path_factory.mktemp("zookeeper"), "127.0.0.1", min_session_ms=1000,
                             max_session_ms=60000, tick_ms=100)
    except ZooKeeperUnavailable as exc:
        pytest.skip(exc.reason)
    try:
        yield zk
    finally:
        zk.stop()
