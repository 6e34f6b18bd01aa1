"""The text views of a status: human durations, the status summary, a frame of top."""

from __future__ import annotations

from typing import Any

from pylocker.views import human_duration, render_status, render_top


def _status(grants: int) -> dict[str, Any]:
    empty = {"count": 0, "sum": 0.0, "p50": None, "p99": None, "buckets": []}
    return {
        "server": {"name": "srv", "unique_name": "s" * 32, "epoch": 3, "uptime": 3725.0, "recovering": False,
                   "max_lock_time": 120, "lease": 5.0, "last_token": 42, "clients": 1, "held": 1,
                   "names_in_use": 1, "waiting": 1, "serving_locker_holds": 0},
        "clients": [{"unique_name": "c" * 32, "name": "worker", "pid": 77, "holds": 1, "waits": 0}],
        "locks": [{"name": "report", "kind": "lock",
                   "holders": [{"unique_name": "c" * 32, "mode": "exclusive", "held_for": 3.2, "token": 42}],
                   "waiters": [{"unique_name": "s" * 32, "mode": "shared", "waiting_for": 0.25}]}],
        "stats": {"uptime": 3725.0, "grants": grants, "timeouts": 0, "expiries": 0, "releases": 0,
                  "publications": 0, "wait": empty, "hold": empty,
                  "names": {"report": {"acquires": grants, "timeouts": 0, "expiries": 0, "wait": empty,
                                       "hold": empty}}},
        "truncated": False,
    }


def test_human_durations() -> None:
    assert [human_duration(s) for s in (None, 0.00002, 0.25, 3.24, 242, 7500, 200_000)] == [
        "-", "20 µs", "250 ms", "3.2 s", "4 min 2 s", "2 h 5 min", "2 d 7 h"]


def test_status_says_who_holds_and_who_waits_in_human_terms() -> None:
    text = render_status(_status(5))
    assert "epoch 3, up 1 h 2 min" in text
    assert "report: held by worker (cccccccc) exclusive for 3.2 s" in text
    assert "waiting: srv (serving) (ssssssss) (shared) for 250 ms" in text
    assert "worker (cccccccc, pid 77): holds 1, waits 0" in text


def test_a_top_frame_shows_rates_between_two_statuses() -> None:
    text = render_top(_status(30), _status(10), 2.0)
    assert "grants 10.0/s" in text
    [row] = [line for line in text.splitlines() if line.startswith("report")]
    assert row.split()[:4] == ["report", "1", "1", "30"]
