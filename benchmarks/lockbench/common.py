"""Constants shared by the orchestrator and the workers (standard library only)."""

from __future__ import annotations

import struct
from pathlib import Path

ENTRY = Path(__file__).resolve().parent.parent / "bench_locks.py"  # what every worker process runs
PASSWORD = "bench-password"
SEED_VERSION = "3.1.0"
ECHO_PAYLOAD = b"x" * 40  # about the size of an encoded Acquire frame
HANDOVER = struct.Struct("<qd")  # (pid of the last holder, monotonic time of its release)
