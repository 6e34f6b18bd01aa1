"""NATS core through nats-py: a publisher and subscribers on a nats-server started by the suite.

Core NATS is at-most-once: a subscriber that cannot keep up is cut off by the server
(slow consumer) or drops past its client-side pending limits (the defaults are kept).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .common import PAYLOAD
from .workers import START_WAIT, Tally, emit, publisher_result, wait_go, wait_stop


async def _connect(spec: dict[str, Any], errors: list[str]) -> Any:
    import nats

    async def on_error(exc: Exception) -> None:
        errors.append(f"{type(exc).__name__}: {exc}"[:200])

    return await nats.connect(f"nats://127.0.0.1:{spec['port']}", error_cb=on_error, max_reconnect_attempts=3)


async def _receive(spec: dict[str, Any]) -> None:
    errors: list[str] = []
    nc = await _connect(spec, errors)
    tally = Tally(spec["count"])

    async def on_message(_msg: Any) -> None:
        tally.received += 1
        tally.last = time.monotonic()
        if tally.received == 1:
            tally.start()

    await nc.subscribe(spec["subject"], cb=on_message)
    await nc.flush()
    emit({"ready": True, "name": f"nats-{spec['index']}"})
    opened = time.monotonic()
    while tally.received < tally.count:
        await asyncio.sleep(0.05)
        now = time.monotonic()
        if (tally.received and now - tally.last > tally.quiet) or (not tally.received and now - opened > START_WAIT):
            break
    emit(tally.result(errors=errors[:5], error_count=len(errors)))
    await nc.close()


async def _publish(spec: dict[str, Any]) -> None:
    errors: list[str] = []
    nc = await _connect(spec, errors)
    emit({"ready": True})
    wait_go()  # blocks the loop a moment: nothing runs on it yet
    subject, count = spec["subject"], spec["count"]
    publish = nc.publish
    started = time.monotonic()
    for _ in range(count):
        await publish(subject, PAYLOAD)
    await nc.flush()
    emit(publisher_result(count, started, errors=errors[:5]))
    await nc.close()


def _receiver(spec: dict[str, Any]) -> None:
    asyncio.run(_receive(spec))
    wait_stop()


def _publisher(spec: dict[str, Any]) -> None:
    asyncio.run(_publish(spec))
    wait_stop()


ROLES = {"nats-publisher": _publisher, "nats-receiver": _receiver}
