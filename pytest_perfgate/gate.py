"""One scenario, end to end: load -> statistics -> verdict -> findings -> files.

Shared by the pytest plugin and ``perfgate run``; no pytest, no httpx, no locust. The gate
reaches the load through a ``LoadDriver`` (``load.driver``) and the service through a
``Target`` and a ``Probe`` (``target.probe``), so its own rules (INVALID when the service
died, early stop, baselines, merged problems, file names) are unit-tested with
``load.fake.FakeDriver`` and a stub probe. The flow, one module a step::

    Scenario --LoadDriver.run--> RawRun --core.stats.summarize--> RunStats
      --core.verdict.evaluate--> Verdict --core.findings.analyze--> Analysis
      --results.files.write_all--> files

During the load a ``target.machine`` sampler watches the machine; ``core.noise`` judges
its samples, and a run that would fail while the machine was noisy is INVALID instead.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import time
from collections.abc import Callable
from pathlib import Path

from pytest_perfgate.core import findings, resilience, sequential, stats, verdict
from pytest_perfgate.core.model import Budget, Scenario, Thresholds, scenario_settings
from pytest_perfgate.core.noise import (
    NoiseFinding,
    NoiseLimits,
    assess,
    blame_noise,
    quiet_breaches,
    quiet_note,
    quiet_requests,
)
from pytest_perfgate.core.regression import (
    Baseline,
    compare,
    samples_by_endpoint,
    series_by_endpoint,
)
from pytest_perfgate.core.service_metrics import ServiceMetrics, metrics_url
from pytest_perfgate.errors import BaselineError, GateError, LoadRunError
from pytest_perfgate.load.driver import LoadDriver, Progress, ProgressCallback, RawRun, StopRule
from pytest_perfgate.load.locust_driver import LocustDriver
from pytest_perfgate.options import Settings
from pytest_perfgate.results.baselines import load_baseline, save_baseline
from pytest_perfgate.results.files import write_all
from pytest_perfgate.results.result import ScenarioResult
from pytest_perfgate.target.machine import MachineRecord, MachineSampler, Sampler
from pytest_perfgate.target.probe import ExternalService, HttpProbe, Probe, Target
from pytest_perfgate.target.telemetry import GpuTelemetry

__all__ = ["Gate", "file_prefix"]


def file_prefix(scenario: str, results_dir: Path, now: dt.datetime) -> str:
    """``20261127T101500_light``; a suffix keeps an earlier run's files from being overwritten."""
    base = f"{now:%Y%m%dT%H%M%S}_{scenario}"
    prefix, n = base, 1
    while any(results_dir.glob(f"{prefix}[._]*")):
        n += 1
        prefix = f"{base}-{n}"
    return prefix


@dataclasses.dataclass(frozen=True)
class _Load:
    """What one run of the driver left: its samples, how it failed (if it did), the GPU."""

    raw: RawRun
    failure: LoadRunError | None
    gpu: GpuTelemetry
    machine: MachineRecord
    load_start: float | None = None  # time.monotonic() when the load began, if it reported


class _LoadClock:
    """Passes progress on, and notes when the load began (to line up the machine's samples
    with the requests)."""

    def __init__(self, inner: ProgressCallback | None) -> None:
        self.inner = inner
        self.start: float | None = None

    def __call__(self, progress: Progress) -> None:
        if self.start is None:
            self.start = time.monotonic() - progress.elapsed_s
        if self.inner is not None:
            self.inner(progress)


class Gate:
    """Runs scenarios of one thresholds file against one target and judges them.

    ``target`` is called once per run (a service may be restarted between runs); ``driver``
    makes the load (``LocustDriver`` unless given), ``probe`` reads the target's health,
    metrics and GPU (``HttpProbe`` unless given).
    """

    def __init__(
        self,
        thresholds: Thresholds,
        settings: Settings,
        target: Callable[[], Target],
        *,
        driver: LoadDriver | None = None,
        probe: Probe | None = None,
        sampler: Sampler | None = None,
        cwd: Path,
    ) -> None:
        self.thresholds = thresholds
        self.settings = settings
        self._target = target
        self.driver: LoadDriver = driver or LocustDriver()
        self.probe: Probe = probe or HttpProbe(thresholds.service.metrics)
        self.sampler: Sampler = sampler or MachineSampler()  # the machine during each run
        self.cwd = cwd  # where json_factory modules and relative locustfiles resolve

    def scenario(
        self,
        name: str,
        *,
        budget: Budget | None = None,
        users: int | None = None,
        spawn_rate: float | None = None,
        duration_s: float | None = None,
        processes: int | None = None,
    ) -> Scenario:
        """The named scenario with the session's overrides, then the call's, then ``budget``."""
        s = self.settings
        scenario = self.thresholds.scenario(name).with_overrides(
            users=s.users, spawn_rate=s.spawn_rate, duration_s=s.duration, processes=s.processes
        )
        scenario = scenario.with_overrides(
            users=users, spawn_rate=spawn_rate, duration_s=duration_s, processes=processes
        )
        if budget:
            scenario = dataclasses.replace(scenario, budget=scenario.budget.merged(budget))
        return scenario

    def run(
        self,
        scenario: Scenario,
        *,
        on_progress: ProgressCallback | None = None,
        attempt: tuple[int, int] = (1, 1),
    ) -> ScenarioResult:
        """Load ``scenario`` against the target, judge it, write its files, maybe save it.

        ``attempt``: this run is attempt n of m (``--perfgate-retry-noisy``), as reported."""
        base = self._baseline(scenario)  # read before the run: never the run under test
        target = self._target()
        results_dir = self.settings.results_dir
        results_dir.mkdir(parents=True, exist_ok=True)
        started = dt.datetime.now(dt.UTC)
        prefix = file_prefix(scenario.name, results_dir, started)
        before = self.probe.metrics(self._metrics_url(target))
        load = self._load(scenario, target, prefix, on_progress, self._stop_rule(scenario, base))
        result = self._judge(
            scenario, load, self._problems(load, target), before,
            self.probe.metrics(self._metrics_url(target)), started, base,
        )  # fmt: skip
        result = dataclasses.replace(result, attempt=attempt)
        result = self._save_baseline(result)  # before write_all, so the files list it
        write_all(result, results_dir, prefix)
        return result

    # --- the run ---------------------------------------------------------------------------

    def _metrics_url(self, target: Target) -> str:
        """The target's metrics address: ``service.metrics_url`` or ``<url>/metrics``."""
        return metrics_url(target.url, self.thresholds.service.metrics_url)

    def _stop_rule(self, scenario: Scenario, base: Baseline | None) -> StopRule | None:
        """The early stop/abort rule, or None: off, or judging regressions (it knows none)."""
        if not self.settings.early_stop or base is not None:
            return None
        return sequential.make_stop_rule(
            scenario,
            level=self.settings.confidence,
            min_duration_s=self.settings.min_duration,
            abort_window_s=self.settings.abort_window,
        )

    def _load(
        self, scenario: Scenario, target: Target, prefix: str,
        on_progress: ProgressCallback | None, stop_rule: StopRule | None,
    ) -> _Load:  # fmt: skip
        """The driver's run; a failure with samples is judged (INVALID), one without raises."""
        failure: LoadRunError | None = None
        stop_gpu = self.probe.watch_gpu(self._metrics_url(target))
        stop_machine = self.sampler.watch(
            target.url, started_here=not isinstance(target, ExternalService)
        )
        clock = _LoadClock(on_progress)
        try:
            raw = self.driver.run(
                scenario, target.url, self.settings.results_dir, prefix,
                on_progress=clock, should_stop=stop_rule, cwd=self.cwd,
            )  # fmt: skip
        except LoadRunError as exc:
            if exc.partial is None:
                raise GateError(str(exc)) from None  # the message names the scenario
            raw, failure = exc.partial, exc
        finally:
            gpu = stop_gpu()
            machine = stop_machine()
        return _Load(raw, failure, gpu, machine, clock.start)

    def _problems(self, load: _Load, target: Target) -> list[str]:
        """What makes the run untrustworthy: the driver's problems, then the gate's own."""
        problems = list(load.raw.problems)
        ready = target.url + self.thresholds.service.ready_path
        if not target.alive() or not self.probe.answers(ready):
            problems.append(f"the service at {target.url} died or stopped answering during the run")
        if load.failure is not None:
            problems.append(f"the load generator failed: {str(load.failure).splitlines()[0]}")
        return problems

    # --- judging -------------------------------------------------------------------------

    def _judge(
        self, scenario: Scenario, load: _Load, problems: list[str],
        before: dict[str, float] | None, after: dict[str, float] | None,
        started: dt.datetime, base: Baseline | None,
    ) -> ScenarioResult:  # fmt: skip
        raw = load.raw
        measured = _measured(scenario, raw)
        window = max(raw.duration_s - min(scenario.warmup_s, raw.duration_s), 1e-9)
        # one false FAIL per scenario at most 1 - confidence: split over its blocking checks
        level = self._check_level(scenario, base)
        # latencies under load are correlated in time: widen the intervals for it; a run an
        # early-stop rule watched needs intervals valid at the time it stopped
        run_stats = stats.summarize(
            measured, window, level, correlated=True,
            anytime=self._stop_rule(scenario, base) is not None,
            limits=sequential.quantile_limits(scenario.budget, scenario.endpoint_budgets),
            slo=scenario.slo, stopped=raw.stop_reason.startswith("stopped:"),
        )  # fmt: skip
        regressions = (
            () if base is None else self._regressions(scenario, base, measured, run_stats, level)
        )
        judged = verdict.evaluate(
            scenario.name, scenario.budget, scenario.endpoint_budgets, run_stats,
            min_samples=scenario.min_samples, invalid_reasons=problems,
            inconclusive=self.settings.inconclusive, extra_checks=regressions,
            figures=_figures(scenario, raw, measured, before, after, load.gpu,
                             self.thresholds.service.metrics),
        )  # fmt: skip
        noise = self._noise(load.machine)
        if self.settings.noise_check and noise is not None and noise.noisy and judged.failed:
            quiet, noise = self._quiet(scenario, load, measured, window, level, noise)
            judged = blame_noise(judged, noise, quiet)
        found = findings.analyze(
            run_stats, raw.history, failures=measured, server_metrics_before=before,
            server_metrics_after=after, loadgen_cpu_percent=raw.loadgen_cpu_percent,
            service_metrics=self.thresholds.service.metrics,
        )  # fmt: skip
        return ScenarioResult(
            scenario=scenario, raw=raw, stats=run_stats, verdict=judged, analysis=found,
            started_at=started, thresholds=self.thresholds.path, gpu=load.gpu, baseline=base,
            noise=noise,
        )  # fmt: skip

    def _noise(self, machine: MachineRecord) -> NoiseFinding | None:
        """What the machine samples say about outside load (None: not sampled)."""
        s = self.settings
        limits = NoiseLimits(cores=s.noise_cores, share=s.noise_share, steal=s.noise_steal)
        return assess(machine.samples, machine.cores, limits, service_known=machine.service_known)

    def _quiet(
        self, scenario: Scenario, load: _Load, measured: list[stats.Sample], window: float,
        level: float, noise: NoiseFinding,
    ) -> tuple[tuple[verdict.Check, ...], NoiseFinding]:  # fmt: skip
        """The breaches of the requests made while the machine was quiet (none where the
        samples cannot be lined up with the load, or too few requests were quiet), and the
        finding with a note that says so where there are any."""
        machine = load.machine
        if machine.started is None or load.load_start is None:
            return (), noise
        offset = load.load_start - machine.started
        quiet = quiet_requests(measured, machine.samples, noise.limits, offset)
        if len(quiet) < scenario.min_samples:
            return (), noise
        quiet_stats = stats.summarize(
            quiet, window, level, correlated=True, anytime=True,
            limits=sequential.quantile_limits(scenario.budget, scenario.endpoint_budgets),
            slo=scenario.slo,
        )  # fmt: skip
        judged = verdict.evaluate(
            scenario.name, scenario.budget, scenario.endpoint_budgets, quiet_stats,
            min_samples=scenario.min_samples,
        )  # fmt: skip
        breaches = quiet_breaches(judged)
        if not breaches:
            return (), noise
        note = quiet_note(breaches, len(quiet))
        return breaches, dataclasses.replace(noise, notes=(*noise.notes, note))

    def _check_level(self, scenario: Scenario, base: Baseline | None) -> float:
        """The confidence level of each check: Bonferroni over the scenario's blocking checks."""
        budgets = (scenario.budget, *scenario.endpoint_budgets.values())
        tests = sequential.blocking_tests(scenario.budget, scenario.endpoint_budgets)
        if base is not None:
            tests += sum(len(b.regressions) for b in budgets if b.severity == "block")
        return stats.bonferroni(self.settings.confidence, tests)

    def _regressions(
        self, scenario: Scenario, base: Baseline, measured: list[stats.Sample],
        run_stats: stats.RunStats, level: float,
    ) -> tuple[verdict.Check, ...]:  # fmt: skip
        by_endpoint = samples_by_endpoint(measured, sent_only=True)
        settings = scenario_settings(scenario)
        checks: list[verdict.Check] = []
        for endpoint, b in [(stats.TOTAL, scenario.budget), *scenario.endpoint_budgets.items()]:
            checks += compare(
                base, by_endpoint, run_stats, b.regressions, level,
                endpoint=endpoint, severity=b.severity, settings=settings,
                series=series_by_endpoint(measured),
            )  # fmt: skip
        return tuple(checks)

    # --- baselines -----------------------------------------------------------------------

    def _baseline(self, scenario: Scenario) -> Baseline | None:
        """The baseline to judge ``scenario``'s regression budgets against, if any."""
        name = self.settings.baseline
        budgets = (scenario.budget, *scenario.endpoint_budgets.values())
        if name is None or not any(b.regressions for b in budgets):
            return None
        try:
            return load_baseline(self.settings.baseline_dir, name, scenario.name, cwd=self.cwd)
        except BaselineError as exc:
            raise GateError(f"{scenario.name}: {exc}") from None

    def _save_baseline(self, result: ScenarioResult) -> ScenarioResult:
        """Store the run as ``--perfgate-save-baseline``, replacing that name; not INVALID runs."""
        name = self.settings.save_baseline
        if name is None or result.verdict.outcome is verdict.Outcome.INVALID:
            return result
        scenario = result.scenario
        meta = {
            "started_at": result.started_at.isoformat(),
            "settings": scenario_settings(scenario),
            "thresholds": str(result.thresholds) if result.thresholds else None,
            "commit": os.environ.get("GITHUB_SHA"),
        }
        path = save_baseline(
            self.settings.baseline_dir, name, scenario.name,
            samples_by_endpoint(_measured(scenario, result.raw)), result.stats, meta,
            series=series_by_endpoint(_measured(scenario, result.raw)),
        )  # fmt: skip
        return dataclasses.replace(result, files={**result.files, "baseline": path})


def _measured(scenario: Scenario, raw: RawRun) -> list[stats.Sample]:
    """The samples after the warm-up: what statistics, verdicts and baselines see."""
    warmup = min(scenario.warmup_s, raw.duration_s)
    return [s for s in raw.samples if s.t >= warmup]


def _figures(
    scenario: Scenario, raw: RawRun, measured: list[stats.Sample],
    before: dict[str, float] | None, after: dict[str, float] | None, gpu: GpuTelemetry,
    names: ServiceMetrics,
) -> dict[str, float | None]:  # fmt: skip
    """The run-wide figures the budgets judge besides the latency statistics."""
    return {
        **gpu.figures(),
        "hard_error_rate": resilience.hard_error_rate(measured),
        "recovery_s": resilience.recovery_seconds(raw.samples, scenario.shape, scenario.warmup_s),
        "rss_growth_mb": resilience.rss_growth_mb(before, after, names.rss),
    }
