"""Load runs only when asked: a bare ``pytest`` collects the scenarios and deselects them;
``-m load_<name>``, the thresholds file or a scenario's node id as an argument runs them
(pytester, in process, collection only; tests/plugin/test_fake_runs.py runs them)."""

from __future__ import annotations

import textwrap

import pytest

THRESHOLDS = """
service:
  url: http://127.0.0.1:9
scenarios:
  light:
    users: 2
    duration: 10s
    tasks:
      - {method: GET, path: /fast}
    budgets: {p95_ms: 100}
  heavy:
    users: 20
    duration: 1m
    tasks:
      - {method: GET, path: /slow}
    budgets: {p95_ms: 500}
"""

#: the line the summary shows when the scenarios were left out
HINT = (
    "perfgate: 2 load scenario(s) of thresholds.yaml deselected (load runs only when asked): "
    "run them with pytest -m load_<scenario> or pytest thresholds.yaml[[]::<scenario>[]]"
)


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # in-process runs see the plugin already imported by this session; pytest then warns
    # that it cannot rewrite its asserts, which is true and harmless here
    return pytester.runpytest("-W", "ignore::pytest.PytestAssertRewriteWarning", *args)


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """This repository's layout: ``testpaths`` names the tests and the thresholds file."""
    pytester.makefile(".yaml", thresholds=textwrap.dedent(THRESHOLDS))
    pytester.makeini("[pytest]\ntestpaths = tests thresholds.yaml\n")
    pytester.mkdir("tests")
    (pytester.path / "tests" / "test_plain.py").write_text("def test_plain():\n    pass\n")
    return pytester


def test_a_bare_pytest_runs_the_tests_and_deselects_every_scenario(
    project: pytest.Pytester,
) -> None:
    result = run(project)
    result.assert_outcomes(passed=1, deselected=2)
    result.stdout.fnmatch_lines([HINT])


def test_a_bare_pytest_without_testpaths_deselects_the_scenarios_it_finds(
    project: pytest.Pytester,
) -> None:
    project.makeini("[pytest]\n")
    result = run(project)
    result.assert_outcomes(passed=1, deselected=2)
    result.stdout.fnmatch_lines([HINT])


def test_pytest_tests_collects_no_scenario_and_says_nothing_of_them(
    project: pytest.Pytester,
) -> None:
    result = run(project, "tests")
    result.assert_outcomes(passed=1)
    assert "deselected" not in result.stdout.str()


def test_naming_the_folder_that_holds_the_thresholds_file_is_not_asking_for_load(
    project: pytest.Pytester,
) -> None:
    run(project, ".").assert_outcomes(passed=1, deselected=2)


def test_dash_m_naming_a_load_marker_needs_no_path(project: pytest.Pytester) -> None:
    result = run(project, "--co", "-q", "-m", "load_light")
    result.stdout.fnmatch_lines(["thresholds.yaml::light", "*1/3 tests collected (2 deselected)*"])
    assert "load runs only when asked" not in result.stdout.str()


def test_dash_m_naming_two_load_markers_selects_both(project: pytest.Pytester) -> None:
    result = run(project, "--co", "-q", "-m", "load_light or load_heavy")
    result.stdout.fnmatch_lines(["thresholds.yaml::light", "thresholds.yaml::heavy"])


def test_dash_m_without_a_load_marker_still_deselects_the_scenarios(
    project: pytest.Pytester,
) -> None:
    result = run(project, "-m", "not slow")
    result.assert_outcomes(passed=1, deselected=2)
    result.stdout.fnmatch_lines([HINT])


def test_the_thresholds_file_as_an_argument_runs_every_scenario(
    project: pytest.Pytester,
) -> None:
    result = run(project, "--co", "-q", "thresholds.yaml")
    result.stdout.fnmatch_lines(["thresholds.yaml::light", "thresholds.yaml::heavy", "2 tests*"])
    assert "deselected" not in result.stdout.str()


def test_a_scenario_node_id_as_an_argument_runs_that_scenario(project: pytest.Pytester) -> None:
    result = run(project, "--co", "-q", "thresholds.yaml::light")
    result.stdout.fnmatch_lines(["thresholds.yaml::light", "1 test collected*"])


def test_the_thresholds_file_named_by_its_absolute_path_runs_its_scenarios(
    project: pytest.Pytester,
) -> None:
    result = run(project, "--co", "-q", str(project.path / "thresholds.yaml"))
    result.stdout.fnmatch_lines(["*thresholds.yaml::light", "*thresholds.yaml::heavy"])


def test_help_says_when_load_runs(project: pytest.Pytester) -> None:
    result = run(project, "--help")
    text = " ".join(result.stdout.str().split())
    assert "load runs only when asked: they are deselected unless -m names a load_ marker" in text


def test_under_xdist_the_controller_says_once_what_its_workers_deselected(
    project: pytest.Pytester,
) -> None:
    # the workers collect and deselect; the controller, which prints the summary, did not
    result = project.runpytest_subprocess("-n", "2", "-p", "no:randomly")
    result.assert_outcomes(passed=1)
    assert result.stdout.str().count("load scenario(s) of thresholds.yaml deselected") == 1
    result = project.runpytest_subprocess("tests", "-n", "2", "-p", "no:randomly")
    result.assert_outcomes(passed=1)
    assert "deselected (load runs only when asked)" not in result.stdout.str()
