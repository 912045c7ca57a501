"""The fixtures, the exit code and the signal handler over a whole run, in milliseconds.

The session's load driver is ``load.fake.FakeDriver`` (set by the test project's
conftest through the session's ``driver`` seam) and the service a stdlib HTTP server in
a thread of this process, named with ``--perfgate-url``: everything of a real run but
Locust, in process (tests/integration runs the real one).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fake_project import PROBE, fake_project
from fake_project import run_in_process as run

# pytester's in-process runs drop the modules first imported during a run; the modules a
# run imports lazily (the gate, the reports, the lock) would then come back as new copies
# next to old ones that kept a reference (an ``Outcome`` of one copy is no key of the
# other's tables). Imported here, once, they stay.
import pytest_perfgate.gate
import pytest_perfgate.load.fake
import pytest_perfgate.plugin.lock
import pytest_perfgate.results.files
import pytest_perfgate.results.github
import pytest_perfgate.results.markdown
import pytest_perfgate.results.terminal
import pytest_perfgate.target.probe  # noqa: F401

THRESHOLDS = """
scenarios:
  light:
    users: 4
    duration: 4s
    min_samples: 20
    tasks:
      - {method: GET, path: /fast}
    budgets: {error_rate: 0.5}
"""

# 200 requests of about 30 ms over 4 s; the driver checks the signal handler as it runs
CONFTEST = (
    """
import signal

import pytest

from pytest_perfgate.core.stats import Sample
from pytest_perfgate.load.fake import FakeDriver
from pytest_perfgate.plugin.session import SESSION_KEY, _interrupt
from pytest_perfgate.target.telemetry import GpuTelemetry

HANDLERS = []


class Driver(FakeDriver):
    def run(self, *args, **kwargs):
        HANDLERS.append(signal.getsignal(signal.SIGTERM) is _interrupt)
        return super().run(*args, **kwargs)


"""
    + PROBE
    + """

@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    session = config.stash[SESSION_KEY]
    samples = [Sample(i / 50, "GET /fast", 30.0 + i % 3, True, 200) for i in range(200)]
    session.driver = Driver(samples)
    session.probe = Probe()
"""
)


@pytest.fixture
def project(pytester: pytest.Pytester) -> Iterator[pytest.Pytester]:
    with fake_project(pytester, THRESHOLDS, CONFTEST) as project:
        yield project


def test_a_test_failing_only_by_result_check_exits_with_the_breach_exit_code(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(
        test_check="""
        def test_fast_enough(perfgate):
            result = perfgate.run("light")  # within the scenario's own budget
            assert result.total.requests == 200
            result.check(p95_ms=5)
        """
    )
    result = run(project, "test_check.py", "--perfgate-breach-exit-code", "99")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*BudgetExceeded: light: Total p95 * ms > budget 5 ms*"])
    assert result.ret == 99


def test_a_plain_assertion_failure_beside_it_keeps_pytests_exit_code(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(
        test_check="""
        def test_fast_enough(perfgate):
            perfgate.run("light").check(p95_ms=5)

        def test_broken():
            assert False
        """
    )
    result = run(project, "test_check.py", "--perfgate-breach-exit-code", "99")
    result.assert_outcomes(failed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_a_marker_budget_breach_fails_the_run_and_counts_as_a_breach(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(
        test_marker="""
        import pytest

        @pytest.mark.perf_budget(p95_ms=5)
        def test_too_tight(perfgate):
            perfgate.run("light")
        """
    )
    result = run(project, "test_marker.py", "--perfgate-breach-exit-code", "99")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*light: Total p95 * ms > budget 5 ms*"])
    assert result.ret == 99


def test_an_unknown_key_given_to_result_check_is_a_usage_error(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_check="""
        def test_x(perfgate):
            perfgate.run("light").check(p95=5)
        """
    )
    result = run(project, "test_check.py")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*UsageError: perfgate: result.check().p95: unknown budget key*"])


def test_the_sigterm_handler_is_installed_during_a_run_only(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_signal="""
        import signal
        from conftest import HANDLERS
        from pytest_perfgate.plugin.session import _interrupt

        def test_x(perfgate):
            assert signal.getsignal(signal.SIGTERM) is not _interrupt
            perfgate.run("light")
            assert HANDLERS == [True]  # installed while the load ran
            assert signal.getsignal(signal.SIGTERM) is not _interrupt  # and restored
        """
    )
    run(project, "test_signal.py").assert_outcomes(passed=1)


def test_the_scenario_item_runs_through_the_same_session(project: pytest.Pytester) -> None:
    result = run(project, "-m", "load_light")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*= perfgate =*", "*light*PASS*"])


def test_the_session_leaves_its_verdict_tables_in_markdown_for_a_pull_request_comment(
    project: pytest.Pytester,
) -> None:
    run(project, "-m", "load_light").assert_outcomes(passed=1)
    summary = (project.path / "results" / "load_tests" / "summary.md").read_text()
    assert summary.startswith("## pytest-perfgate\n\n### light: ✅ PASS")


def _url_of(project: pytest.Pytester) -> str:
    """The service's URL, taken out of the ini file: the command line names it instead."""
    ini = project.path / "tox.ini"
    url = ini.read_text().split("perfgate_url = ", 1)[1].strip()
    ini.write_text("[pytest]\n")
    return url


def test_locusts_host_option_names_the_target_as_perfgate_url_does(
    project: pytest.Pytester,
) -> None:
    url = _url_of(project)
    result = run(project, "-m", "load_light", "--host", url)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"perfgate: *target: {url},*"])


def test_host_and_a_different_perfgate_url_are_a_usage_error(project: pytest.Pytester) -> None:
    url = _url_of(project)
    result = run(project, "-m", "load_light", "--host", url, "--perfgate-url", "http://x:1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"*perfgate: --host {url} and --perfgate-url http://x:1 name two targets; "
         "give the target once, with --perfgate-url"]
    )  # fmt: skip


def test_a_bare_pytest_runs_no_scenario_and_naming_one_runs_it(project: pytest.Pytester) -> None:
    project.makepyfile(test_plain="def test_plain():\n    pass\n")
    run(project).assert_outcomes(passed=1, deselected=1)
    assert not (project.path / "results").exists()  # no load ran
    result = run(project, "thresholds.yaml::light")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*light*PASS*"])
