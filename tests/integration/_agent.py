"""A (threaded) locker in another process, driven by commands: the parent's side of ``_workers.agent``."""

from __future__ import annotations

import multiprocessing
from typing import Any, Callable

import _workers

SPAWN = multiprocessing.get_context("spawn")


class Agent:
    """Each attribute call is a command run by the agent's locker; its result comes back."""

    def __init__(self, server_file: str, name: str, **kwargs: Any) -> None:
        self.commands, self.replies = SPAWN.Queue(), SPAWN.Queue()
        self.process = SPAWN.Process(target=_workers.agent,
                                     args=(server_file, name, self.commands, self.replies, kwargs))
        self.process.start()
        status, self.unique_name, connected = self.replies.get(timeout=60)
        assert status == "ready"
        assert connected

    def __getattr__(self, method: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.commands.put((method, args, kwargs))
            status, _, result = self.replies.get(timeout=60)
            assert status == "ok", result
            return result
        return call

    def stop(self) -> None:
        self.commands.put(("stop", (), {}))
        self.process.join(20)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
