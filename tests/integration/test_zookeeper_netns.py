"""Machines as network namespaces: the serving candidate's machine is cut off, the others carry on.

Needs root and iproute2 (skipped, saying why, without them) and a ZooKeeper install.
ZooKeeper runs in the hub namespace; three candidates run in three machines and two
clients in a fourth, each machine with its own address on one bridge.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
from netns import netns_unavailable
from zkfleet import ZooKeeperFleet
from zkserver import zookeeper_unavailable

pytestmark = pytest.mark.integration
SESSION = 4.0
NEW_SERVER_WITHIN = SESSION + 1.0


@pytest.fixture
def fleet(tmp_path: Any, request: Any) -> Iterator[ZooKeeperFleet]:
    reason = netns_unavailable() or zookeeper_unavailable()
    if reason is not None:
        pytest.skip(reason)
    lease = getattr(request, "param", 1.0)  # the lockers' lease, seconds
    made = ZooKeeperFleet(str(tmp_path), candidates=3, session=SESSION, lease=lease)
    try:
        yield made
    finally:
        made.close()


# A lease longer than the session: the cut server's links go silent, and nobody's lease runs
# out before 10 s, so only the election (its leader znode gone, a new fingerprint) can bring
# the standbys and the clients over within the session timeout.
@pytest.mark.parametrize("fleet", [10.0], indirect=True)
def test_the_serving_machine_cut_off_is_replaced_and_the_others_carry_on(fleet: ZooKeeperFleet) -> None:
    serving = fleet.start()
    cut_at = time.monotonic()
    fleet.machines.cut(fleet.machine_of(serving))
    successor = fleet.next_server(serving, NEW_SERVER_WITHIN + 5)
    took = fleet.serving_since - cut_at
    assert successor is not None, "no other machine took over"
    assert took <= NEW_SERVER_WITHIN, f"a new server {took:.2f} s after the cut"
    back = fleet.grants_after(cut_at, 20)
    assert back is not None, "the clients' machine did not get back to work"
    assert back - cut_at < 10.0 * 0.9, f"the clients came back only as their lease ran out ({back - cut_at:.2f} s)"
    assert "stops serving" in fleet.log(serving), "the cut-off machine went on serving"
    report = fleet.finish()
    assert report.violations == []
    assert report.writes_accepted > 0


def test_kill_9_on_another_machine_moves_the_server_across_machines(fleet: ZooKeeperFleet) -> None:
    serving = fleet.start()
    killed_at = time.monotonic()
    fleet.cluster.signal(serving, signal.SIGKILL)
    successor = fleet.next_server(serving, NEW_SERVER_WITHIN + 5)
    assert successor is not None
    assert fleet.machine_of(successor) != fleet.machine_of(serving)
    assert fleet.serving_since - killed_at <= NEW_SERVER_WITHIN, f"{fleet.serving_since - killed_at:.2f} s"
    assert fleet.first_grant_after(killed_at, 20, epoch=fleet.serving_epoch) is not None
    report = fleet.finish()
    assert report.violations == []
    assert report.writes_accepted > 0
