"""Which Locust processes of this test process are still running (stdlib + psutil only)."""

from __future__ import annotations

import psutil


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
