"""The lock suite's worker processes (the plumbing is ``harness``'s)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import harness
from harness import BenchError, free_port, go, revision, say, stop_pid

from .common import ENTRY

__all__ = ["BenchError", "Worker", "free_port", "go", "revision", "say", "stop_pid"]


class Worker(harness.Worker):
    """A worker running ``bench_locks.py --worker ROLE`` with ``python`` (the seed runs in its own venv)."""

    def __init__(self, python: str, role: str, spec: dict[str, Any], label: str, logdir: Path) -> None:
        super().__init__(ENTRY, role, spec, label, logdir, python=python)
