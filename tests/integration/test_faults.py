"""Faults around a load test: the service cannot start, crashes or hangs; the config or the
locustfile is broken; a task raises; pytest itself is interrupted.

Every case runs pytest in a subprocess (pytester), because the faults are processes and
signals. Every case must end within its configured timeout plus 10 s, say what went
wrong, keep what was written before the fault on disk, and leave no process behind
(``ProcessWatch``: the plugin's service and Locust child run in sessions of their own, so
they are looked for by their working directory, the test's pytester directory).
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fault_helpers import (  # this directory is on sys.path (prepend mode)
    DELAY_SERVER,
    RESULTS,
    SERVICE_CONFTEST,
    ProcessWatch,
    require,
    result_files,
    run_pytest,
    start_pytest,
    thresholds,
    wait_for,
)

pytestmark = pytest.mark.e2e

#: seconds on top of a case's configured timeouts before it counts as hung
SLACK_S = 10.0


@pytest.fixture
def watch(pytester: pytest.Pytester) -> Iterator[ProcessWatch]:
    """The processes of this test's pytest runs; whatever is left is killed afterwards."""
    processes = ProcessWatch(pytester.path)
    yield processes
    processes.kill_all()


def verdict_json(directory: Path) -> dict[str, Any]:
    """The JSON verdict of the run of ``light``."""
    found = sorted((directory / RESULTS).glob("*_light.json"))
    assert found, f"no JSON verdict among {result_files(directory)}"
    data: dict[str, Any] = json.loads(found[-1].read_text())
    return data


def assert_logs_kept(directory: Path, *, run_log: bool = True) -> None:
    names = result_files(directory)
    assert any(n.endswith("_service.log") for n in names), names
    if run_log:
        assert any(n.endswith("_light.log") for n in names), names


# --- the service does not start ---------------------------------------------------------


# --- the service fails under load -------------------------------------------------------

HARM_TEST = """
import signal


def test_load_while_the_service_is_harmed(perfgate, service, under_load):
    under_load(service, signal.{signal})
    perfgate.run("light"{overrides})
"""


def test_a_service_killed_in_the_middle_of_a_run_makes_the_verdict_invalid(
    pytester: pytest.Pytester, watch: ProcessWatch
) -> None:
    pytester.makeconftest(SERVICE_CONFTEST)
    pytester.makepyfile(test_crash=HARM_TEST.format(signal="SIGKILL", overrides=""))
    pytester.makefile(".yaml", thresholds=thresholds(duration="4s"))
    result = run_pytest(pytester, "test_crash.py", limit_s=10 + 4 + 2 + SLACK_S)
    assert (pytester.path / "signal.sent").is_file(), "the service was not killed under load"
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*light: invalid run: the service at http://127.0.0.1:* died or stopped "
            "answering during the run*",
            "*= perfgate =*",
            "*light*INVALID*",
        ]
    )
    assert verdict_json(pytester.path)["verdict"]["outcome"] == "INVALID"
    assert_logs_kept(pytester.path)
    watch.assert_none_left()


WORKER_SERVICE = f"""
import subprocess
import sys

sys.path.insert(0, {str(DELAY_SERVER.parent)!r})
import delay_server

# a worker in the service's process group, as uvicorn starts them
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
delay_server.serve(delay_server.parse_args(sys.argv[1:]))
"""

RESTART_TESTS = """
def test_the_service_leader_crashes(service):
    service.kill()
    service.wait(5)


def test_a_later_run_gets_a_restarted_service(perfgate):
    perfgate.run("light", duration="1s", check=False)
"""


def test_a_service_restarted_after_a_crash_leaves_no_worker_of_the_crashed_one(
    pytester: pytest.Pytester, watch: ProcessWatch
) -> None:
    pytester.makeconftest(SERVICE_CONFTEST)
    pytester.makepyfile(worker_service=WORKER_SERVICE, test_restart=RESTART_TESTS)
    command = "{python} worker_service.py --port {port} --delay-ms 5"
    pytester.makefile(".yaml", thresholds=thresholds(command=command))
    result = run_pytest(pytester, "test_restart.py", limit_s=2 * 10 + 1 + 2 + SLACK_S)
    with require():
        result.assert_outcomes(passed=2)
    watch.assert_none_left()


def test_a_service_that_hangs_in_the_middle_of_a_run_is_never_a_pass(
    pytester: pytest.Pytester, watch: ProcessWatch
) -> None:
    pytester.makeconftest(SERVICE_CONFTEST)
    # stopped and never resumed: ending it is the plugin's job; one user, so that the
    # timeouts alone decide nothing and the outcome does not hang on this machine's speed
    pytester.makepyfile(test_hang=HARM_TEST.format(signal="SIGSTOP", overrides=", users=1"))
    pytester.makefile(".yaml", thresholds=thresholds(duration="3s", request_timeout="1s"))
    result = run_pytest(pytester, "test_hang.py", limit_s=10 + 3 + 1 + SLACK_S)
    with require():
        assert (pytester.path / "signal.sent").is_file(), "the service was not stopped under load"
        assert_logs_kept(pytester.path)
    watch.require_none_left()
    outcome = verdict_json(pytester.path)["verdict"]["outcome"]
    assert outcome in ("FAIL", "INVALID"), f"a hung service got {outcome}"
    result.assert_outcomes(failed=1)


# --- the test's own inputs are broken ---------------------------------------------------


def run_broken_locustfile(pytester: pytest.Pytester) -> pytest.RunResult:
    pytester.makepyfile(broken="import nowhere_to_be_found\n")
    load = "locustfile: broken.py\nuser_classes: [X]"
    pytester.makefile(".yaml", thresholds=thresholds(load=load))
    return run_pytest(pytester, "-m", "load_light", limit_s=10 + 3 + SLACK_S)


def test_a_load_generator_failure_names_its_scenario_once(
    pytester: pytest.Pytester, watch: ProcessWatch
) -> None:
    result = run_broken_locustfile(pytester)
    with require():
        result.assert_outcomes(failed=1)
    watch.require_none_left()
    assert "light: light:" not in result.stdout.str()


RAISING_LOCUSTFILE = """
from locust import FastHttpUser, constant, task


class Raising(FastHttpUser):
    wait_time = constant(0.01)

    @task
    def fast(self):
        self.client.get("/fast")
        raise ValueError("the answer had no label field")
"""


def run_raising_locustfile(pytester: pytest.Pytester, duration_s: int) -> pytest.RunResult:
    pytester.makepyfile(raising=RAISING_LOCUSTFILE)
    load = "locustfile: raising.py\nuser_classes: [Raising]"
    pytester.makefile(".yaml", thresholds=thresholds(load=load, duration=f"{duration_s}s"))
    return run_pytest(pytester, "-m", "load_light", limit_s=10 + duration_s + 2 + SLACK_S)


def test_a_task_that_raises_counts_as_failures_and_breaks_the_error_budget(
    pytester: pytest.Pytester, watch: ProcessWatch
) -> None:
    result = run_raising_locustfile(pytester, duration_s=3)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*light: Total error rate * % > budget 5.00 %*", "*ValueError: the answer had no label*"]
    )
    data = verdict_json(pytester.path)
    assert "ValueError: the answer had no label field" in json.dumps(data)
    watch.assert_none_left()


def test_a_task_that_raises_leaves_the_latency_figures_to_real_responses(
    pytester: pytest.Pytester, watch: ProcessWatch
) -> None:
    result = run_raising_locustfile(pytester, duration_s=2)
    with require():
        result.assert_outcomes(failed=1)
    watch.require_none_left()
    summary = verdict_json(pytester.path)["analysis"]["summary"]
    # every real answer of the delay server takes at least its 5 ms delay
    assert summary["p50"] >= 5, f"Total p50 {summary['p50']} ms: user errors count as 0 ms"


# --- pytest is interrupted --------------------------------------------------------------


def interrupt_under_load(pytester: pytest.Pytester, signum: signal.Signals) -> tuple[int, float]:
    """Start a 30 s scenario, send ``signum`` to pytest under load: (exit code, seconds)."""
    pytester.makefile(".yaml", thresholds=thresholds(duration="30s"))
    proc = start_pytest(pytester, "-m", "load_light")
    try:
        results = pytester.path / RESULTS

        def loaded() -> bool:
            logs = list(results.glob("*_light.log")) if results.is_dir() else []
            return any("All users spawned" in p.read_text(errors="replace") for p in logs)

        wait_for(loaded, "the Locust child to spawn its users", timeout_s=20)
        time.sleep(0.5)
        proc.send_signal(signum)
        started = time.monotonic()
        code = proc.wait(timeout=15 + SLACK_S)
        return code, time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_an_interrupted_run_exits_promptly_keeping_its_logs_and_leaving_no_process(
    pytester: pytest.Pytester, watch: ProcessWatch
) -> None:
    code, took = interrupt_under_load(pytester, signal.SIGINT)
    output = (pytester.path / "out.txt").read_text(errors="replace")
    assert code == pytest.ExitCode.INTERRUPTED, output[-3000:]
    # the Locust child has TERM_GRACE_S (5 s) and the service 10 s to end
    assert took < 15, f"pytest took {took:.1f} s to end after SIGINT"
    assert "KeyboardInterrupt" in output
    assert_logs_kept(pytester.path)
    watch.assert_none_left()


def test_a_terminated_run_leaves_no_service_behind(
    pytester: pytest.Pytester, watch: ProcessWatch
) -> None:
    _, took = interrupt_under_load(pytester, signal.SIGTERM)
    with require():
        assert took < 15, f"pytest took {took:.1f} s to end after SIGTERM"
        assert_logs_kept(pytester.path)
    watch.assert_none_left(wait_s=5)  # the Locust child stops itself when its stdin closes
