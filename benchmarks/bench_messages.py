"""Messages per second from one publisher process to one receiver process, with peers.

    python benchmarks/bench_messages.py [--count 500000] [--quick]

Measured in one run on this machine (loopback only):
  * pylocker: publisher and receiver are clients of a serving locker in a third process;
    publications are targeted at the receiver, 100-byte payloads; once with one
    publish_message() call per message, once with publish_messages() of 1,000;
  * raw pyzmq PUB -> SUB pair, default settings (what a hand-rolled bus gets);
  * Redis pub/sub, published pipelined 100 at a time (if redis-server is installed:
    `apt-get install redis-server`; the suite starts and stops its own instance).
Writes benchmarks/results/messages.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

PAYLOAD = b"x" * 100
PASSWORD = "bench-password"
SPAWN = multiprocessing.get_context("spawn")


# ------------------------------------------------------------------ pylocker
def _serve(server_file: str, ready: Any, done: Any) -> None:
    from pylocker import ServerLocker

    locker = ServerLocker(PASSWORD, serverFile=server_file, port=0)
    ready.put(locker.port)
    done.wait(600)
    locker.stop()


def _receive(server_file: str, count: int, ready: Any, results: Any) -> None:
    from pylocker import ServerLocker

    locker = ServerLocker(PASSWORD, serverFile=server_file, allowServing=False, mailbox_size=count + 10)
    ready.put(locker.uniqueName)
    end = locker.wait_message("end", timeout=600)
    finished = time.monotonic()
    received = len(locker._mailbox) - 1
    results.put((finished, received, locker.dropped_messages, end is not None))
    locker.stop()


BULK = 1000  # messages per publish_messages() call in the bulk variant


def _publish(server_file: str, count: int, receiver: str, results: Any, bulk: bool) -> None:
    from pylocker import ServerLocker

    locker = ServerLocker(PASSWORD, serverFile=server_file, allowServing=False)
    receivers = [receiver]
    started = time.monotonic()
    if bulk:
        texts, payloads = ["m"] * BULK, [PAYLOAD] * BULK
        for _ in range(count // BULK):
            locker.publish_messages(texts, receivers, None, False, payloads=payloads)
    else:
        publish = locker.publish_message
        for _ in range(count):
            publish("m", receivers, None, False, payload=PAYLOAD)
    locker.publish_message("end", receivers, None, False)
    results.put(started)
    locker.stop()


def bench_pylocker(count: int, bulk: bool = False) -> dict[str, Any]:
    folder = tempfile.mkdtemp(prefix="pylocker-bench-")
    server_file = os.path.join(folder, "server")
    ready, done, results = SPAWN.Queue(), SPAWN.Event(), SPAWN.Queue()
    server = SPAWN.Process(target=_serve, args=(server_file, ready, done))
    server.start()
    processes = [server]
    try:
        ready.get(timeout=60)
        receiver = SPAWN.Process(target=_receive, args=(server_file, count, ready, results))
        receiver.start()
        processes.append(receiver)
        name = ready.get(timeout=60)
        publisher = SPAWN.Process(target=_publish, args=(server_file, count, name, results, bulk))
        publisher.start()
        processes.append(publisher)
        first, second = results.get(timeout=600), results.get(timeout=600)
        started = first if isinstance(first, float) else second
        finished, received, dropped, complete = second if isinstance(first, float) else first
    finally:
        done.set()
        _stop(processes)
        shutil.rmtree(folder, ignore_errors=True)
    seconds = finished - started
    return {"received": received, "sent": count, "lost": count - received, "dropped": dropped,
            "seconds": seconds, "per_second": received / seconds, "complete": complete}


# ------------------------------------------------------------- raw pub/sub
def _raw_sub(port: int, count: int, ready: Any, results: Any) -> None:
    import zmq

    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(f"tcp://127.0.0.1:{port}")
    # Wait until the subscription is live: the publisher sends probes until we see one.
    ready.put("connected")
    while sub.recv() != b"probe":
        pass
    ready.put("subscribed")
    received, first = 0, None
    while sub.poll(2000):
        message = sub.recv()
        if message == b"probe":
            continue
        if first is None:
            first = time.monotonic()
        if message == b"end":
            break
        received += 1
    results.put((time.monotonic(), received))
    sub.close(0)
    context.term()


def bench_raw(count: int) -> dict[str, Any]:
    import zmq

    context = zmq.Context()
    pub = context.socket(zmq.PUB)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    ready, results = SPAWN.Queue(), SPAWN.Queue()
    sub = SPAWN.Process(target=_raw_sub, args=(port, count, ready, results))
    sub.start()
    try:
        ready.get(timeout=60)
        while True:
            pub.send(b"probe")
            try:
                if ready.get(timeout=0.05) == "subscribed":
                    break
            except Exception:
                continue
        started = time.monotonic()
        for _ in range(count):
            pub.send(PAYLOAD)
        for _ in range(100):  # the end marker may itself be dropped under load
            pub.send(b"end")
        finished, received = results.get(timeout=600)
    finally:
        _stop([sub])
        pub.close(0)
        context.term()
    seconds = finished - started
    return {"received": received, "sent": count, "lost": count - received, "seconds": seconds,
            "per_second": received / seconds}


# ------------------------------------------------------------------ redis
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _redis_sub(port: int, ready: Any, results: Any) -> None:
    import redis

    client = redis.Redis(port=port)
    pubsub = client.pubsub()
    pubsub.subscribe("bench")
    pubsub.get_message(timeout=5)  # the subscribe confirmation
    ready.put("subscribed")
    received = 0
    while True:
        message = pubsub.get_message(timeout=5)
        if message is None:
            break
        if message["data"] == b"end":
            break
        received += 1
    results.put((time.monotonic(), received))


def bench_redis(count: int) -> dict[str, Any] | str:
    server_binary = shutil.which("redis-server")
    if server_binary is None:
        return "skipped: redis-server not installed (apt-get install redis-server)"
    try:
        import redis
    except ImportError:
        return "skipped: the redis package is not installed (pip install '.[bench]')"
    port = _free_port()
    folder = tempfile.mkdtemp(prefix="pylocker-redis-")
    server = subprocess.Popen([server_binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--dir", folder],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ready, results = SPAWN.Queue(), SPAWN.Queue()
    sub = None
    try:
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        sub = SPAWN.Process(target=_redis_sub, args=(port, ready, results))
        sub.start()
        ready.get(timeout=60)
        started = time.monotonic()
        pipe = client.pipeline(transaction=False)
        for index in range(count):
            pipe.publish("bench", PAYLOAD)
            if index % 100 == 99:
                pipe.execute()
        pipe.publish("bench", b"end")
        pipe.execute()
        finished, received = results.get(timeout=600)
    finally:
        if sub is not None:
            _stop([sub])
        server.terminate()
        server.wait(10)
        shutil.rmtree(folder, ignore_errors=True)
    seconds = finished - started
    return {"received": received, "sent": count, "lost": count - received, "seconds": seconds,
            "per_second": received / seconds}


def _stop(processes: list[Any]) -> None:
    for process in processes:
        process.join(30)
        if process.is_alive():
            process.kill()
            process.join(5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=500_000)
    parser.add_argument("--quick", action="store_true", help="100,000 messages")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    args = parser.parse_args()
    count = 100_000 if args.quick else args.count
    results: dict[str, Any] = {"count": count, "payload_bytes": len(PAYLOAD), "cpus": os.cpu_count()}
    count -= count % BULK
    results["pylocker"] = bench_pylocker(count)
    results["pylocker_bulk"] = bench_pylocker(count, bulk=True)
    results["raw_pubsub"] = bench_raw(count)
    results["redis_pipelined_100"] = bench_redis(count)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "messages.json"), "w") as handle:
        json.dump(results, handle, indent=2)
    ours = results["pylocker"]["per_second"]
    lines = []
    print = lines.append  # noqa: A001 - the table goes to stdout and to messages.md
    print(f"| {count:,} messages, {len(PAYLOAD)}-byte payloads | received/s | lost | ours / peer |")
    print("|---|---:|---:|---:|")
    for key in ("pylocker", "pylocker_bulk", "raw_pubsub", "redis_pipelined_100"):
        row = results[key]
        if isinstance(row, str):
            print(f"| {key} | {row} | | |")
            continue
        ratio = ours / row["per_second"] if row["per_second"] else float("inf")
        print(f"| {key} | {row['per_second']:,.0f} | {row['lost']:,} | {ratio:.2f} |")
    table = "\n".join(lines)
    with open(os.path.join(args.out, "messages.md"), "w") as handle:
        handle.write(f"# Message benchmark\n\n`python benchmarks/bench_messages.py` on "
                     f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs; ratio: "
                     f"pylocker per-call rate / the row's rate.\n\n{table}\n")
    sys.stdout.write(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
