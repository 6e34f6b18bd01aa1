"""One run of the suite: the selected peers in turn, then the JSON, the table and the chart."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from harness import close_meta, machine_meta, write_results

from .process import BenchError, Worker, say, stop_pid
from .report import evaluate_goals, render_chart, render_markdown
from .suite import Suite


def _meta(args: argparse.Namespace, duration: float, block: float, slices: int) -> dict[str, Any]:
    return {**machine_meta(Path(args.code).resolve(), args.quick), "duration_s": duration, "block_s": block,
            "slices": slices}


def run(args: argparse.Namespace) -> int:
    """Measure the peers ``args.only`` selects and write ``locks.json``, ``locks.md``, ``locks.png``."""
    sys.path.insert(0, str(Path(args.code).resolve()))  # the checkout's pylocker, not an installed one
    only = set(args.only.split(","))
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="pylocker-bench-"))
    suite = Suite(args, workdir)
    res: dict[str, Any] = {"meta": _meta(args, suite.duration, suite.block, suite.slices)}
    started = time.monotonic()
    redis_proc: subprocess.Popen[bytes] | None = None

    def guarded(key: str, measure: Callable[[], dict[str, Any]]) -> None:
        if key not in only:
            res[key] = {"skipped": "not selected (--only)"}
            return
        t = time.monotonic()
        try:
            res[key] = measure()
        except (BenchError, OSError, subprocess.SubprocessError) as exc:
            say(f"{key} failed: {exc}")
            res[key] = {"error": str(exc)}
        finally:
            Worker.stop_all()
        res[key]["seconds"] = round(time.monotonic() - t, 1)
        say(f"{key} done in {res[key]['seconds']} s")

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
                stop_pid(redis_proc)
                redis_proc = None

        guarded("redis", redis_peer)
        guarded("scale", suite.run_scale)
    finally:
        Worker.stop_all()
        if redis_proc is not None:
            stop_pid(redis_proc)
    close_meta(res, Path(args.code).resolve(), started)
    goals = evaluate_goals(res)
    res["goals"] = goals
    res["chart_note"] = render_chart(res, goals, out_dir / "locks.png")
    return write_results(res, render_markdown(res, goals), out_dir, "locks", workdir, args.keep)

