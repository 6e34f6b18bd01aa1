"""What both benchmark suites share on the orchestrator's side: worker processes and daemons, by PID.

A suite's ``Worker`` subclass names the script its workers run (``entry``); everything
else (JSON lines in and out, logs, stopping by PID, the measured tree's revision) is here.
Standard library only.
"""

from __future__ import annotations

import json
import os
import platform
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, ClassVar


class BenchError(Exception):
    """A worker failed, or did not answer in time."""


def say(message: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


class Worker:
    """A worker process: JSON lines in and out, stderr to a log file, stopped by PID.

    ``entry``: the suite's script, run as ``python entry --worker ROLE --spec JSON``.
    """

    live: ClassVar[list[Worker]] = []

    def __init__(self, entry: Path, role: str, spec: dict[str, Any], label: str, logdir: Path,
                 python: str = sys.executable) -> None:
        self.label = label
        self.log_path = logdir / f"{label}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115  (closed in stop)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("PYTHONPATH", None)
        self.proc = subprocess.Popen(
            [python, str(entry), "--worker", role, "--spec", json.dumps(spec)],
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

    def recv(self, timeout: float, key: str | None = None) -> dict[str, Any]:
        """The next JSON line (with ``key``, if given: other lines are skipped)."""
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
                message: dict[str, Any] = json.loads(line)
            except ValueError:
                continue  # a stray line (a library printing): not ours
            if "error" in message:
                raise BenchError(f"{self.label}: {message['error']}{self._tail()}")
            if key is None or key in message:
                return message

    def _tail(self) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()[-6:]
        except OSError:
            return ""
        return ("\n    " + "\n    ".join(text)) if text else ""

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signum)

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGCONT)  # a frozen worker cannot read "stop"
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


# ---------------------------------------------------------------- the workers' side
def emit(obj: dict[str, Any]) -> None:
    """One JSON line to the orchestrator."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def next_command() -> list[str]:
    """The orchestrator's next line, split into words ("stop" at EOF: the orchestrator is gone)."""
    line = sys.stdin.readline()
    return line.split() or ["stop"]


# ----------------------------------------------------------- the orchestrator's side
def go(workers: list[Worker], lead: float = 0.3) -> None:
    """Tell ``workers`` to start together, ``lead`` seconds from now (on the shared monotonic clock)."""
    t0 = time.monotonic() + lead
    for w in workers:
        w.send(f"go {t0!r}")


def revision(code: Path) -> str:
    """The measured tree's commit, and whether pylocker/ differs from it (merges land under a running suite)."""

    def git(*words: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(code), *words], capture_output=True, text=True,
                                  check=False, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    commit = git("rev-parse", "--short", "HEAD") if (code / ".git").exists() else ""
    if not commit:
        return f"{code} (not a git checkout)"
    if git("status", "--porcelain", "--", "pylocker"):
        return f"{commit} plus uncommitted changes in pylocker/"
    return commit


def machine_meta(code: Path, quick: bool) -> dict[str, Any]:
    """When, on what machine, with which versions, of which tree: every suite's ``meta`` starts so."""
    import zmq

    cpu_model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"when": time.strftime("%Y-%m-%d %H:%M"), "quick": quick, "cpus": os.cpu_count(),
            "cpu_model": cpu_model, "python": platform.python_version(), "pyzmq": zmq.__version__,
            "libzmq": zmq.zmq_version(), "git": revision(code),
            "loadavg_before": "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())}


class Slices:
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


def close_meta(res: dict[str, Any], code: Path, started: float) -> None:
    """Stamp the run's end on ``res["meta"]``; say so if the measured tree changed under the run."""
    meta = res["meta"]
    meta["loadavg_after"] = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    meta["total_s"] = round(time.monotonic() - started, 1)
    after = revision(code)
    if after != meta["git"]:  # its figures mix two versions
        meta["git"] += f" at the start, {after} at the end (the tree changed during the run)"
        say(f"pylocker changed during the run: {meta['git']}")


def write_results(res: dict[str, Any], markdown: str, out_dir: Path, stem: str, workdir: Path, keep: bool) -> int:
    """Write ``stem``.json and ``stem``.md, drop (or keep) the workers' logs, print the table."""
    (out_dir / f"{stem}.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    table = out_dir / f"{stem}.md"
    table.write_text(markdown)
    if keep:
        say(f"worker logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    say(f"done in {res['meta']['total_s']} s: {table}")
    sys.stdout.write(markdown)
    return 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_pid(proc: subprocess.Popen[bytes]) -> None:
    """Stop a daemon this suite started (SIGTERM, then SIGKILL), by its PID."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)
