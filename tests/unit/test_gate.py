"""The gate's own rules, over a FakeDriver and a fake target: milliseconds, no processes.

What the gate decides on top of the driver and the core: INVALID when the service died or
went mute, early stop and abort, a failed load generator, baselines saved and compared,
problems merged into the verdict, file names that never overwrite, the warm-up left out.
The end-to-end tests (tests/integration) prove that the real parts do the same together.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pytest_perfgate.core.model import Budget, Scenario, ServiceSpec, Task, Thresholds
from pytest_perfgate.core.stats import Sample
from pytest_perfgate.core.verdict import Outcome
from pytest_perfgate.errors import GateError
from pytest_perfgate.gate import Gate, file_prefix
from pytest_perfgate.load.driver import Progress
from pytest_perfgate.load.fake import FakeDriver
from pytest_perfgate.options import resolve
from pytest_perfgate.results.result import ScenarioResult
from pytest_perfgate.target.probe import StopWatching
from pytest_perfgate.target.telemetry import GpuTelemetry

URL = "http://service.test"
DIED = f"the service at {URL} died or stopped answering during the run"
RSS = "service_process_resident_memory_bytes"


@dataclass
class FakeTarget:
    """A service whose life the test decides."""

    up: bool = True
    url: str = URL

    def alive(self) -> bool:
        return self.up


@dataclass
class StubProbe:
    """Answers (or not) at the ready path, and hands out the given scrapes in turn."""

    answering: bool = True
    scrapes: list[dict[str, float] | None] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)

    def answers(self, url: str) -> bool:
        self.asked.append(url)
        return self.answering

    def metrics(self, url: str) -> dict[str, float] | None:
        return self.scrapes.pop(0) if self.scrapes else None

    def watch_gpu(self, url: str) -> StopWatching:
        return lambda: GpuTelemetry(None, ())


def steady(ms: float, *, seconds: float = 10.0, start: float = 0.0, rate: int = 50) -> list[Sample]:
    """``rate`` requests a second of about ``ms`` each (a narrow log-normal, seeded)."""
    rng = random.Random(ms)
    count = int(seconds * rate)
    return [
        Sample(start + i / rate, "GET /fast", ms * rng.lognormvariate(0.0, 0.1), True, 200)
        for i in range(count)
    ]


def light(**changes: object) -> Scenario:
    values: dict[str, object] = {
        "name": "light", "users": 4, "spawn_rate": 4.0, "duration_s": 10.0,
        "tasks": (Task("GET", "/fast", "GET /fast"),), "budget": Budget(p95_ms=100.0),
        "min_samples": 20,
    }  # fmt: skip
    values.update(changes)
    return Scenario(**values)  # type: ignore[arg-type]


@dataclass
class Bench:
    """A gate over a FakeDriver, a fake target and a stub probe, in ``tmp_path``."""

    tmp_path: Path
    target: FakeTarget = field(default_factory=FakeTarget)
    probe: StubProbe = field(default_factory=StubProbe)

    @property
    def results(self) -> Path:
        return self.tmp_path / "results"

    def gate(self, driver: FakeDriver, scenario: Scenario, **options: str) -> Gate:
        cli = {"results_dir": str(self.results), "early_stop": "false", **options}
        settings = resolve(cli, {}, {}, self.tmp_path)
        service = ServiceSpec(url=URL, ready_path="/health")
        thresholds = Thresholds(self.tmp_path / "thresholds.yaml", service, {"light": scenario})
        return Gate(
            thresholds, settings, lambda: self.target, driver=driver, probe=self.probe,
            cwd=self.tmp_path,
        )  # fmt: skip

    def run(
        self,
        driver: FakeDriver,
        scenario: Scenario | None = None,
        *,
        on_progress: Callable[[Progress], None] | None = None,
        **options: str,
    ) -> ScenarioResult:
        gate = self.gate(driver, scenario or light(), **options)
        return gate.run(gate.scenario("light"), on_progress=on_progress)


@pytest.fixture
def bench(tmp_path: Path) -> Bench:
    return Bench(tmp_path)


def written(result: ScenarioResult) -> dict[str, object]:
    data: dict[str, object] = json.loads(result.raw.files["log"].with_suffix(".json").read_text())
    return data


# --- a plain run ---------------------------------------------------------------------------


def test_a_run_within_budget_passes_and_writes_its_files_under_one_prefix(bench: Bench) -> None:
    driver = FakeDriver(steady(20.0))
    result = bench.run(driver)
    assert result.verdict.outcome is Outcome.PASS
    (call,) = driver.runs
    assert (call.host, call.results_dir, call.cwd) == (URL, bench.results, bench.tmp_path)
    names = sorted(p.name for p in bench.results.iterdir())
    assert names == [f"{call.prefix}{suffix}" for suffix in (".html", ".json", ".log")]
    assert written(result)["verdict"] == {"outcome": "PASS", "passed": True, "reasons": []}


def test_progress_reaches_the_callback_once_a_simulated_second(bench: Bench) -> None:
    seen: list[Progress] = []
    bench.run(FakeDriver(steady(20.0)), on_progress=seen.append)
    assert [p.elapsed_s for p in seen] == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert seen[-1].requests == 450 and seen[-1].failures == 0


def test_warm_up_samples_are_left_out_of_the_statistics(bench: Bench) -> None:
    cold = steady(1000.0, seconds=2.0)
    warm = steady(20.0, seconds=8.0, start=2.0)
    result = bench.run(FakeDriver(cold + warm), light(warmup_s=2.0))
    assert result.stats.total.requests == len(warm)
    assert result.stats.total.p95 < 30
    assert result.verdict.outcome is Outcome.PASS


def test_the_service_metrics_before_and_after_the_run_give_its_memory_growth(
    bench: Bench,
) -> None:
    bench.probe.scrapes = [{RSS: 100 * 2**20}, {RSS: 164 * 2**20}]
    result = bench.run(FakeDriver(steady(20.0)), light(budget=Budget(rss_growth_mb=50.0)))
    (check,) = result.verdict.checks
    assert (check.metric, check.observed) == ("rss_growth_mb", 64.0)
    assert result.verdict.outcome is Outcome.FAIL


# --- INVALID: the service or the load generator failed ------------------------------------


def test_a_service_that_died_during_the_run_makes_it_invalid(bench: Bench) -> None:
    bench.target.up = False
    result = bench.run(FakeDriver(steady(20.0)))
    assert result.verdict.outcome is Outcome.INVALID
    assert DIED in result.verdict.reasons


def test_a_service_that_stopped_answering_at_its_ready_path_makes_it_invalid(
    bench: Bench,
) -> None:
    bench.probe.answering = False
    result = bench.run(FakeDriver(steady(20.0)))
    assert result.verdict.outcome is Outcome.INVALID
    assert DIED in result.verdict.reasons
    assert bench.probe.asked == [URL + "/health"]


def test_a_load_generator_failure_with_samples_is_invalid_and_its_files_are_written(
    bench: Bench,
) -> None:
    died = "the load generator died (signal 9) before it finished"
    driver = FakeDriver(steady(20.0), failure=died)
    result = bench.run(driver)
    assert result.verdict.outcome is Outcome.INVALID
    assert result.verdict.reasons == (f"the load generator failed: light: {died}",)
    prefix = driver.runs[0].prefix
    suffixes = (".html", ".json", ".log")
    assert {p.name for p in bench.results.iterdir()} == {prefix + s for s in suffixes}
    assert written(result)["verdict"]["outcome"] == "INVALID"  # type: ignore[index]


def test_a_load_generator_failure_without_samples_is_a_gate_error(bench: Bench) -> None:
    driver = FakeDriver([], failure="the load generator failed: locustfile x.py not found")
    with pytest.raises(GateError, match=r"^light: the load generator failed: locustfile x\.py"):
        bench.run(driver)


def test_the_drivers_problems_come_first_then_the_gates_own(bench: Bench) -> None:
    bench.target.up = False
    saturated = "load generator CPU saturated: above 90 % for 80 % of the run (mean 95 %)"
    result = bench.run(FakeDriver(steady(20.0), problems=[saturated]))
    assert result.verdict.outcome is Outcome.INVALID
    reasons = result.verdict.reasons
    assert reasons.index(saturated) < reasons.index(DIED)


# --- early stop and early abort ------------------------------------------------------------


def run_early(bench: Bench, driver: FakeDriver) -> ScenarioResult:
    """Early stop on, with short windows: a PASS needs 5 s measured, an abort 3 s of breach."""
    scenario = light(duration_s=60.0)
    return bench.run(driver, scenario, early_stop="true", min_duration="5s", abort_window="3s")


def test_a_run_whose_verdict_is_certain_stops_early_as_a_pass(bench: Bench) -> None:
    driver = FakeDriver(steady(20.0, seconds=60.0))
    result = run_early(bench, driver)
    assert result.raw.stop_reason.startswith("stopped: stop: every blocking budget decided (PASS)")
    assert 5 <= result.raw.duration_s < 60
    assert result.verdict.outcome is Outcome.PASS
    assert written(result)["stop_reason"] == result.raw.stop_reason


def test_a_held_clear_breach_aborts_the_run_as_a_fail(bench: Bench) -> None:
    driver = FakeDriver(steady(300.0, seconds=60.0))
    result = run_early(bench, driver)
    assert result.raw.stop_reason.startswith("stopped: abort: clear breach held for")
    assert result.raw.duration_s < 10
    assert result.verdict.outcome is Outcome.FAIL
    assert max(s.t for s in result.raw.samples) < result.raw.duration_s


def test_without_early_stop_the_whole_duration_runs(bench: Bench) -> None:
    driver = FakeDriver(steady(20.0, seconds=60.0))
    result = bench.run(driver, light(duration_s=60.0), early_stop="false")
    assert result.raw.stop_reason == "duration" and result.raw.duration_s == 60
    assert driver.runs[0].asked == ()


# --- baselines -----------------------------------------------------------------------------

REGRESSION = light(budget=Budget(p95_ms=400.0, regressions={"p95_regression": 0.10}))


def test_a_run_is_saved_as_a_baseline_and_lists_it_among_its_files(bench: Bench) -> None:
    result = bench.run(FakeDriver(steady(20.0)), REGRESSION, save_baseline="main")
    path = bench.tmp_path / ".perfgate" / "baselines" / "main" / "light.json"
    assert result.files["baseline"] == path and path.is_file()
    assert written(result)["files"]["baseline"] == str(path)  # type: ignore[index]


def test_an_invalid_run_is_never_saved_as_a_baseline(bench: Bench) -> None:
    bench.target.up = False
    result = bench.run(FakeDriver(steady(20.0)), REGRESSION, save_baseline="main")
    assert result.verdict.outcome is Outcome.INVALID
    assert "baseline" not in result.files
    assert not (bench.tmp_path / ".perfgate").exists()


def test_a_run_slower_than_its_baseline_fails_as_a_regression_without_early_stop(
    bench: Bench,
) -> None:
    bench.run(FakeDriver(steady(20.0)), REGRESSION, save_baseline="main")
    driver = FakeDriver(steady(40.0))
    result = bench.run(driver, REGRESSION, baseline="main", early_stop="true")
    assert result.verdict.outcome is Outcome.FAIL
    (regression,) = [c for c in result.verdict.checks if c.metric == "p95_regression"]
    assert regression.outcome is Outcome.FAIL
    assert driver.runs[0].asked == ()  # the stopping rule knows no regressions


def test_comparing_with_a_name_while_saving_it_compares_with_the_previous_run(
    bench: Bench,
) -> None:
    bench.run(FakeDriver(steady(20.0)), REGRESSION, save_baseline="main")
    slower = bench.run(FakeDriver(steady(40.0)), REGRESSION, baseline="main", save_baseline="main")
    assert slower.verdict.outcome is Outcome.FAIL  # judged against 20 ms, then saved
    again = bench.run(FakeDriver(steady(40.0)), REGRESSION, baseline="main")
    assert again.verdict.outcome is Outcome.PASS


def test_a_missing_baseline_is_named_before_any_load_runs(bench: Bench) -> None:
    driver = FakeDriver(steady(20.0))
    with pytest.raises(GateError, match=r"^light: baseline 'nope': no such baseline"):
        bench.run(driver, REGRESSION, baseline="nope")
    assert driver.runs == []
    assert not bench.results.exists()


# --- file names ----------------------------------------------------------------------------


def test_a_file_prefix_never_names_an_earlier_runs_files(tmp_path: Path) -> None:
    now = dt.datetime(2026, 11, 27, 10, 15, tzinfo=dt.UTC)
    assert file_prefix("light", tmp_path, now) == "20261127T101500_light"
    (tmp_path / "20261127T101500_light.json").touch()
    assert file_prefix("light", tmp_path, now) == "20261127T101500_light-2"
    (tmp_path / "20261127T101500_light-2_stats.csv").touch()
    assert file_prefix("light", tmp_path, now) == "20261127T101500_light-3"
    (tmp_path / "20261127T101500_lightweight.json").touch()  # another scenario's name
    assert file_prefix("lightweight", tmp_path, now) == "20261127T101500_lightweight-2"


def test_two_runs_of_a_scenario_keep_both_results(bench: Bench) -> None:
    driver = FakeDriver(steady(20.0))
    first, second = bench.run(driver), bench.run(driver)
    prefixes = [call.prefix for call in driver.runs]
    assert prefixes[0] != prefixes[1]
    assert len(list(bench.results.glob("*_light*.json"))) == 2
    assert written(first) != written(second)
