"""Child processes: ending them (and what they started), and their dying with their parent.

Stdlib only (``os``, ``signal``, ``subprocess``, ``threading``, ``ctypes``): the target
layer, the Locust driver, the service supervisor and the Locust child process import it.
POSIX process groups; a process started with ``start_new_session=True`` leads a group
holding whatever it starts in turn.

No process outlives the run that started it, even when that run is killed outright:

- the parent's side: ``child_env`` tags every child with ``PERFGATE_RUN_ID`` (one id per
  run, inherited by everything below it, so leftovers are found by tag, not by name) and
  names the parent in ``PERFGATE_PARENT_PID``;
- the child's side: ``die_with_parent`` asks Linux for a signal when the parent dies
  (``prctl(PR_SET_PDEATHSIG)``) and, on every platform, starts a watchdog thread that
  sends the same signal once the parent's pid is no longer its parent's.

Every end is the same three steps: SIGTERM (with SIGCONT, as a stopped process keeps
SIGTERM pending until it runs again), up to ``grace_s`` to exit, then SIGKILL for what is
left. The pipes the caller opened are closed, stdin first (a child still reading it takes
end of file as "stop"), stdout last (closing it sooner would wait for a reader thread's
blocked read).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = [
    "KILL_WAIT_S",
    "PARENT_PID_ENV",
    "RUN_ID_ENV",
    "TERM_GRACE_S",
    "child_env",
    "die_with_parent",
    "end_process_group",
    "end_processes",
    "run_id",
]

#: seconds between SIGTERM and SIGKILL unless the caller says otherwise
TERM_GRACE_S = 5.0
#: seconds to wait for a process after SIGKILL (it cannot refuse; this only bounds a hang)
KILL_WAIT_S = 5.0

#: the environment variable every process of one run inherits: the run's id
RUN_ID_ENV = "PERFGATE_RUN_ID"
#: the pid a child is to die with (its parent's); absent: the child watches nobody
PARENT_PID_ENV = "PERFGATE_PARENT_PID"
#: seconds between two looks of the watchdog at the parent's pid
WATCH_INTERVAL_S = 0.25
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

Process = subprocess.Popen[Any]


def run_id() -> str:
    """This run's id, set in this process's environment on first use (or inherited)."""
    return os.environ.setdefault(RUN_ID_ENV, uuid.uuid4().hex)


def child_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) tagged with the run id and this pid."""
    env = dict(os.environ if base is None else base)
    env[RUN_ID_ENV] = run_id()
    env[PARENT_PID_ENV] = str(os.getpid())
    return env


def die_with_parent(signum: signal.Signals = signal.SIGTERM) -> int | None:
    """Get ``signum`` when the parent named in ``PERFGATE_PARENT_PID`` dies; its pid, or None.

    Called at the child's start. Linux signals at once (``PR_SET_PDEATHSIG``: when the
    parent *thread* that started this process ends, so parents start children from the
    thread that ends them); the watchdog thread is the portable fallback, and covers a
    parent that died before the ``prctl``. Without the variable (a process someone started
    by hand, such as an external Locust worker) nothing is watched.
    """
    text = os.environ.get(PARENT_PID_ENV, "")
    if not text.isdigit():
        return None
    parent = int(text)
    _set_parent_death_signal(signum)
    watchdog = threading.Thread(
        target=_watch_parent, args=(parent, signum), name="perfgate-parent-watchdog", daemon=True
    )
    watchdog.start()
    return parent


def _set_parent_death_signal(signum: signal.Signals) -> None:
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0)


def _watch_parent(parent: int, signum: signal.Signals) -> None:
    """Thread: ``signum`` to this process once ``parent`` is no longer its parent."""
    while os.getppid() == parent:
        time.sleep(WATCH_INTERVAL_S)
    os.kill(os.getpid(), signum)


def end_process_group(proc: Process, grace_s: float = TERM_GRACE_S) -> None:
    """End ``proc``, which leads its own process group, and every process of that group.

    The group may outlive its leader (a worker the service or a locustfile started): the
    SIGKILL goes to the group even when the leader has already exited.
    """
    _end([proc], grace_s, _signal_group)


def end_processes(procs: Sequence[Process], grace_s: float = TERM_GRACE_S) -> None:
    """End each of ``procs`` (not their groups): children that share their parent's group.

    All are signalled at once and share one grace period.
    """
    _end(procs, grace_s, _signal_process)


Signal = Callable[[Process, signal.Signals], None]


def _end(procs: Sequence[Process], grace_s: float, send: Signal) -> None:
    for proc in procs:
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
    running = [p for p in procs if p.poll() is None]
    for proc in running:
        send(proc, signal.SIGTERM)
        send(proc, signal.SIGCONT)
    deadline = time.monotonic() + grace_s
    for proc in running:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    for proc in procs:
        send(proc, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=KILL_WAIT_S)
        if proc.stdout is not None:
            proc.stdout.close()


def _signal_group(proc: Process, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signum)


def _signal_process(proc: Process, signum: signal.Signals) -> None:
    # Popen.send_signal skips a process already reaped, so a reused pid is never hit
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signum)
