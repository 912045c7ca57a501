"""The plugin without load: options, markers, scenario items, usage errors (pytester)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

THRESHOLDS = """
service:
  url: http://127.0.0.1:9
scenarios:
  light:
    description: steady light traffic
    users: 2
    duration: 10s
    tasks:
      - {method: GET, path: /fast}
    budgets: {p95_ms: 100, error_rate: 0.01}
  heavy:
    users: 20
    duration: 1m
    tasks:
      - {method: GET, path: /slow}
    budgets: {p95_ms: 500}
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # in-process runs see the plugin already imported by this session; pytest then warns
    # that it cannot rewrite its asserts, which is true and harmless here
    return pytester.runpytest("-W", "ignore::pytest.PytestAssertRewriteWarning", *args)


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makefile(".yaml", thresholds=textwrap.dedent(THRESHOLDS))
    pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
    return pytester


def test_markers_lists_one_marker_per_scenario_and_perf_budget(project: pytest.Pytester) -> None:
    result = run(project, "--markers")
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.perf_budget(p50_ms=..., p95_ms=..., *",
            "@pytest.mark.load_light: load scenario 'light' of thresholds.yaml "
            "(steady light traffic)",
            "@pytest.mark.load_heavy: load scenario 'heavy' of thresholds.yaml (20 users, 60s)",
        ]
    )


def test_scenarios_are_collected_as_items_carrying_their_marker(project: pytest.Pytester) -> None:
    # both named: scenarios found by recursion are deselected (tests/plugin/test_load_when_asked.py)
    result = run(
        project, "--collect-only", "-q", "--strict-markers", "test_plain.py", "thresholds.yaml"
    )
    result.stdout.fnmatch_lines(
        ["test_plain.py::test_plain", "thresholds.yaml::light", "thresholds.yaml::heavy"]
    )


def test_dash_m_selects_one_scenario_with_strict_markers(project: pytest.Pytester) -> None:
    result = run(project, "--collect-only", "-q", "-m", "load_light", "--strict-markers")
    result.stdout.fnmatch_lines(["thresholds.yaml::light", "*1/3 tests collected (2 deselected)*"])
    assert "heavy" not in result.stdout.str()


def test_collection_can_be_turned_off(project: pytest.Pytester) -> None:
    result = run(project, "--collect-only", "-q", "--perfgate-collect", "no")
    assert "thresholds.yaml::" not in result.stdout.str()
    result.stdout.fnmatch_lines(["test_plain.py::test_plain"])


def test_a_perf_budget_marker_with_an_unknown_keyword_is_a_usage_error(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.perf_budget(p95=80)
        def test_x():
            pass
        """
    )
    result = run(project)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*test_bad.py::test_x: @pytest.mark.perf_budget.p95: unknown budget key 'p95'*"]
    )


def test_a_perf_budget_marker_with_a_bad_value_names_the_test(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.perf_budget(p95_ms="fast")
        def test_x():
            pass
        """
    )
    result = run(project)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*perf_budget.p95_ms: expected a number of milliseconds, got 'fast'*"]
    )


def test_a_bad_thresholds_file_is_a_usage_error_naming_file_key_and_value(
    project: pytest.Pytester,
) -> None:
    project.makefile(
        ".yaml", thresholds=textwrap.dedent(THRESHOLDS).replace("p95_ms: 100", "p95_ms: 1OO")
    )
    result = run(project)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: perfgate: thresholds.yaml: scenarios.light.budgets.p95_ms: "
            "expected a number of milliseconds, got '1OO'"
        ]
    )
    assert "Traceback" not in result.stderr.str()


def test_a_named_thresholds_file_that_does_not_exist_is_a_usage_error(
    project: pytest.Pytester,
) -> None:
    result = run(project, "--perfgate-thresholds", "missing.yaml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*missing.yaml: thresholds file not found*"])


def test_a_project_without_thresholds_file_still_runs_its_tests(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
    result = run(pytester)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["perfgate: no thresholds file at *thresholds.yaml"])


def test_a_bad_option_value_names_its_source(project: pytest.Pytester) -> None:
    result = run(project, "--perfgate-duration", "soon")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--perfgate-duration: expected a duration*got 'soon'*"])


def test_a_bad_environment_value_names_the_variable(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERFGATE_USERS", "many")
    result = run(project)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*PERFGATE_USERS: expected a whole number, got 'many'*"])


def test_a_bad_ini_value_names_the_ini_key(project: pytest.Pytester) -> None:
    project.makeini("[pytest]\nperfgate_confidence = 2\n")
    result = run(project)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini perfgate_confidence: expected a confidence level*"])


def test_the_command_line_wins_over_the_environment_and_the_ini_file(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.makeini("[pytest]\nperfgate_duration = 30s\n")
    monkeypatch.setenv("PERFGATE_DURATION", "40s")
    result = run(project, "--perfgate-duration", "7s", "--co")
    result.stdout.fnmatch_lines(["perfgate: *overrides: duration=7.0*"])
    result = run(project, "--co")
    result.stdout.fnmatch_lines(["perfgate: *overrides: duration=40.0*"])


def test_help_lists_every_option_under_one_group(project: pytest.Pytester) -> None:
    result = run(project, "--help")
    result.stdout.fnmatch_lines(
        [
            "load-test budgets (pytest-perfgate):",
            "*--perfgate-thresholds=PATH*",
            "*--perfgate-url=URL*",
            "*--perfgate-duration=DURATION*",
        ]
    )


def test_the_header_names_the_thresholds_file_and_the_target(project: pytest.Pytester) -> None:
    result = run(project, "--co")
    result.stdout.fnmatch_lines(
        ["perfgate: *thresholds.yaml (2 scenarios), target: http://127.0.0.1:9, results: *"]
    )


def test_importing_the_plugin_imports_no_locust_torch_or_fastapi() -> None:
    # a subprocess: this pytest process may already hold these modules from other tests
    code = (
        "import pytest_perfgate.plugin, pytest_perfgate.gate, sys; "
        "heavy = {'locust', 'gevent', 'torch', 'fastapi'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_bad_duration_given_to_perfgate_run_is_a_usage_error_naming_the_call(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(
        test_run="""
        def test_x(perfgate):
            perfgate.run("light", duration="soon")
        """
    )
    result = run(project, "test_run.py")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*UsageError: perfgate: perfgate.run(duration): expected a duration*got 'soon'*"]
    )


def test_an_unknown_scenario_given_to_perfgate_run_is_a_usage_error_naming_the_known_ones(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(
        test_run="""
        def test_x(perfgate):
            perfgate.run("medium")
        """
    )
    result = run(project, "test_run.py")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*UsageError: perfgate: *thresholds.yaml: unknown scenario 'medium'; "
         "known scenarios: light, heavy*"]
    )  # fmt: skip
