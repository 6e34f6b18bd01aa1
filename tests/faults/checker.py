"""Check the histories of one run: exclusive holds, growing tokens, no lost increment, progress.

A believed hold is [acquired.t, last valid.t] of one lock id: ``acquired.t`` is
taken after the grant returned, ``valid.t`` before a ``holds()`` check that said
yes, so the interval is inside what the client believed (no false alarm from a
client paused between two lines of its loop). A hold never checked valid is
not a believed hold.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from tests.faults.register import read_log


@dataclass
class Hold:
    client: str
    lock: str
    token: int | None
    t0: float  # before the acquire call
    t: float  # after it returned
    last_valid: float | None = None


@dataclass
class Report:
    grants: int = 0
    believed_holds: int = 0
    writes_accepted: int = 0
    writes_rejected: int = 0
    reads_rejected: int = 0
    lost: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # exceptions the clients recorded
    violations: list[str] = field(default_factory=list)


def load_history(path: str) -> list[dict[str, Any]]:
    """The whole lines of one client's history (a worker killed mid-line leaves a torn one)."""
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.endswith("\n")]


def holds_of(events: list[dict[str, Any]]) -> list[Hold]:
    """Every acquisition in one or more histories, with its last valid check."""
    holds: dict[tuple[str, str], Hold] = {}
    for event in events:
        key = (event["client"], event.get("lock", ""))
        if event["ev"] == "acquired":
            holds[key] = Hold(event["client"], event["lock"], event["token"], event["t0"], event["t"])
        elif event["ev"] == "valid" and key in holds:
            hold = holds[key]
            hold.last_valid = max(hold.last_valid or event["t"], event["t"])
    return list(holds.values())


def overlaps(holds: list[Hold]) -> list[str]:
    """Believed holds of different acquisitions that intersect in time."""
    believed = sorted((h for h in holds if h.last_valid is not None), key=lambda h: h.t)
    found = []
    latest: Hold | None = None  # the earlier hold that ends last
    for hold in believed:
        if latest is not None and latest.last_valid is not None and hold.t < latest.last_valid:
            found.append(f"overlap: {latest.client} token {latest.token} believed [{latest.t:.3f}, "
                         f"{latest.last_valid:.3f}] and {hold.client} token {hold.token} believed "
                         f"[{hold.t:.3f}, {hold.last_valid:.3f}]")
        if latest is None or (hold.last_valid or 0.0) > (latest.last_valid or 0.0):
            latest = hold
    return found


def token_order(holds: list[Hold]) -> list[str]:
    """Tokens must be unique, and grow from a grant to any grant requested after it returned."""
    found = []
    granted = [h for h in holds if h.token is not None]
    seen: dict[int, Hold] = {}
    for hold in granted:
        assert hold.token is not None
        if hold.token in seen:
            other = seen[hold.token]
            found.append(f"token {hold.token} granted twice: {other.client} at {other.t:.3f} and "
                         f"{hold.client} at {hold.t:.3f}")
        seen[hold.token] = hold
    by_end = sorted(granted, key=lambda h: h.t)
    best: Hold | None = None  # highest token among grants that returned before the current request
    index = 0
    for hold in sorted(granted, key=lambda h: h.t0):
        while index < len(by_end) and by_end[index].t < hold.t0:
            done = by_end[index]
            if best is None or (done.token or 0) > (best.token or 0):
                best = done
            index += 1
        if best is not None and hold.token is not None and best.token is not None and hold.token <= best.token:
            found.append(f"token went backwards: {best.client} got {best.token} (returned {best.t:.3f}), then "
                         f"{hold.client} asked at {hold.t0:.3f} and got {hold.token}")
    return found


def register_checks(entries: list[dict[str, Any]], report: Report) -> list[str]:
    """Accepted write tokens grow strictly; each accepted write read the value it overwrote."""
    found = []
    value = 0
    last_token: int | None = None
    for entry in entries:
        if entry["op"] == "read":
            report.reads_rejected += not entry["accepted"]
            continue
        if not entry["accepted"]:
            report.writes_rejected += 1
            continue
        report.writes_accepted += 1
        if last_token is not None and entry["token"] <= last_token:
            found.append(f"register token went backwards: {entry['token']} accepted after {last_token}")
        if entry["read"] != entry["before"] or entry["before"] != value:
            found.append(f"lost increment: {entry['client']} token {entry['token']} read {entry['read']} but "
                         f"the register held {entry['before']} (expected {value})")
        value = entry["value"]
        last_token = entry["token"]
    if value != report.writes_accepted:
        found.append(f"final register value {value} != {report.writes_accepted} accepted writes")
    return found


def check(history_paths: list[str], register_log: str) -> Report:
    """Every check over one run's files."""
    events = [event for path in history_paths if os.path.exists(path) for event in load_history(path)]
    return check_events(events, read_log(register_log))


def check_events(events: list[dict[str, Any]], register: list[dict[str, Any]]) -> Report:
    report = Report()
    holds = holds_of(events)
    report.grants = len(holds)
    report.believed_holds = sum(1 for h in holds if h.last_valid is not None)
    for event in events:
        if event["ev"] == "lost":
            report.lost[event["reason"]] = report.lost.get(event["reason"], 0) + 1
        elif event["ev"] == "error":
            report.errors.append(f"{event['client']}: {event['error']}")
    report.violations += overlaps(holds)
    report.violations += token_order(holds)
    report.violations += register_checks(register, report)
    if report.grants == 0:
        report.violations.append("no progress: no lock was granted")
    return report
