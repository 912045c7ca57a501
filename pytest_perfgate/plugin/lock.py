"""The load lock: one load run at a time per project, across xdist workers and sessions.

Two load runs on one machine measure each other, so every run of a project (keyed by its
rootdir) takes a file lock in the temporary folder first. The lock is ``filelock``'s
(``fcntl`` on POSIX, ``msvcrt`` on Windows: the plugin imports on every platform) and
the operating system drops it when its holder dies, so it is never stale. The holder
writes its pid, host and scenario into a sidecar file next to the lock; a run that has
to wait says, every ``WAIT_STEP_S`` seconds, whom it is waiting for.

No pytest import: the caller passes ``notify``, how a waiting run speaks.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

__all__ = ["WAIT_STEP_S", "Holder", "load_lock", "lock_path", "read_holder"]

#: seconds between two "waiting for ..." messages while another run holds the lock
WAIT_STEP_S = 10.0


@dataclass(frozen=True)
class Holder:
    """Who holds the lock, as its sidecar file says."""

    pid: int
    host: str
    scenario: str

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host}, scenario {self.scenario!r}"


def lock_path(rootdir: Path) -> Path:
    """The lock file of the project at ``rootdir``."""
    key = hashlib.sha256(str(rootdir).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"pytest-perfgate-{key}.lock"


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".holder")


def read_holder(path: Path) -> Holder | None:
    """The holder named in the sidecar of the lock at ``path``; ``None`` if unreadable."""
    try:
        data = json.loads(_sidecar(path).read_text(encoding="utf-8"))
        return Holder(int(data["pid"]), str(data["host"]), str(data["scenario"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # not written yet, or being rewritten by a new holder


def _waiting_text(path: Path, waited_s: float) -> str:
    holder = read_holder(path)
    who = str(holder) if holder is not None else "another process"
    return f"perfgate: waiting for the load lock {path}, held by {who} (waited {waited_s:.0f} s)"


def _acquire(lock: FileLock, path: Path, notify: Callable[[str], None], step_s: float) -> None:
    """Take ``lock``: at once if free, else in steps of ``step_s``, telling whom it waits for."""
    started = time.monotonic()
    timeout = 0.0
    while True:
        try:
            lock.acquire(timeout=timeout)
            return
        except Timeout:
            notify(_waiting_text(path, time.monotonic() - started))
            timeout = step_s


@contextlib.contextmanager
def load_lock(
    rootdir: Path,
    scenario: str,
    *,
    notify: Callable[[str], None],
    step_s: float = WAIT_STEP_S,
) -> Iterator[None]:
    """Hold the project's load lock for a run of ``scenario`` (waiting for it if need be)."""
    path = lock_path(rootdir)
    lock = FileLock(path)
    _acquire(lock, path, notify, step_s)
    try:
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "scenario": scenario}
        _sidecar(path).write_text(json.dumps(holder), encoding="utf-8")
        yield
    finally:
        with contextlib.suppress(OSError):  # removed while held: a waiter never reads a stale one
            _sidecar(path).unlink()
        lock.release()
