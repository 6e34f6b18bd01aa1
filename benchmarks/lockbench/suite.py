"""The figures of each peer, one method per peer, collected into one result dict.

Peers: the echo floor (raw pyzmq, plain and CURVE), pylocker from ``--code``,
pylocker 3.1.0 in a venv of its own (built here and cached in the temp dir), Redis
through python-redis-lock (a redis-server started here on loopback), and the
scale run (many clients in one load-generator process).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from .common import HANDOVER, SEED_VERSION
from .process import BenchError, Worker, free_port, go, say, stop_pid


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

    def _run_together(self, workers: list[Worker], ready: float, slack: float) -> list[dict[str, Any]]:
        """Wait until every worker is ready, start them at one instant, collect their results, stop them."""
        try:
            for worker in workers:
                worker.recv(ready)
            go(workers)
            return [worker.recv(self.duration + slack) for worker in workers]
        finally:
            for worker in workers:
                worker.stop()

    def _echo_clients(self, d: Path, spec: dict[str, Any], count: int, tag: str) -> dict[str, Any]:
        clients = [Worker(self.python, "echo-client", dict(spec, duration=self.duration, slices=self.slices),
                          f"echo-{tag}-client{i}", d) for i in range(count)]
        results = self._run_together(clients, ready=20, slack=20)
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
            conn = {"server_file": server_file, "port": free_port() if impl == "seed" else 0, "code": self.code}
            server = Worker(python, "lock-server", dict(conn, impl=impl), f"{impl}-server", d)
            server.recv(60)
        try:
            base = dict(conn, impl=impl, timeout=10.0, duration=self.duration, slices=self.slices)
            say(f"{impl}: remote client, uncontended")
            out["remote"] = self._clients(python, d, base, "loop", 1, lambda i: [f"bench/{i}"], "remote")
            if server is not None:
                say(f"{impl}: serving locker in process")
                server.send(f"inproc {self.duration} {self.slices}")
                r = server.recv(self.duration + 30)
                out["inproc"] = {**_rates([r]), "failures": r["failures"]}
            say(f"{impl}: 4 processes x 4 names")
            out["four_names"] = self._clients(python, d, base, "loop", 4, lambda i: [f"bench/{i}"], "4x4")
            say(f"{impl}: 4 processes x 1 name (fairness, counter, handover)")
            out["one_name"] = self._contended(python, d, base)
            say(f"{impl}: a waiter blocked for {self.block} s")
            out["blocked"] = self._blocked(python, d, base)
        finally:
            if server is not None:
                server.stop()
        return out

    def _clients(self, python: str, d: Path, base: dict[str, Any], mode: str, count: int,
                 names: Callable[[int], list[str]], tag: str) -> dict[str, Any]:
        clients = [Worker(python, "lock-client", dict(base, mode=mode, names=names(i)),
                          f"{base['impl']}-{tag}-client{i}", d) for i in range(count)]
        results = self._run_together(clients, ready=60, slack=30)
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
        results = self._run_together(clients, ready=60, slack=30)
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
            go([holder], lead=0.0)
            if not holder.recv(30).get("held"):
                raise BenchError("the holder did not get the lock")
            go([waiter], lead=0.0)
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
            say(f"scale: opening {clients} clients in one load-generator process")
            loadgen = Worker(self.python, "scale-loadgen",
                             dict(conn, clients=clients, locks=locks, threads=4, churn=2, open_threads=16,
                                  duration=self.duration, open_budget=60 if not self.quick else 20,
                                  lock_budget=90 if not self.quick else 20),
                             "scale-loadgen", d)
            while True:
                r = loadgen.recv(200)
                if "progress" not in r:
                    break
                say(f"scale: {r['progress']} clients open after {r['elapsed']:.1f} s")
            out["server_rss_connected"] = sproc.memory_info().rss
            say(f"scale: {r['connected']} clients connected; taking {locks:,} locks through them")
            loadgen.send("lock")
            r = loadgen.recv(200)
            out.update({k: r[k] for k in ("clients", "failures", "open_s", "locks", "lock_failures", "lock_s",
                                           "threads")})
            out["loadgen_rss"] = r["rss"]
            out["loadgen_rss_per_client"] = r["connected_rss"] / max(r["clients"], 1)
            out["server_rss_loaded"] = sproc.memory_info().rss
            out["server_threads"] = sproc.num_threads()
            say(f"scale: {r['clients']} clients, {r['locks']} locks held; probing latency under load")
            probe = Worker(self.python, "lock-client",
                           dict(conn, impl="ours", mode="loop", names=["probe"], timeout=10.0,
                                duration=self.duration, slices=self.slices), "scale-probe", d)
            probe.recv(60)
            cpu0 = sproc.cpu_times()
            go([loadgen, probe])
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
        say(f"seed: creating {venv} and installing pylocker=={SEED_VERSION}")
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
        port = free_port()
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
        stop_pid(proc)
        return None, 0, "redis-server did not answer on loopback within 10 s"



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

