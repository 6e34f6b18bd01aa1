"""The command line, called in-process."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from conftest import PASSWORD, wait_for
from pylocker import ServerLocker
from pylocker.cli import main
from pylocker.cli_lock import split_command


@pytest.mark.integration
def test_demo_runs_workers_and_proves_exclusion(capsys: Any) -> None:
    assert main(["demo", "--workers", "3", "--paths", "2", "--rounds", "30"]) == 0
    out = capsys.readouterr().out
    assert "mutual exclusion held: 0 overlapping critical sections out of 90" in out
    assert out.count("locks granted") == 3


def test_status_json_shows_a_held_lock_and_a_waiter(serving: ServerLocker, make_locker: Any, server_file: str,
                                                   capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYLOCKER_PASSWORD", PASSWORD)
    holder, waiter = make_locker(name="holder"), make_locker(name="waiter")
    answered = threading.Event()
    with holder.lock("report"):
        thread = threading.Thread(target=lambda: (waiter.acquire_lock("report", timeout=30), answered.set()))
        thread.start()
        wait_for(lambda: serving.lock_info("report").waiters)
        assert main(["status", "--server-file", server_file, "--json"]) == 0
        status = json.loads(capsys.readouterr().out)
        assert main(["status", "--server-file", server_file]) == 0
        text = capsys.readouterr().out
    assert answered.wait(10)
    thread.join(10)
    [row] = [row for row in status["locks"] if row["name"] == "report"]
    assert [h["unique_name"] for h in row["holders"]] == [holder.uniqueName]
    assert [w["unique_name"] for w in row["waiters"]] == [waiter.uniqueName]
    assert status["server"]["unique_name"] == serving.uniqueName
    assert "report: held by holder" in text
    assert "waiting: waiter" in text


def test_status_without_a_server_says_what_the_file_says(tmp_path: Any, capsys: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYLOCKER_PASSWORD", PASSWORD)
    code = main(["status", "--server-file", str(tmp_path / "none"), "--connect-timeout", "0.5"])
    assert code == 69  # EX_UNAVAILABLE, as for every command that cannot reach the serving locker
    assert "no serving locker recorded" in capsys.readouterr().err


def test_top_once_draws_a_frame_with_the_busiest_names(serving: ServerLocker, make_locker: Any, server_file: str,
                                                       capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYLOCKER_PASSWORD", PASSWORD)
    client = make_locker(name="busy")
    for _ in range(5):
        with client.lock("hot"):
            pass
    with client.lock("held-now"):
        assert main(["top", "--server-file", server_file, "--once", "--interval", "0.2"]) == 0
    frame = capsys.readouterr().out
    assert frame.startswith("pylocker top:")
    rows = {line.split()[0]: line.split() for line in frame.splitlines() if line.split()}
    assert rows["hot"][1:4] == ["0", "0", "5"]  # nobody holds or waits; 5 acquires
    assert rows["held-now"][1] == "1"
    assert any(line.startswith("busy") for line in frame.splitlines())


def test_bad_arguments_exit_with_usage() -> None:
    with pytest.raises(SystemExit) as info:
        main(["demo", "--workers", "0"])
    assert info.value.code == 2


def test_serve_needs_a_password(monkeypatch: Any, tmp_path: Any, capsys: Any) -> None:
    monkeypatch.delenv("PYLOCKER_PASSWORD", raising=False)
    assert main(["serve", "--server-file", str(tmp_path / "s")]) == 2
    assert "PYLOCKER_PASSWORD" in capsys.readouterr().err


def test_serve_refuses_a_malformed_listen_address(monkeypatch: Any, tmp_path: Any, capsys: Any) -> None:
    monkeypatch.setenv("PYLOCKER_PASSWORD", "pw")
    assert main(["serve", "--server-file", str(tmp_path / "s"), "--listen", "udp://x:1"]) == 2
    assert "--listen" in capsys.readouterr().err


@pytest.mark.integration
def test_serve_listens_on_an_ipc_url_and_stops_on_sigterm(tmp_path: Any) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from pylocker.election import serverfile

    server_file, sock = str(tmp_path / "server"), str(tmp_path / "locks.sock")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # this checkout, whatever is installed
    env = dict(os.environ, PYLOCKER_PASSWORD="pw",
               PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    process = subprocess.Popen([sys.executable, "-m", "pylocker", "serve", "--server-file", server_file,
                                "--listen", f"ipc://{sock}"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while serverfile.read(server_file) is None:
            assert process.poll() is None and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        client = ServerLocker("pw", serverFile=server_file, allowServing=False, connectTimeout=10)
        try:
            assert client.isClient and client.serverAddress == f"ipc://{sock}"
            assert client.acquire_lock("x", timeout=5)[0]
        finally:
            client.stop()
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=20)
        assert process.returncode == 0
        assert f"serving on ipc://{sock}" in out
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_lock_takes_its_command_after_a_double_dash() -> None:
    assert split_command(["lock", "a", "b", "--timeout", "1", "--", "cmd", "--", "-x"]) == (
        ["lock", "a", "b", "--timeout", "1"], ["cmd", "--", "-x"])
    assert split_command(["lock", "a"]) == (["lock", "a"], [])
    assert split_command(["publish", "--", "-text"]) == (["publish", "--", "-text"], None)


def test_lock_without_a_command_is_a_usage_error(capsys: Any) -> None:
    assert main(["lock", "x"]) == 2
    assert "give the command after --" in capsys.readouterr().err


def test_publish_refuses_a_payload_that_is_not_json(capsys: Any) -> None:
    assert main(["publish", "hi", "--payload", "{oops"]) == 2
    assert "--payload is not JSON" in capsys.readouterr().err


def test_a_malformed_address_is_a_usage_error(monkeypatch: Any, capsys: Any) -> None:
    monkeypatch.setenv("PYLOCKER_PASSWORD", "pw")
    assert main(["publish", "hi", "--address", "udp://host:1"]) == 2
    assert "--address" in capsys.readouterr().err


def test_server_file_and_address_exclude_each_other() -> None:
    with pytest.raises(SystemExit) as info:
        main(["listen", "--server-file", "s", "--address", "tcp://127.0.0.1:1"])
    assert info.value.code == 2


def test_an_empty_password_file_is_refused(tmp_path: Any, capsys: Any) -> None:
    empty = tmp_path / "password"
    empty.write_text("\n")
    assert main(["publish", "hi", "--password-file", str(empty)]) == 2
    assert "holds no password" in capsys.readouterr().err
