"""The service's supervisor: runs ``service.command`` and ends it when the gate dies.

``python pytest_perfgate/target/supervise.py -- COMMAND...`` (``target.process`` starts it
by path, so the package need not be installed where the service runs; stdlib and
``pytest_perfgate.processes`` only). The supervisor leads the service's process group (its
own, even when its parent did not start it in a new session) and runs the command in it;
it exits as the command did (the same code, or the same signal), so the parent sees the
service's end as before.

- The gate stops the service by signalling the whole group (``end_process_group``): the
  command gets SIGTERM itself, and the supervisor waits for it to exit.
- The gate dies (pytest killed with SIGKILL, an xdist worker torn down): the supervisor
  gets SIGHUP (``processes.die_with_parent``), sends SIGTERM to its group, gives the
  command ``ORPHAN_GRACE_S`` to exit, then SIGKILLs the group, itself included.

An arbitrary command works: nothing is asked of it but to end on SIGTERM or SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import FrameType

if __package__ in (None, ""):  # run by path: import the package from its root, not from here
    sys.path[0] = str(Path(__file__).resolve().parents[2])

from pytest_perfgate.processes import PARENT_PID_ENV, die_with_parent  # after the path fix

__all__ = ["ORPHAN_GRACE_S", "main"]

#: seconds an orphaned service gets between SIGTERM and SIGKILL
ORPHAN_GRACE_S = 5.0
#: the signal the supervisor gets when its parent dies
ORPHANED = signal.SIGHUP
#: seconds between two looks at the command: Python runs signal handlers between them
POLL_S = 0.2


def _ignore(signum: int, frame: FrameType | None) -> None:
    """SIGTERM/SIGINT reached the whole group: the command got it too; wait for its exit."""


def _orphaned(signum: int, frame: FrameType | None) -> None:
    """The parent died: end the group (SIGTERM now, SIGKILL after the grace period)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(0, signal.SIGTERM)
    killer = threading.Timer(ORPHAN_GRACE_S, _kill_group)
    killer.daemon = True
    killer.start()


def _kill_group() -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(0, signal.SIGKILL)


def _exit_as(returncode: int) -> int:
    """Leave as the command left: the same signal (raised on ourselves) or the same code."""
    if returncode < 0:
        signal.signal(-returncode, signal.SIG_DFL)
        os.kill(os.getpid(), -returncode)
    return returncode if returncode >= 0 else 128 - returncode


def _wait(proc: subprocess.Popen[bytes]) -> int:
    """The command's exit status; a signal (from any thread) is handled while waiting."""
    while True:
        with contextlib.suppress(subprocess.TimeoutExpired):
            return proc.wait(timeout=POLL_S)


def main(argv: list[str]) -> int:
    """Run ``argv`` (after a leading ``--``) under supervision; its exit status."""
    command = argv[1:] if argv[:1] == ["--"] else argv
    if not command:
        print("usage: supervise.py -- COMMAND [ARG...]", file=sys.stderr)
        return 2
    if os.getpgid(0) != os.getpid():
        os.setpgid(0, 0)  # lead a group of our own: the group we end is never our parent's
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _ignore)
    signal.signal(ORPHANED, _orphaned)
    parent = die_with_parent(ORPHANED)
    env = {k: v for k, v in os.environ.items() if k != PARENT_PID_ENV}
    try:
        proc = subprocess.Popen(command, env=env)  # in our group: one group to end
    except OSError as exc:
        print(f"cannot start {command[0]}: {exc.strerror or exc}", file=sys.stderr)
        return 127
    returncode = _wait(proc)
    if parent is not None and os.getppid() != parent:
        _kill_group()  # nobody is left to end what the command started
    return _exit_as(returncode)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
