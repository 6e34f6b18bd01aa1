"""One run of the suite: the selected peers in turn, then ``messages.json`` and ``messages.md``."""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from harness import close_meta, machine_meta, write_results

from .common import FULL_COUNT, PAYLOAD, QUICK_COUNT, QUIET
from .process import BenchError, Worker, say, stop_pid
from .report import evaluate_goals, render_markdown
from .servers import Started, start_nats, start_redis
from .suite import Suite


def _meta(args: argparse.Namespace, count: int) -> dict[str, Any]:
    return {**machine_meta(Path(args.code).resolve(), args.quick), "count": count, "payload": len(PAYLOAD),
            "quiet": QUIET}


def run(args: argparse.Namespace) -> int:
    """Measure the peers ``args.only`` selects and write ``messages.json`` and ``messages.md``."""
    only = args.only.split(",")
    count = args.count or (QUICK_COUNT if args.quick else FULL_COUNT)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="pylocker-msgbench-"))
    suite = Suite(count, workdir, str(Path(args.code).resolve()), [w for w in args.streams.split(",") if w])
    res: dict[str, Any] = {"meta": _meta(args, count), "peers": {}}
    started = time.monotonic()
    daemons: list[subprocess.Popen[bytes]] = []

    def peer(name: str, daemon: Callable[[Path], Started] | None = None) -> None:
        if name not in only:
            res["peers"][name] = {"skipped": "not selected (--only)"}
            return
        t = time.monotonic()
        entry: dict[str, Any] = {}
        try:
            conn: dict[str, Any] = {}
            if daemon is not None:
                proc, port, note = daemon(workdir)
                if proc is None:
                    say(f"{name} skipped: {note}")
                    res["peers"][name] = {"skipped": note}
                    return
                daemons.append(proc)
                conn, entry["setup"] = {"port": port}, note
            entry["streams"] = suite.run_peer(name, conn)
        except (BenchError, OSError, subprocess.SubprocessError) as exc:
            say(f"{name} failed: {exc}")
            entry["error"] = str(exc).splitlines()[0]
            entry["error_detail"] = str(exc)
        finally:
            Worker.stop_all()
            for proc in daemons:
                stop_pid(proc)
            daemons.clear()
        entry["seconds"] = round(time.monotonic() - t, 1)
        res["peers"][name] = entry
        say(f"{name} done in {entry['seconds']} s")

    try:
        peer("floor")
        peer("pylocker")
        peer("nats", start_nats)
        peer("redis", start_redis)
    finally:
        Worker.stop_all()
        for proc in daemons:
            stop_pid(proc)
    close_meta(res, Path(args.code).resolve(), started)
    goals = evaluate_goals(res)
    res["goals"] = goals
    return write_results(res, render_markdown(res, goals), out_dir, "messages", workdir, args.keep)
