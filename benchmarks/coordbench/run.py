"""One run: pylocker's figures, then kazoo's on a ZooKeeper of its own, then the JSON and the table."""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from harness import BenchError, close_meta, machine_meta, say, stop_pid, write_results

from . import zookeeper
from .common import TIMEOUT
from .report import checks, render_markdown
from .suite import Suite, Worker

KAZOO_TIMEOUT = 10.0  # kazoo's default session timeout: what the throughput clients use


def _meta(args: argparse.Namespace, suite: Suite) -> dict[str, Any]:
    return {**machine_meta(Path(args.code).resolve(), args.quick), "duration_s": suite.duration,
            "slices": suite.slices, "processes": suite.processes, "limit": suite.limit,
            "candidates": suite.candidates, "kills": suite.kills, "lease_s": suite.lease, "acquire_timeout_s": TIMEOUT}


def _guarded(name: str, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """One section's figures, or ``{"error": why}``: a failed section does not stop the run."""
    t = time.monotonic()
    try:
        out = measure()
    except (BenchError, OSError, subprocess.SubprocessError) as exc:
        say(f"{name} failed: {exc}")
        out = {"error": str(exc)}
    finally:
        Worker.stop_all()
    out["seconds"] = round(time.monotonic() - t, 1)
    say(f"{name} done in {out['seconds']} s")
    return out


def _ours(suite: Suite, code: str) -> dict[str, Any]:
    """pylocker: a serving locker (library default lease) for the throughput, another (``--lease``) for elections."""

    def with_server(lease: float | None, measure: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        d = suite.directory("ours-server")
        conn: dict[str, Any] = {"code": code, "server_file": str(d / "bench.serverlocker"), "lease": lease}
        server = Worker("server", dict(conn, impl="ours", name="bench-server"), "ours-server", d)
        try:
            server.recv(90)
            return measure(conn)
        finally:
            server.stop()

    return {
        "throughput": _guarded("pylocker throughput",
                               lambda: with_server(None, lambda conn: suite.throughput("ours", conn))),
        "election": _guarded("pylocker leader changes",
                             lambda: with_server(suite.lease, lambda conn: suite.election("ours", conn))),
    }


def _kazoo(suite: Suite) -> dict[str, Any]:
    d = suite.directory("zookeeper")
    proc, port, note = zookeeper.start(d, min_session_ms=int(suite.lease * 1000))
    if proc is None:
        say(f"kazoo skipped: {note}")
        return {"skipped": note}
    say(f"kazoo: {note}, port {port}")
    try:
        return {
            "setup": note,
            "throughput": _guarded("kazoo throughput", lambda: suite.throughput(
                "kazoo", {"port": port, "session_timeout": KAZOO_TIMEOUT})),
            "election": _guarded("kazoo leader changes", lambda: suite.election(
                "kazoo", {"port": port, "session_timeout": suite.lease})),
        }
    finally:
        stop_pid(proc)


def run(args: argparse.Namespace) -> int:
    """Measure the peers ``args.only`` selects; write ``coordination.json`` and ``coordination.md``."""
    code = str(Path(args.code).resolve())
    only = set(args.only.split(","))
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="pylocker-coordbench-"))
    suite = Suite(args, workdir)
    res: dict[str, Any] = {"meta": _meta(args, suite)}
    started = time.monotonic()
    try:
        res["ours"] = _ours(suite, code) if "ours" in only else {"skipped": "not selected (--only)"}
        res["kazoo"] = _kazoo(suite) if "kazoo" in only else {"skipped": "not selected (--only)"}
    finally:
        Worker.stop_all()
    close_meta(res, Path(code), started)
    res["checks"] = checks(res)
    return write_results(res, render_markdown(res), out_dir, "coordination", workdir, args.keep)
