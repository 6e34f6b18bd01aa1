"""Benchmark the legacy file Locker against filelock, portalocker, fasteners and pylocker 3.1.0.

Usage: ``python benchmarks/bench_legacy.py [--quick]``. Prints a Markdown table and writes
``benchmarks/results/legacy.json``. Measured, each in its own worker process:

* uncontended acquire+release per second, one process;
* handover: median time from a release to the return of the acquire of a waiter blocked in another
  process (CLOCK_MONOTONIC is shared by processes), and the CPU share that waiter used while blocked;
* contention: 4 processes looping acquire / increment a counter file / release: throughput, fairness
  (Jain's index of the per-process counts, 1.0 = equal), overlaps (an O_EXCL witness file made
  inside the critical section already existed) and lost updates (counter != sum of increments);
* stress: the same with 8 processes for 20 s (3 s with ``--quick``), for ours and pylocker 3.1.0.

pylocker 3.1.0 runs from its own virtual environment in a temp dir (``pip install pylocker==3.1.0``,
from ``--old-wheels DIR`` when given or when /tmp/dl holds the wheel), so it never shadows this
checkout. Peers that cannot be imported are reported as skipped. Everything runs in a temp dir;
every process started is stopped (its process group is killed on timeout).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "legacy.json"
IMPLS = ["ours", "filelock", "portalocker", "fasteners", "pylocker-3.1.0"]
LABELS = {
    "ours": "pylocker.legacy.Locker (this)",
    "filelock": "filelock.FileLock",
    "portalocker": "portalocker.Lock",
    "fasteners": "fasteners.InterProcessLock",
    "pylocker-3.1.0": "pylocker 3.1.0 Locker",
}
LONG = 600.0
DEFAULT_WHEELS = "/tmp/dl"  # noqa: S108 - only read: where this machine keeps the 3.1.0 wheel


# --------------------------------------------------------------------------------------------------
# worker side: one implementation, one task, result as a JSON line on stdout


def _make(impl: str, path: str, ident: int) -> tuple[Callable[[], object], Callable[[], object], str]:
    """Return (acquire, release, version) for ``impl`` on lock file ``path``; blocking acquire."""
    if impl == "ours":
        sys.path.insert(0, str(ROOT))
        from pylocker.legacy import Locker

        locker = Locker(None, f"pass-{ident}", lockPath=path, timeout=LONG)

        def acquire() -> None:
            ok, code = locker.acquire_lock()
            if not ok:
                raise RuntimeError(f"acquire failed: {code}")

        return acquire, locker.release_lock, "checkout"
    if impl == "pylocker-3.1.0":
        import pylocker  # the old release, from its own venv

        old = pylocker.Locker(None, f"pass-{ident}", lockPath=path, timeout=LONG)

        def old_acquire() -> None:
            ok, code = old.acquire_lock()
            if not ok:
                raise RuntimeError(f"acquire failed: {code}")

        return old_acquire, old.release_lock, pylocker.__version__
    if impl == "filelock":
        import filelock

        lock = filelock.FileLock(path)
        return lock.acquire, lock.release, filelock.__version__
    if impl == "portalocker":
        import portalocker

        plock = portalocker.Lock(path, timeout=LONG)
        return plock.acquire, plock.release, getattr(portalocker, "__version__", "?")
    if impl == "fasteners":
        from importlib.metadata import version

        import fasteners

        flock = fasteners.InterProcessLock(path)
        return flock.acquire, flock.release, version("fasteners")
    raise ValueError(f"unknown implementation {impl!r}")


def task_uncontended(impl: str, tmp: str, duration: float, repeats: int) -> dict[str, Any]:
    acquire, release, version = _make(impl, os.path.join(tmp, "u.lock"), 0)
    rates = []
    for _ in range(repeats):
        n, start = 0, time.perf_counter()
        while True:
            for _ in range(20):
                acquire()
                release()
            n += 20
            elapsed = time.perf_counter() - start
            if elapsed >= duration:
                break
        rates.append(n / elapsed)
    return {"ops_per_s": statistics.median(rates), "runs": rates, "version": version}


def _handover_child(impl: str, path: str, go: Any, ready: Any, results: Any, rounds: int) -> None:
    acquire, release, _ = _make(impl, path, 1)
    for _ in range(rounds):
        if not go.wait(LONG):
            return
        go.clear()
        ready.set()
        cpu0, wall0 = time.process_time(), time.monotonic()
        acquire()
        wall1 = time.monotonic()
        results.put((wall1, time.process_time() - cpu0, wall1 - wall0))
        release()


def task_handover(impl: str, tmp: str, rounds: int, settle: float, cpu_hold: float) -> dict[str, Any]:
    """Round 0 holds ``cpu_hold`` s (waiter CPU); the others ``settle`` s (handover latency)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    path = os.path.join(tmp, "h.lock")
    acquire, release, _ = _make(impl, path, 0)
    go, ready, results = ctx.Event(), ctx.Event(), ctx.Queue()
    child = ctx.Process(target=_handover_child, args=(impl, path, go, ready, results, rounds + 1))
    child.start()
    latencies, cpu_share = [], 0.0
    try:
        for i in range(rounds + 1):
            acquire()
            go.set()
            if not ready.wait(LONG):
                raise RuntimeError("waiter did not start")
            ready.clear()
            time.sleep(cpu_hold if i == 0 else settle)  # let the waiter block
            released = time.monotonic()
            release()
            returned, cpu, wall = results.get(timeout=LONG)
            if i == 0:
                cpu_share = cpu / wall
            else:
                latencies.append(returned - released)
        child.join(LONG)
    finally:
        if child.is_alive() and child.pid is not None:
            os.kill(child.pid, signal.SIGKILL)
            child.join(10)
    latencies.sort()
    return {
        "handover_median_ms": statistics.median(latencies) * 1e3,
        "handover_p90_ms": latencies[int(0.9 * (len(latencies) - 1))] * 1e3,
        "handover_max_ms": latencies[-1] * 1e3,
        "waiter_cpu_share": cpu_share,
        "rounds": rounds,
    }


def _contend_child(
    impl: str, path: str, counter: str, marker: str, ident: int, duration: float, start: Any, results: Any
) -> None:
    acquire, release, _ = _make(impl, path, ident)
    done = overlaps = 0
    start.wait(LONG)
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        acquire()
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            fd, overlaps = -1, overlaps + 1
        with open(counter, "rb") as fh:
            value = int(fh.read() or b"0")
        with open(counter, "wb") as fh:
            fh.write(b"%d" % (value + 1))
        done += 1
        if fd >= 0:
            os.close(fd)
            os.unlink(marker)
        release()
    results.put((done, overlaps))


def task_contend(impl: str, tmp: str, procs: int, duration: float) -> dict[str, Any]:
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    path, counter, marker = (os.path.join(tmp, name) for name in ("c.lock", "counter", "inside"))
    with open(counter, "wb") as fh:
        fh.write(b"0")
    start, results = ctx.Barrier(procs), ctx.Queue()
    children = [
        ctx.Process(target=_contend_child, args=(impl, path, counter, marker, i, duration, start, results))
        for i in range(procs)
    ]
    for child in children:
        child.start()
    try:
        reports = [results.get(timeout=duration + 120) for _ in children]
        for child in children:
            child.join(LONG)
    finally:
        for child in children:
            if child.is_alive() and child.pid is not None:
                os.kill(child.pid, signal.SIGKILL)
                child.join(10)
    counts = [r[0] for r in reports]
    with open(counter, "rb") as fh:
        final = int(fh.read() or b"0")
    total = sum(counts)
    return {
        "procs": procs,
        "duration_s": duration,
        "ops_per_s": total / duration,
        "counts": counts,
        "jain": total**2 / (procs * sum(c * c for c in counts)) if total else 0.0,
        "min_max": min(counts) / max(counts) if max(counts) else 0.0,
        "overlaps": sum(r[1] for r in reports),
        "lost_updates": total - final,
    }


TASKS = {"uncontended": task_uncontended, "handover": task_handover, "contend": task_contend}


def worker_main(impl: str, task: str, args_json: str) -> None:
    try:
        result = TASKS[task](impl, **json.loads(args_json))
    except ImportError as err:
        result = {"skipped": f"not installed: {err}"}
    sys.stdout.write(json.dumps(result) + "\n")


# --------------------------------------------------------------------------------------------------
# driver side


def run_worker(python: str, impl: str, task: str, timeout: float, **kwargs: Any) -> dict[str, Any]:
    tmp = tempfile.mkdtemp(prefix=f"bench-legacy-{impl}-")
    kwargs["tmp"] = tmp
    cmd = [python, str(Path(__file__).resolve()), "--worker", impl, task, json.dumps(kwargs)]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the worker and the children it spawned
        proc.communicate()
        return {"error": f"timed out after {timeout:.0f} s"}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (err.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {proc.returncode}: {tail}"}
    return json.loads(lines[-1])  # type: ignore[no-any-return]


def old_pylocker_python(workdir: str, wheels: str | None) -> tuple[str | None, str]:
    """Create a venv with pylocker==3.1.0; return its python (or None) and a note."""
    venv = os.path.join(workdir, "pylocker-3.1.0-venv")
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, capture_output=True)
    python = os.path.join(venv, "bin", "python")
    cmd = [python, "-m", "pip", "install", "-q", "pylocker==3.1.0"]
    if wheels:
        cmd[4:4] = ["--find-links", wheels]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        return None, f"pip install pylocker==3.1.0 failed: {done.stderr.strip()[-200:]}"
    return python, "installed in " + venv


def fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render(results: dict[str, Any]) -> str:
    impls = results["impls"]
    base = impls.get("filelock", {}).get("uncontended", {}).get("ops_per_s")
    head = (
        "| lock | uncontended acq+rel/s | vs filelock | handover median ms | p90 ms | waiter CPU % "
        "| 4 procs ops/s | fairness (Jain) | min/max share | overlaps | lost updates |"
    )
    rows = [head, "|" + "---|" * 11]
    for name in IMPLS:
        if name not in impls:
            continue
        entry = impls[name]
        if "skipped" in entry:
            rows.append(f"| {LABELS[name]} | skipped: {entry['skipped']} |" + " |" * 9)
            continue
        unc, hand, con = (entry.get(k, {}) for k in ("uncontended", "handover", "contend"))
        rate = unc.get("ops_per_s")
        cpu = hand.get("waiter_cpu_share")
        ratio = f"{rate / base:.2f}x" if rate and base else "-"
        rows.append(
            f"| {LABELS[name]} | {fmt(rate, ',.0f')} | {ratio} "
            f"| {fmt(hand.get('handover_median_ms'), '.2f')} | {fmt(hand.get('handover_p90_ms'), '.2f')} "
            f"| {fmt(None if cpu is None else cpu * 100, '.1f')} "
            f"| {fmt(con.get('ops_per_s'), ',.0f')} | {fmt(con.get('jain'), '.3f')} "
            f"| {fmt(con.get('min_max'), '.2f')} | {fmt(con.get('overlaps'), 'd')} "
            f"| {fmt(con.get('lost_updates'), 'd')} |"
        )
        for key in ("uncontended", "handover", "contend"):
            if "error" in entry.get(key, {}):
                rows.append(f"|  ↳ {key} error: {entry[key]['error']} |" + " |" * 10)
    stress = results.get("stress", {})
    if stress:
        rows.append("")
        rows.append("| stress | processes | seconds | acquisitions | overlaps | lost updates | counts |")
        rows.append("|---|---|---|---|---|---|---|")
        for name, s in stress.items():
            if "counts" not in s:
                rows.append(f"| {LABELS[name]} | {s} |||||| ")
                continue
            rows.append(
                f"| {LABELS[name]} | {s['procs']} | {s['duration_s']:.0f} | {sum(s['counts']):,} "
                f"| {s['overlaps']} | {s['lost_updates']} | {s['counts']} |"
            )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (about a minute)")
    parser.add_argument(
        "--old-wheels",
        help="folder with the pylocker 3.1.0 wheel (pip --find-links; default $PYLOCKER_OLD_WHEELS)",
    )
    parser.add_argument("--only", nargs="*", choices=IMPLS, help="run only these implementations")
    args = parser.parse_args(argv)
    quick = args.quick
    wheels = args.old_wheels
    default_wheels = Path(os.environ.get("PYLOCKER_OLD_WHEELS", DEFAULT_WHEELS))
    if wheels is None and any(p.name.startswith("pylocker-3.1.0") for p in default_wheels.glob("*.whl")):
        wheels = str(default_wheels)
    unc = {"duration": 0.5 if quick else 2.0, "repeats": 1 if quick else 3}
    hand = {"rounds": 10 if quick else 40, "settle": 0.02, "cpu_hold": 1.0 if quick else 2.0}
    con = {"procs": 4, "duration": 2.0 if quick else 5.0}
    stress = {"procs": 8, "duration": 3.0 if quick else 20.0}

    workdir = tempfile.mkdtemp(prefix="bench-legacy-")
    results: dict[str, Any] = {
        "quick": quick,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "settings": {"uncontended": unc, "handover": hand, "contend": con, "stress": stress},
        "impls": {},
        "stress": {},
    }
    try:
        pythons: dict[str, str | None] = dict.fromkeys(IMPLS, sys.executable)
        if args.only is None or "pylocker-3.1.0" in args.only:
            old, note = old_pylocker_python(workdir, wheels)
            pythons["pylocker-3.1.0"] = old
            results["pylocker-3.1.0"] = note
        for name in args.only or IMPLS:
            python = pythons[name]
            if python is None:
                results["impls"][name] = {"skipped": results.get("pylocker-3.1.0", "not installed")}
                continue
            entry: dict[str, Any] = {}
            entry["uncontended"] = run_worker(python, name, "uncontended", 300, **unc)
            if "skipped" in entry["uncontended"]:
                results["impls"][name] = entry["uncontended"]
                continue
            entry["handover"] = run_worker(python, name, "handover", 900, **hand)
            entry["contend"] = run_worker(python, name, "contend", 300, **con)
            results["impls"][name] = entry
            sys.stderr.write(f"{name}: {json.dumps(entry)}\n")
        for name in ("ours", "pylocker-3.1.0"):
            python = pythons[name]
            if python is not None and (args.only is None or name in args.only):
                results["stress"][name] = run_worker(
                    python, name, "contend", stress["duration"] + 300, **stress
                )
                sys.stderr.write(f"stress {name}: {json.dumps(results['stress'][name])}\n")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    sys.stdout.write(render(results) + "\n")
    sys.stdout.write(f"\nJSON: {RESULTS}\n")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        worker_main(*sys.argv[2:])
    else:
        raise SystemExit(main())
