"""One interface over the implementations measured: pylocker (``ours``) and kazoo on ZooKeeper.

``hold(kind, name, timeout)`` gives a context manager holding ``name`` as ``kind``
("shared", "exclusive" or "slot"); ``campaign(group)`` blocks until this process
leads and returns the leadership's fencing token. Imported by the workers: loads
only the standard library until a peer is built.
"""

from __future__ import annotations

import importlib
import sys
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any

from .common import PASSWORD, TIMEOUT


class Peer:
    """What every implementation offers a worker."""

    timeouts: tuple[type[BaseException], ...] = ()  # an acquire that was not granted in time
    errors: tuple[type[BaseException], ...] = ()  # anything else the library raises on purpose

    def hold(self, kind: str, name: str, timeout: float) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def campaign(self, group: str) -> int:
        raise NotImplementedError

    def session(self) -> dict[str, Any]:
        """How this connection outlives silence (lease, session timeout), for the report."""
        return {}

    def close(self) -> None:
        raise NotImplementedError


class Ours(Peer):
    """pylocker from the ``code`` tree: a ServerLocker through the run's server file."""

    def __init__(self, spec: dict[str, Any], serve: bool = False) -> None:
        sys.path.insert(0, spec["code"])  # the measured checkout, ahead of any installed pylocker
        pylocker = importlib.import_module("pylocker")
        extra: dict[str, Any] = {} if spec.get("lease") is None else {"lease": spec["lease"]}
        self.locker = pylocker.ServerLocker(PASSWORD, serverFile=spec["server_file"], port=0, allowServing=serve,
                                            connectTimeout=20, defaultTimeout=TIMEOUT, receive_messages=False,
                                            name=spec.get("name"), **extra)
        if serve != self.locker.isServer or (not serve and not self.locker.isClient):
            raise RuntimeError(f"the locker did not {'serve' if serve else 'connect'}")
        self.timeouts = (pylocker.LockTimeout,)
        self.errors = (pylocker.PylockerError,)
        self._limit = int(spec.get("limit", 1))
        self._semaphores: dict[str, Any] = {}
        self._elections: dict[str, Any] = {}

    def hold(self, kind: str, name: str, timeout: float) -> AbstractContextManager[Any]:
        if kind == "slot":  # acquire returns the Slot already held; the with-block releases it
            semaphore = self._semaphores.get(name)
            if semaphore is None:
                semaphore = self._semaphores[name] = self.locker.semaphore(name, self._limit)
            return semaphore.acquire(timeout=timeout)  # type: ignore[no-any-return]
        return self.locker.lock(name, timeout=timeout, shared=kind == "shared")  # type: ignore[no-any-return]

    def campaign(self, group: str) -> int:
        election = self._elections.get(group)
        if election is None:
            election = self._elections[group] = self.locker.election(group)
        return int(election.campaign())

    def session(self) -> dict[str, Any]:
        return {"lease_s": self.locker.lease}

    def close(self) -> None:
        self.locker.stop()


class _KazooHold:
    """A kazoo recipe (lock or semaphore) as a context manager with an acquire timeout."""

    def __init__(self, recipe: Any, timeout: float, timeout_error: type[BaseException]) -> None:
        self._recipe = recipe
        self._timeout = timeout
        self._timeout_error = timeout_error

    def __enter__(self) -> Any:
        if not self._recipe.acquire(timeout=self._timeout):
            raise self._timeout_error(f"not acquired within {self._timeout} s")
        return self._recipe

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._recipe.release()


class Kazoo(Peer):
    """kazoo on the run's ZooKeeper: ReadLock, WriteLock, Semaphore, Election (its Lock)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        from kazoo.client import KazooClient
        from kazoo.exceptions import KazooException, LockTimeout

        self.timeouts = (LockTimeout,)
        self.errors = (KazooException,)
        self._timeout_error = LockTimeout
        self.client = KazooClient(hosts=f"127.0.0.1:{spec['port']}", timeout=spec["session_timeout"])
        self.client.start(timeout=20)
        self._limit = int(spec.get("limit", 1))
        self._recipes: dict[tuple[str, str], Any] = {}
        self._identifier = str(spec.get("name"))

    def hold(self, kind: str, name: str, timeout: float) -> AbstractContextManager[Any]:
        recipe = self._recipes.get((kind, name))
        if recipe is None:
            path = "/" + name
            if kind == "slot":
                recipe = self.client.Semaphore(path, identifier=self._identifier, max_leases=self._limit)
            elif kind == "shared":
                recipe = self.client.ReadLock(path, identifier=self._identifier)
            else:
                recipe = self.client.WriteLock(path, identifier=self._identifier)
            self._recipes[(kind, name)] = recipe
        return _KazooHold(recipe, timeout, self._timeout_error)

    def campaign(self, group: str) -> int:
        """``Election.run`` is ``with election.lock: func()``: its lock, acquired; the znode's sequence."""
        election = self.client.Election("/election/" + group, identifier=self._identifier)
        election.lock.acquire()
        self._recipes[("election", group)] = election
        return int(election.lock.node[-10:])  # the sequential znode's counter: a fencing token

    def session(self) -> dict[str, Any]:
        negotiated = getattr(self.client, "_session_timeout", None)  # ms, as the server granted it
        return {"session_timeout_s": None if negotiated is None else negotiated / 1000}

    def close(self) -> None:
        self.client.stop()
        self.client.close()


def make_peer(spec: dict[str, Any], serve: bool = False) -> Peer:
    return Kazoo(spec) if spec["impl"] == "kazoo" else Ours(spec, serve)
