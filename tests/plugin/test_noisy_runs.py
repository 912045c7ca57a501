"""A breach on a busy machine is INVALID (not the service's fault); --perfgate-retry-noisy.

As in test_fake_runs: ``load.fake.FakeDriver`` replays 200 requests of about 30 ms and the
service is a stdlib HTTP server in a thread. The machine sampler is a fake (through the
session's ``sampler`` seam): a real one would measure this machine's real neighbours, and
a test must not depend on them. It reports, run after run, the outside CPU that the
``NOISE_PLAN`` environment variable lists (in cores of 2); tests/unit/test_machine.py
tests the real sampler on /proc. The last test drives ``perfgate run``'s retry loop over a
real ``Gate`` with the same fakes.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_project import PROBE, fake_project, run_in_process

# imported once here, for the reason test_fake_runs gives
import pytest_perfgate.core.noise
import pytest_perfgate.gate
import pytest_perfgate.load.fake
import pytest_perfgate.plugin.lock
import pytest_perfgate.results.files
import pytest_perfgate.results.github
import pytest_perfgate.results.markdown
import pytest_perfgate.results.terminal
import pytest_perfgate.target.machine
import pytest_perfgate.target.probe  # noqa: F401

THRESHOLDS = """
scenarios:
  light:
    users: 4
    duration: 4s
    min_samples: 20
    tasks:
      - {method: GET, path: /fast}
    budgets: {p95_ms: 10}
  roomy:
    users: 4
    duration: 4s
    min_samples: 20
    tasks:
      - {method: GET, path: /fast}
    budgets: {p95_ms: 100}
"""

CONFTEST = (
    """
import os
import time

import pytest

from pytest_perfgate.core.noise import MachineSample
from pytest_perfgate.core.stats import Sample
from pytest_perfgate.load.fake import FakeDriver
from pytest_perfgate.plugin.session import SESSION_KEY
from pytest_perfgate.target.machine import MachineRecord
from pytest_perfgate.target.telemetry import GpuTelemetry


"""
    + PROBE
    + """

class Sampler:
    '''Run n reports NOISE_PLAN's n-th figure of outside CPU (the last one after that);
    with BUSY_UNTIL, only the samples up to that second of the load are busy, and the
    record lines up with the load as a real one does.'''

    def __init__(self):
        self.plan = [float(x) for x in os.environ["NOISE_PLAN"].split(",")]
        self.runs = 0

    def watch(self, service_url=None, *, started_here=True):
        outside = self.plan[min(self.runs, len(self.plan) - 1)]
        self.runs += 1
        until = os.environ.get("BUSY_UNTIL")
        if until is None:
            samples = tuple(
                MachineSample(t=i + 1.0, interval_s=1.0, busy_cores=0.5 + outside, known_cores=0.5)
                for i in range(8)
            )
            return lambda: MachineRecord(samples, 2, True)
        # FakeDriver's first progress says 1 s of load at once: the load began 1 s ago
        started = time.monotonic() - 1.0
        samples = tuple(
            MachineSample(
                t=i / 2, interval_s=0.5, known_cores=0.5,
                busy_cores=0.5 + (outside if i / 2 <= float(until) else 0.0),
            )
            for i in range(1, 9)
        )
        return lambda: MachineRecord(samples, 2, True, started)


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    session = config.stash[SESSION_KEY]
    samples = [Sample(i / 50, "GET /fast", 30.0 + i % 3, True, 200) for i in range(200)]
    if os.environ.get("SLOW_FIRST_HALF"):  # slow only in the first 2 s of the 4
        samples = [Sample(i / 50, "GET /fast", 60.0 if i < 100 else 5.0, True, 200)
                   for i in range(200)]
    session.driver = FakeDriver(samples)
    session.probe = Probe()
    session.sampler = Sampler()
"""
)


@pytest.fixture
def project(pytester: pytest.Pytester) -> Iterator[pytest.Pytester]:
    with fake_project(pytester, THRESHOLDS, CONFTEST) as project:
        yield project


def run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, plan: str, *args: str
) -> pytest.RunResult:
    monkeypatch.setenv("NOISE_PLAN", plan)
    return run_in_process(pytester, *args)


def _results(pytester: pytest.Pytester) -> list[dict[str, Any]]:
    paths = (pytester.path / "results" / "load_tests").glob("*_light*.json")
    found = [json.loads(p.read_text(encoding="utf-8")) for p in paths]
    return sorted(found, key=lambda d: d["attempt"])


def test_a_breach_on_a_busy_machine_is_invalid_and_says_the_machine_was_busy(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run(project, monkeypatch, "1.4", "thresholds.yaml::light")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "light: Total p95 budget 10 ms: invalid, 32 ms measured on a noisy machine",
            "*light: INVALID*",
            "*the machine was busy: other processes used 1.4 of 2 cores for 100 % of the run: "
            "that can explain the result, so it does not judge the service*",
        ]
    )
    assert "> budget" not in result.stdout.str()  # no line blames the service
    assert "attempt" not in result.stdout.str()  # no retry asked for
    (data,) = _results(project)
    assert data["verdict"]["outcome"] == "INVALID"
    assert data["budgets"][0]["outcome"] == "INVALID"
    html = Path(data["files"]["html"]).read_text(encoding="utf-8")
    assert "machine: outside CPU 1.4 of 2 cores on average" in html
    assert data["noise"]["noisy"] is True
    assert data["noise"]["outside_cores_busy_mean"] == pytest.approx(1.4)


def test_a_noisy_invalid_fails_but_is_no_breach_for_the_breach_exit_code(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a required check that exits 99 on a breach must not say "breach" for a busy machine
    noisy = run(project, monkeypatch, "1.4", "thresholds.yaml::light",
                "--perfgate-breach-exit-code", "99")  # fmt: skip
    noisy.assert_outcomes(failed=1)
    assert noisy.ret == pytest.ExitCode.TESTS_FAILED
    noisy.stdout.fnmatch_lines(["*the machine was busy*"])
    quiet = run(project, monkeypatch, "0.05", "thresholds.yaml::light",
                "--perfgate-breach-exit-code", "99")  # fmt: skip
    quiet.assert_outcomes(failed=1)
    assert quiet.ret == 99


def test_the_same_breach_on_a_quiet_machine_fails(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run(project, monkeypatch, "0.05", "thresholds.yaml::light")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*light: FAIL*", "*machine: outside CPU 0.1 of 2 cores*"])
    assert "the machine was busy" not in result.stdout.str()


def test_a_pass_on_a_busy_machine_stays_a_pass_with_a_warning(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(project.path / "summary.md"))
    result = run(project, monkeypatch, "1.4", "thresholds.yaml::roomy")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*roomy: PASS*", "*warning: the machine was noisy: *1.4 of 2*"])
    result.stdout.fnmatch_lines(["::warning *roomy: the machine was noisy: the machine was busy*"])
    summary = (project.path / "summary.md").read_text(encoding="utf-8")
    assert "- machine: outside CPU 1.4 of 2 cores on average" in summary


def test_the_noise_check_can_be_switched_off(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run(project, monkeypatch, "1.4", "thresholds.yaml::light", "--perfgate-noise-check=0")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*light: FAIL*", "*warning: the machine was noisy*"])


def test_a_noisy_run_is_retried_and_the_last_attempt_decides(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ("thresholds.yaml::light", "--perfgate-retry-noisy", "2")
    result = run(project, monkeypatch, "1.4,1.4,0", *args)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*light attempt 1/3: the machine was busy: other processes used 1.4 of 2 cores*; "
            "running it again",
            "*light attempt 2/3: the machine was busy*; running it again",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*light (attempt 1/3): INVALID*",
            "*light (attempt 2/3): INVALID*",
            "*light (attempt 3/3): FAIL*",
        ]
    )
    attempts = _results(project)  # every attempt's files are kept
    assert [d["attempt"] for d in attempts] == [[1, 3], [2, 3], [3, 3]]
    assert [d["verdict"]["outcome"] for d in attempts] == ["INVALID", "INVALID", "FAIL"]


def test_a_run_noisy_at_every_attempt_ends_invalid(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run(project, monkeypatch, "1.4", "thresholds.yaml::light", "--perfgate-retry-noisy=1")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*light attempt 2/2: the machine was busy*; no attempt left"])
    assert len(_results(project)) == 2


def test_a_quiet_failure_is_not_retried(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run(project, monkeypatch, "0", "thresholds.yaml::light", "--perfgate-retry-noisy=2")
    result.assert_outcomes(failed=1)
    assert len(_results(project)) == 1
    assert "attempt" not in result.stdout.str()


def test_a_bad_retry_count_is_a_usage_error_naming_the_flag(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run(project, monkeypatch, "0", "--perfgate-retry-noisy=-1")
    result.stderr.fnmatch_lines(["*--perfgate-retry-noisy*expected a number >= 0*"])


def test_the_thresholds_are_settings(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERFGATE_NOISE_CORES", "1.5")  # 1.4 outside cores: not busy then
    result = run(project, monkeypatch, "1.4", "thresholds.yaml::light", "--perfgate-noise-share=5%")
    result.stdout.fnmatch_lines(["*light: FAIL*", "*machine: outside CPU 1.4 of 2 cores*"])
    (data,) = _results(project)
    assert data["noise"]["limits"]["cores"] == 1.5
    assert data["noise"]["limits"]["share"] == 0.05


def test_result_check_on_a_noisy_run_blames_the_machine(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.makepyfile(
        test_check="""
        def test_fast_enough(perfgate):
            perfgate.run("roomy").check(p95_ms=5)
        """
    )
    result = run(project, monkeypatch, "1.4", "test_check.py", "--perfgate-breach-exit-code", "9")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*MachineBusy: roomy: Total p95 budget 5 ms: invalid, * ms measured on a noisy machine*"]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # the machine, not a breach


class _Target:
    url = "http://127.0.0.1:9"

    def alive(self) -> bool:
        return True


class _Probe:
    def answers(self, url: str) -> bool:
        return True

    def metrics(self, url: str) -> None:
        return None

    def watch_gpu(self, url: str) -> Any:
        from pytest_perfgate.target.telemetry import GpuTelemetry

        return lambda: GpuTelemetry(None, ())


class _Sampler:
    """The first run on a busy machine, the others on a quiet one."""

    def __init__(self) -> None:
        self.runs = 0

    def watch(self, service_url: str | None = None, *, started_here: bool = True) -> Any:
        from pytest_perfgate.core.noise import MachineSample
        from pytest_perfgate.target.machine import MachineRecord

        outside = 1.4 if self.runs == 0 else 0.0
        self.runs += 1
        samples = tuple(
            MachineSample(t=i + 1.0, interval_s=1.0, busy_cores=0.5 + outside, known_cores=0.5)
            for i in range(8)
        )
        return lambda: MachineRecord(samples, 2, True)


def test_perfgate_run_retries_a_noisy_scenario_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pytest_perfgate.cli.run import _run_one
    from pytest_perfgate.config import load_thresholds
    from pytest_perfgate.core.stats import Sample
    from pytest_perfgate.gate import Gate
    from pytest_perfgate.load.fake import FakeDriver
    from pytest_perfgate.options import resolve

    (tmp_path / "thresholds.yaml").write_text(textwrap.dedent(THRESHOLDS), encoding="utf-8")
    thresholds = load_thresholds(tmp_path / "thresholds.yaml")
    settings = resolve({"retry_noisy": "2"}, {}, {}, tmp_path)
    samples = [Sample(i / 50, "GET /fast", 30.0 + i % 3, True, 200) for i in range(200)]
    target = _Target()
    gate = Gate(
        thresholds, settings, lambda: target, driver=FakeDriver(samples), probe=_Probe(),
        sampler=_Sampler(), cwd=tmp_path,
    )  # fmt: skip
    result = _run_one(gate, "light", target)
    assert result.attempt == (2, 3) and result.verdict.outcome.value == "FAIL"
    assert "light attempt 1/3: the machine was busy" in capsys.readouterr().err
    assert len(list((tmp_path / "results" / "load_tests").glob("*_light*.json"))) == 2


def test_a_breach_that_the_quiet_part_of_a_noisy_run_shows_too_stays_a_fail(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BUSY_UNTIL", "1.0")  # busy for the first second of 4: noisy
    result = run(project, monkeypatch, "1.4", "thresholds.yaml::light")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*light: FAIL*",
            "*note: the machine was noisy, but the 100 requests made while it was quiet breach "
            "the budget by themselves (light: Total p95 * ms > budget 10 ms*): the FAIL is the "
            "service's",
        ]
    )
    (data,) = _results(project)
    assert data["noise"]["noisy"] is True and data["verdict"]["outcome"] == "FAIL"


def test_a_breach_made_only_while_the_machine_was_busy_is_invalid(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BUSY_UNTIL", "1.5")
    monkeypatch.setenv("SLOW_FIRST_HALF", "1")  # slow while busy (and its margin), fast after
    result = run(project, monkeypatch, "1.4", "thresholds.yaml::light")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*light: INVALID*", "*the machine was busy*"])
    assert "the FAIL is the service's" not in result.stdout.str()
