"""Redis pub/sub through redis-py (with hiredis): a publisher and subscribers on a suite-started redis-server.

Per call is one PUBLISH per round trip (the suite runs only bulk: per call is too slow
for a 500,000-message stream); bulk pipelines ``BULK`` PUBLISH commands at once. Redis
pub/sub is at-most-once: a subscriber past the server's ``client-output-buffer-limit
pubsub`` (default 32 MB) is disconnected.
"""

from __future__ import annotations

import time
from typing import Any

from .common import BULK, PAYLOAD
from .workers import START_WAIT, Tally, emit, publisher_result, wait_go, wait_stop


def _client(spec: dict[str, Any]) -> Any:
    import redis

    return redis.Redis(host="127.0.0.1", port=spec["port"])


def _receiver(spec: dict[str, Any]) -> None:
    import redis

    pubsub = _client(spec).pubsub()
    pubsub.subscribe(spec["subject"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the subscribe confirmation: the server has registered us
        confirmation = pubsub.get_message(timeout=0.2)
        if confirmation is not None and confirmation["type"] == "subscribe":
            break
    emit({"ready": True, "name": f"redis-{spec['index']}"})
    tally = Tally(spec["count"])
    get, monotonic = pubsub.get_message, time.monotonic
    opened, received, last, disconnect = monotonic(), 0, 0.0, None
    try:
        while received < tally.count:
            message = get(timeout=0.5)
            now = monotonic()
            if message is None:
                if (received and now - last > tally.quiet) or (not received and now - opened > START_WAIT):
                    break
                continue
            received += 1
            last = now
            if received == 1:
                tally.received = 1
                tally.start()
    except redis.exceptions.ConnectionError as exc:
        disconnect = str(exc)[:200]
    tally.received, tally.last = received, last
    emit(tally.result(disconnected=disconnect))
    wait_stop()


def _publisher(spec: dict[str, Any]) -> None:
    client = _client(spec)
    client.ping()
    emit({"ready": True})
    wait_go()
    channel, count = spec["subject"], spec["count"]
    started = time.monotonic()
    if spec["mode"] == "bulk":
        sent = 0
        while sent < count:
            n = min(BULK, count - sent)
            pipe = client.pipeline(transaction=False)
            for _ in range(n):
                pipe.publish(channel, PAYLOAD)
            pipe.execute()
            sent += n
    else:
        publish = client.publish
        for _ in range(count):
            publish(channel, PAYLOAD)
    emit(publisher_result(count, started))
    wait_stop()


ROLES = {"redis-publisher": _publisher, "redis-receiver": _receiver}
