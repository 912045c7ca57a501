"""The load lock: one load run at a time per project, and a waiting run names the holder."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pytest_perfgate.plugin.lock import Holder, load_lock, lock_path, read_holder


def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_the_holder_writes_its_pid_host_and_scenario_beside_the_lock(tmp_path: Path) -> None:
    with load_lock(tmp_path, "light", notify=print):
        holder = read_holder(lock_path(tmp_path))
        assert holder == Holder(os.getpid(), socket.gethostname(), "light")
    assert read_holder(lock_path(tmp_path)) is None  # removed before the lock is released


def test_a_second_run_waits_for_the_first_and_says_whom_it_waits_for(tmp_path: Path) -> None:
    messages: list[str] = []
    second: list[Holder | None] = []

    def run_second() -> None:
        with load_lock(tmp_path, "heavy", notify=messages.append, step_s=0.05):
            second.append(read_holder(lock_path(tmp_path)))

    with load_lock(tmp_path, "light", notify=messages.append):
        thread = threading.Thread(target=run_second)
        thread.start()
        wait_until(lambda: len(messages) >= 2)  # once at once, then every step
        assert second == []
    thread.join(timeout=5)
    assert second == [Holder(os.getpid(), socket.gethostname(), "heavy")]
    expected = f"held by pid {os.getpid()} on {socket.gethostname()}, scenario 'light'"
    assert messages[0].startswith(f"perfgate: waiting for the load lock {lock_path(tmp_path)}")
    assert expected in messages[0] and messages[0].endswith("(waited 0 s)")


def test_projects_in_different_folders_do_not_share_a_lock(tmp_path: Path) -> None:
    assert lock_path(tmp_path / "a") != lock_path(tmp_path / "b")
    with (
        load_lock(tmp_path / "a", "light", notify=print),
        load_lock(tmp_path / "b", "light", notify=print),
    ):
        pass  # the second was free at once


def test_a_holder_file_that_cannot_be_read_names_no_holder(tmp_path: Path) -> None:
    path = lock_path(tmp_path)
    path.with_name(path.name + ".holder").write_text("{not json")
    try:
        assert read_holder(path) is None
    finally:
        path.with_name(path.name + ".holder").unlink()
