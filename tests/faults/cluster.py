"""The processes of one schedule: server candidates behind proxies, and clients; started and stopped here.

Every process is a child started by this module and known by its ``Popen``: only
those PIDs are ever signalled. Stopping is cooperative (a stop file), then -9 for
whatever does not exit in time.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from pylocker.election import ElectionBackend, backend_for
from pylocker.errors import ServerFileError
from tests.faults.proxy import Proxy

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port() -> int:
    """A loopback port free right now (a small race with other programs is accepted)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Worker:
    name: str
    role: str
    process: subprocess.Popen[bytes]
    proxy: Proxy | None = None
    stopped: bool = False  # SIGSTOPped by the nemesis and not yet continued

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


@dataclass
class Cluster:
    """Candidates and clients of one run, sharing ``directory`` (server file, register, histories)."""

    directory: str
    lease: float
    connect_timeout: float = 20.0
    election_url: str | None = None  # a zookeeper:// URL; None: a server file in ``directory``
    workers: list[Worker] = field(default_factory=list)
    _count: int = 0
    _election: ElectionBackend | None = None

    @property
    def server_file(self) -> str:
        return self.election_url or os.path.join(self.directory, "server")

    @property
    def register_path(self) -> str:
        return os.path.join(self.directory, "register.log")

    def history_paths(self) -> list[str]:
        return [os.path.join(self.directory, n) for n in sorted(os.listdir(self.directory)) if n.endswith(".hist")]

    def _stop_file(self, role: str) -> str:
        return os.path.join(self.directory, f"stop-{role}")

    def _spawn(self, role: str, extra: list[str], proxy: Proxy | None = None, server_file: str | None = None,
               prefix: Sequence[str] = ()) -> Worker:
        self._count += 1
        name = f"{role}{self._count}"
        command = [*prefix, sys.executable, "-m", "tests.faults.worker", role, "--name", name,
                   "--server-file", server_file or self.server_file, "--stop-file", self._stop_file(role),
                   "--lease", str(self.lease), "--connect-timeout", str(self.connect_timeout), *extra]
        log = open(os.path.join(self.directory, f"{name}.log"), "wb")  # noqa: SIM115 (the child owns it)
        try:
            process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
        worker = Worker(name, role, process, proxy)
        self.workers.append(worker)
        return worker

    def add_candidate(self, server_file: str | None = None) -> Worker:
        """A locker allowed to serve, listening on a free port, advertising its own proxy's port.

        ``server_file``: this candidate's own way to the election (a URL through a proxy).
        """
        listen = free_port()
        proxy = Proxy(listen)
        try:
            return self._spawn("candidate", ["--listen-port", str(listen), "--advertise-port", str(proxy.port)],
                               proxy, server_file)
        except BaseException:
            proxy.stop()
            raise

    def add_machine_candidate(self, prefix: Sequence[str], address: str) -> Worker:
        """A candidate run by ``prefix`` (another network namespace), listening on ``address`` (no proxy)."""
        return self._spawn("candidate", ["--listen-address", address, "--listen-port", "0"], prefix=prefix)

    def add_client(self, prefix: Sequence[str] = ()) -> Worker:
        history = os.path.join(self.directory, f"client{self._count + 1}.hist")
        return self._spawn("client", ["--history", history, "--register", self.register_path], prefix=prefix)

    def live(self, role: str) -> list[Worker]:
        return [w for w in self.workers if w.role == role and w.alive]

    def serving(self) -> Worker | None:
        """The live candidate named in the server file (or the ZooKeeper election), if any."""
        if self._election is None:
            self._election = backend_for(self.server_file)
        try:
            fingerprint = self._election.read()
        except (ServerFileError, OSError):
            return None
        if fingerprint is None:
            return None
        return next((w for w in self.live("candidate") if w.pid == fingerprint.pid), None)

    def wait_serving(self, timeout: float) -> Worker | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            worker = self.serving()
            if worker is not None:
                return worker
            time.sleep(0.05)  # polling a file another process writes: nothing to wait on
        return None

    # ------------------------------------------------------------ signals
    def signal(self, worker: Worker, sig: int) -> bool:
        """Send ``sig`` to a worker this cluster started (and only if it still runs)."""
        if worker not in self.workers or not worker.alive:
            return False
        os.kill(worker.pid, sig)
        if sig == signal.SIGSTOP:
            worker.stopped = True
        elif sig in (signal.SIGCONT, signal.SIGKILL):
            worker.stopped = False
        if sig == signal.SIGKILL:
            worker.process.wait(10)
            if worker.proxy is not None:
                worker.proxy.stop()
        if self._election is not None:
            self._election.close()
        return True

    def heal(self) -> None:
        """Continue every stopped worker and heal every proxy."""
        for worker in self.workers:
            if worker.stopped:
                self.signal(worker, signal.SIGCONT)
            if worker.proxy is not None and worker.alive:
                worker.proxy.heal()

    def _dump_stacks(self, worker: Worker) -> None:
        """Where a worker that did not stop is stuck: its threads' stacks, if py-spy is installed."""
        spy = shutil.which("py-spy")
        if spy is None:
            return
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            dump = subprocess.run([spy, "dump", "--pid", str(worker.pid)], capture_output=True, text=True,
                                  timeout=20, check=False)
            with open(os.path.join(self.directory, f"{worker.name}.stacks"), "w", encoding="utf-8") as handle:
                handle.write(dump.stdout + dump.stderr)

    def stop_role(self, role: str, timeout: float) -> list[str]:
        """Ask every ``role`` worker to stop; -9 those still running after ``timeout``; names killed."""
        self.heal()
        open(self._stop_file(role), "w").close()
        deadline = time.monotonic() + timeout
        killed = []
        for worker in [w for w in self.workers if w.role == role]:
            try:
                worker.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                killed.append(worker.name)
                self._dump_stacks(worker)
                self.signal(worker, signal.SIGKILL)
        return killed

    def close(self) -> None:
        """Stop everything (used in ``finally``): continue, kill -9, reap, stop proxies."""
        for worker in self.workers:
            if worker.alive:
                if worker.stopped:
                    os.kill(worker.pid, signal.SIGCONT)
                worker.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.process.wait(10)
            if worker.proxy is not None:
                worker.proxy.stop()
        if self._election is not None:
            self._election.close()
