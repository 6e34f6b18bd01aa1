"""The live status request and the Prometheus endpoint, through ServerLocker."""

from __future__ import annotations

import urllib.request
from typing import Any

from conftest import wait_for
from pylocker import ServerLocker


def test_server_status_shows_a_held_lock_and_a_waiter_to_any_locker(serving: ServerLocker, make_locker: Any) -> None:
    holder, waiter = make_locker(), make_locker()
    with holder.lock("report"):
        ok, code = waiter.acquire_lock("report", timeout=0.2)
        assert (ok, code) == (False, 0)
        status = waiter.server_status()
    assert status["server"]["unique_name"] == serving.uniqueName
    assert status["server"]["clients"] == 2
    [row] = [row for row in status["locks"] if row["name"] == "report"]
    assert [h["unique_name"] for h in row["holders"]] == [holder.uniqueName]
    assert status["stats"]["names"]["report"]["timeouts"] == 1
    wait_for(lambda: serving.server_status()["server"]["held"] == 0)  # the release travels without an answer


def test_the_metrics_endpoint_answers_a_scrape(make_locker: Any) -> None:
    serving = make_locker(metrics_port=0)
    client = make_locker()
    with client.lock("m"):
        pass
    port = serving._metrics.port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    assert "pylocker_up 1.0" in text
    assert "pylocker_grants_total 1.0" in text
    assert 'pylocker_name_acquires_total{name="m"} 1.0' in text
    assert "pylocker_wait_seconds_bucket" in text
    serving.stop()
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)
        raise AssertionError("the endpoint outlived its locker")
    except OSError:
        pass
