#!/usr/bin/env python3
"""Lock benchmark suite: pylocker against its peers, in one run on one machine.

Usage (from the repository root; never run by CI or the test suite)::

    python benchmarks/bench_locks.py [--quick] [--out benchmarks/results]

Writes ``locks.json`` (every figure, with the machine and versions), ``locks.md``
(the table: our figure, each peer's, the goal and PASS/FAIL) and ``locks.png``
(a matplotlib chart; skipped with a note when matplotlib is missing).

Peers, each measured in the same run (a missing one is reported as skipped):

* the echo floor: raw pyzmq DEALER -> ROUTER echo, server and client in separate
  processes (one round trip per acquire is the least a lock server can cost), plus
  the same echo over CURVE for context (pylocker encrypts every connection);
* pylocker 3.1.0 from PyPI, installed by this script into its own virtual
  environment (cached in the temp dir; ``--fresh-venv`` rebuilds it);
* Redis through python-redis-lock, when ``redis-server`` is installed (Debian:
  ``apt-get install redis-server``) and ``redis``/``python-redis-lock`` import;
  the suite starts its own redis-server on loopback and stops it by PID.

Every process is started by this script, speaks loopback only, works in a temp
dir, runs for a bounded time and is stopped by PID at the end. The worker roles
live in this file too (``--worker ROLE --spec JSON``); the pylocker 3.1.0 workers
run this same file with the virtual environment's interpreter.
"""

from __future__ import annotations

import argparse
import json
import math
import mmap
import os
import platform
import queue
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, ClassVar

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "bench-password"
SEED_VERSION = "3.1.0"
ECHO_PAYLOAD = b"x" * 40  # about the size of an encoded Acquire frame
DASH = "\u2013"  # what a table cell shows for "no figure"
HANDOVER = struct.Struct("<qd")  # (pid of the last holder, monotonic time of its release)


# =====================================================================================
# Worker side: every role below runs in its own process and talks JSON lines on stdio.
# =====================================================================================
def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _next_command() -> list[str]:
    line = sys.stdin.readline()
    return line.split() or ["stop"]  # EOF: the orchestrator is gone, stop


def _wait_go() -> float:
    """Block until the orchestrator says ``go T0``; returns T0 (shared CLOCK_MONOTONIC)."""
    words = _next_command()
    if words[0] != "go":
        os._exit(0)
    t0 = float(words[1])
    delay = t0 - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    return t0


def _raise_fd_limit() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "n": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    return {"p50": at(0.50), "p99": at(0.99), "n": len(ordered)}


class _Adapter:
    """acquire(name, timeout) -> handle or None; release(handle). One per implementation."""

    def __init__(self, spec: dict[str, Any], serve: bool) -> None:
        impl = spec["impl"]
        self.impl = impl
        if impl == "redis":
            import redis
            import redis_lock

            self._conn = redis.Redis(host="127.0.0.1", port=spec["port"])
            self._conn.ping()
            self._locks: dict[str, Any] = {}
            self._lock_class = redis_lock.Lock
            return
        if impl == "ours":
            sys.path.insert(0, spec["code"])
            from pylocker import ServerLocker

            kwargs: dict[str, Any] = {"port": 0}
        else:  # the seed, pylocker 3.1.0 from PyPI, imported from its own venv
            import pylocker  # noqa: F401  (registers pylocker.ServerLocker in sys.modules)

            module = sys.modules["pylocker.ServerLocker"]
            ServerLocker = module.ServerLocker
            # The seed listens on the address of its default route; keep it on loopback.
            ServerLocker._ServerLocker__get_ip_address = lambda self: "127.0.0.1"
            kwargs = {"port": spec.get("port") or 3000}
        max_lock_time = spec.get("max_lock_time", 120)
        self.locker = ServerLocker(password=PASSWORD, serverFile=spec["server_file"],
                                   allowServing=serve, connectTimeout=20, defaultTimeout=20,
                                   maxLockTime=max_lock_time, name=spec.get("name"), **kwargs)
        if serve and not self.locker.isServer:
            raise RuntimeError("the locker did not become the serving locker")
        if not serve and not self.locker.isClient:
            raise RuntimeError("the locker did not connect to the serving locker")

    def acquire(self, name: str, timeout: float) -> Any:
        if self.impl == "redis":
            lock = self._locks.get(name)
            if lock is None:
                lock = self._locks[name] = self._lock_class(self._conn, name, expire=60)
            return lock if lock.acquire(blocking=True, timeout=timeout) else None
        ok, lock_id = self.locker.acquire_lock(name, timeout=timeout)
        return lock_id if ok else None

    def release(self, handle: Any) -> None:
        if self.impl == "redis":
            handle.release()
        else:
            self.locker.release_lock(handle)

    def close(self) -> None:
        if self.impl == "redis":
            return
        closer = threading.Thread(target=self.locker.stop, daemon=True)
        closer.start()
        closer.join(5)


class _Slices:
    """Completions per time slice: a burst of outside load on a shared machine spoils one slice, not the figure."""

    def __init__(self, t0: float, duration: float, count: int) -> None:
        self.t0 = t0
        self.width = duration / count
        self.counts = [0] * count

    def tick(self, now: float) -> None:
        i = int((now - self.t0) / self.width)
        if 0 <= i < len(self.counts):
            self.counts[i] += 1

    def as_dict(self) -> dict[str, Any]:
        return {"slices": self.counts, "slice_s": self.width}


def _run_loop(adapter: _Adapter, names: list[str], t0: float, duration: float, slices: int,
              timeout: float, latency: bool = True) -> dict[str, Any]:
    """Acquire+release as fast as possible for ``duration`` from ``t0``; latencies of both steps.

    ``latency=False`` keeps no latencies: for the in-process figure, where that would cost 10% of the time.
    """
    acquire_lat: list[float] = []
    cycle_lat: list[float] = []
    failures = 0
    clock = time.perf_counter
    ops = 0
    counts = _Slices(t0, duration, slices)
    start = now = time.monotonic()
    end = t0 + duration
    n = len(names)
    while now < end:
        name = names[ops % n]
        t0 = clock()
        handle = adapter.acquire(name, timeout)
        t1 = clock()
        if handle is None:
            failures += 1
            now = time.monotonic()
            continue
        adapter.release(handle)
        t2 = clock()
        now = time.monotonic()
        counts.tick(now)
        if latency:
            acquire_lat.append(t1 - t0)
            cycle_lat.append(t2 - t0)
        ops += 1
    elapsed = time.monotonic() - start
    return {"ops": ops, "elapsed": elapsed, "failures": failures, **counts.as_dict(),
            "acquire": _percentiles(acquire_lat), "cycle": _percentiles(cycle_lat)}


def _run_counter(adapter: _Adapter, spec: dict[str, Any], t0: float) -> dict[str, Any]:
    """Contend on one name: bump a counter file inside the lock and time every handover."""
    name, counter, timeout = spec["names"][0], spec["counter"], spec["timeout"]
    fd = os.open(spec["handover"], os.O_RDWR)
    shared = mmap.mmap(fd, HANDOVER.size)
    me = os.getpid()
    handovers: list[float] = []
    ops = failures = 0
    counts = _Slices(t0, spec["duration"], spec["slices"])
    end = t0 + spec["duration"]
    start = now = time.monotonic()
    while now < end:
        handle = adapter.acquire(name, timeout)
        granted = now = time.monotonic()
        if handle is None:
            failures += 1
            continue
        last_pid, released_at = HANDOVER.unpack_from(shared, 0)
        if last_pid and last_pid != me:
            handovers.append(granted - released_at)
        with open(counter, "r+") as f:  # a read-modify-write that only the lock keeps exact
            value = int(f.read() or "0")
            f.seek(0)
            f.write(str(value + 1))
            f.truncate()
        ops += 1
        HANDOVER.pack_into(shared, 0, me, time.monotonic())
        adapter.release(handle)
        now = time.monotonic()
        counts.tick(now)
    elapsed = time.monotonic() - start
    shared.close()
    os.close(fd)
    return {"ops": ops, "elapsed": elapsed, "failures": failures, "handover": _percentiles(handovers),
            **counts.as_dict()}


def _worker_echo_server(spec: dict[str, Any]) -> None:
    import zmq

    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    if spec.get("curve"):
        router.setsockopt(zmq.CURVE_SERVER, 1)
        router.setsockopt(zmq.CURVE_SECRETKEY, spec["server_secret"].encode())
    port = router.bind_to_random_port("tcp://127.0.0.1")

    def serve() -> None:
        recv, send = router.recv_multipart, router.send_multipart
        while True:
            send(recv())

    threading.Thread(target=serve, daemon=True).start()
    _emit({"ready": True, "port": port, "pid": os.getpid()})
    while _next_command()[0] != "stop":
        pass
    os._exit(0)


def _worker_echo_client(spec: dict[str, Any]) -> None:
    import zmq

    ctx = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    if spec.get("curve"):
        public, secret = zmq.curve_keypair()
        dealer.setsockopt(zmq.CURVE_SERVERKEY, spec["server_public"].encode())
        dealer.setsockopt(zmq.CURVE_PUBLICKEY, public)
        dealer.setsockopt(zmq.CURVE_SECRETKEY, secret)
    dealer.connect(f"tcp://127.0.0.1:{spec['port']}")
    send, recv = dealer.send, dealer.recv
    for _ in range(200):  # connect, handshake and warm up before the clock starts
        send(ECHO_PAYLOAD)
        recv()
    _emit({"ready": True})
    go = _wait_go()
    end = go + spec["duration"]
    counts = _Slices(go, spec["duration"], spec["slices"])
    clock = time.perf_counter
    lat: list[float] = []
    start = now = time.monotonic()
    while now < end:
        t0 = clock()
        send(ECHO_PAYLOAD)
        recv()
        lat.append(clock() - t0)
        now = time.monotonic()
        counts.tick(now)
    elapsed = time.monotonic() - start
    _emit({"ops": len(lat), "elapsed": elapsed, "rtt": _percentiles(lat), **counts.as_dict()})
    _next_command()
    os._exit(0)


def _worker_lock_server(spec: dict[str, Any]) -> None:
    _raise_fd_limit()
    adapter = _Adapter(spec, serve=True)
    _emit({"ready": True, "pid": os.getpid()})
    while True:
        words = _next_command()
        if words[0] == "inproc":  # inproc DURATION SLICES
            _emit(_run_loop(adapter, ["inproc"], time.monotonic(), float(words[1]), int(words[2]), 10.0,
                                latency=False))
        else:
            adapter.close()
            os._exit(0)


def _worker_lock_client(spec: dict[str, Any]) -> None:
    adapter = _Adapter(spec, serve=False)
    # Warm up: the first requests pay for connections and lazy imports.
    for _ in range(20):
        handle = adapter.acquire(f"warmup/{os.getpid()}", 10.0)
        if handle is not None:
            adapter.release(handle)
    _emit({"ready": True, "pid": os.getpid()})
    mode = spec["mode"]
    t0 = _wait_go()
    if mode == "loop":
        result = _run_loop(adapter, spec["names"], t0, spec["duration"], spec["slices"], spec["timeout"])
    elif mode == "counter":
        result = _run_counter(adapter, spec, t0)
    elif mode == "hold":  # hold a name for a while, so that someone else blocks on it
        handle = adapter.acquire(spec["names"][0], spec["timeout"])
        _emit({"held": handle is not None})
        time.sleep(spec["hold"])
        adapter.release(handle)
        result = {"released": True}
    else:  # "wait": block on a held name and count the CPU this process burns meanwhile
        cpu0, wall0 = time.process_time(), time.monotonic()
        handle = adapter.acquire(spec["names"][0], spec["timeout"])
        cpu1, wall1 = time.process_time(), time.monotonic()
        if handle is not None:
            adapter.release(handle)
        result = {"acquired": handle is not None, "cpu": cpu1 - cpu0, "wall": wall1 - wall0}
    _emit(result)
    _next_command()
    adapter.close()
    os._exit(0)


def _worker_scale_loadgen(spec: dict[str, Any]) -> None:
    """Many clients in one process: open them, make them hold many locks, then churn."""
    _raise_fd_limit()
    sys.path.insert(0, spec["code"])
    import psutil
    from pylocker import ServerLocker

    wanted, budget, nthreads = spec["clients"], spec["open_budget"], spec["open_threads"]
    slots: list[Any] = [None] * wanted
    failures: list[str] = []
    opened = [0]
    guard = threading.Lock()
    start = time.monotonic()

    # Opening a client is mostly waiting (handshake, hello, subscription probe): overlap them.
    def open_some(slot: int) -> None:
        for i in range(slot, wanted, nthreads):
            if failures or time.monotonic() - start > budget:
                return
            try:
                # Lock-only clients, as a fleet of lock workers would run them: no subscription.
                extra = {"receive_messages": False} if spec.get("lock_only", True) else {}
                try:
                    locker = ServerLocker(password=PASSWORD, serverFile=spec["server_file"], allowServing=False,
                                          connectTimeout=20, name=f"load-{i}", **extra)
                except TypeError:  # a checkout from before receive_messages existed
                    locker = ServerLocker(password=PASSWORD, serverFile=spec["server_file"], allowServing=False,
                                          connectTimeout=20, name=f"load-{i}")
            except Exception as exc:
                failures.append(f"client {i}: {type(exc).__name__}: {exc}")
                return
            if not locker.isClient:
                failures.append(f"client {i} did not connect")
                return
            slots[i] = locker
            with guard:
                opened[0] += 1
                if opened[0] % 100 == 0:
                    _emit({"progress": opened[0], "elapsed": time.monotonic() - start})

    openers = [threading.Thread(target=open_some, args=(s,)) for s in range(nthreads)]
    for t in openers:
        t.start()
    for t in openers:
        t.join()
    if time.monotonic() - start > budget and opened[0] < wanted:
        failures.append(f"open budget of {budget} s spent after {opened[0]} clients")
    lockers = [locker for locker in slots if locker is not None]
    open_s = time.monotonic() - start
    proc = psutil.Process()
    connected_rss = proc.memory_info().rss
    _emit({"connected": len(lockers), "open_s": open_s, "failures": failures})
    _next_command()  # "lock": the orchestrator has read the server's memory with connections only

    n = len(lockers)
    per_client = spec["locks"] // max(n, 1)
    held = [0] * spec["threads"]
    lock_failures = [0] * spec["threads"]
    lock_deadline = time.monotonic() + spec["lock_budget"]

    def take(slot: int) -> None:
        for c in range(slot, n, spec["threads"]):
            for j in range(per_client):
                if time.monotonic() > lock_deadline:
                    return
                ok, _ = lockers[c].acquire_lock(f"scale/{c}/{j}", timeout=10)
                if ok:
                    held[slot] += 1
                else:
                    lock_failures[slot] += 1

    start = time.monotonic()
    threads = [threading.Thread(target=take, args=(s,)) for s in range(spec["threads"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lock_s = time.monotonic() - start
    _emit({"ready": True, "clients": n, "wanted": wanted, "failures": failures, "open_s": open_s,
           "locks": sum(held), "lock_failures": sum(lock_failures), "lock_s": lock_s,
           "rss": proc.memory_info().rss, "connected_rss": connected_rss, "threads": proc.num_threads()})
    end = _wait_go() + spec["duration"]
    churned = [0] * spec["churn"]

    def churn(slot: int) -> None:
        locker = lockers[slot]
        while time.monotonic() < end:
            ok, lock_id = locker.acquire_lock(f"churn/{slot}", timeout=10)
            if ok:
                locker.release_lock(lock_id)
                churned[slot] += 1

    threads = [threading.Thread(target=churn, args=(s,)) for s in range(min(spec["churn"], n))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _emit({"churn_ops": sum(churned), "duration": spec["duration"]})
    _next_command()
    os._exit(0)  # the server is stopped next; closing 1,000 clients one by one buys nothing


WORKERS: dict[str, Callable[[dict[str, Any]], None]] = {
    "echo-server": _worker_echo_server,
    "echo-client": _worker_echo_client,
    "lock-server": _worker_lock_server,
    "lock-client": _worker_lock_client,
    "scale-loadgen": _worker_scale_loadgen,
}


def worker_main(role: str, spec_json: str) -> None:
    spec = json.loads(spec_json)
    try:
        WORKERS[role](spec)
    except BaseException as exc:
        _emit({"error": f"{type(exc).__name__}: {exc}"})
        raise


# =====================================================================================
# Orchestrator side.
# =====================================================================================
class BenchError(Exception):
    """A worker failed, or did not answer in time."""


def _say(message: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


class Worker:
    """A worker process: JSON lines in and out, stderr to a log file, stopped by PID."""

    live: ClassVar[list[Worker]] = []

    def __init__(self, python: str, role: str, spec: dict[str, Any], label: str, logdir: Path) -> None:
        self.label = label
        self.log_path = logdir / f"{label}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115  (closed in stop)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("PYTHONPATH", None)
        self.proc = subprocess.Popen(
            [python, str(Path(__file__).resolve()), "--worker", role, "--spec", json.dumps(spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True, bufsize=1,
            cwd=logdir, env=env)
        self.pid = self.proc.pid
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        Worker.live.append(self)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def send(self, line: str) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise BenchError(f"{self.label}: cannot write to the worker: {exc}{self._tail()}") from None

    def recv(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError(f"{self.label}: no answer within {timeout:.0f} s{self._tail()}")
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise BenchError(f"{self.label}: exited (code {self.proc.poll()}){self._tail()}")
            try:
                message = json.loads(line)
            except ValueError:
                continue  # a stray line (a library printing): not ours
            if "error" in message:
                raise BenchError(f"{self.label}: {message['error']}{self._tail()}")
            return message

    def _tail(self) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()[-6:]
        except OSError:
            return ""
        return ("\n    " + "\n    ".join(text)) if text else ""

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc.poll() is None:
            try:
                self.send("stop")
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            except (BenchError, OSError):
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGTERM)
                try:
                    self.proc.wait(2)
                except subprocess.TimeoutExpired:
                    os.kill(self.pid, signal.SIGKILL)
                    self.proc.wait(2)
        self._log.close()
        if self in Worker.live:
            Worker.live.remove(self)

    @classmethod
    def stop_all(cls) -> None:
        for worker in list(cls.live):
            worker.stop(2.0)


def _go(workers: list[Worker], lead: float = 0.3) -> None:
    t0 = time.monotonic() + lead
    for w in workers:
        w.send(f"go {t0!r}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Suite:
    """Runs every peer's figures and collects them into one result dict."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.quick = args.quick
        self.duration = 0.7 if args.quick else 3.0
        self.block = 1.0 if args.quick else 2.0
        self.slices = 5 if args.quick else 10
        self.work = workdir
        self.python = sys.executable
        self.code = str(Path(args.code).resolve())
        self.results: dict[str, Any] = {}
        self._n = 0

    def _dir(self, name: str) -> Path:
        self._n += 1
        path = self.work / f"{self._n:02d}-{name}"
        path.mkdir()
        return path

    # ------------------------------------------------------------------ echo floor
    def run_echo(self) -> dict[str, Any]:
        import zmq

        out: dict[str, Any] = {"label": "echo floor (raw pyzmq DEALER->ROUTER)"}
        d = self._dir("echo")
        server = Worker(self.python, "echo-server", {}, "echo-server", d)
        try:
            port = server.recv(20)["port"]
            out["remote"] = self._echo_clients(d, {"port": port}, 1, "raw")
            out["four"] = self._echo_clients(d, {"port": port}, 4, "raw4")
        finally:
            server.stop()
        public, secret = zmq.curve_keypair()
        curve = Worker(self.python, "echo-server", {"curve": True, "server_secret": secret.decode()},
                       "echo-curve-server", d)
        try:
            port = curve.recv(20)["port"]
            spec = {"port": port, "curve": True, "server_public": public.decode()}
            out["curve_remote"] = self._echo_clients(d, spec, 1, "curve")
        finally:
            curve.stop()
        return out

    def _echo_clients(self, d: Path, spec: dict[str, Any], count: int, tag: str) -> dict[str, Any]:
        clients = [Worker(self.python, "echo-client", dict(spec, duration=self.duration, slices=self.slices),
                          f"echo-{tag}-client{i}", d) for i in range(count)]
        try:
            for c in clients:
                c.recv(20)
            _go(clients)
            results = [c.recv(self.duration + 20) for c in clients]
        finally:
            for c in clients:
                c.stop()
        rtts = [r["rtt"]["p50"] for r in results]
        return {**_rates(results), "per_process": [r["ops"] for r in results],
                "rtt_p50": sorted(rtts)[len(rtts) // 2], "rtt_p99": max(r["rtt"]["p99"] for r in results)}

    # ------------------------------------------------------------------- lockers
    def run_lockers(self, impl: str, python: str, conn: dict[str, Any]) -> dict[str, Any]:
        """Every figure but the scale run, for one implementation (ours, seed or redis)."""
        out: dict[str, Any] = {}
        d = self._dir(impl)
        server: Worker | None = None
        if impl != "redis":
            server_file = str(d / "bench.serverlocker")
            conn = {"server_file": server_file, "port": _free_port() if impl == "seed" else 0, "code": self.code}
            server = Worker(python, "lock-server", dict(conn, impl=impl), f"{impl}-server", d)
            server.recv(60)
        try:
            base = dict(conn, impl=impl, timeout=10.0, duration=self.duration, slices=self.slices)
            _say(f"{impl}: remote client, uncontended")
            out["remote"] = self._clients(python, d, base, "loop", 1, lambda i: [f"bench/{i}"], "remote")
            if server is not None:
                _say(f"{impl}: serving locker in process")
                server.send(f"inproc {self.duration} {self.slices}")
                r = server.recv(self.duration + 30)
                out["inproc"] = {**_rates([r]), "failures": r["failures"]}
            _say(f"{impl}: 4 processes x 4 names")
            out["four_names"] = self._clients(python, d, base, "loop", 4, lambda i: [f"bench/{i}"], "4x4")
            _say(f"{impl}: 4 processes x 1 name (fairness, counter, handover)")
            out["one_name"] = self._contended(python, d, base)
            _say(f"{impl}: a waiter blocked for {self.block} s")
            out["blocked"] = self._blocked(python, d, base)
        finally:
            if server is not None:
                server.stop()
        return out

    def _clients(self, python: str, d: Path, base: dict[str, Any], mode: str, count: int,
                 names: Callable[[int], list[str]], tag: str) -> dict[str, Any]:
        clients = [Worker(python, "lock-client", dict(base, mode=mode, names=names(i)),
                          f"{base['impl']}-{tag}-client{i}", d) for i in range(count)]
        try:
            for c in clients:
                c.recv(60)
            _go(clients)
            results = [c.recv(self.duration + 30) for c in clients]
        finally:
            for c in clients:
                c.stop()
        return {**_rates(results), "per_process": [r["ops"] for r in results],
                "failures": sum(r["failures"] for r in results),
                "acquire_p50": max(r["acquire"]["p50"] or 0 for r in results),
                "acquire_p99": max(r["acquire"]["p99"] or 0 for r in results),
                "cycle_p50": max(r["cycle"]["p50"] or 0 for r in results)}

    def _contended(self, python: str, d: Path, base: dict[str, Any]) -> dict[str, Any]:
        counter = d / "counter.txt"
        counter.write_text("0")
        handover = d / "handover.bin"
        handover.write_bytes(bytes(HANDOVER.size))
        spec = dict(base, mode="counter", names=["bench/shared"], counter=str(counter), handover=str(handover))
        clients = [Worker(python, "lock-client", spec, f"{base['impl']}-4x1-client{i}", d) for i in range(4)]
        try:
            for c in clients:
                c.recv(60)
            _go(clients)
            results = [c.recv(self.duration + 30) for c in clients]
        finally:
            for c in clients:
                c.stop()
        counts = [r["ops"] for r in results]
        mean = sum(counts) / len(counts)
        spread = max(abs(c / mean - 1) for c in counts) if mean else None
        file_value = int(counter.read_text() or "0")
        samples = sum(r["handover"]["n"] for r in results)
        # Per-process medians and p99s are combined as the worst process's, which is conservative.
        return {**_rates(results), "per_process": counts,
                "max_deviation": spread, "counter_file": file_value, "counter_ok": file_value == sum(counts),
                "failures": sum(r["failures"] for r in results), "handover_samples": samples,
                "handover_p50": _median([r["handover"]["p50"] for r in results if r["handover"]["n"]]),
                "handover_p99": max((r["handover"]["p99"] for r in results if r["handover"]["n"]), default=None)}

    def _blocked(self, python: str, d: Path, base: dict[str, Any]) -> dict[str, Any]:
        name = ["bench/blocked"]
        holder = Worker(python, "lock-client", dict(base, mode="hold", names=name, hold=self.block),
                        f"{base['impl']}-holder", d)
        waiter = Worker(python, "lock-client", dict(base, mode="wait", names=name, timeout=self.block + 20),
                        f"{base['impl']}-waiter", d)
        try:
            holder.recv(60)
            waiter.recv(60)
            _go([holder], lead=0.0)
            if not holder.recv(30).get("held"):
                raise BenchError("the holder did not get the lock")
            _go([waiter], lead=0.0)
            r = waiter.recv(self.block + 30)
            holder.recv(30)
        finally:
            holder.stop()
            waiter.stop()
        return {"cpu_s": r["cpu"], "wall_s": r["wall"], "core_pct": 100.0 * r["cpu"] / r["wall"],
                "acquired": r["acquired"]}

    # ------------------------------------------------------------------ scale run
    def run_scale(self) -> dict[str, Any]:
        import psutil

        clients, locks = (100, 10_000) if self.quick else (1000, 100_000)
        d = self._dir("scale")
        server_file = str(d / "scale.serverlocker")
        conn = {"server_file": server_file, "port": 0, "code": self.code}
        server = Worker(self.python, "lock-server", dict(conn, impl="ours", max_lock_time=600),
                        "scale-server", d)
        out: dict[str, Any] = {"clients_wanted": clients, "locks_wanted": locks}
        loadgen = probe = None
        try:
            server.recv(60)
            sproc = psutil.Process(server.pid)
            out["server_rss_idle"] = sproc.memory_info().rss
            _say(f"scale: opening {clients} clients in one load-generator process")
            loadgen = Worker(self.python, "scale-loadgen",
                             dict(conn, clients=clients, locks=locks, threads=4, churn=2, open_threads=16,
                                  duration=self.duration, open_budget=60 if not self.quick else 20,
                                  lock_budget=90 if not self.quick else 20),
                             "scale-loadgen", d)
            while True:
                r = loadgen.recv(200)
                if "progress" not in r:
                    break
                _say(f"scale: {r['progress']} clients open after {r['elapsed']:.1f} s")
            out["server_rss_connected"] = sproc.memory_info().rss
            _say(f"scale: {r['connected']} clients connected; taking {locks:,} locks through them")
            loadgen.send("lock")
            r = loadgen.recv(200)
            out.update({k: r[k] for k in ("clients", "failures", "open_s", "locks", "lock_failures", "lock_s",
                                           "threads")})
            out["loadgen_rss"] = r["rss"]
            out["loadgen_rss_per_client"] = r["connected_rss"] / max(r["clients"], 1)
            out["server_rss_loaded"] = sproc.memory_info().rss
            out["server_threads"] = sproc.num_threads()
            _say(f"scale: {r['clients']} clients, {r['locks']} locks held; probing latency under load")
            probe = Worker(self.python, "lock-client",
                           dict(conn, impl="ours", mode="loop", names=["probe"], timeout=10.0,
                                duration=self.duration, slices=self.slices), "scale-probe", d)
            probe.recv(60)
            cpu0 = sproc.cpu_times()
            _go([loadgen, probe])
            p = probe.recv(self.duration + 60)
            churn = loadgen.recv(self.duration + 60)
            cpu1 = sproc.cpu_times()
            out["server_rss_end"] = sproc.memory_info().rss
            out["server_cpu_pct_under_load"] = 100 * ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) / (
                self.duration + 0.3)
            out["probe_ops_per_s"] = p["ops"] / p["elapsed"]
            out["probe_acquire_p50"] = p["acquire"]["p50"]
            out["probe_acquire_p99"] = p["acquire"]["p99"]
            out["churn_ops_per_s"] = churn["churn_ops"] / churn["duration"]
        finally:
            for w in (probe, loadgen, server):
                if w is not None:
                    w.stop()
        return out

    # ---------------------------------------------------------------- peers setup
    def seed_python(self) -> tuple[str | None, str]:
        """The interpreter of a venv with pylocker 3.1.0 from PyPI; (None, reason) if none."""
        venv = Path(tempfile.gettempdir()) / f"pylocker-bench-seed-{SEED_VERSION}"
        python = venv / "bin" / "python"
        check = ["-c", "import importlib.metadata as m, pylocker.ServerLocker; print(m.version('pylocker'))"]
        if python.exists() and not self.args.fresh_venv:
            r = subprocess.run([str(python), *check], capture_output=True, text=True, timeout=60, check=False,
                               cwd=tempfile.gettempdir())  # not the checkout: its pylocker would shadow
            if r.returncode == 0 and r.stdout.strip() == SEED_VERSION:
                return str(python), f"cached venv {venv}"
        shutil.rmtree(venv, ignore_errors=True)
        _say(f"seed: creating {venv} and installing pylocker=={SEED_VERSION}")
        try:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True,
                           timeout=120)
            what = self.args.seed_wheel or f"pylocker=={SEED_VERSION}"
            subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", what],
                           check=True, capture_output=True, text=True, timeout=300)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            detail = getattr(exc, "stderr", "") or ""
            return None, f"could not install pylocker=={SEED_VERSION}: {exc} {str(detail)[-300:]}"
        return str(python), f"fresh venv {venv}"

    def start_redis(self) -> tuple[subprocess.Popen[bytes] | None, int, str]:
        exe = shutil.which("redis-server")
        if exe is None:
            return None, 0, "redis-server is not installed (Debian: apt-get install redis-server)"
        probe = subprocess.run([self.python, "-c", "import redis, redis_lock; print(redis.__version__)"],
                               capture_output=True, text=True, check=False, timeout=60, cwd=tempfile.gettempdir())
        if probe.returncode != 0:
            return None, 0, "redis or python-redis-lock is not importable (pip install redis python-redis-lock)"
        port = _free_port()
        d = self._dir("redis-server")
        log = open(d / "redis-server.log", "w")  # noqa: SIM115  (closed with the process)
        proc = subprocess.Popen(
            [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(d)], stdout=log, stderr=subprocess.STDOUT)
        import redis

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis(host="127.0.0.1", port=port, socket_timeout=1).ping():
                    version = redis.Redis(host="127.0.0.1", port=port).info()["redis_version"]
                    return proc, port, f"redis-server {version} (pid {proc.pid}), redis-py {redis.__version__}"
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        _stop_pid(proc)
        return None, 0, "redis-server did not answer on loopback within 10 s"


def _stop_pid(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)


def _rates(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Total ops/s of workers that ran the same slices: the median slice, and the mean and best for context."""
    width = results[0]["slice_s"]
    per_slice = [sum(r["slices"][i] for r in results) / width for i in range(len(results[0]["slices"]))]
    return {"ops_per_s": _median(per_slice), "ops_per_s_mean": sum(r["ops"] / r["elapsed"] for r in results),
            "ops_per_s_best": max(per_slice), "ops_per_s_slices": per_slice}


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


# =====================================================================================
# Goals, table and chart.
# =====================================================================================
def _get(data: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def evaluate_goals(res: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's goals as (measured, target, ratio, verdict); ratio >= 1 passes."""
    ours, echo, redis_ = res.get("ours", {}), res.get("echo", {}), res.get("redis", {})
    scale = res.get("scale", {})
    goals: list[dict[str, Any]] = []

    def add(key: str, text: str, measured: float | None, target: float | None, higher: bool,
            unit: str, extra_ok: bool = True, note: str = "") -> None:
        if measured is None or target is None or target == 0:
            goals.append({"key": key, "goal": text, "measured": measured, "target": target, "unit": unit,
                          "ratio": None, "verdict": "SKIPPED", "note": note or "a figure is missing"})
            return
        ratio = measured / target if higher else (target / measured if measured else math.inf)
        verdict = "PASS" if ratio >= 1 and extra_ok else "FAIL"
        goals.append({"key": key, "goal": text, "measured": measured, "target": target, "unit": unit,
                      "ratio": ratio, "verdict": verdict, "note": note})

    floor = _get(echo, "remote", "ops_per_s")
    remote = _get(ours, "remote", "ops_per_s")
    add("remote_vs_echo", "remote client, uncontended >= 0.75 x echo floor", remote,
        0.75 * floor if floor else None, True, "ops/s")
    redis_remote = _get(redis_, "remote", "ops_per_s")
    add("remote_vs_redis", "remote client, uncontended >= 1.8 x python-redis-lock", remote,
        1.8 * redis_remote if redis_remote else None, True, "ops/s",
        note="" if redis_remote else f"redis skipped: {redis_.get('skipped', 'no figure')}")
    add("inproc", "serving locker in process >= 100,000 acquire+release/s",
        _get(ours, "inproc", "ops_per_s"), 100_000.0, True, "ops/s")
    floor4 = _get(echo, "four", "ops_per_s")
    add("four_names", "4 processes x 4 names >= 0.75 x 4-client echo floor",
        _get(ours, "four_names", "ops_per_s"), 0.75 * floor4 if floor4 else None, True, "ops/s")
    rtt = _get(echo, "remote", "rtt_p50")
    add("handover", "handover median <= 1.5 x one echo round trip",
        _get(ours, "one_name", "handover_p50"), 1.5 * rtt if rtt else None, False, "s")
    dev = _get(ours, "one_name", "max_deviation")
    counter_ok = bool(_get(ours, "one_name", "counter_ok"))
    add("fairness", "per-process counts within +-10% on one name (and the counter file adds up)",
        dev, 0.10, False, "fraction", extra_ok=counter_ok,
        note="" if counter_ok or dev is None else "counter file does not add up")
    add("blocked", "blocked waiter <= 1% of a core", _get(ours, "blocked", "core_pct"), 1.0, False, "%")
    full = scale.get("clients") == scale.get("clients_wanted") and scale.get("locks") == scale.get("locks_wanted")
    rss = scale.get("server_rss_end")
    add("scale_rss", f"{scale.get('clients_wanted', 1000):,} clients and {scale.get('locks_wanted', 100_000):,} "
        "locks with server RSS <= 200 MB", rss / 2**20 if rss else None, 200.0, False, "MB", extra_ok=full,
        note="" if full or rss is None else
        f"only {scale.get('clients')} clients / {scale.get('locks')} locks reached")
    return goals


def _fmt_rate(v: Any) -> str:
    return DASH if v is None else f"{v:,.0f}/s"


def _fmt_us(v: Any) -> str:
    return DASH if v is None else f"{v * 1e6:,.0f} µs"


def _cell(peer: dict[str, Any], fmt: Callable[[Any], str], *path: str) -> str:
    if "skipped" in peer:
        return "skipped"
    if "error" in peer:
        return "error"
    value = _get(peer, *path)
    return "n/a" if value is None else fmt(value)


def render_markdown(res: dict[str, Any], goals: list[dict[str, Any]]) -> str:
    meta = res["meta"]
    ours, echo = res.get("ours", {}), res.get("echo", {})
    seed, redis_, scale = res.get("seed", {}), res.get("redis", {}), res.get("scale", {})
    by_key = {g["key"]: g for g in goals}

    def verdict(*keys: str) -> tuple[str, str, str]:
        gs = [by_key[k] for k in keys if k in by_key]
        text = "<br>".join(g["goal"] for g in gs)
        ratio = "<br>".join(DASH if g["ratio"] is None else f"{g['ratio']:.2f}" for g in gs)
        ver = "<br>".join(f"**{g['verdict']}**" for g in gs)
        return text, ratio, ver

    def pct(v: Any) -> str:
        return f"{v:.2f} %"

    def counts(v: Any) -> str:
        return " / ".join(str(x) for x in v)

    def dev(v: Any) -> str:
        return f"±{100 * v:.1f} %"

    rows: list[tuple[str, str, str, str, str, str, tuple[str, str, str]]] = [
        ("Remote client, uncontended: acquire+release/s (echo: round trips/s)",
         _cell(ours, _fmt_rate, "remote", "ops_per_s"), _cell(echo, _fmt_rate, "remote", "ops_per_s"),
         _cell(echo, _fmt_rate, "curve_remote", "ops_per_s"), _cell(seed, _fmt_rate, "remote", "ops_per_s"),
         _cell(redis_, _fmt_rate, "remote", "ops_per_s"), verdict("remote_vs_echo", "remote_vs_redis")),
        ("Remote client, uncontended: acquire latency p50 / p99 (echo: round trip)",
         _cell(ours, _fmt_us, "remote", "acquire_p50") + " / " + _cell(ours, _fmt_us, "remote", "acquire_p99"),
         _cell(echo, _fmt_us, "remote", "rtt_p50") + " / " + _cell(echo, _fmt_us, "remote", "rtt_p99"),
         _cell(echo, _fmt_us, "curve_remote", "rtt_p50") + " / "
         + _cell(echo, _fmt_us, "curve_remote", "rtt_p99"),
         _cell(seed, _fmt_us, "remote", "acquire_p50") + " / " + _cell(seed, _fmt_us, "remote", "acquire_p99"),
         _cell(redis_, _fmt_us, "remote", "acquire_p50") + " / " + _cell(redis_, _fmt_us, "remote", "acquire_p99"),
         ("", "", "")),
        ("Serving locker in process: acquire+release/s",
         _cell(ours, _fmt_rate, "inproc", "ops_per_s"), "n/a", "n/a", _cell(seed, _fmt_rate, "inproc", "ops_per_s"),
         "n/a", verdict("inproc")),
        ("4 processes x 4 names: total acquire+release/s (echo: 4 clients)",
         _cell(ours, _fmt_rate, "four_names", "ops_per_s"), _cell(echo, _fmt_rate, "four", "ops_per_s"), DASH,
         _cell(seed, _fmt_rate, "four_names", "ops_per_s"), _cell(redis_, _fmt_rate, "four_names", "ops_per_s"),
         verdict("four_names")),
        ("4 processes x 1 name: total acquire+release/s",
         _cell(ours, _fmt_rate, "one_name", "ops_per_s"), "n/a", "n/a",
         _cell(seed, _fmt_rate, "one_name", "ops_per_s"), _cell(redis_, _fmt_rate, "one_name", "ops_per_s"),
         ("", "", "")),
        ("4 processes x 1 name: per-process counts",
         _cell(ours, counts, "one_name", "per_process"), "n/a", "n/a",
         _cell(seed, counts, "one_name", "per_process"), _cell(redis_, counts, "one_name", "per_process"),
         ("", "", "")),
        ("4 processes x 1 name: largest deviation from the mean count; counter file",
         _cell(ours, dev, "one_name", "max_deviation") + "; " + _cell(ours, str, "one_name", "counter_ok"), "n/a",
         "n/a", _cell(seed, dev, "one_name", "max_deviation") + "; " + _cell(seed, str, "one_name", "counter_ok"),
         _cell(redis_, dev, "one_name", "max_deviation") + "; " + _cell(redis_, str, "one_name", "counter_ok"),
         verdict("fairness")),
        ("Handover, release to next holder: median / p99 (echo: one round trip)",
         _cell(ours, _fmt_us, "one_name", "handover_p50") + " / " + _cell(ours, _fmt_us, "one_name", "handover_p99"),
         _cell(echo, _fmt_us, "remote", "rtt_p50"), _cell(echo, _fmt_us, "curve_remote", "rtt_p50"),
         _cell(seed, _fmt_us, "one_name", "handover_p50") + " / " + _cell(seed, _fmt_us, "one_name", "handover_p99"),
         _cell(redis_, _fmt_us, "one_name", "handover_p50") + " / "
         + _cell(redis_, _fmt_us, "one_name", "handover_p99"), verdict("handover")),
        (f"CPU of a waiter blocked for {meta['block_s']:g} s (% of one core)",
         _cell(ours, pct, "blocked", "core_pct"), "n/a", "n/a", _cell(seed, pct, "blocked", "core_pct"),
         _cell(redis_, pct, "blocked", "core_pct"), verdict("blocked")),
    ]
    if scale and "error" not in scale and "skipped" not in scale:
        mb = 2**20
        rows += [
            (f"Scale: clients connected (of {scale['clients_wanted']:,}) in one load-generator process; "
             f"locks held (of {scale['locks_wanted']:,})",
             f"{scale['clients']:,} in {scale['open_s']:.1f} s; {scale['locks']:,} in {scale['lock_s']:.1f} s "
             f"(load generator: {scale['threads']:,} threads, {scale['loadgen_rss'] / mb:.0f} MB)",
             "n/a", "n/a", "not run", "not run", ("", "", "")),
            ("Scale: server resident memory idle / clients connected / locks held / end",
             f"{scale['server_rss_idle'] / mb:.0f} / {scale['server_rss_connected'] / mb:.0f} / "
             f"{scale['server_rss_loaded'] / mb:.0f} / {scale['server_rss_end'] / mb:.0f} MB",
             "n/a", "n/a", "not run", "not run", verdict("scale_rss")),
            ("Scale: probe acquire latency p50 / p99 under load (plus churn from 2 clients)",
             f"{_fmt_us(scale['probe_acquire_p50'])} / {_fmt_us(scale['probe_acquire_p99'])} "
             f"({scale['probe_ops_per_s']:,.0f}/s probe, {scale['churn_ops_per_s']:,.0f}/s churn, "
             f"server CPU {scale['server_cpu_pct_under_load']:.0f} %)", "n/a", "n/a", "not run", "not run",
             ("", "", "")),
        ]
    elif scale:
        rows.append(("Scale run", scale.get("error") or scale.get("skipped", ""), "n/a", "n/a", "not run",
                     "not run", verdict("scale_rss")))

    lines = [
        "# Lock benchmark",
        "",
        f"One run of `python benchmarks/bench_locks.py{' --quick' if meta['quick'] else ''}` on "
        f"{meta['when']}: {meta['cpus']} CPUs ({meta['cpu_model']}), Python {meta['python']}, "
        f"pyzmq {meta['pyzmq']} (libzmq {meta['libzmq']}), load average before/after "
        f"{meta['loadavg_before']} / {meta['loadavg_after']}; {meta['duration_s']:g} s per throughput figure; "
        f"pylocker at {meta['git']}.",
        "",
        "| Figure | pylocker (this checkout) | echo floor (raw) | echo (CURVE) | pylocker 3.1.0 | "
        "Redis + python-redis-lock | Goal | Ratio | Verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for figure, a, b, c, d, e, (goal, ratio, ver) in rows:
        lines.append(f"| {figure} | {a} | {b} | {c} | {d} | {e} | {goal} | {ratio} | {ver} |")
    lines += ["", "Ratio: measured ÷ target for a “≥” goal, target ÷ measured for a “≤” goal; ≥ 1 passes.", ""]
    lines += ["## Goals", "", "| Goal | Measured | Target | Ratio | Verdict | Note |", "|---|---|---|---|---|---|"]
    for g in goals:
        m, t = g["measured"], g["target"]
        unit = g["unit"]
        if unit == "s":
            ms, ts = _fmt_us(m), _fmt_us(t)
        elif unit == "fraction":
            ms = DASH if m is None else f"±{100 * m:.1f} %"
            ts = DASH if t is None else f"±{100 * t:.0f} %"
        elif unit == "ops/s":
            ms, ts = _fmt_rate(m), _fmt_rate(t)
        else:
            ms = DASH if m is None else f"{m:,.2f} {unit}"
            ts = DASH if t is None else f"{t:,.2f} {unit}"
        ratio = DASH if g["ratio"] is None else f"{g['ratio']:.2f}"
        lines.append(f"| {g['goal']} | {ms} | {ts} | {ratio} | **{g['verdict']}** | {g['note']} |")
    lines += ["", "## Peers", ""]
    for key, label in (("echo", "echo floor"), ("seed", f"pylocker {SEED_VERSION}"),
                       ("redis", "Redis + python-redis-lock"), ("scale", "scale run")):
        peer = res.get(key, {})
        status = ("skipped: " + peer["skipped"]) if "skipped" in peer else (
            "error: " + peer["error"].splitlines()[0]) if "error" in peer else peer.get("setup", "measured")
        lines.append(f"- {label}: {status}")
    lines += ["", "Notes: every figure is from one process per client on loopback. A throughput is the median "
              f"of {meta['slices']} equal time slices of the run, summed over its processes (a burst of outside "
              "load spoils one slice, not the figure; the mean and the best slice are in the JSON). Latencies are "
              "per call as "
              "seen by the caller (perf_counter); handover is the time from the holder's last instruction "
              "before release to the next holder's first after its grant, on the shared monotonic clock, "
              "counted only when the lock changes process. The machine is shared: figures vary run to run.",
              ""]
    if res.get("chart_note"):
        lines += [res["chart_note"], ""]
    return "\n".join(lines)


def render_chart(res: dict[str, Any], goals: list[dict[str, Any]], path: Path) -> str | None:
    """Write the PNG; returns a note when it cannot."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "No chart: matplotlib is not installed (pip install matplotlib)."
    peers = [("ours", "pylocker (checkout)", "#1f77b4"), ("echo", "echo floor (raw)", "#7f7f7f"),
             ("seed", f"pylocker {SEED_VERSION}", "#ff7f0e"), ("redis", "Redis + redis-lock", "#d62728")]
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    ax = axes[0][0]
    scenarios = ["remote, 1 client", "4 procs x 4 names", "4 procs x 1 name"]
    paths = {"echo": [("remote",), ("four",), None]}
    width = 0.2
    for i, (key, label, color) in enumerate(peers):
        values = [None if p is None else _get(res.get(key, {}), *p, "ops_per_s")
                  for p in paths.get(key, [("remote",), ("four_names",), ("one_name",)])]
        xs = [j + (i - 1.5) * width for j in range(len(scenarios))]
        ax.bar(xs, [v or 0 for v in values], width, label=label, color=color)
        for x, v in zip(xs, values):
            ax.text(x, (v or 0), DASH if v is None else f"{v / 1000:.1f}k", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(scenarios)), scenarios)
    ax.set_ylabel("acquire+release per second (echo: round trips)")
    ax.set_title("Throughput")
    ax.legend(fontsize=8)

    ax = axes[0][1]
    names, vals, colors = [], [], []
    for key, label, color in peers:
        v = _get(res.get(key, {}), "inproc", "ops_per_s")
        if v is not None:
            names.append(label)
            vals.append(v)
            colors.append(color)
    ax.bar(names, vals, color=colors)
    ax.axhline(100_000, color="green", linestyle="--", label="goal 100,000/s")
    for i, v in enumerate(vals):
        ax.text(i, v, f"{v:,.0f}", ha="center", va="bottom", fontsize=8)
    ax.set_title("Serving locker, in process")
    ax.set_ylabel("acquire+release per second")
    ax.legend(fontsize=8)

    ax = axes[1][0]
    names, p50, p99, colors = [], [], [], []
    for key, label, color in peers:
        if key == "echo":
            v = _get(res.get("echo", {}), "remote", "rtt_p50")
            w = _get(res.get("echo", {}), "remote", "rtt_p99")
        else:
            v = _get(res.get(key, {}), "one_name", "handover_p50")
            w = _get(res.get(key, {}), "one_name", "handover_p99")
        if v is not None:
            names.append(label if key != "echo" else "echo round trip")
            p50.append(v * 1e6)
            p99.append((w or v) * 1e6)
            colors.append(color)
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], p50, 0.4, color=colors, label="median")
    ax.bar([x + 0.2 for x in xs], p99, 0.4, color=colors, alpha=0.45, label="p99")
    rtt = _get(res.get("echo", {}), "remote", "rtt_p50")
    if rtt:
        ax.axhline(1.5 * rtt * 1e6, color="green", linestyle="--", label="goal: 1.5 x echo round trip")
    ax.set_yscale("log")
    ax.set_xticks(list(xs), names, fontsize=8)
    ax.set_ylabel("µs (log)")
    ax.set_title("Handover: release to next holder (4 processes, 1 name)")
    ax.legend(fontsize=8)

    ax = axes[1][1]
    shown = [g for g in goals if g["ratio"] is not None]
    labels = [g["key"] for g in shown]
    ratios = [min(g["ratio"], 10.0) for g in shown]
    ax.barh(labels, ratios, color=["#2ca02c" if g["verdict"] == "PASS" else "#d62728" for g in shown])
    ax.axvline(1.0, color="black", linestyle="--")
    for i, g in enumerate(shown):
        ax.text(ratios[i], i, f" {g['ratio']:.2f}", va="center", fontsize=8)
    ax.set_xscale("log")
    ax.set_title("Goals: measured vs target (>= 1 passes, capped at 10)")
    ax.invert_yaxis()
    fig.suptitle(f"pylocker lock benchmark ({res['meta']['when']}{', quick' if res['meta']['quick'] else ''})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return None


# =====================================================================================
# Main.
# =====================================================================================
def _meta(args: argparse.Namespace, duration: float, block: float, slices: int) -> dict[str, Any]:
    import zmq

    cpu_model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    code = Path(args.code).resolve()

    def git(*words: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(code), *words], capture_output=True, text=True,
                                  check=False, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    commit = git("rev-parse", "--short", "HEAD") if (code / ".git").exists() else ""
    if not commit:
        revision = f"{code} (not a git checkout)"
    elif git("status", "--porcelain", "--", "pylocker"):
        revision = f"{commit} plus uncommitted changes in pylocker/"
    else:
        revision = commit
    return {"when": time.strftime("%Y-%m-%d %H:%M"), "quick": args.quick, "cpus": os.cpu_count(),
            "cpu_model": cpu_model, "python": platform.python_version(), "pyzmq": zmq.__version__,
            "libzmq": zmq.zmq_version(), "git": revision, "duration_s": duration, "block_s": block, "slices": slices,
            "loadavg_before": "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs, 100 clients / 10,000 locks (< 1 min)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="output folder")
    parser.add_argument("--only", default="echo,ours,seed,redis,scale",
                        help="comma-separated subset of echo,ours,seed,redis,scale")
    parser.add_argument("--fresh-venv", action="store_true", help="reinstall pylocker 3.1.0 into a new venv")
    parser.add_argument("--seed-wheel", default=None, help="install the seed from this wheel, not PyPI")
    parser.add_argument("--code", default=str(REPO),
                        help="the pylocker source tree to measure (default: this checkout, as it is on disk)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir with every worker's log")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args.worker, args.spec)
        return 0

    sys.path.insert(0, str(Path(args.code).resolve()))  # the checkout's pylocker, not an installed one
    only = set(args.only.split(","))
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="pylocker-bench-"))
    suite = Suite(args, workdir)
    res: dict[str, Any] = {"meta": _meta(args, suite.duration, suite.block, suite.slices)}
    started = time.monotonic()
    redis_proc: subprocess.Popen[bytes] | None = None

    def guarded(key: str, run: Callable[[], dict[str, Any]]) -> None:
        if key not in only:
            res[key] = {"skipped": "not selected (--only)"}
            return
        t = time.monotonic()
        try:
            res[key] = run()
        except (BenchError, OSError, subprocess.SubprocessError) as exc:
            _say(f"{key} failed: {exc}")
            res[key] = {"error": str(exc)}
        finally:
            Worker.stop_all()
        res[key]["seconds"] = round(time.monotonic() - t, 1)
        _say(f"{key} done in {res[key]['seconds']} s")

    try:
        guarded("echo", suite.run_echo)
        guarded("ours", lambda: suite.run_lockers("ours", sys.executable, {}))

        def seed() -> dict[str, Any]:
            python, note = suite.seed_python()
            if python is None:
                return {"skipped": note}
            return dict(suite.run_lockers("seed", python, {}), setup=note)

        guarded("seed", seed)

        def redis_peer() -> dict[str, Any]:
            nonlocal redis_proc
            redis_proc, port, note = suite.start_redis()
            if redis_proc is None:
                return {"skipped": note}
            try:
                return dict(suite.run_lockers("redis", sys.executable, {"port": port}), setup=note)
            finally:
                _stop_pid(redis_proc)
                redis_proc = None

        guarded("redis", redis_peer)
        guarded("scale", suite.run_scale)
    finally:
        Worker.stop_all()
        if redis_proc is not None:
            _stop_pid(redis_proc)
    res["meta"]["loadavg_after"] = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    res["meta"]["total_s"] = round(time.monotonic() - started, 1)
    goals = evaluate_goals(res)
    res["goals"] = goals
    res["chart_note"] = render_chart(res, goals, out_dir / "locks.png")
    (out_dir / "locks.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    (out_dir / "locks.md").write_text(render_markdown(res, goals))
    if args.keep:
        _say(f"worker logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    _say(f"done in {res['meta']['total_s']} s: {out_dir / 'locks.md'}")
    sys.stdout.write((out_dir / "locks.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
