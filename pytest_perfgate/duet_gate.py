"""One A/B run end to end: the candidate and a baseline on one machine, judged on the pair.

``DuetGate`` is a ``gate.Gate`` whose ``run`` starts the baseline beside the candidate
(``target.baseline``: a git ref in a temporary worktree, a command, or a URL), drives
both with one Locust run whose tasks pair the sides (``load.child``'s twin: duet or
interleaved), judges every ``*_regression`` allowance on the pair (``core.duet``) and
writes the files with both sides side by side (``results.duet``). No pytest, no httpx,
no locust here, as in ``gate``; the baseline is stopped and its worktree removed on
every way out.

Absolute budgets (``p95_ms`` ...) are not judged in an A/B run: the pair's point is a
verdict the machine's noise does not decide. Each side's figures are still reported.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

from pytest_perfgate.core import duet, findings, stats, verdict
from pytest_perfgate.core.model import Budget, CompareSpec, Scenario, Thresholds
from pytest_perfgate.errors import GateError
from pytest_perfgate.gate import Gate, file_prefix
from pytest_perfgate.load.driver import LoadDriver, ProgressCallback, RawRun
from pytest_perfgate.load.locust_driver import LocustDriver
from pytest_perfgate.load.protocol import TwinSpec
from pytest_perfgate.options import Settings
from pytest_perfgate.results.files import write_all
from pytest_perfgate.results.result import ScenarioResult
from pytest_perfgate.target.baseline import RunningBaseline, running_baseline
from pytest_perfgate.target.machine import Sampler
from pytest_perfgate.target.probe import Probe, Target

__all__ = ["DuetGate", "ab_source", "make_gate"]


def make_gate(
    thresholds: Thresholds, settings: Settings, target: Callable[[], Target], *, cwd: Path,
    driver: LoadDriver | None = None, probe: Probe | None = None, sampler: Sampler | None = None,
) -> Gate:  # fmt: skip
    """The gate of a run, for the plugin and ``perfgate run`` alike: an A/B one
    (``--perfgate-against``, ``compare_to:``) with the baseline beside the target, else
    the absolute one."""
    source = ab_source(thresholds, settings)
    if source is not None:  # an A/B run: the baseline beside the service (core.duet)
        return DuetGate(
            thresholds, settings, target, source=source, driver=driver, probe=probe,
            sampler=sampler, cwd=cwd,
        )  # fmt: skip
    return Gate(thresholds, settings, target, driver=driver, probe=probe, sampler=sampler, cwd=cwd)


def ab_source(thresholds: Thresholds, settings: Settings) -> CompareSpec | None:
    """The baseline of A/B runs: ``--perfgate-against`` (a URL, else a git ref) over
    ``compare_to:``; ``--perfgate-ab-mode`` over its mode. None: no A/B run."""
    source = thresholds.compare_to
    against = settings.against
    if against:
        is_url = against.startswith(("http://", "https://"))
        source = dataclasses.replace(
            source or CompareSpec(),
            ref=None if is_url else against,
            url=against.rstrip("/") if is_url else None,
            command=None,
        )
    if source is not None and settings.ab_mode:
        mode: Literal["duet", "interleaved"] = (
            "interleaved" if settings.ab_mode == "interleaved" else "duet"
        )
        source = dataclasses.replace(source, mode=mode)
    return source


def _allowances(scenario: Scenario) -> dict[str, tuple[Mapping[str, float], str]]:
    """Endpoint -> (allowances, severity); the defaults when the scenario sets none."""
    found: dict[str, tuple[Mapping[str, float], str]] = {}
    budgets = [(stats.TOTAL, scenario.budget), *scenario.endpoint_budgets.items()]
    for endpoint, b in budgets:
        if b.regressions:
            found[endpoint] = (dict(b.regressions), b.severity)
    return found or {stats.TOTAL: (dict(duet.DEFAULT_ALLOWANCES), "block")}


class DuetGate(Gate):
    """Runs scenarios as A/B runs against the baseline ``source``."""

    def __init__(
        self,
        thresholds: Thresholds,
        settings: Settings,
        target: Callable[[], Target],
        *,
        source: CompareSpec,
        driver: LoadDriver | None = None,
        probe: Probe | None = None,
        sampler: Sampler | None = None,
        cwd: Path,
    ) -> None:
        super().__init__(
            thresholds, settings, target, driver=driver, probe=probe, sampler=sampler, cwd=cwd
        )
        self.source = source
        self._given_driver = driver  # a test's fake driver makes both sides' samples itself

    def plan(self, scenario: Scenario, label: str) -> duet.PairPlan:
        """How ``scenario``'s pair is judged: blocks, looks and levels, fixed before the run."""
        if scenario.locustfile or not scenario.tasks:
            raise GateError(
                f"{scenario.name}: an A/B run drives the scenario's tasks on both sides; "
                "a locustfile scenario cannot be paired"
            )
        measured = max(scenario.duration_s - scenario.warmup_s, 1.0)
        block_s = duet.block_length(measured, self.source.mode, self.source.round_s)
        origin = duet.plan_origin(scenario.warmup_s, block_s)
        allowances = _allowances(scenario)
        tests = sum(len(keys) for keys, severity in allowances.values() if severity == "block")
        first = origin + self.settings.min_duration
        looks = (
            duet.look_times(first, scenario.duration_s)
            if self.settings.early_stop
            else (scenario.duration_s,)
        )
        return duet.PairPlan(
            scenario.name, self.source.mode, block_s, origin, looks,
            stats.bonferroni(self.settings.confidence, tests), allowances, label,
        )  # fmt: skip

    def run(
        self, scenario: Scenario, *, on_progress: ProgressCallback | None = None, **_: object
    ) -> ScenarioResult:
        """Start the baseline, load both sides at once, judge the pair, write the files."""
        self.plan(scenario, "")  # a scenario that cannot be paired fails before anything starts
        target = self._target()
        results_dir = self.settings.results_dir
        results_dir.mkdir(parents=True, exist_ok=True)
        with running_baseline(
            self.source, self.thresholds.service, rootdir=self.cwd, results_dir=results_dir
        ) as base:
            plan = self.plan(scenario, base.label)
            self.driver = self._given_driver or LocustDriver(twin=self._twin(base))
            started = dt.datetime.now(dt.UTC)
            prefix = file_prefix(scenario.name, results_dir, started)
            rule = duet.PairStopRule(plan)
            load = self._load(scenario, target, prefix, on_progress, rule)
            problems = self._problems(load, target) + _baseline_problems(base)
        result = self._judge_pair(scenario, plan, load.raw, rule, problems, started)
        # the machine during the run, reported; an A/B verdict needs no blame for its noise
        result = dataclasses.replace(result, noise=self._noise(load.machine))
        write_all(result, results_dir, prefix)
        return result

    def _twin(self, base: RunningBaseline) -> TwinSpec:
        return TwinSpec(
            url=base.target.url, mode=self.source.mode, round_s=self.source.round_s, seed=1
        )

    def _judge_pair(
        self, scenario: Scenario, plan: duet.PairPlan, raw: RawRun, rule: duet.PairStopRule,
        problems: list[str], started: dt.datetime,
    ) -> ScenarioResult:  # fmt: skip
        stopped_early = raw.stop_reason.startswith("stopped:")
        end_s = plan.looks[rule.looked - 1] if stopped_early and rule.looked else raw.duration_s
        judged = duet.judge_pair(plan, raw.samples, end_s)
        sides = duet.split_sides(raw.samples)
        window = max(end_s - plan.origin_s, 1e-9)
        # the window judged: from the first block after the warm-up to the look it ended at
        measured = [s for s in sides.candidate if plan.origin_s <= s.t < end_s]
        base_measured = tuple(s for s in sides.baseline if plan.origin_s <= s.t < end_s)
        level = plan.level_at(end_s)
        # each side's own figures are descriptive: at the session's level
        side_level = self.settings.confidence
        cand_stats = stats.summarize(measured, window, side_level, correlated=True)
        base_stats = stats.summarize(base_measured, window, side_level, correlated=True)
        judged_verdict = verdict.evaluate(
            scenario.name, Budget(), {}, cand_stats, min_samples=scenario.min_samples,
            invalid_reasons=problems, inconclusive=self.settings.inconclusive,
            extra_checks=judged.checks,
        )  # fmt: skip
        found = findings.analyze(
            cand_stats, raw.history, failures=measured,
            loadgen_cpu_percent=raw.loadgen_cpu_percent,
            service_metrics=self.thresholds.service.metrics,
        )  # fmt: skip
        comparison = duet.Comparison(
            plan.baseline, plan.mode, plan.block_s, judged.blocks, level, plan.looks,
            rule.looked, judged.changes, base_stats, base_measured,
        )  # fmt: skip
        return ScenarioResult(
            scenario=scenario, raw=dataclasses.replace(raw, samples=sides.candidate),
            stats=cand_stats, verdict=judged_verdict, analysis=found, started_at=started,
            thresholds=self.thresholds.path, comparison=comparison,
        )  # fmt: skip


def _baseline_problems(base: RunningBaseline) -> list[str]:
    if base.target.alive():
        return []
    return [f"the baseline at {base.target.url} died or stopped answering during the run"]
