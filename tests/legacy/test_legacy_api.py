"""The seed API of the legacy Locker in one process: arguments, properties, codes, with-block."""

from __future__ import annotations

import atexit
import errno
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pylocker.legacy import Locker
from pylocker.legacy._liveness import current_ctime, host_id
from pylocker.legacy._record import Entry, Record, decode, encode, pass_digest


def _lock(tmp_path: Path, lock_pass: str = "pass", **kwargs: object) -> Locker:
    kwargs.setdefault("lockPath", str(tmp_path / "x.lock"))
    return Locker(kwargs.pop("filePath", None), lock_pass, **kwargs)  # type: ignore[arg-type]


def _record(tmp_path: Path) -> Record:
    return decode((tmp_path / "x.lock").read_bytes())


# --------------------------------------------------------------------------------------------------
# arguments, properties, setters


def test_defaults_and_properties(tmp_path: Path) -> None:
    target = tmp_path / "data.txt"
    locker = Locker(str(target), "pass")
    assert locker.filePath == str(target)
    assert locker.lockPass == "pass"
    assert locker.lockPath == str(tmp_path / ".lock")
    assert locker.mode == "ab"
    assert (locker.timeout, locker.wait, locker.deadLock) == (60.0, 0.0, 120.0)


def test_default_lock_path_is_the_working_directory_without_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    locker = Locker(None, "pass")
    assert locker.lockPath == str(tmp_path / ".lock")
    assert locker.acquire_lock() == (True, 0)
    assert (tmp_path / ".lock").is_file()
    assert locker.release_lock() == (True, 2)


def test_default_lock_path_follows_file_path(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    locker = Locker(tmp_path / "data", "pass")  # os.PathLike accepted
    locker.set_file_path(str(tmp_path / "a" / "data"))
    assert locker.lockPath == str(tmp_path / "a" / ".lock")
    locker.set_lock_path(str(tmp_path / "mine.lock"))
    locker.set_file_path(str(tmp_path / "data"))
    assert locker.lockPath == str(tmp_path / "mine.lock")  # an explicit lockPath stays


def test_setters_update_properties(tmp_path: Path) -> None:
    locker = _lock(tmp_path)
    locker.set_mode("w+")
    locker.set_timeout(1.5)
    locker.set_wait(0.01)
    locker.set_dead_lock(math.inf)
    locker.set_lock_pass("other")
    assert (locker.mode, locker.timeout, locker.wait, locker.deadLock) == ("w+", 1.5, 0.01, math.inf)
    assert locker.lockPass == "other"


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"filePath": 3}, TypeError, "filePath"),
        ({"filePath": ""}, ValueError, "filePath"),
        ({"lockPass": None}, TypeError, "lockPass"),
        ({"lockPass": b"bytes"}, TypeError, "lockPass"),
        ({"mode": "x"}, ValueError, "mode"),
        ({"mode": 1}, TypeError, "mode"),
        ({"lockPath": 1.0}, TypeError, "lockPath"),
        ({"lockPath": "a\0b"}, ValueError, "lockPath"),
        ({"timeout": -1}, ValueError, "timeout"),
        ({"timeout": "60"}, TypeError, "timeout"),
        ({"timeout": math.nan}, ValueError, "timeout"),
        ({"wait": -0.1}, ValueError, "wait"),
        ({"wait": math.inf}, ValueError, "wait"),
        ({"wait": True}, TypeError, "wait"),
        ({"deadLock": -5}, ValueError, "deadLock"),
        ({"deadLock": None}, TypeError, "deadLock"),
    ],
)
def test_invalid_arguments_raise_naming_the_argument(
    tmp_path: Path, kwargs: dict[str, object], error: type[Exception], name: str
) -> None:
    args: dict[str, object] = {"filePath": None, "lockPass": "pass", "lockPath": str(tmp_path / "x.lock")}
    args.update(kwargs)
    with pytest.raises(error, match=name):
        Locker(**args)  # type: ignore[arg-type]


def test_paths_and_pass_cannot_change_while_holding(tmp_path: Path) -> None:
    locker = _lock(tmp_path)
    assert locker.acquire_lock() == (True, 0)
    for setter, value in (
        (locker.set_lock_path, str(tmp_path / "y.lock")),
        (locker.set_file_path, str(tmp_path / "f")),
        (locker.set_lock_pass, "other"),
    ):
        with pytest.raises(RuntimeError, match="holds the lock"):
            setter(value)
    locker.set_timeout(3)  # harmless settings may change
    assert locker.release_lock() == (True, 2)
    locker.set_lock_pass("other")


def test_repr_and_lock_file_never_show_the_pass(tmp_path: Path) -> None:
    locker = _lock(tmp_path, "very-secret-pass")
    assert locker.acquire_lock() == (True, 0)
    assert "very-secret-pass" not in repr(locker)
    assert b"very-secret-pass" not in (tmp_path / "x.lock").read_bytes()
    locker.release_lock()


# --------------------------------------------------------------------------------------------------
# return codes


def test_acquire_codes_0_and_1_and_release_codes_2_and_1(tmp_path: Path) -> None:
    first, second = _lock(tmp_path), _lock(tmp_path)
    assert first.acquire_lock() == (True, 0)
    assert first.acquire_lock() == (True, 1)  # already set by this locker
    assert first.acquire() == (True, 1)  # alias
    assert second.acquire_lock() == (True, 1)  # already set with this pass
    assert len(_record(tmp_path).holders) == 2
    assert first.release_lock() == (True, 2)
    assert len(_record(tmp_path).holders) == 1  # the other holder of the pass still holds it
    assert second.release() == (True, 2)  # alias
    assert (tmp_path / "x.lock").read_bytes() == b""
    assert second.release_lock() == (True, 1)  # lock file found empty


def test_release_code_0_without_lock_file(tmp_path: Path) -> None:
    locker = _lock(tmp_path)
    assert locker.release_lock() == (True, 0)
    assert not (tmp_path / "x.lock").exists()  # release never creates the lock file


def test_acquire_code_3_on_timeout_and_release_code_4_with_another_pass(tmp_path: Path) -> None:
    owner = _lock(tmp_path, "mine")
    other = _lock(tmp_path, "theirs", timeout=0.2)
    assert owner.acquire_lock() == (True, 0)
    start = time.monotonic()
    assert other.acquire_lock() == (False, 3)
    elapsed = time.monotonic() - start
    assert 0.2 <= elapsed < 1.0
    assert _record(tmp_path).queue == []  # the waiter left the queue on timeout
    assert other.release_lock() == (False, 4)
    assert len(_record(tmp_path).holders) == 1  # still held
    assert owner.release_lock() == (True, 2)
    assert other.acquire_lock() == (True, 0)
    other.release_lock()


def test_timeout_zero_tries_once_without_queueing(tmp_path: Path) -> None:
    owner, other = _lock(tmp_path, "mine"), _lock(tmp_path, "theirs", timeout=0)
    owner.acquire_lock()
    start = time.monotonic()
    assert other.acquire_lock() == (False, 3)
    assert time.monotonic() - start < 0.1
    assert _record(tmp_path).queue == []
    owner.release_lock()


def test_release_by_a_non_holder_that_knows_the_pass_frees_the_lock(tmp_path: Path) -> None:
    holder, admin = _lock(tmp_path), _lock(tmp_path)
    holder.acquire_lock()
    assert admin.release_lock() == (True, 2)  # the pass owns the lock, as in pylocker 3
    assert _record(tmp_path).holders == []
    assert holder.release_lock() == (True, 1)


def _write_record(path: Path, entry: Entry, lock_pass: str = "ghost") -> None:
    salt = "ab" * 16
    path.write_bytes(encode(Record(salt, pass_digest(lock_pass, salt), [entry])))


def test_acquire_code_2_breaks_a_dead_holder_of_this_host(tmp_path: Path) -> None:
    # Our own pid with another creation time: a previous process that had our pid, now dead.
    ghost = Entry("cafe" * 4, os.getpid(), current_ctime() - 1000, host_id(), time.time())
    _write_record(tmp_path / "x.lock", ghost)
    assert _lock(tmp_path, timeout=0).acquire_lock() == (True, 2)


def test_a_live_holder_of_this_host_is_never_broken_by_age(tmp_path: Path) -> None:
    live = Entry("cafe" * 4, os.getpid(), current_ctime(), host_id(), time.time() - 10_000)
    _write_record(tmp_path / "x.lock", live)
    assert _lock(tmp_path, timeout=0.1, deadLock=1).acquire_lock() == (False, 3)


def test_dead_lock_breaks_an_old_lock_of_another_host(tmp_path: Path) -> None:
    remote = Entry("beef" * 4, 1, 0.0, "elsewhere/boot/1", time.time() - 30)
    _write_record(tmp_path / "x.lock", remote)
    assert _lock(tmp_path, timeout=0.1, deadLock=60).acquire_lock() == (False, 3)
    locker = _lock(tmp_path, timeout=0.1, deadLock=20)
    assert locker.acquire_lock() == (True, 2)
    assert [e.host for e in _record(tmp_path).holders] == [host_id()]
    locker.release_lock()


def test_corrupt_record_is_broken_with_code_2_once_older_than_dead_lock(tmp_path: Path) -> None:
    (tmp_path / "x.lock").write_bytes(b"pass\n1700000000.0\n1234\n")  # e.g. a pylocker 3.x record
    locker = _lock(tmp_path, timeout=0)
    assert locker.acquire_lock() == (False, 3)  # it may be a live holder's torn write: held for now
    old = time.time() - 200  # its last write older than deadLock (120 s): nobody is behind it
    os.utime(tmp_path / "x.lock", (old, old))
    assert locker.release_lock() == (True, 1)
    assert locker.acquire_lock() == (True, 2)
    assert locker.release_lock() == (True, 2)


def test_os_errors_are_returned_or_raised(tmp_path: Path) -> None:
    missing = _lock(tmp_path, lockPath=str(tmp_path / "no" / "such" / "dir" / ".lock"))
    acquired, code = missing.acquire_lock()
    assert acquired is False
    assert isinstance(code, FileNotFoundError)
    with pytest.raises(FileNotFoundError):
        missing.acquire_lock(raiseError=True)
    (tmp_path / "adir").mkdir()
    directory = _lock(tmp_path, lockPath=str(tmp_path / "adir"))
    released, code = directory.release_lock()
    assert released is False
    assert isinstance(code, OSError)
    with pytest.raises(OSError):  # noqa: PT011 - EISDIR from the OS
        directory.release_lock(raiseError=True)


# --------------------------------------------------------------------------------------------------
# with-block


def test_with_block_opens_the_file_in_mode_and_closes_it(tmp_path: Path) -> None:
    target = tmp_path / "data.txt"
    locker = Locker(str(target), "pass", mode="w")
    with locker as (acquired, code, fd):
        assert (acquired, code) == (True, 0)
        assert fd is not None
        assert not fd.closed
        assert fd.mode == "w"
        fd.write("hello")
        assert len(_record_at(tmp_path / ".lock").holders) == 1
    assert fd.closed
    assert target.read_text() == "hello"
    assert (tmp_path / ".lock").read_bytes() == b""


def _record_at(path: Path) -> Record:
    return decode(path.read_bytes())


def test_release_code_3_when_the_opened_file_is_closed(tmp_path: Path) -> None:
    locker = Locker(str(tmp_path / "data.bin"), "pass")
    with locker as (acquired, _, fd):
        assert acquired
        assert fd is not None
        assert fd.mode == "ab"
        assert locker.release_lock() == (True, 3)
        assert fd.closed
    assert locker.release_lock() == (True, 1)


def test_with_block_without_file_or_lock_gives_no_fd(tmp_path: Path) -> None:
    with _lock(tmp_path) as (acquired, code, fd):
        assert (acquired, code, fd) == (True, 0, None)
    owner = _lock(tmp_path, "mine")
    owner.acquire_lock()
    with Locker(str(tmp_path / "data"), "theirs", lockPath=str(tmp_path / "x.lock"), timeout=0) as result:
        assert result == (False, 3, None)
    assert len(_record(tmp_path).holders) == 1  # exiting without the lock released nothing
    owner.release_lock()


def test_with_block_releases_the_lock_when_the_file_cannot_be_opened(tmp_path: Path) -> None:
    locker = Locker(str(tmp_path / "missing.txt"), "pass", mode="r")
    with pytest.raises(FileNotFoundError), locker:
        pytest.fail("the body must not run")
    assert (tmp_path / ".lock").read_bytes() == b""


# --------------------------------------------------------------------------------------------------
# threads and FIFO handover


class ExThread(threading.Thread):
    """A thread whose exception (a failed assert included) is re-raised by ``join``."""

    def __init__(self, target: Callable[[], object]) -> None:
        super().__init__(daemon=True)
        self._work = target
        self.result: object = None
        self._error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self._work()
        except BaseException as exc:  # noqa: BLE001 - handed to join(), which re-raises it
            self._error = exc

    def join(self, timeout: float | None = 30.0) -> None:
        super().join(timeout)
        if self.is_alive():
            raise AssertionError("thread still running")
        if self._error is not None:
            raise self._error


def _wait_queued(tmp_path: Path, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(_record(tmp_path).queue) < count:  # bounded: until the waiters are queued
        assert time.monotonic() < deadline, "waiter never queued"
        threading.Event().wait(0.005)


def test_waiters_are_served_in_arrival_order_without_barging(tmp_path: Path) -> None:
    owner = _lock(tmp_path, "owner")
    owner.acquire_lock()
    order: list[int] = []

    def wait_turn(i: int) -> None:
        locker = _lock(tmp_path, f"pass-{i}", timeout=20)
        assert locker.acquire_lock() == (True, 0)
        order.append(i)
        assert locker.release_lock() == (True, 2)

    threads = []
    for i in range(3):
        thread = ExThread(lambda i=i: wait_turn(i))  # type: ignore[misc]
        thread.start()
        threads.append(thread)
        _wait_queued(tmp_path, i + 1)
    assert owner.release_lock() == (True, 2)
    assert owner.acquire_lock() == (True, 0)  # queued behind the three: served last
    assert order == [0, 1, 2]
    owner.release_lock()
    for thread in threads:
        thread.join()


def test_the_lock_goes_to_the_first_waiter_not_back_to_the_releaser(tmp_path: Path) -> None:
    owner, waiter = _lock(tmp_path, "owner", timeout=0), _lock(tmp_path, "waiter", timeout=20)
    owner.acquire_lock()
    thread = ExThread(waiter.acquire_lock)
    thread.start()
    _wait_queued(tmp_path, 1)
    owner.release_lock()
    assert owner.acquire_lock() == (False, 3)  # handed over already: no barging
    thread.join()
    assert thread.result == (True, 0)
    waiter.release_lock()


def test_one_instance_shared_by_threads_stays_consistent(tmp_path: Path) -> None:
    locker = _lock(tmp_path)
    results: list[object] = []

    def work() -> None:
        for _ in range(50):
            results.append(locker.acquire_lock())
            results.append(locker.release_lock())

    threads = [ExThread(work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r[0] is True for r in results)  # type: ignore[index]
    assert _record(tmp_path).holders == []


# --------------------------------------------------------------------------------------------------
# hygiene: symlinks, temp files, signal handlers, atexit


def test_symlink_at_the_lock_path_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (tmp_path / "x.lock").symlink_to(victim)
    locker = _lock(tmp_path)
    acquired, code = locker.acquire_lock()
    assert acquired is False
    assert isinstance(code, OSError)
    assert code.errno == errno.ELOOP
    released, code = locker.release_lock()
    assert released is False
    assert isinstance(code, OSError)
    assert victim.read_bytes() == b"precious"
    dangling = tmp_path / "dangling.lock"
    dangling.symlink_to(tmp_path / "created-through-link")
    assert _lock(tmp_path, lockPath=str(dangling)).acquire_lock()[0] is False
    assert not (tmp_path / "created-through-link").exists()


def test_hard_linked_lock_file_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    os.link(victim, tmp_path / "x.lock")
    acquired, code = _lock(tmp_path).acquire_lock()
    assert acquired is False
    assert isinstance(code, OSError)
    assert victim.read_bytes() == b"precious"


def test_symlink_at_the_locked_file_is_refused_for_writing(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (tmp_path / "data").symlink_to(victim)
    locker = Locker(str(tmp_path / "data"), "pass", mode="w")
    with pytest.raises(OSError, match="symbolic link"), locker:
        pytest.fail("the body must not run")
    assert victim.read_bytes() == b"precious"
    assert (tmp_path / ".lock").read_bytes() == b""  # and the lock was given back


def test_no_temp_file_is_left_or_created(tmp_path: Path) -> None:
    locker, other = _lock(tmp_path), _lock(tmp_path, "other", timeout=0.1)
    locker.acquire_lock()
    other.acquire_lock()
    locker.release_lock()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.lock"]


def test_no_signal_handler_and_no_atexit_hook(tmp_path: Path) -> None:
    watched = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT]
    before = {sig: signal.getsignal(sig) for sig in watched}
    callbacks = atexit._ncallbacks()
    locker = _lock(tmp_path)
    locker.acquire_lock()
    with Locker(str(tmp_path / "data"), "pass2", lockPath=str(tmp_path / "y.lock")):
        pass
    locker.release_lock()
    del locker
    assert {sig: signal.getsignal(sig) for sig in watched} == before
    assert atexit._ncallbacks() == callbacks


def test_garbage_collected_holder_releases(tmp_path: Path) -> None:
    locker = _lock(tmp_path)
    locker.acquire_lock()
    del locker
    assert (tmp_path / "x.lock").read_bytes() == b""
