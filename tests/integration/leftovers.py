"""Which processes of a run are still running: found by the run's tag, not by name.

Every process perfgate starts (the service's supervisor and the service, the Locust child,
its workers) inherits ``PERFGATE_RUN_ID`` (``pytest_perfgate.processes``); a test gives
its run a tag of its own and looks for processes whose environment holds it
(``/proc/PID/environ`` through psutil). Stdlib + psutil only.
"""

from __future__ import annotations

import contextlib
import time
import uuid

import psutil

from pytest_perfgate.processes import RUN_ID_ENV


def load_generators() -> list[psutil.Process]:
    """This test process's Locust processes: the child (master) and any worker."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            line = " ".join(child.cmdline())
        except psutil.NoSuchProcess:
            continue
        if "pytest_perfgate.load.child" in line or "-m locust" in line:
            found.append(child)
    return found


def new_tag() -> dict[str, str]:
    """A fresh run tag, as the environment variable to start a run with."""
    return {RUN_ID_ENV: f"test-{uuid.uuid4().hex}"}


def tagged(tag: dict[str, str]) -> list[psutil.Process]:
    """The running processes (zombies aside) whose environment holds ``tag``."""
    ((key, value),) = tag.items()
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(key) == value and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue  # gone, or not ours to read
    return found


def describe(proc: psutil.Process) -> str:
    try:
        return f"pid {proc.pid}: {' '.join(proc.cmdline())[:160]}"
    except psutil.Error:
        return f"pid {proc.pid} (gone)"


def still_running(tag: dict[str, str], wait_s: float = 10.0) -> list[str]:
    """What still runs with ``tag`` after up to ``wait_s`` (each killed, then named)."""
    deadline = time.monotonic() + wait_s
    while (left := tagged(tag)) and time.monotonic() < deadline:
        time.sleep(0.2)
    named = [describe(p) for p in left]
    for proc in left:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    return named
