"""The message suite's worker processes (the plumbing is ``harness``'s)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import harness
from harness import BenchError, free_port, revision, say, stop_pid

from .common import ENTRY

__all__ = ["BenchError", "Worker", "free_port", "revision", "say", "stop_pid"]


class Worker(harness.Worker):
    """A worker running ``bench_messages.py --worker ROLE``."""

    def __init__(self, role: str, spec: dict[str, Any], label: str, logdir: Path) -> None:
        super().__init__(ENTRY, role, spec, label, logdir)
