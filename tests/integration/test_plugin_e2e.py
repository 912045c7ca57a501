"""The whole gate through pytest: real Locust child, real HTTP server, real YAML (pytester).

The service under test is ``delay_server.py``, started by the plugin from
``service.command`` like any user's service, with a latency injected on the command line.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

DELAY_SERVER = Path(__file__).with_name("delay_server.py")

pytestmark = pytest.mark.e2e


def thresholds(delay_ms: float, budgets: str, *, endpoints: str = "{}", command: str = "") -> str:
    command = command or f"{{python}} {DELAY_SERVER} --port {{port}} --delay-ms {delay_ms}"
    return textwrap.dedent(
        f"""
        service:
          command: '{command}'
          ready_path: /health
          startup_timeout: 20s
        defaults:
          min_samples: 20
        scenarios:
          light:
            users: 4
            spawn_rate: 4
            duration: 4s
            wait_time: [0.01, 0.02]
            tasks:
              - {{method: GET, path: /fast}}
              - {{method: GET, path: /health, weight: 1}}
            budgets: {budgets}
            endpoints: {endpoints}
        """
    )


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # a subprocess, as a user runs it: an in-process run restores sys.modules afterwards,
    # and modules imported lazily during one run (httpcore) then mismatch in the next
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=120)


def test_a_scenario_within_budget_passes_leaves_its_files_and_keeps_locust_out_of_pytest(
    pytester: pytest.Pytester,
) -> None:
    # one real run, several promises: the summary, the files, and no locust in pytest
    pytester.makefile(".yaml", thresholds=thresholds(10, "{p95_ms: 400, error_rate: 0.05}"))
    pytester.makeconftest(
        """
        import sys
        from pathlib import Path

        def pytest_sessionfinish(session):
            heavy = {"locust", "gevent", "torch", "fastapi"}
            found = sorted(m for m in sys.modules if m.split(".")[0] in heavy)
            Path("heavy-modules.txt").write_text(" ".join(found))
        """
    )
    result = run(pytester, "-m", "load_light")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*= perfgate =*", "*light*PASS*"])
    assert (pytester.path / "heavy-modules.txt").read_text() == ""
    results = pytester.path / "results" / "load_tests"
    names = sorted(p.name for p in results.iterdir())
    for suffix in ("_stats.csv", "_stats_history.csv", "_failures.csv", ".html", ".log", ".json"):
        assert any(n.endswith("_light" + suffix) for n in names), (suffix, names)
    data = json.loads(next(results.glob("*_light.json")).read_text())
    assert 10 <= data["analysis"]["summary"]["p95"] < 400


def test_budgets_set_too_low_fail_with_a_breach_line_naming_the_total_and_the_endpoint(
    pytester: pytest.Pytester,
) -> None:
    text = thresholds(30, "{p95_ms: 5}", endpoints="{'GET /fast': {p95_ms: 5}}")
    pytester.makefile(".yaml", thresholds=text)
    result = run(pytester, "-m", "load_light")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*light: Total p95 * ms > budget 5 ms (+*, n=*"])
    result.stdout.fnmatch_lines(["*light: GET /fast p95 * ms > budget 5 ms*"])


def test_perf_budget_applies_to_every_run_of_the_perfgate_fixture(
    pytester: pytest.Pytester,
) -> None:
    pytester.makefile(".yaml", thresholds=thresholds(30, "{error_rate: 0.5}"))
    pytester.makepyfile(
        test_budget="""
        import pytest

        @pytest.mark.perf_budget(p95_ms=5)
        def test_too_tight(perfgate):
            perfgate.run("light", duration="3s")

        def test_explicit_check(perfgate):
            result = perfgate.run("light", duration="3s", users=2)
            assert result.total.requests > 20
            assert result.total.p95 >= 30
            result.check(p95_ms=1000, error_rate=0.1)
            with pytest.raises(AssertionError, match=r"p95 .* ms > budget 5 ms"):
                result.check(p95_ms=5)
        """
    )
    result = run(pytester, "test_budget.py")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*light: Total p95 * ms > budget 5 ms*"])


def test_a_service_that_cannot_start_fails_the_scenario_with_its_log(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(boom="import sys\nsys.exit('boom from the service')\n")
    command = "{python} boom.py --port {port}"
    pytester.makefile(".yaml", thresholds=thresholds(10, "{p95_ms: 400}", command=command))
    result = run(pytester, "-m", "load_light")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*the service exited with code 1 before it was ready*", "*boom from the service*"]
    )


def test_a_missing_baseline_is_named_before_any_load_runs(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", thresholds=thresholds(10, "{p95_regression: '10%'}"))
    result = run(pytester, "-m", "load_light", "--perfgate-baseline", "nope")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*baseline 'nope': no such baseline*"])
    assert not list((pytester.path / "results" / "load_tests").glob("*_light.json"))


def spike_thresholds(extra_server_args: str) -> str:
    return textwrap.dedent(
        f"""
        service:
          command: '{{python}} {DELAY_SERVER} --port {{port}} --delay-ms 5 {extra_server_args}'
          ready_path: /health
        scenarios:
          spike:
            users: 30
            wait_time: [0.02, 0.05]
            duration: 12s
            warmup: 1s
            min_samples: 20
            tasks:
              - {{method: GET, path: /fast}}
            shape:
              type: spike
              stages:
                - {{until: 4s, users: 3, spawn_rate: 3}}
                - {{until: 7s, users: 30, spawn_rate: 30}}
                - {{until: 12s, users: 3, spawn_rate: 30}}
            budgets: {{error_rate: 0.5, hard_error_rate: 0, recovery_s: 4}}
        """
    )


def test_a_spike_is_judged_on_hard_errors_and_recovery(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", thresholds=spike_thresholds(""))
    run(pytester, "-m", "load_spike").assert_outcomes(passed=1)
    (path,) = (pytester.path / "results" / "load_tests").glob("*_spike.json")
    checks = {c["metric"]: c for c in json.loads(path.read_text())["budgets"]}
    assert checks["hard_error_rate"]["observed"] == 0
    assert checks["recovery_s"]["observed"] <= 4

    pytester.makefile(".yaml", thresholds=spike_thresholds("--error-rate 0.1"))
    result = run(pytester, "-m", "load_spike")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*spike: Total hard error rate * % > budget 0.00 %*"])
