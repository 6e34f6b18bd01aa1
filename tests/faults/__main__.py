"""``python -m tests.faults --minutes N [--seed S] [--lease L] [--clients C] [--servers K] [--zookeeper]``
(from the repo root)."""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator

from tests.faults.runner import ScheduleResult, Summary, run_for


def _line(result: ScheduleResult) -> str:
    report = result.report
    faults = sum(result.injected.values())
    recovery = "n/a" if result.recovery is None else f"{result.recovery:.1f}s"
    return (f"seed {result.seed}: {faults} faults, {report.grants} grants ({report.believed_holds} checked valid), "
            f"writes {report.writes_accepted} accepted / {report.writes_rejected} rejected, "
            f"lost {dict(report.lost)}, fresh acquire {recovery}, violations {len(report.violations)}")


def _summary(summary: Summary, elapsed: float) -> list[str]:
    lines = [f"schedules run: {len(summary.results)} in {elapsed:.0f}s",
             "faults injected: " + ", ".join(f"{k}={v}" for k, v in sorted(summary.injected.items())),
             f"grants: {summary.total('grants')}",
             f"writes accepted: {summary.total('writes_accepted')}, rejected: {summary.total('writes_rejected')}, "
             f"reads rejected: {summary.total('reads_rejected')}",
             f"violations: {len(summary.violations)}"]
    lines += [f"  {v}" for v in summary.violations]
    for result in summary.results:
        issues = result.report.errors + result.crashed
        if issues:
            lines.append(f"  seed {result.seed} worker errors: {issues[:5]}")
        if result.report.violations or issues:
            lines.append(f"  seed {result.seed} files kept in {result.directory}; nemesis log:")
            lines += [f"    {entry}" for entry in result.nemesis_log]
    return lines


@contextlib.contextmanager
def _zookeeper(wanted: bool) -> Iterator[str | None]:
    """``host:port`` of a ZooKeeper started for the run (stopped after it), or None."""
    if not wanted:
        yield None
        return
    from tests.zkserver import start_zookeeper

    with tempfile.TemporaryDirectory(prefix="pylocker-faults-zk-") as workdir:
        zookeeper = start_zookeeper(workdir, tick_ms=100)
        try:
            yield zookeeper.hosts
        finally:
            zookeeper.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__)
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100_000)
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--servers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each schedule")
    parser.add_argument("--zookeeper", action="store_true",
                        help="elect through a ZooKeeper started for the run (4 s sessions), not a server file")
    args = parser.parse_args(argv)
    started = time.monotonic()
    print(f"fault injection: seed {args.seed}, lease {args.lease}s, {args.clients} clients, "  # noqa: T201 (CLI output)
          f"{args.servers} candidates, {args.minutes} min{', through ZooKeeper' if args.zookeeper else ''}",
          flush=True)
    with _zookeeper(args.zookeeper) as zookeeper:
        summary = run_for(args.minutes, args.seed, args.lease, args.clients, args.servers, args.seconds,
                          on_result=lambda result: print(_line(result), flush=True),  # noqa: T201 (CLI output)
                          zookeeper=zookeeper)
    for line in _summary(summary, time.monotonic() - started):
        print(line)  # noqa: T201 (CLI output)
    failed = bool(summary.violations) or any(r.report.errors or r.crashed for r in summary.results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
