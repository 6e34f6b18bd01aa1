"""The credit-based raw pyzmq floor: ROUTER publisher, DEALER receivers, credit flow (zguide ch. 7).

The publisher binds a ROUTER and sends one 100-byte frame per message to each
receiver while that receiver has credit; a receiver opens with ``WINDOW`` messages
of credit and hands back ``CREDIT_EVERY`` at a time as it consumes them. Nothing is
lost (a receiver without credit holds its publisher back): the best a hand-written
ZeroMQ bus gets without losing messages, with no encryption, no framing and no names.
"""

from __future__ import annotations

import time
from typing import Any

from .common import PAYLOAD
from .workers import START_WAIT, Tally, emit, publisher_result, wait_go, wait_stop

WINDOW = 1000  # messages a receiver may hold uncredited
CREDIT_EVERY = 100
HWM = 10 * WINDOW  # above the window: the pipes never drop


def _publisher(spec: dict[str, Any]) -> None:
    import zmq

    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.ROUTER_MANDATORY, 1)  # an unknown or full peer raises instead of dropping
    router.setsockopt(zmq.SNDHWM, HWM)
    router.setsockopt(zmq.RCVHWM, HWM)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    emit({"port": port})
    credit: dict[bytes, int] = {}
    while len(credit) < spec["fanout"]:
        peer, grant = router.recv_multipart()
        credit[peer] = credit.get(peer, 0) + int(grant)
    emit({"ready": True})
    wait_go()
    count, peers = spec["count"], list(credit)
    # Two send() calls, not send_multipart(): a quarter of the cost per message in pyzmq.
    send, recv, poll, more = router.send, router.recv_multipart, router.poll, zmq.SNDMORE
    started = time.monotonic()
    for i in range(count):
        for peer in peers:
            while credit[peer] <= 0:
                who, grant = recv()
                credit[who] += int(grant)
            send(peer, more)
            send(PAYLOAD)
            credit[peer] -= 1
        if not i & 63:
            while poll(0):
                who, grant = recv()
                credit[who] += int(grant)
    emit(publisher_result(count, started))
    wait_stop()
    router.close()
    context.term()


def _receiver(spec: dict[str, Any]) -> None:
    import zmq

    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.RCVHWM, HWM)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(f"tcp://127.0.0.1:{spec['port']}")
    dealer.send(str(WINDOW).encode())
    emit({"ready": True, "name": f"floor-{spec['index']}"})
    tally = Tally(spec["count"])
    dealer.setsockopt(zmq.RCVTIMEO, int(START_WAIT * 1000))
    try:
        dealer.recv()
    except zmq.Again:
        pass
    else:
        tally.received = 1
        tally.start()
        dealer.setsockopt(zmq.RCVTIMEO, int(tally.quiet * 1000))
        count, received, last = tally.count, 1, tally.last
        recv, send, monotonic, grant = dealer.recv, dealer.send, time.monotonic, str(CREDIT_EVERY).encode()
        while received < count:
            try:
                recv()
            except zmq.Again:
                break
            received += 1
            last = monotonic()
            if received % CREDIT_EVERY == 0:
                send(grant)
        tally.received, tally.last = received, last
    emit(tally.result())
    wait_stop()
    dealer.close()
    context.term()


ROLES = {"floor-publisher": _publisher, "floor-receiver": _receiver}
