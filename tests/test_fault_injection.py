"""Real-process fault injection (tests/faults): seeded schedules must keep every safety property.

The checker is first shown to catch each violation on hand-made histories, so that
a clean run means something.
"""

from __future__ import annotations

import socket
from collections import Counter
from typing import Any

import pytest

from tests.faults.checker import check_events
from tests.faults.proxy import UP, Proxy
from tests.faults.register import FencedRegister, read_log
from tests.faults.runner import ScheduleResult, run_schedule

SEEDS = (101, 202, 303)
SCHEDULE_SECONDS = 16.0
LEASE = 1.0
REQUIRED_KINDS = ("kill_server", "kill_client", "stop_server", "stop_client", "remove_lock_file", "delay")


def _acq(client: str, lock: str, token: int, t0: float, t: float) -> dict[str, Any]:
    return {"ev": "acquired", "client": client, "lock": lock, "token": token, "t0": t0, "t": t}


def _valid(client: str, lock: str, t: float) -> dict[str, Any]:
    return {"ev": "valid", "client": client, "lock": lock, "t": t}


def _write(client: str, token: int, read: int, before: int, accepted: bool = True) -> dict[str, Any]:
    return {"op": "write", "token": token, "client": client, "read": read, "before": before, "value": read + 1,
            "accepted": accepted}


CLEAN = [_acq("a", "1", 10, 0.0, 0.1), _valid("a", "1", 0.2), _acq("b", "2", 11, 0.15, 0.3), _valid("b", "2", 0.4)]
CLEAN_LOG = [_write("a", 10, 0, 0), _write("b", 11, 1, 1)]


def test_checker_passes_a_clean_history() -> None:
    report = check_events(CLEAN, CLEAN_LOG)
    assert report.violations == []
    assert (report.grants, report.writes_accepted) == (2, 2)


def test_checker_catches_overlapping_holds() -> None:
    events = [*CLEAN[:2], _acq("b", "2", 11, 0.05, 0.15), _valid("b", "2", 0.4)]
    assert any(v.startswith("overlap") for v in check_events(events, CLEAN_LOG).violations)


def test_checker_ignores_a_hold_never_checked_valid() -> None:
    # A client paused right after its grant, then told its lock is gone: it never believed past acquired.t.
    events = [_acq("a", "1", 10, 0.0, 0.1), _acq("b", "2", 11, 0.0, 0.05), _valid("b", "2", 0.4)]
    assert check_events(events, []).violations == []


def test_checker_catches_a_token_going_backwards() -> None:
    events = [_acq("a", "1", 11, 0.0, 0.1), _valid("a", "1", 0.2), _acq("b", "2", 10, 0.15, 0.3)]
    assert any("token went backwards" in v for v in check_events(events, []).violations)
    duplicated = [_acq("a", "1", 10, 0.0, 0.1), _acq("b", "2", 10, 0.15, 0.3)]
    assert any("granted twice" in v for v in check_events(duplicated, []).violations)
    log = [_write("a", 11, 0, 0), _write("b", 10, 1, 1)]
    assert any("register token went backwards" in v for v in check_events(CLEAN, log).violations)


def test_checker_catches_a_lost_increment() -> None:
    log = [_write("a", 10, 0, 0), _write("b", 11, 0, 1)]  # b read 0, but a had written 1
    violations = check_events(CLEAN, log).violations
    assert any("lost increment" in v for v in violations)
    assert any("final register value" in v for v in violations)


def test_checker_fails_a_run_without_progress() -> None:
    assert any("no progress" in v for v in check_events([], []).violations)


def test_register_refuses_stale_tokens_on_read_and_write(tmp_path: Any) -> None:
    register = FencedRegister(str(tmp_path / "log"))
    assert register.read(5, "a") == (True, 0)
    assert register.read(7, "b") == (True, 0)
    assert register.write(5, "a", 0, 1) is False  # a newer token has read: the old holder may not write
    assert register.write(7, "b", 0, 1) is True
    assert register.read(6, "a") == (False, 1)
    state = register.state()
    assert (state.value, state.highest, state.accepted_writes) == (1, 7, 1)
    assert [e["accepted"] for e in read_log(register.path)] == [True, True, False, True, False]


def test_proxy_holds_bytes_while_cut_and_forwards_them_when_healed() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    proxy = Proxy(server.getsockname()[1])
    try:
        client = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        upstream, _ = server.accept()
        upstream.settimeout(0.3)
        client.sendall(b"one")
        assert upstream.recv(10) == b"one"
        proxy.cut((UP,))
        client.sendall(b"two")
        with pytest.raises(socket.timeout):
            upstream.recv(10)
        proxy.heal()
        upstream.settimeout(5)
        assert upstream.recv(10) == b"two"
        assert proxy.drop() == 1
        client.settimeout(5)
        assert client.recv(10) == b""  # dropped: the client sees the connection closed
        client.close()
        upstream.close()
    finally:
        proxy.stop()
        server.close()


@pytest.fixture(scope="module")
def runs() -> list[ScheduleResult]:
    """A few seeded schedules on real processes (about 75 s on two cores)."""
    return [run_schedule(seed, SCHEDULE_SECONDS, LEASE, clients=3, servers=2) for seed in SEEDS]


@pytest.mark.integration
@pytest.mark.timeout(200)
def test_schedules_keep_every_safety_property(runs: list[ScheduleResult]) -> None:
    details = {r.seed: (r.report.violations, r.directory, r.nemesis_log) for r in runs if r.report.violations}
    assert details == {}
    assert all(r.recovery is not None for r in runs)


@pytest.mark.integration
@pytest.mark.timeout(200)
def test_schedules_make_progress_without_worker_errors(runs: list[ScheduleResult]) -> None:
    assert all(r.report.grants > 0 and r.report.writes_accepted > 0 for r in runs)
    assert [(r.seed, r.report.errors, r.crashed) for r in runs if r.report.errors or r.crashed] == []


@pytest.mark.integration
@pytest.mark.timeout(200)
def test_schedules_inject_faults_of_every_kind(runs: list[ScheduleResult]) -> None:
    injected = sum((r.injected for r in runs), Counter())
    assert all(injected[kind] > 0 for kind in REQUIRED_KINDS), injected
    assert injected["cut_both"] + injected["cut_up"] + injected["cut_down"] > 0, injected
