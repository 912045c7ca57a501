"""Faults before any load runs: the service cannot start, the config or the locustfile is
broken, a stopped service is stopped again.

These start processes (pytest in a subprocess, the service) but drive no load, so they
may run beside the serial load tests (the root conftest's xdist groups); every case must
still end within its timeout plus ``SLACK_S``, say what went wrong and leave no process
behind (``ProcessWatch`` finds a test's processes by its own pytester directory).
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import psutil
import pytest
from fault_helpers import (  # this directory is on sys.path (prepend mode)
    DELAY_COMMAND,
    DELAY_SERVER,
    ProcessWatch,
    run_pytest,
    thresholds,
    wait_for,
)
from test_faults import SLACK_S, assert_logs_kept, run_broken_locustfile
from test_faults import watch as watch  # the fixture, shared

from pytest_perfgate.config import ServiceSpec
from pytest_perfgate.target.process import ManagedService

pytestmark = pytest.mark.e2e


UNREADY_SERVER = """
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class Unready(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", int(sys.argv[1])), Unready).serve_forever()
"""


def test_a_service_command_that_does_not_exist_fails_the_scenario_naming_it(
    pytester: pytest.Pytester, watch: ProcessWatch
) -> None:
    pytester.makefile(".yaml", thresholds=thresholds(command="/nonexistent/binary {port}"))
    result = run_pytest(pytester, "-m", "load_light", limit_s=10 + SLACK_S)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*cannot start the service: /nonexistent/binary * No such file or directory*"]
    )
    assert "Traceback" not in result.stdout.str()
    watch.assert_none_left()


def test_a_service_that_exits_at_once_fails_with_its_exit_code_and_log(
    pytester: pytest.Pytester, watch: ProcessWatch
) -> None:
    pytester.makepyfile(quits="import sys\nprint('cannot load the model', flush=True)\nsys.exit(3)")
    pytester.makefile(".yaml", thresholds=thresholds(command="{python} quits.py --port {port}"))
    result = run_pytest(pytester, "-m", "load_light", limit_s=10 + SLACK_S)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*the service exited with code 3 before it was ready*", "*cannot load the model*"]
    )
    assert_logs_kept(pytester.path, run_log=False)
    watch.assert_none_left()


def test_a_service_that_never_becomes_ready_is_stopped_after_the_startup_timeout(
    pytester: pytest.Pytester, watch: ProcessWatch
) -> None:
    pytester.makepyfile(unready=UNREADY_SERVER)
    text = thresholds(command="{python} unready.py {port}", startup_timeout="3s")
    pytester.makefile(".yaml", thresholds=text)
    result = run_pytest(pytester, "-m", "load_light", limit_s=3 + SLACK_S)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*the service was not ready at http://127.0.0.1:*/health within 3s (last: HTTP 503)*"]
    )
    assert_logs_kept(pytester.path, run_log=False)
    watch.assert_none_left()


def test_a_service_whose_port_is_taken_fails_with_address_already_in_use(
    pytester: pytest.Pytester, watch: ProcessWatch
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        # the service ignores {port} (it only seeds the delays) and binds the held port
        command = f"{{python}} {DELAY_SERVER} --port {port} --seed {{port}}"
        pytester.makefile(".yaml", thresholds=thresholds(command=command))
        result = run_pytest(pytester, "-m", "load_light", limit_s=10 + SLACK_S)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*the service exited with code 1 before it was ready*", "*Address already in use*"]
    )
    watch.assert_none_left()


def test_stopping_a_stopped_service_does_not_wait_out_the_grace_period(
    tmp_path: Path, watch: ProcessWatch
) -> None:
    spec = ServiceSpec(command=DELAY_COMMAND, startup_timeout_s=10)
    service = ManagedService(spec, tmp_path / "service.log", cwd=tmp_path)
    service.start()
    assert service.proc is not None
    pid = service.proc.pid
    os.kill(pid, signal.SIGSTOP)
    wait_for(lambda: psutil.Process(pid).status() == psutil.STATUS_STOPPED, "SIGSTOP", 5)
    started = time.monotonic()
    service.stop(grace_s=10)
    took = time.monotonic() - started
    assert took < 3, f"stop() of a stopped service took {took:.1f} s (grace 10 s)"
    assert service.last_returncode == -signal.SIGTERM  # SIGTERM ended it, not SIGKILL
    assert not psutil.pid_exists(pid)
    watch.assert_none_left()


def test_an_unknown_scenario_key_is_a_usage_error_before_any_process_starts(
    pytester: pytest.Pytester, watch: ProcessWatch
) -> None:
    pytester.makefile(".yaml", thresholds=thresholds(extra="userz: 40"))
    result = run_pytest(pytester, "-m", "load_light", limit_s=SLACK_S)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: perfgate: thresholds.yaml: scenarios.light.userz: unknown key 'userz'; "
         "known keys: *, users, *"]
    )  # fmt: skip
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert not (pytester.path / "results").exists(), "a service or a run was started"
    watch.assert_none_left()


def test_a_locustfile_that_fails_to_import_fails_the_test_naming_file_and_error(
    pytester: pytest.Pytester, watch: ProcessWatch
) -> None:
    result = run_broken_locustfile(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*locustfile */broken.py failed to import: "
         "ModuleNotFoundError: No module named 'nowhere_to_be_found'*"]
    )  # fmt: skip
    assert "Traceback" not in result.stdout.str()
    assert_logs_kept(pytester.path)
    watch.assert_none_left()
