"""What a CI job sees: GitHub Actions output, JUnit XML, the breach exit code, xdist,
pytest-benchmark budgets. Real pytest subprocesses, real Locust, the delay server."""

from __future__ import annotations

import datetime as dt
import json
import textwrap
import xml.etree.ElementTree as ET

import pytest
from test_plugin_e2e import run, thresholds

pytestmark = pytest.mark.e2e

FAILING = thresholds(30, "{p95_ms: 5, error_rate: 0.5}")
PASSING = thresholds(5, "{p95_ms: 400}")


def test_in_github_actions_a_breach_writes_the_summary_and_error_commands_and_junit_its_figures(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = pytester.path / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    pytester.makefile(".yaml", thresholds=FAILING)
    result = run(pytester, "-m", "load_light", "--junitxml=junit.xml")
    result.assert_outcomes(failed=1)
    # pytester writes the file without its leading blank line
    lines = FAILING.strip("\n").splitlines()
    budget_line = lines.index("    budgets: {p95_ms: 5, error_rate: 0.5}") + 1
    result.stdout.fnmatch_lines(
        [
            f"::error file=thresholds.yaml,line={budget_line},title=perfgate light::"
            "light: Total p95 * ms > budget 5 ms*"
        ]
    )
    text = summary.read_text()
    assert text.startswith("## pytest-perfgate\n")
    assert "| Total | p95 |" in text and "FAIL" in text
    # the same run's JUnit XML carries the figures and the breach as failure text
    case = ET.parse(pytester.path / "junit.xml").getroot().find(".//testcase")
    assert case is not None
    properties = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert properties["perfgate.light.verdict"] == "FAIL"
    assert int(properties["perfgate.light.requests"]) > 20
    assert float(properties["perfgate.light.p95_ms"]) >= 30
    failure = case.find("failure")
    assert failure is not None
    assert "light: Total p95" in (failure.get("message") or "") + (failure.text or "")


def test_outside_github_actions_nothing_of_it_is_written_and_a_breach_exits_as_pytest_does(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(pytester.path / "summary.md"))
    pytester.makefile(".yaml", thresholds=FAILING)
    result = run(pytester, "-m", "load_light")
    result.assert_outcomes(failed=1)
    assert "::error" not in result.stdout.str()
    assert not (pytester.path / "summary.md").exists()
    # without --perfgate-breach-exit-code a breach exits with pytest's own code
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_the_breach_exit_code_applies_only_when_breaches_are_the_only_failures(
    pytester: pytest.Pytester,
) -> None:
    pytester.makefile(".yaml", thresholds=FAILING)
    result = run(pytester, "-m", "load_light", "--perfgate-breach-exit-code", "99")
    assert result.ret == 99
    pytester.makepyfile(test_broken="import pytest\n\n@pytest.mark.load_light\ndef test_x():\n"
                        "    assert False\n")  # fmt: skip
    result = run(pytester, "-m", "load_light", "--perfgate-breach-exit-code", "99")
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_under_xdist_scenarios_never_overlap_and_each_is_reported_once(
    pytester: pytest.Pytester,
) -> None:
    text = PASSING + textwrap.indent(
        textwrap.dedent(
            """\
            other:
              users: 2
              duration: 4s
              wait_time: [0.01, 0.02]
              tasks:
                - {method: GET, path: /fast}
              budgets: {p95_ms: 400}
            """
        ),
        "  ",
    )
    pytester.makefile(".yaml", thresholds=text)
    result = run(pytester, "-n", "2", "-m", "load_light or load_other")
    result.assert_outcomes(passed=2)
    out = result.stdout.str()
    assert out.count("light: PASS") == 1 and out.count("other: PASS") == 1
    windows = []
    for path in (pytester.path / "results" / "load_tests").glob("*.json"):
        data = json.loads(path.read_text())
        start = dt.datetime.fromisoformat(data["started_at"]).timestamp()
        windows.append((start, start + data["duration_s"]))
    assert len(windows) == 2
    first, second = sorted(windows)
    assert first[1] <= second[0], "the two load runs overlapped"


def test_perf_budget_judges_a_pytest_benchmark_on_its_raw_timings(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_bench="""
        import time
        import pytest

        @pytest.mark.perf_budget(p95_ms=0.001)
        def test_too_slow(benchmark):
            benchmark.pedantic(time.sleep, args=(0.002,), rounds=30)

        # 100 rounds: below about 60, no interval can put a p95 under any budget
        @pytest.mark.perf_budget(p95_ms=500, mean_ms=500)
        def test_fast_enough(benchmark):
            benchmark.pedantic(time.sleep, args=(0.001,), rounds=100)
        """
    )
    result = run(pytester, "test_bench.py")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*test_too_slow: Total p95 * ms > budget 0.001 ms*n=30*"])
