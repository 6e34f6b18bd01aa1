"""The ``pylocker`` command as a user runs it: real processes against a serving locker on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import PASSWORD, wait_for

from pylocker import ServerLocker
from pylocker.election import serverfile

pytestmark = pytest.mark.integration

ROOT = str(Path(__file__).resolve().parents[2])  # this checkout, whatever else is installed


def _env(password: str | None = PASSWORD) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("PYLOCKER_PASSWORD", None)
    if password is not None:
        env["PYLOCKER_PASSWORD"] = password
    return env


def _pylocker(*args: str) -> list[str]:
    return [sys.executable, "-m", "pylocker", *args]


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _run(args: list[str], password: str | None = PASSWORD, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=_env(password), capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[str]]]:
    """Background processes of a test; whatever is still running at the end is killed."""
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.communicate()


def _start(started: list[subprocess.Popen[str]], args: list[str], password: str | None = PASSWORD,
           stdin: Any = None) -> subprocess.Popen[str]:
    process = subprocess.Popen(args, env=_env(password), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               stdin=stdin)
    started.append(process)
    return process


# Read the counter, wait, write it back plus one: two of these at once would lose an increment.
# The token is appended under the lock, so the file's order is the grant order.
INCREMENT = """
import os, sys, time
counter, tokens = sys.argv[1], sys.argv[2]
with open(counter) as f:
    value = int(f.read() or 0)
time.sleep(0.1)
with open(counter, "w") as f:
    f.write(str(value + 1))
with open(tokens, "a") as f:
    f.write(os.environ["PYLOCKER_TOKEN"] + " " + os.environ["PYLOCKER_LOCK_ID"] + "\\n")
"""


def test_concurrent_lock_runs_never_overlap_and_tokens_grow(serving: ServerLocker, server_file: str,
                                                            tmp_path: Any) -> None:
    counter, tokens = str(tmp_path / "counter"), str(tmp_path / "tokens")
    Path(counter).write_text("0")
    codes: list[int] = []

    def runs(times: int) -> None:
        for _ in range(times):
            done = _run(_pylocker("lock", "x", "--server-file", server_file, "--",
                                  *_python(INCREMENT), counter, tokens))
            codes.append(done.returncode)
            assert done.returncode == 0, done.stderr

    threads = [threading.Thread(target=runs, args=(4,)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert codes == [0] * 8
    assert Path(counter).read_text() == "8"
    lines = [line.split() for line in Path(tokens).read_text().splitlines()]
    values = [int(token) for token, _ in lines]
    assert values == sorted(values)
    assert len(set(values)) == 8
    assert len({lock_id for _, lock_id in lines}) == 8


def test_exit_status_passes_through(serving: ServerLocker, server_file: str) -> None:
    lock = ("lock", "x", "--server-file", server_file, "--")
    assert _run(_pylocker(*lock, *_python("raise SystemExit(7)"))).returncode == 7
    killed = _run(_pylocker(*lock, *_python("import os, signal; os.kill(os.getpid(), signal.SIGTERM)")))
    assert killed.returncode == 128 + signal.SIGTERM
    missing = _run(_pylocker(*lock, "no-such-command-anywhere"))
    assert missing.returncode == 127
    assert "no-such-command-anywhere" in missing.stderr
    assert serving.lock_info("x").holders == []  # released every time


def test_a_timeout_exits_1_or_the_conflict_exit_code(serving: ServerLocker, server_file: str) -> None:
    with serving.lock("x"):
        plain = _run(_pylocker("lock", "x", "--timeout", "0.2", "--server-file", server_file, "--", "true"))
        chosen = _run(_pylocker("lock", "x", "y", "--timeout", "0.2", "--conflict-exit-code", "9",
                                "--server-file", server_file, "--", "true"))
    assert plain.returncode == 1
    assert "not granted within 0.2 s" in plain.stderr
    assert chosen.returncode == 9
    assert serving.lock_info("y").holders == []  # all or nothing: y was not kept either


def test_the_command_gets_its_fencing_token_and_lock_id(serving: ServerLocker, server_file: str) -> None:
    show = _python("import os; print(os.environ['PYLOCKER_TOKEN'], os.environ['PYLOCKER_LOCK_ID'])")
    with serving.lock("x") as mine:
        before = mine.token
    first = _run(_pylocker("lock", "x", "--server-file", server_file, "--", *show))
    second = _run(_pylocker("lock", "x", "--address", f"tcp://127.0.0.1:{serving.port}", "--", *show))
    assert first.returncode == second.returncode == 0
    (token1, lock_id1), (token2, lock_id2) = first.stdout.split(), second.stdout.split()
    assert before < int(token1) < int(token2)
    assert lock_id1 != lock_id2


def test_a_lock_lost_while_the_command_runs_stops_it(serving: ServerLocker, server_file: str,
                                                     tmp_path: Any) -> None:
    # The command and a child of its own ignore SIGTERM (noting it): SIGKILL comes after --kill-after.
    # The lock lasts long enough (under load too) for the command to set its handler first.
    serving.set_maximum_lock_time(2.0)
    marks = tmp_path / "marks"
    stubborn = f"""
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, lambda *_: open({str(marks)!r}, "a").write("TERM\\n"))
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
open({str(marks)!r}, "a").write(f"child {{child.pid}}\\n")
time.sleep(60)
"""
    started = time.monotonic()
    done = _run(_pylocker("lock", "x", "--kill-after", "0.5", "--server-file", server_file, "--",
                          *_python(stubborn)))
    assert done.returncode == 75, done.stderr
    assert time.monotonic() - started < 30
    assert "lost (maxLockTime)" in done.stderr
    lines = marks.read_text().splitlines()
    assert "TERM" in lines
    grandchild = int(next(line for line in lines if line.startswith("child")).split()[1])
    wait_for(lambda: not psutil.pid_exists(grandchild) or psutil.Process(grandchild).status() == "zombie")
    assert serving.lock_info("x").holders == []


def test_a_lost_lock_can_be_given_its_own_exit_code(serving: ServerLocker, server_file: str) -> None:
    serving.set_maximum_lock_time(0.5)
    done = _run(_pylocker("lock", "x", "--lost-exit-code", "42", "--server-file", server_file, "--",
                          *_python("import time; time.sleep(60)")))
    assert done.returncode == 42


def test_sigterm_and_sigint_are_passed_on_to_the_command(serving: ServerLocker, server_file: str,
                                                         started: list[subprocess.Popen[str]]) -> None:
    polite = ("import signal, sys, time\n"
              "signal.signal(signal.SIGTERM, lambda *_: sys.exit(5))\n"
              "print('ready', flush=True)\n"
              "time.sleep(60)\n")
    terminated = _start(started, _pylocker("lock", "x", "--server-file", server_file, "--", *_python(polite)))
    assert terminated.stdout is not None
    assert terminated.stdout.readline() == "ready\n"
    terminated.send_signal(signal.SIGTERM)
    assert terminated.wait(30) == 5  # the command's own answer to SIGTERM

    interrupted = _start(started, _pylocker("lock", "x", "--server-file", server_file, "--",
                                            *_python("import time; print('ready', flush=True); time.sleep(60)")))
    assert interrupted.stdout is not None
    assert interrupted.stdout.readline() == "ready\n"
    interrupted.send_signal(signal.SIGINT)
    assert interrupted.wait(30) == 128 + signal.SIGINT  # python died of the SIGINT, as a shell reports
    wait_for(lambda: serving.lock_info("x").holders == [])


def test_a_signal_while_waiting_gives_up_the_wait(serving: ServerLocker, server_file: str,
                                                  started: list[subprocess.Popen[str]]) -> None:
    with serving.lock("x"):
        waiting = _start(started, _pylocker("lock", "x", "--server-file", server_file, "--", "true"))
        wait_for(lambda: serving.lock_info("x").waiters, timeout=30)
        waiting.send_signal(signal.SIGTERM)
        assert waiting.wait(30) == 128 + signal.SIGTERM
        wait_for(lambda: serving.lock_info("x").waiters == [])


def test_listen_receives_what_publish_sent(serving: ServerLocker, server_file: str,
                                           started: list[subprocess.Popen[str]]) -> None:
    listener = _start(started, _pylocker("listen", "--json", "--count", "2", "--server-file", server_file))
    assert listener.stderr is not None
    ready = listener.stderr.readline()
    assert "listening as" in ready
    unique_name = ready.split("listening as ")[1].split()[0]
    first = _run(_pylocker("publish", "job-done", "--payload", '{"file": "a.csv", "rows": [1, 2]}',
                           "--name", "cron", "--server-file", server_file))
    second = _run(_pylocker("publish", "hello", "--to", unique_name,
                            "--address", f"tcp://127.0.0.1:{serving.port}"))
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    out, err = listener.communicate(timeout=30)
    assert listener.returncode == 0, err
    got = [json.loads(line) for line in out.splitlines()]
    assert [m["text"] for m in got] == ["job-done", "hello"]
    assert got[0]["payload"] == {"file": "a.csv", "rows": [1, 2]}
    assert got[0]["sender_name"] == "cron"
    assert got[1]["payload"] is None
    assert all(m["sender"] and m["time"] > 0 for m in got)


def test_listen_gives_up_after_its_timeout(serving: ServerLocker, server_file: str) -> None:
    done = _run(_pylocker("listen", "--count", "1", "--timeout", "0.3", "--server-file", server_file))
    assert done.returncode == 1
    assert "0 of 1 messages" in done.stderr


def test_the_password_comes_from_a_file_or_the_environment(serving: ServerLocker, server_file: str,
                                                           tmp_path: Any) -> None:
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)
    from_file = _run(_pylocker("lock", "x", "--password-file", str(password_file), "--server-file", server_file,
                               "--", "true"), password=None)
    assert from_file.returncode == 0, from_file.stderr
    assert from_file.stderr == ""

    missing = _run(_pylocker("publish", "hi", "--server-file", server_file), password=None)
    assert missing.returncode == 2
    assert "no password: set the PYLOCKER_PASSWORD environment variable, or give --password-file" in missing.stderr

    wrong = _run(_pylocker("publish", "hi", "--connect-timeout", "5", "--server-file", server_file),
                 password="not-the-password")
    assert wrong.returncode == 69
    assert "cannot reach the serving locker" in wrong.stderr


def test_serve_hands_over_on_sigint(tmp_path: Any, started: list[subprocess.Popen[str]]) -> None:
    server_file = str(tmp_path / "server")
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD)
    password_file.chmod(0o600)
    server = _start(started, _pylocker("serve", "--server-file", server_file, "--port", "0",
                                       "--password-file", str(password_file)), password=None)
    assert server.stdout is not None
    assert server.stdout.readline().startswith("serving on 127.0.0.1:")
    client = ServerLocker(PASSWORD, serverFile=server_file, allowServing=False, connectTimeout=10)
    try:
        assert client.acquire_lock("x", timeout=5)[0]
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=30)
    finally:
        client.stop()
    assert server.returncode == 0
    assert "SIGINT: stopping; handing over 1 client and 1 held lock" in err
    assert err.rstrip().endswith("stopped")
    fingerprint = serverfile.read(server_file)
    assert fingerprint is not None
    assert fingerprint.stopped
    assert fingerprint.clients == (client.uniqueName,)


def test_status_json_and_top_once_show_a_held_lock_and_a_waiter(serving: ServerLocker, server_file: str,
                                                               make_locker: Any) -> None:
    holder, waiter = make_locker(name="holder"), make_locker(name="waiter")
    with holder.lock("report.csv"):
        threading.Thread(target=waiter.acquire_lock, args=("report.csv",), kwargs={"timeout": 30},
                         daemon=True).start()
        wait_for(lambda: serving.lock_info("report.csv").waiters)
        status = _run(_pylocker("status", "--json", "--server-file", server_file))
        top = _run(_pylocker("top", "--once", "--interval", "0.2", "--server-file", server_file))
    assert status.returncode == 0, status.stderr
    [row] = [row for row in json.loads(status.stdout)["locks"] if row["name"] == "report.csv"]
    assert [h["unique_name"] for h in row["holders"]] == [holder.uniqueName]
    assert [w["unique_name"] for w in row["waiters"]] == [waiter.uniqueName]
    assert top.returncode == 0, top.stderr
    [line] = [line for line in top.stdout.splitlines() if line.startswith("report.csv")]
    assert line.split()[1:3] == ["1", "1"]  # one holder, one waiter


def test_serve_standby_through_zookeeper_hands_over_and_every_command_takes_the_url(
        started: list[subprocess.Popen[str]], zookeeper: Any) -> None:
    url = f"zookeeper://{zookeeper.hosts}/pylocker/cli-{os.getpid()}-{time.monotonic_ns()}?session_timeout=4"
    first = _start(started, _pylocker("serve", "--server-file", url, "--port", "0", "--standby"))
    assert first.stdout is not None
    assert first.stdout.readline().startswith("serving on 127.0.0.1:")
    second = _start(started, _pylocker("serve", "--server-file", url, "--port", "0", "--standby"))
    assert second.stdout is not None
    assert second.stdout.readline().startswith("standing by: 127.0.0.1:")
    status = _run(_pylocker("status", "--server-file", url, "--json"))
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["server"]["epoch"] == 1  # ZooKeeper's first term
    first.send_signal(signal.SIGTERM)  # a clean stop resigns: the standby takes over at once
    assert first.wait(20) == 0

    def serves_now() -> bool:
        done = _run(_pylocker("status", "--server-file", url, "--json"))
        return done.returncode == 0 and json.loads(done.stdout)["server"]["epoch"] == 2

    wait_for(serves_now, timeout=20)
    locked = _run(_pylocker("lock", "--server-file", url, "x", "--", *_python(
        "import os; print(os.environ['PYLOCKER_TOKEN'])")))
    assert locked.returncode == 0, locked.stderr
    assert int(locked.stdout) >> 40 == 2  # the second server's epoch, from ZooKeeper
    second.send_signal(signal.SIGTERM)
    assert second.wait(20) == 0


def test_a_standby_waits_for_an_ensemble_it_cannot_reach_yet(started: list[subprocess.Popen[str]],
                                                               zookeeper: Any) -> None:
    from tests.faults.proxy import Proxy

    proxy = Proxy(zookeeper.port)
    proxy.cut()  # the ensemble accepts connections and answers nothing, as while it starts
    try:
        url = (f"zookeeper://127.0.0.1:{proxy.port}/pylocker/cli-wait-{os.getpid()}-{time.monotonic_ns()}"
               "?session_timeout=4&connect_timeout=1")
        standby = _start(started, _pylocker("serve", "--server-file", url, "--port", "0", "--standby"))
        assert standby.stderr is not None
        lines = []
        while len(lines) < 100 and not any("trying again" in line for line in lines):
            lines.append(standby.stderr.readline())  # its log: kazoo's attempts, then the standby's
        assert any("trying again" in line for line in lines), lines
        assert standby.poll() is None, "the standby gave up"
        proxy.heal()
        assert standby.stdout is not None
        assert standby.stdout.readline().startswith("serving on 127.0.0.1:")
        standby.send_signal(signal.SIGTERM)
        assert standby.wait(20) == 0
    finally:
        proxy.stop()
