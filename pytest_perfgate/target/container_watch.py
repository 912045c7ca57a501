"""The container's watcher: removes what the gate started when the gate dies without doing so.

``python pytest_perfgate/target/container_watch.py -- COMMAND [ARG...] [-- COMMAND ...]``
(``target.container`` starts it by path in a session of its own, stdlib only). It reads its
stdin, a pipe whose other end only the gate holds, until end of file:

- the gate stopped the container itself: it writes ``done`` first; the watcher exits;
- the gate died (SIGKILL, an xdist worker torn down, a crash): the kernel closes the
  pipe without ``done``; the watcher runs each cleanup command (``podman rm -f NAME``,
  ``podman-compose ... down``) in turn, then exits.

SIGTERM, SIGINT and SIGHUP also run the cleanup: whoever ends the watcher ends the container.
No prctl, no polling: the end of the pipe is the parent's death, on every platform.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from types import FrameType

__all__ = ["CLEANUP_TIMEOUT_S", "DONE", "main", "split_commands"]

#: the line the gate writes when it has removed the container itself
DONE = "done"
#: seconds each cleanup command may take
CLEANUP_TIMEOUT_S = 60.0


def split_commands(argv: list[str]) -> list[list[str]]:
    """``-- a b -- c d`` -> ``[["a", "b"], ["c", "d"]]``."""
    commands: list[list[str]] = []
    for arg in argv:
        if arg == "--":
            commands.append([])
        elif commands:
            commands[-1].append(arg)
    return [command for command in commands if command]


def _cleanup(commands: list[list[str]]) -> None:
    for command in commands:
        try:
            subprocess.run(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, timeout=CLEANUP_TIMEOUT_S, check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            continue


def main(argv: list[str]) -> int:
    commands = split_commands(argv)
    if not commands:
        print("usage: container_watch.py -- COMMAND [ARG...] [-- COMMAND ...]", file=sys.stderr)
        return 2

    def ended(signum: int, frame: FrameType | None) -> None:
        _cleanup(commands)
        sys.exit(0)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, ended)
    told = sys.stdin.read()  # until the gate closes its end, or dies
    if told.strip() != DONE:
        _cleanup(commands)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
