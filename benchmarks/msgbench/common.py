"""Constants shared by the orchestrator and the workers."""

from __future__ import annotations

from pathlib import Path

ENTRY = Path(__file__).resolve().parent.parent / "bench_messages.py"  # what every worker process runs
PASSWORD = "bench-password"
PAYLOAD = b"x" * 100  # the headline payload
MESSAGE = "m"  # the pylocker message text
BULK = 1000  # messages per publish_messages() call (and per Redis pipeline)
QUIET = 5.0  # a receiver ends its stream after this long without a message (longer than a freeze)
FREEZE = 3.0  # seconds the frozen receiver is stopped (SIGSTOP .. SIGCONT)
FULL_COUNT = 500_000
QUICK_COUNT = 50_000
