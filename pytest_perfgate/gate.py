"""One scenario, end to end: load -> statistics -> verdict -> analysis -> files.

Shared by the pytest plugin and ``perfgate run``; no pytest import. The flow, one
module a step::

    config.Scenario --runner.run_load--> RawRun --stats.summarize--> RunStats
      --verdict.evaluate--> Verdict --analysis.analyze--> Analysis --report.write_all--> files
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import httpx

from pytest_perfgate.config import Budget, Scenario, Thresholds, load_thresholds
from pytest_perfgate.core import findings as analysis
from pytest_perfgate.core import regression as baseline
from pytest_perfgate.core import resilience, sequential, stats, verdict
from pytest_perfgate.errors import GateError
from pytest_perfgate.load import locust_driver as runner
from pytest_perfgate.options import OPTIONS, Settings, resolve
from pytest_perfgate.results import report
from pytest_perfgate.target import telemetry
from pytest_perfgate.target.process import ManagedService, ServiceError

__all__ = ["ExternalService", "Gate", "GateError", "Target", "run_cli"]


class Target(Protocol):
    """The system under test as the gate sees it."""

    url: str

    def alive(self) -> bool: ...


@dataclasses.dataclass
class ExternalService:
    """A service the gate did not start (``--perfgate-url``): assumed alive while it answers."""

    url: str
    ready_path: str = "/health"

    def alive(self) -> bool:
        try:
            return httpx.get(self.url + self.ready_path, timeout=5.0).status_code < 500
        except httpx.HTTPError:
            return False


def external_target(thresholds: Thresholds, settings: Settings) -> ExternalService | None:
    """The service at ``--perfgate-url`` (or ``service.url``), which the gate must not start."""
    url = settings.url or thresholds.service.url
    return ExternalService(url.rstrip("/"), thresholds.service.ready_path) if url else None


def start_service(thresholds: Thresholds, settings: Settings, cwd: Path) -> ManagedService:
    """``service.command`` started and ready, its log in the results folder (or ServiceError)."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    log = settings.results_dir / f"{stamp}_service.log"
    service = ManagedService(thresholds.service, log, cwd=cwd)
    service.start()
    return service


def _answers(url: str) -> bool:
    """Whether ``url`` answers at all within 2 s (a hung service is alive but mute)."""
    try:
        httpx.get(url, timeout=2.0)
    except httpx.HTTPError:
        return False
    return True


def scrape_metrics(url: str) -> dict[str, float] | None:
    """The service's Prometheus figures, or None where it has no ``/metrics``."""
    try:
        response = httpx.get(url + "/metrics", timeout=2.0)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    return analysis.parse_prometheus_text(response.text)


def file_prefix(scenario: str, results_dir: Path, now: dt.datetime) -> str:
    """``20261127T101500_light``; a suffix keeps an earlier run's files from being overwritten."""
    base = f"{now:%Y%m%dT%H%M%S}_{scenario}"
    prefix, n = base, 1
    while any(results_dir.glob(f"{prefix}[._]*")):
        n += 1
        prefix = f"{base}-{n}"
    return prefix


class Gate:
    """Runs scenarios of one thresholds file against one target and judges them."""

    def __init__(
        self,
        thresholds: Thresholds,
        settings: Settings,
        target: Callable[[], Target],
        *,
        cwd: Path,
    ) -> None:
        self.thresholds = thresholds
        self.settings = settings
        self._target = target
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
        on_progress: Callable[[runner.Progress], None] | None = None,
    ) -> report.ScenarioResult:
        base = self._baseline(scenario)  # read before the run: never the run under test
        target = self._target()
        results_dir = self.settings.results_dir
        results_dir.mkdir(parents=True, exist_ok=True)
        started = dt.datetime.now(dt.UTC)
        prefix = file_prefix(scenario.name, results_dir, started)
        before = scrape_metrics(target.url)
        stop_rule = None
        if self.settings.early_stop and base is None:  # early stop knows no regressions
            stop_rule = sequential.make_stop_rule(
                scenario,
                level=self.settings.confidence,
                min_duration_s=self.settings.min_duration,
                abort_window_s=self.settings.abort_window,
            )
        failure: runner.LoadRunError | None = None
        sampler = telemetry.GpuSampler(target.url).start()
        try:
            raw = runner.run_load(
                scenario, target.url, results_dir, prefix,
                on_progress=on_progress, should_stop=stop_rule, cwd=self.cwd,
            )  # fmt: skip
        except runner.LoadRunError as exc:
            if exc.partial is None:
                raise GateError(str(exc)) from None  # the message names the scenario
            failure, raw = exc, exc.partial
        finally:
            gpu = sampler.stop()
        problems = list(raw.problems)
        if not target.alive() or not _answers(target.url + self.thresholds.service.ready_path):
            problems.append(f"the service at {target.url} died or stopped answering during the run")
        if failure is not None:
            problems.append(f"the load generator failed: {str(failure).splitlines()[0]}")
        result = self._judge(
            scenario, raw, problems, before, scrape_metrics(target.url), started, base, gpu
        )
        result = self._save_baseline(result)  # before write_all, so the files list it
        report.write_all(result, results_dir, prefix)
        return result

    def _baseline(self, scenario: Scenario) -> baseline.Baseline | None:
        """The baseline to judge ``scenario``'s regression budgets against, if any."""
        name = self.settings.baseline
        budgets = (scenario.budget, *scenario.endpoint_budgets.values())
        if name is None or not any(b.regressions for b in budgets):
            return None
        try:
            return baseline.load_baseline(
                self.settings.baseline_dir, name, scenario.name, cwd=self.cwd
            )
        except baseline.BaselineError as exc:
            raise GateError(f"{scenario.name}: {exc}") from None

    def _regressions(
        self, scenario: Scenario, base: baseline.Baseline, measured: list[stats.Sample],
        run_stats: stats.RunStats,
    ) -> tuple[verdict.Check, ...]:  # fmt: skip
        by_endpoint = baseline.samples_by_endpoint(measured)
        settings = baseline.scenario_settings(scenario)
        checks: list[verdict.Check] = []
        for endpoint, b in [(stats.TOTAL, scenario.budget), *scenario.endpoint_budgets.items()]:
            checks += baseline.compare(
                base, by_endpoint, run_stats, b.regressions, self.settings.confidence,
                endpoint=endpoint, severity=b.severity, settings=settings,
            )  # fmt: skip
        return tuple(checks)

    def _save_baseline(self, result: report.ScenarioResult) -> report.ScenarioResult:
        """Store the run as ``--perfgate-save-baseline``, replacing that name; not INVALID runs."""
        name = self.settings.save_baseline
        if name is None or result.verdict.outcome is verdict.Outcome.INVALID:
            return result
        scenario = result.scenario
        meta = {
            "started_at": result.started_at.isoformat(),
            "settings": baseline.scenario_settings(scenario),
            "thresholds": str(result.thresholds) if result.thresholds else None,
            "commit": os.environ.get("GITHUB_SHA"),
        }
        path = baseline.save_baseline(
            self.settings.baseline_dir, name, scenario.name,
            baseline.samples_by_endpoint(_measured(scenario, result.raw)), result.stats, meta,
        )  # fmt: skip
        return dataclasses.replace(result, files={**result.files, "baseline": path})

    def _judge(
        self,
        scenario: Scenario,
        raw: runner.RawRun,
        problems: list[str],
        before: dict[str, float] | None,
        after: dict[str, float] | None,
        started: dt.datetime,
        base: baseline.Baseline | None = None,
        gpu: telemetry.GpuTelemetry | None = None,
    ) -> report.ScenarioResult:
        warmup = min(scenario.warmup_s, raw.duration_s)
        measured = _measured(scenario, raw)
        window = max(raw.duration_s - warmup, 1e-9)
        # latencies under load are correlated in time: widen the intervals for it
        run_stats = stats.summarize(measured, window, self.settings.confidence, correlated=True)
        regressions = () if base is None else self._regressions(scenario, base, measured, run_stats)
        judged = verdict.evaluate(
            scenario.name, scenario.budget, scenario.endpoint_budgets, run_stats,
            min_samples=scenario.min_samples, invalid_reasons=problems,
            inconclusive=self.settings.inconclusive, extra_checks=regressions,
            figures={
                **(gpu.figures() if gpu else {}),
                "hard_error_rate": resilience.hard_error_rate(measured),
                "recovery_s": resilience.recovery_seconds(
                    raw.samples, scenario.shape, scenario.warmup_s
                ),
                "rss_growth_mb": resilience.rss_growth_mb(before, after),
            },
        )  # fmt: skip
        found = analysis.analyze(
            run_stats, raw.history, failures=measured, server_metrics_before=before,
            server_metrics_after=after, loadgen_cpu_percent=raw.loadgen_cpu_percent,
        )  # fmt: skip
        return report.ScenarioResult(
            scenario=scenario, raw=raw, stats=run_stats, verdict=judged, analysis=found,
            started_at=started, thresholds=self.thresholds.path, gpu=gpu,
        )  # fmt: skip


# --- perfgate run ----------------------------------------------------------------------


def _health_check(target: Target, path: str) -> None:
    try:
        response = httpx.get(target.url + path, timeout=10.0)
    except httpx.HTTPError as exc:
        raise GateError(
            f"the service at {target.url} failed its health check: {path}: {exc!r}"
        ) from None
    if response.status_code != 200:
        raise GateError(
            f"the service at {target.url} failed its health check: {path} answered "
            f"HTTP {response.status_code}"
        )


def run_cli(args: argparse.Namespace) -> int:
    """``perfgate run``: the scenarios outside pytest; 0 pass, 1 a breach, 2 an error."""
    cwd = Path.cwd()
    cli = {o.name: getattr(args, o.name, None) for o in OPTIONS}
    settings = resolve(cli, {}, os.environ, cwd, cli_prefix="--")
    thresholds = load_thresholds(settings.thresholds)
    names = list(thresholds.scenarios) if args.scenario == "all" else [args.scenario]
    scenarios = [thresholds.scenario(n) for n in names]  # an unknown name fails before load
    service: ManagedService | None = None
    try:
        target: Target | None = external_target(thresholds, settings)
        if target is None:
            service = target = start_service(thresholds, settings, cwd)
        _health_check(target, thresholds.service.ready_path)
        gate = Gate(thresholds, settings, lambda: target, cwd=cwd)
        results = []
        for scenario in scenarios:
            print(f"perfgate: running {scenario.name} against {target.url}", file=sys.stderr)
            results.append(gate.run(gate.scenario(scenario.name), on_progress=_stderr_progress()))
    except (GateError, ServiceError) as exc:
        print(f"perfgate: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if service is not None:
            service.stop()
    for line in report.terminal_table(results):
        print(line)
    return 0 if all(r.verdict.passed for r in results) else 1


def _stderr_progress() -> Callable[[runner.Progress], None] | None:
    if not sys.stderr.isatty():
        return None

    def write(progress: runner.Progress) -> None:
        print("\r\x1b[2K" + report.progress_line(progress), end="", file=sys.stderr, flush=True)

    return write


def _measured(scenario: Scenario, raw: runner.RawRun) -> list[stats.Sample]:
    """The samples after the warm-up: what statistics, verdicts and baselines see."""
    warmup = min(scenario.warmup_s, raw.duration_s)
    return [s for s in raw.samples if s.t >= warmup]
