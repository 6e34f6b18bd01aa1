"""Constants shared by the orchestrator and the workers (standard library only)."""

from __future__ import annotations

from pathlib import Path

ENTRY = Path(__file__).resolve().parent.parent / "bench_coordination.py"  # what every worker runs
PASSWORD = "bench-password"
TIMEOUT = 10.0  # seconds an acquire may wait in a throughput loop before it counts as a failure

# Names: one per phase, so that nothing left by one phase meets the next.
SHARED_NAME = "bench/shared"
EXCLUSIVE_NAME = "bench/exclusive"
OWN_NAME = "bench/own/{pid}"  # one name per process: nobody waits (the ceiling of a shared lock)
MIXED_NAME = "bench/mixed"
SEMAPHORE_NAME = "api"
ELECTION_GROUP = "job"

# What the throughput phases ask of a client: (lock kind, gauge role or "").
KINDS: dict[str, tuple[str, str]] = {
    "shared": ("shared", ""),
    "exclusive": ("exclusive", ""),
    "own": ("exclusive", ""),
    "reader": ("shared", "reader"),
    "writer": ("exclusive", "writer"),
    "slot": ("slot", "slot"),
}
PHASE_NAMES: dict[str, str] = {
    "shared": SHARED_NAME, "exclusive": EXCLUSIVE_NAME, "own": OWN_NAME, "reader": MIXED_NAME, "writer": MIXED_NAME,
    "slot": SEMAPHORE_NAME,
}
