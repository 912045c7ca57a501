"""Ending child processes, and everything they started: the one way, for every layer.

Stdlib only (``os``, ``signal``, ``subprocess``): the target layer, the Locust driver
and the Locust child process itself import it. POSIX process groups; a process started
with ``start_new_session=True`` leads a group holding whatever it starts in turn.

Every end is the same three steps: SIGTERM (with SIGCONT, as a stopped process keeps
SIGTERM pending until it runs again), up to ``grace_s`` to exit, then SIGKILL for what is
left. The pipes the caller opened are closed, stdin first (a child still reading it takes
end of file as "stop"), stdout last (closing it sooner would wait for a reader thread's
blocked read).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["KILL_WAIT_S", "TERM_GRACE_S", "end_process_group", "end_processes"]

#: seconds between SIGTERM and SIGKILL unless the caller says otherwise
TERM_GRACE_S = 5.0
#: seconds to wait for a process after SIGKILL (it cannot refuse; this only bounds a hang)
KILL_WAIT_S = 5.0

Process = subprocess.Popen[Any]


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
