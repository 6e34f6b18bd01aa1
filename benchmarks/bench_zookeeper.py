#!/usr/bin/env python3
"""ZooKeeper election benchmark: what the backend costs the lock path, and failover across machines.

Usage (from the repository root, as root for the namespaces; never run by CI)::

    python benchmarks/bench_zookeeper.py [--quick] [--rounds 5] [--out benchmarks/results]

Writes ``zookeeper.json`` and ``zookeeper.md``. In one run:

* **lock path**: one client process's acquire+release loop on one name against a
  ``pylocker serve`` process elected through a server file, then through a
  ZooKeeper on loopback; the two interleaved, ``--rounds`` times each (median, ratio).
  The election is not on the lock path, so the ratio should be 1 within noise.
* **failover across machines**: network namespaces on a bridge (tests/netns.py),
  ZooKeeper in the hub, three candidates on three machines, a client on a fourth;
  the serving candidate is SIGKILLed; from the kill to the next server's
  fingerprint, and to the client's first new grant (re-claim grace included),
  median of ``--rounds`` fresh fleets. Every round's fenced-register history is
  checked. Skipped, saying why, without root, iproute2 or ZooKeeper.
* **silent cut**: the same fleets with the default 5 s lease (``--lease``), but the serving
  machine's cable is pulled instead: its links go silent (no reset), so only the
  election can tell the client early. From the cut to the client's first grant by
  the next epoch, and how many of the client's locks lapsed meanwhile.

Every process is started here, stopped by PID; namespaces are removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for entry in (str(REPO), str(REPO / "tests"), str(HERE)):
    if entry not in sys.path:
        sys.path.insert(0, entry)

from harness import close_meta, machine_meta, say, write_results  # noqa: E402
from netns import netns_unavailable  # noqa: E402
from zkserver import ZooKeeperUnavailable, start_zookeeper, zookeeper_unavailable  # noqa: E402

from pylocker import ServerLocker  # noqa: E402
from tests.faults.checker import load_history  # noqa: E402

PASSWORD = "bench-zookeeper"
SESSION = 4.0
DEFAULT_LEASE = 5.0  # the library's default: with a 4 s session the next server comes before it lapses


def serve(server_file: str, workdir: Path) -> subprocess.Popen[str]:
    """A ``pylocker serve`` process for ``server_file``, once it says it serves."""
    env = {**os.environ, "PYLOCKER_PASSWORD": PASSWORD, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-m", "pylocker", "serve", "--server-file", server_file,
                                "--port", "0", "--max-lock-time", "0"], env=env, cwd=workdir,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("serving on"):
        process.kill()
        raise RuntimeError(f"pylocker serve did not serve {server_file}: {line!r}")
    return process


def lock_loop(server_file: str, seconds: float) -> dict[str, float]:
    """Acquire+release pairs per second of one client, and the median pair's latency."""
    locker = ServerLocker(PASSWORD, serverFile=server_file, port=0, allowServing=False, receive_messages=False)
    try:
        if not locker.isClient:
            raise RuntimeError(f"no serving locker found through {server_file}")
        latencies = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.perf_counter()
            ok, lock_id = locker.acquire_lock("bench", timeout=5)
            if not ok:
                raise RuntimeError(f"acquire failed: {lock_id}")
            locker.release_lock(lock_id)
            latencies.append(time.perf_counter() - started)
        return {"ops_per_s": len(latencies) / seconds, "p50_us": statistics.median(latencies) * 1e6}
    finally:
        locker.stop()


def lock_path(rounds: int, seconds: float, workdir: Path) -> dict[str, Any]:
    """The same loop through a server file and through ZooKeeper, interleaved."""
    try:
        zookeeper = start_zookeeper(workdir / "zookeeper")
    except ZooKeeperUnavailable as exc:
        return {"skipped": exc.reason}
    results: dict[str, list[dict[str, float]]] = {"file": [], "zookeeper": []}
    try:
        for index in range(rounds):
            for backend in ("file", "zookeeper"):
                server_file = (str(workdir / f"server-{index}") if backend == "file" else
                               f"zookeeper://{zookeeper.hosts}/pylocker/bench-{index}?session_timeout=10")
                process = serve(server_file, workdir)
                try:
                    results[backend].append(lock_loop(server_file, seconds))
                finally:
                    process.send_signal(signal.SIGTERM)
                    process.wait(20)
                say(f"lock path, {backend}, round {index + 1}: {results[backend][-1]['ops_per_s']:.0f}/s")
    finally:
        zookeeper.stop()
    medians = {k: statistics.median(r["ops_per_s"] for r in v) for k, v in results.items()}
    return {"rounds": results, "median_ops_per_s": medians, "ratio": medians["zookeeper"] / medians["file"],
            "p50_us": {k: statistics.median(r["p50_us"] for r in v) for k, v in results.items()}}


def failover(rounds: int, workdir: Path) -> dict[str, Any]:
    """kill -9 of the serving candidate, across namespaces: to the next server, and to the first new grant."""
    reason = netns_unavailable() or zookeeper_unavailable()
    if reason is not None:
        return {"skipped": reason}
    from zkfleet import ZooKeeperFleet

    elected, granted, violations = [], [], 0
    for index in range(rounds):
        fleet = ZooKeeperFleet(str(workdir / f"fleet-{index}"), candidates=3, session=SESSION)
        try:
            serving = fleet.start(clients=1)
            killed_at = time.monotonic()
            fleet.cluster.signal(serving, signal.SIGKILL)
            if fleet.next_server(serving, SESSION + 10) is None:
                raise RuntimeError("no new server after the kill")
            first = fleet.first_grant_after(killed_at, 30, epoch=fleet.serving_epoch)
            if first is None:
                raise RuntimeError("no grant after the failover")
            elected.append(fleet.serving_since - killed_at)
            granted.append(first - killed_at)
            violations += len(fleet.finish().violations)
        finally:
            fleet.close()
        say(f"failover round {index + 1}: new server after {elected[-1]:.2f} s, first grant after {granted[-1]:.2f} s")
    return {"session_timeout": SESSION, "new_server_s": elected, "first_grant_s": granted,
            "median_new_server_s": statistics.median(elected), "median_first_grant_s": statistics.median(granted),
            "violations": violations}


def silent_cut(rounds: int, workdir: Path, lease: float = DEFAULT_LEASE) -> dict[str, Any]:
    """The serving machine's cable pulled: from the cut to the client's first grant by the next epoch."""
    reason = netns_unavailable() or zookeeper_unavailable()
    if reason is not None:
        return {"skipped": reason}
    from zkfleet import ZooKeeperFleet

    granted, lapses, violations = [], [], 0
    for index in range(rounds):
        fleet = ZooKeeperFleet(str(workdir / f"cut-{index}"), candidates=3, session=SESSION, lease=lease)
        try:
            serving = fleet.start(clients=1)
            cut_at = time.monotonic()
            fleet.machines.cut(fleet.machine_of(serving))
            if fleet.next_server(serving, SESSION + 10) is None:
                raise RuntimeError("no new server after the cut")
            first = fleet.first_grant_after(cut_at, 30, epoch=fleet.serving_epoch)
            if first is None:
                raise RuntimeError("no grant after the cut")
            granted.append(first - cut_at)
            lapses.append(sum(1 for path in fleet.cluster.history_paths() for event in load_history(path)
                              if event["ev"] == "lost" and event["t"] > cut_at))
            violations += len(fleet.finish().violations)
        finally:
            fleet.close()
        say(f"silent cut round {index + 1}: first grant after {granted[-1]:.2f} s, {lapses[-1]} locks lost")
    return {"session_timeout": SESSION, "lease": lease, "first_grant_s": granted,
            "median_first_grant_s": statistics.median(granted), "locks_lost": lapses, "violations": violations}


def markdown(res: dict[str, Any]) -> str:
    lines = [f"# ZooKeeper election ({res['meta']['when']}, {res['meta']['git']})", ""]
    path = res["lock_path"]
    if "skipped" in path:
        lines.append(f"Lock path: skipped ({path['skipped']})")
    else:
        lines += ["| lock path (1 client, acquire+release) | server file | ZooKeeper | ratio |", "|---|---|---|---|",
                  f"| pairs/s (median of {len(path['rounds']['file'])}) | {path['median_ops_per_s']['file']:,.0f} "
                  f"| {path['median_ops_per_s']['zookeeper']:,.0f} | {path['ratio']:.2f} |",
                  f"| pair p50 (µs) | {path['p50_us']['file']:.0f} | {path['p50_us']['zookeeper']:.0f} | |"]
    lines.append("")
    fail = res["failover"]
    if "skipped" in fail:
        lines.append(f"Failover across namespaces: skipped ({fail['skipped']})")
    else:
        lines += [f"Failover across namespaces, kill -9 of the serving candidate, session timeout "
                  f"{fail['session_timeout']:g} s, {len(fail['new_server_s'])} fresh fleets:", "",
                  "| | median | all |", "|---|---|---|",
                  f"| kill -> new server | {fail['median_new_server_s']:.2f} s | "
                  + ", ".join(f"{v:.2f}" for v in fail["new_server_s"]) + " |",
                  f"| kill -> first new grant | {fail['median_first_grant_s']:.2f} s | "
                  + ", ".join(f"{v:.2f}" for v in fail["first_grant_s"]) + " |",
                  f"| fenced-register violations | {fail['violations']} | |"]
    cut = res.get("silent_cut")
    if cut is not None and "skipped" in cut:
        lines += ["", f"Silent cut: skipped ({cut['skipped']})"]
    elif cut is not None:
        lines += ["", f"Silent cut of the serving machine's cable, lease {cut['lease']:g} s, session timeout "
                  f"{cut['session_timeout']:g} s, {len(cut['first_grant_s'])} fresh fleets:", "",
                  "| | median | all |", "|---|---|---|",
                  f"| cut -> first grant by the next epoch | {cut['median_first_grant_s']:.2f} s | "
                  + ", ".join(f"{v:.2f}" for v in cut["first_grant_s"]) + " |",
                  f"| client locks lost (lease lapsed) | {sum(cut['locks_lost'])} | "
                  + ", ".join(str(v) for v in cut["locks_lost"]) + " |",
                  f"| fenced-register violations | {cut['violations']} | |"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of 1 s")
    parser.add_argument("--rounds", type=int, default=0, help="rounds of each figure (default 5, --quick 3)")
    parser.add_argument("--seconds", type=float, default=0.0, help="seconds per lock-path round (default 3)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--keep", action="store_true", help="keep the temp dir with every log")
    parser.add_argument("--lease", type=float, default=DEFAULT_LEASE, help="the silent cut's lease (default 5 s)")
    parser.add_argument("--only", default="lock_path,failover,silent_cut",
                        help="comma-separated figures to run (default: all three)")
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 5)
    seconds = args.seconds or (1.0 if args.quick else 3.0)
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="pylocker-bench-zk-"))
    res: dict[str, Any] = {"meta": {**machine_meta(REPO, args.quick), "rounds": rounds, "seconds": seconds}}
    only = set(args.only.split(","))
    skipped = {"skipped": "not asked for (--only)"}
    res["lock_path"] = lock_path(rounds, seconds, workdir) if "lock_path" in only else skipped
    res["failover"] = failover(rounds, workdir) if "failover" in only else skipped
    res["silent_cut"] = silent_cut(rounds, workdir, args.lease) if "silent_cut" in only else skipped
    close_meta(res, REPO, started)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return write_results(json.loads(json.dumps(res)), markdown(res), out, "zookeeper", workdir, args.keep)


if __name__ == "__main__":
    sys.exit(main())
