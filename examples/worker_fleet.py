"""A fleet of worker processes: a group for membership, an election for a dispatcher, a semaphore for a GPU.

    python examples/worker_fleet.py

The main process serves (server file in a temp dir, loopback only) and spawns four
workers. Each worker joins the group "workers" with its pid and host, waits until the
whole fleet has joined, then campaigns once in the election "dispatcher": the
candidates queue (FIFO), so each leads one term in turn. A leader hands out a term of
jobs, round robin, to the other members (by message), then resigns. Every worker runs
the jobs it is given one at a time, each under ``semaphore("gpu", 2)``: at most two
workers use the "gpu" at once.

The main process only watches: it prints every membership change and every new
leader, collects a report of each job, and checks from the reported intervals (and
from what the serving locker said inside each slot) that no more than two workers
ever held the gpu together. Once every job is done it tells the workers to stop: they
leave the group and exit. It ends by itself (in 6 to 12 s on a busy 2-core machine;
after 15 s it gives up, and terminates what is left 3 s later), and stops every
process it started.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from typing import Any

from pylocker import LockTimeout, ServerLocker

PASSWORD = "worker-fleet example"  # noqa: S105 (an example; use a long random secret in real deployments)
FLEET = 4  # worker processes
GPU_SLOTS = 2  # semaphore("gpu", GPU_SLOTS)
JOBS_PER_TERM = 4  # jobs each leader hands out before it resigns
JOB_SECONDS = 0.4  # how long a job holds its gpu slot
DEADLINE = 15.0  # seconds: the main process stops waiting for reports then, done or not
GRACE = 3.0  # seconds the workers then have to leave and exit before they are terminated


def log(t0: float, who: str, text: str) -> None:
    print(f"[{time.time() - t0:5.2f}s] {who}: {text}", flush=True)  # noqa: T201 (the example's output)


def worker(label: str, server_file: str, main_name: str, t0: float) -> None:
    """One worker process: member, candidate, leader for one term, and user of the gpu."""
    L = ServerLocker(PASSWORD, serverFile=server_file, name=label, allowServing=False)
    members = L.group("workers")
    election = L.election("dispatcher")
    gpu = L.semaphore("gpu", GPU_SLOTS)

    def lead() -> None:  # on a thread of its own, while the main thread runs the jobs it is given
        try:
            token = election.campaign(timeout=max(0.0, waited - time.time()))  # waits in line (FIFO)
        except LockTimeout:
            return
        log(t0, label, f"leads (fencing token {token})")
        for number in range(JOBS_PER_TERM):
            fleet = members.members  # unique name -> info, as the serving locker sees it now
            others = sorted(name for name in fleet if name != L.uniqueName)
            target = others[number % len(others)]
            L.publish_message("job", receivers=[target], toSelf=False, payload=f"{label}/{number}")
            log(t0, label, f"hands job {label}/{number} to {fleet[target]['worker']}")
            time.sleep(0.1)
        election.resign()  # one term each: the next candidate in line leads
        log(t0, label, "resigns")

    members.join({"worker": label, "pid": os.getpid(), "host": socket.gethostname()})
    waited = t0 + DEADLINE + GRACE  # the main process terminates us then anyway
    while len(members.members) < FLEET and time.time() < waited:  # the whole fleet, before any leader
        time.sleep(0.05)
    threading.Thread(target=lead, name=f"{label}-leader", daemon=True).start()
    while time.time() < waited:  # one job at a time, until the main process says stop
        message = L.wait_message(timeout=0.5, pop=True)  # "job" or "stop", oldest first
        if message is None:
            continue
        if message["message"] == "stop":
            break
        with gpu.acquire(timeout=10) as slot:  # LockTimeout if no slot within 10 s
            start = time.time()
            busy = len(gpu.info().holders)  # slots taken as the serving locker sees them, ours included
            log(t0, label, f"runs job {message['payload']} on the gpu ({busy}/{GPU_SLOTS} slots taken, "
                           f"token {slot.token})")
            time.sleep(JOB_SECONDS)
            end = time.time()
        L.publish_message("done", receivers=[main_name], toSelf=False,
                          payload={"job": message["payload"], "worker": label, "start": start, "end": end,
                                   "busy": busy})
    members.leave()
    members.close()
    election.close()  # resigns too, had it still led
    L.stop()


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    peak = now = 0
    for _, step in edges:
        now += step
        peak = max(peak, now)
    return peak


def main() -> int:
    t0 = time.time()
    folder = tempfile.mkdtemp(prefix="pylocker-fleet-")
    server_file = os.path.join(folder, "fleet.serverlocker")
    # Leaderships, memberships and slots are locks: the serving locker's maxLockTime
    # (default 120 s) would take them back too. None: they last as long as their lease.
    S = ServerLocker(PASSWORD, serverFile=server_file, name="main", maxLockTime=None)
    context = multiprocessing.get_context("spawn")  # fresh interpreters, as on every platform
    processes: list[multiprocessing.context.SpawnProcess] = []
    try:
        if not S.isServer:
            raise RuntimeError("the main process should serve its fresh server file")
        log(t0, "main", f"serving on {S.serverAddress}:{S.port}")
        known: dict[str, str] = {}  # unique name -> worker label, from the group's info
        leaders: list[str] = []

        def on_members(members: dict[str, Any]) -> None:  # on main's callback thread
            for name, info in members.items():
                if name not in known:
                    known[name] = info["worker"]
                    log(t0, "main", f"{info['worker']} joined (pid {info['pid']} on {info['host']})")
            for name in [n for n in known if n not in members]:
                log(t0, "main", f"{known.pop(name)} left; members: {sorted(known.values())}")

        def on_leader(leader: str | None) -> None:
            label = "nobody" if leader is None else known.get(leader, leader)
            if leader is not None:
                leaders.append(label)
            log(t0, "main", f"leader is now {label}")

        group = S.group("workers")
        group.on_change(on_members)
        election = S.election("dispatcher")
        election.on_change(on_leader)

        for index in range(FLEET):
            process = context.Process(target=worker, args=(f"worker-{index}", server_file, S.uniqueName, t0),
                                      name=f"worker-{index}")
            process.start()
            processes.append(process)

        expected = FLEET * JOBS_PER_TERM
        reports: list[dict[str, Any]] = []
        while len(reports) < expected and time.time() - t0 < DEADLINE:
            message = S.wait_message("done", timeout=0.5, pop=True)
            if message is not None:
                reports.append(message["payload"])
        log(t0, "main", f"{len(reports)}/{expected} jobs done: the workers may stop")
        S.publish_message("stop", toSelf=False)  # to every connected locker: the workers
        for process in processes:
            process.join(max(0.1, t0 + DEADLINE + GRACE - time.time()))
        time.sleep(0.2)  # the last leaves reach the callbacks

        peak = max_overlap([(r["start"], r["end"]) for r in reports])
        busiest = max((r["busy"] for r in reports), default=0)
        per_worker = {f"worker-{i}": sum(1 for r in reports if r["worker"] == f"worker-{i}") for i in range(FLEET)}
        log(t0, "main", f"jobs per worker: {per_worker}")
        log(t0, "main", f"leaders in turn: {leaders}")
        log(t0, "main", f"gpu: at most {peak} workers at once by the reported intervals, at most {busiest} "
                        f"slots taken as the serving locker saw them (limit {GPU_SLOTS})")
        log(t0, "main", f"members left: {group.members}")
        ok = (len(reports) == expected and peak <= GPU_SLOTS and busiest <= GPU_SLOTS
              and all(p.exitcode == 0 for p in processes))
        log(t0, "main", "OK" if ok else "FAILED")
        group.close()
        election.close()
        return 0 if ok else 1
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join(5)
        S.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
