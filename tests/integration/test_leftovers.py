"""No process outlives the run that started it, in every mode (issue 12).

Each test runs pytest in a subprocess on a small project (the delay server as the
service), with a ``PERFGATE_RUN_ID`` tag of its own, ends it the way the mode says (it
finishes; SIGINT, SIGTERM or SIGKILL mid-run) and then looks for processes carrying
the tag: every process perfgate starts inherits it, so leftovers are found by tag, not
by name. A subprocess because signals and a killed pytest are the point.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from fault_helpers import DELAY_SERVER, thresholds
from leftovers import new_tag, still_running, tagged

from pytest_perfgate.target.process import free_port

pytestmark = pytest.mark.e2e

#: seconds pytest gets to start its service and Locust child
STARTUP_S = 60.0
#: seconds a killed run's processes get to notice and exit
EXIT_S = 10.0


def project(path: Path, duration: str, *extra: str) -> Path:
    """A project whose thresholds.yaml holds one scenario ``light``, ``extra`` lines added."""
    path.joinpath("pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    text = thresholds(duration=duration, request_timeout="1s", extra="\n".join(extra))
    path.joinpath("thresholds.yaml").write_text(text, encoding="utf-8")
    return path


def start_pytest(path: Path, tag: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PERFGATE_", "PYTEST_"))}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "thresholds.yaml"]
    with path.joinpath("pytest.out").open("wb") as out:
        return subprocess.Popen(
            [*command, *args], cwd=path, env={**env, **tag}, stdout=out, stderr=subprocess.STDOUT
        )


def output(path: Path) -> str:
    return path.joinpath("pytest.out").read_text(encoding="utf-8", errors="replace")[-3000:]


def cmdlines(tag: dict[str, str]) -> list[str]:
    lines = []
    for proc in tagged(tag):
        try:
            lines.append(" ".join(proc.cmdline()))
        except psutil.Error:
            continue
    return lines


def wait_for_load(tag: dict[str, str], workers: int = 0) -> None:
    """Until the Locust child (and ``workers`` local workers) of the tagged run are up."""
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        lines = cmdlines(tag)
        child = any("pytest_perfgate.load.child" in line for line in lines)
        if child and sum("--worker" in line for line in lines) >= workers:
            time.sleep(1.5)  # into the load (or the master's wait)
            return
        time.sleep(0.2)
    raise AssertionError(f"the load did not start within {STARTUP_S:g} s: {cmdlines(tag)}")


def finish(proc: subprocess.Popen[bytes], path: Path, timeout: float = 120.0) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"pytest did not exit in {timeout:g} s:\n{output(path)}") from None


def assert_none_left(tag: dict[str, str], path: Path) -> None:
    left = still_running(tag, EXIT_S)
    assert left == [], f"left running:\n{left}\n{output(path)}"


#: a service that takes its time to stop, as a real one may (uvicorn's graceful shutdown)
SLOW_TO_STOP = f"""
import signal, subprocess, sys, time
server = subprocess.Popen([sys.executable, {str(DELAY_SERVER)!r}, "--port", sys.argv[1]])

def stop(*_):
    time.sleep(3)
    server.wait()
    sys.exit(0)

signal.signal(signal.SIGTERM, stop)
server.wait()
"""


def test_an_xdist_worker_stops_its_service_before_pytest_exits(tmp_path: Path) -> None:
    path, tag = project(tmp_path, "2s"), new_tag()
    path.joinpath("slow_to_stop.py").write_text(SLOW_TO_STOP, encoding="utf-8")
    text = thresholds(command="{python} slow_to_stop.py {port}", duration="2s")
    path.joinpath("thresholds.yaml").write_text(text, encoding="utf-8")
    proc = start_pytest(path, tag, "-n", "2")
    assert finish(proc, path) == 0, output(path)
    # stopped before the worker said it had finished: nothing runs once pytest is gone
    left = still_running(tag, wait_s=0.5)
    assert left == [], f"left running after pytest exited:\n{left}\n{output(path)}"


def test_local_workers_and_the_service_end_with_a_finished_run(tmp_path: Path) -> None:
    path, tag = project(tmp_path, "4s", "processes: 2", "warmup: 1s"), new_tag()
    proc = start_pytest(path, tag)
    assert finish(proc, path) == 0, output(path)
    assert_none_left(tag, path)
    # and Locust's CSV counts what the result counts: the requests after the warm-up
    (result,) = path.glob("results/load_tests/*_light.json")
    (stats_csv,) = path.glob("results/load_tests/*_light_stats.csv")
    total = json.loads(result.read_text(encoding="utf-8"))["statistics"]["total"]["requests"]
    with stats_csv.open(newline="") as f:
        aggregated = next(row for row in csv.DictReader(f) if row["Name"] == "Aggregated")
    assert int(aggregated["Request Count"]) == total > 0


@pytest.mark.parametrize(
    ("signum", "processes"),
    [
        (signal.SIGINT, 1),
        (signal.SIGTERM, 1),
        (signal.SIGKILL, 1),
        (signal.SIGTERM, 2),
        (signal.SIGKILL, 2),
    ],
    ids=["SIGINT", "SIGTERM", "SIGKILL", "SIGTERM-2-processes", "SIGKILL-2-processes"],
)
def test_a_signal_to_pytest_mid_run_leaves_no_process(
    tmp_path: Path, signum: signal.Signals, processes: int
) -> None:
    path, tag = project(tmp_path, "60s", f"processes: {processes}"), new_tag()
    proc = start_pytest(path, tag)
    wait_for_load(tag, workers=processes if processes > 1 else 0)
    proc.send_signal(signum)
    finish(proc, path, timeout=30)
    assert_none_left(tag, path)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_master_waiting_for_external_workers_ends_with_pytest(
    tmp_path: Path, signum: signal.Signals
) -> None:
    bind = f"master_bind: '127.0.0.1:{free_port()}'"
    path, tag = project(tmp_path, "60s", "external_workers: 1", bind), new_tag()
    proc = start_pytest(path, tag)
    wait_for_load(tag)  # the master waits for a worker nobody starts
    proc.send_signal(signum)
    finish(proc, path, timeout=30)
    assert_none_left(tag, path)
