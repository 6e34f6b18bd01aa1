"""One interface over the implementations measured: acquire(name, timeout) and release(handle).

Imported by the workers: loads only the standard library until an adapter is built,
then the implementation its spec names (``ours``: the ``--code`` checkout's pylocker;
``seed``: pylocker 3.1.0 from the running venv; ``redis``: redis + python-redis-lock).
"""

from __future__ import annotations

import importlib
import sys
import threading
from typing import Any

from .common import PASSWORD


def checkout_server_locker(code: str) -> Any:
    """``pylocker.ServerLocker`` from the source tree ``code`` (``--code``), ahead of any installed one.

    Imported by name at run time: the pylocker measured is whichever tree the run names.
    """
    sys.path.insert(0, code)
    return importlib.import_module("pylocker").ServerLocker


class Adapter:
    """acquire(name, timeout) -> handle or None; release(handle). One per implementation."""

    def __init__(self, spec: dict[str, Any], serve: bool) -> None:
        impl = spec["impl"]
        self.impl = impl
        if impl == "redis":
            import redis
            import redis_lock

            self._conn = redis.Redis(host="127.0.0.1", port=spec["port"])
            self._conn.ping()
            self._locks: dict[str, Any] = {}
            self._lock_class = redis_lock.Lock
            return
        server_locker: Any
        if impl == "ours":
            server_locker = checkout_server_locker(spec["code"])
            kwargs: dict[str, Any] = {"port": 0}
        else:  # the seed, pylocker 3.1.0 from PyPI, imported from its own venv
            importlib.import_module("pylocker")  # registers pylocker.ServerLocker in sys.modules
            module = sys.modules["pylocker.ServerLocker"]
            server_locker = module.ServerLocker
            # The seed listens on the address of its default route; keep it on loopback.
            server_locker._ServerLocker__get_ip_address = lambda self: "127.0.0.1"
            kwargs = {"port": spec.get("port") or 3000}
        max_lock_time = spec.get("max_lock_time", 120)
        self.locker = server_locker(password=PASSWORD, serverFile=spec["server_file"],
                                    allowServing=serve, connectTimeout=20, defaultTimeout=20,
                                    maxLockTime=max_lock_time, name=spec.get("name"), **kwargs)
        if serve and not self.locker.isServer:
            raise RuntimeError("the locker did not become the serving locker")
        if not serve and not self.locker.isClient:
            raise RuntimeError("the locker did not connect to the serving locker")

    def acquire(self, name: str, timeout: float) -> Any:
        if self.impl == "redis":
            lock = self._locks.get(name)
            if lock is None:
                lock = self._locks[name] = self._lock_class(self._conn, name, expire=60)
            return lock if lock.acquire(blocking=True, timeout=timeout) else None
        ok, lock_id = self.locker.acquire_lock(name, timeout=timeout)
        return lock_id if ok else None

    def release(self, handle: Any) -> None:
        if self.impl == "redis":
            handle.release()
        else:
            self.locker.release_lock(handle)

    def close(self) -> None:
        if self.impl == "redis":
            return
        closer = threading.Thread(target=self.locker.stop, daemon=True)
        closer.start()
        closer.join(5)

