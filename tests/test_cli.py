"""The command line, called in-process."""

from __future__ import annotations

from typing import Any

import pytest

from pylocker import ServerLocker
from pylocker.cli import main


@pytest.mark.integration
def test_demo_runs_workers_and_proves_exclusion(capsys: Any) -> None:
    assert main(["demo", "--workers", "3", "--paths", "2", "--rounds", "30"]) == 0
    out = capsys.readouterr().out
    assert "mutual exclusion held: 0 overlapping critical sections out of 90" in out
    assert out.count("locks granted") == 3


def test_status_reports_the_serving_locker(serving: ServerLocker, server_file: str, capsys: Any) -> None:
    assert main(["status", "--server-file", server_file]) == 0
    assert f"127.0.0.1:{serving.port}" in capsys.readouterr().out


def test_status_without_a_server(tmp_path: Any, capsys: Any) -> None:
    assert main(["status", "--server-file", str(tmp_path / "none")]) == 1


def test_bad_arguments_exit_with_usage() -> None:
    with pytest.raises(SystemExit) as info:
        main(["demo", "--workers", "0"])
    assert info.value.code == 2


def test_serve_needs_a_password(monkeypatch: Any, tmp_path: Any, capsys: Any) -> None:
    monkeypatch.delenv("PYLOCKER_PASSWORD", raising=False)
    assert main(["serve", "--server-file", str(tmp_path / "s")]) == 2
    assert "PYLOCKER_PASSWORD" in capsys.readouterr().err
