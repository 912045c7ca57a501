"""Children tagged with the run and dying with their parent; the service's supervisor.

Subprocesses, because a parent's death is the point; each takes well under a second.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from pytest_perfgate.processes import PARENT_PID_ENV, RUN_ID_ENV, child_env, run_id
from pytest_perfgate.target.process import supervised


def test_a_childs_environment_carries_the_run_id_and_its_parents_pid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(RUN_ID_ENV, raising=False)
    env = child_env({"KEEP": "1"})
    assert env["KEEP"] == "1" and env[PARENT_PID_ENV] == str(os.getpid())
    assert env[RUN_ID_ENV] == run_id() == os.environ[RUN_ID_ENV]  # one id for the run


def test_an_inherited_run_id_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RUN_ID_ENV, "from-the-xdist-controller")
    assert child_env()[RUN_ID_ENV] == "from-the-xdist-controller"


#: a parent that starts a child (the JSON argv given), prints its pid, and dies when told
ORPHANING_PARENT = textwrap.dedent(
    """
    import json, os, subprocess, sys
    from pytest_perfgate.processes import child_env
    child = subprocess.Popen(
        json.loads(sys.argv[1]), env=child_env(), stdout=subprocess.DEVNULL
    )
    print(child.pid, flush=True)
    sys.stdin.readline()  # until the test says so
    os._exit(0)
    """
)
CHILD = textwrap.dedent(
    """
    import time
    from pytest_perfgate import processes
    if {watchdog_only}:
        processes._set_parent_death_signal = lambda signum: None
    processes.die_with_parent()
    time.sleep(60)
    """
)


def orphaning_parent(argv: list[str]) -> tuple[subprocess.Popen[str], psutil.Process]:
    parent = subprocess.Popen(
        [sys.executable, "-c", ORPHANING_PARENT, json.dumps(argv)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert parent.stdout is not None
    return parent, psutil.Process(int(parent.stdout.readline()))


def kill_parent(parent: subprocess.Popen[str]) -> None:
    assert parent.stdin is not None
    parent.stdin.write("go\n")
    parent.stdin.flush()
    parent.communicate(timeout=10)  # waits, and closes the pipes


def assert_ends(proc: psutil.Process, what: str, timeout: float = 5.0) -> None:
    try:
        proc.wait(timeout=timeout)
    except psutil.TimeoutExpired:
        proc.kill()
        pytest.fail(f"{what} outlived its parent")


@pytest.mark.parametrize("watchdog_only", [False, True], ids=["prctl", "watchdog"])
def test_a_child_ends_when_its_parent_dies(watchdog_only: bool) -> None:
    code = CHILD.format(watchdog_only=watchdog_only)
    parent, child = orphaning_parent([sys.executable, "-c", code])
    time.sleep(0.5)  # the child is past die_with_parent
    assert child.is_running()
    kill_parent(parent)
    assert_ends(child, "the child")


@pytest.mark.parametrize(
    ("command", "returncode"),
    [("exit 3", 3), ("kill -TERM $$", -15), ("exit 0", 0)],
)
def test_the_supervisor_exits_as_its_command_did(command: str, returncode: int) -> None:
    done = subprocess.run(supervised(["sh", "-c", command]), timeout=20, check=False)
    assert done.returncode == returncode


def test_the_supervisor_ends_its_commands_group_when_its_parent_dies() -> None:
    parent, supervisor = orphaning_parent(supervised(["sleep", "60"]))
    deadline = time.monotonic() + 10
    while not supervisor.children() and time.monotonic() < deadline:
        time.sleep(0.05)
    command = supervisor.children()[0]
    kill_parent(parent)
    assert_ends(command, "the supervised command", timeout=10)
    assert_ends(supervisor, "the supervisor")
