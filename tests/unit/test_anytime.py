"""Intervals valid at the stopping time, and verdicts that agree with the rule that stopped."""

from __future__ import annotations

import math
import random

import pytest

from pytest_perfgate.core.model import Budget
from pytest_perfgate.core.sequential import StopRule, quantile_limits
from pytest_perfgate.core.stats import (
    TOTAL,
    Sample,
    proportion_ci,
    proportion_cs,
    quantile_ci_ranks,
    quantile_cs,
    quantile_cs_ranks,
    summarize,
)
from pytest_perfgate.core.verdict import Outcome, evaluate

Z95 = 1.6448536269514722


def test_the_anytime_interval_is_wider_than_the_fixed_sample_one() -> None:
    for n in (100, 1000, 10_000):
        low, high = quantile_cs_ranks(n, 0.95)
        fixed_low, fixed_high = quantile_ci_ranks(n, 0.95)
        assert low <= fixed_low and high >= fixed_high
    assert proportion_cs(20, 1000)[0] < proportion_ci(20, 1000)[0]
    assert proportion_cs(20, 1000)[1] > proportion_ci(20, 1000)[1]
    assert proportion_cs(0, 0) == (0.0, 1.0)


def test_a_dependence_factor_widens_the_anytime_interval() -> None:
    assert quantile_cs_ranks(2000, 0.95, factor=5.0)[1] > quantile_cs_ranks(2000, 0.95)[1]
    assert proportion_cs(20, 1000, factor=5.0)[1] > proportion_cs(20, 1000)[1]


def test_the_anytime_interval_covers_at_a_stopping_time_chosen_from_the_data() -> None:
    # the worst stopping rule: stop at the first look where the interval misses the truth
    rng = random.Random(11)
    runs, missed = 300, 0
    for _ in range(runs):
        values: list[float] = []
        for _look in range(60):
            values += [rng.random() for _ in range(20)]
            low, high = quantile_cs(sorted(values), 0.95)
            if not low <= 0.95 <= high:
                missed += 1
                break
    assert missed / runs <= 0.05


def test_a_verdict_on_anytime_statistics_agrees_with_the_rule_that_stopped() -> None:
    rng = random.Random(3)
    budget = Budget(p95_ms=100.0, error_rate=0.05)
    for true_p95, word in ((70.0, "stop:"), (150.0, "abort:")):
        rule = StopRule(budget, min_duration_s=30.0, abort_window_s=10.0)
        samples: list[Sample] = []
        reason = None
        for second in range(1, 301):
            for k in range(20):
                ms = math.exp(math.log(true_p95) - Z95 * 0.5 + 0.5 * rng.gauss(0, 1))
                samples.append(Sample(second - 1 + k / 20, "GET /a", ms, rng.random() > 0.01))
            reason = rule(samples, float(second))
            if reason:
                break
        assert reason is not None and reason.startswith(word)
        stats = summarize(
            samples, samples[-1].t, 0.95, correlated=True, anytime=True,
            limits=quantile_limits(budget, {}),
        )  # fmt: skip
        assert stats.total.anytime
        verdict = evaluate("s", budget, {}, stats)
        p95 = verdict.checks[0]
        assert p95.outcome is (Outcome.PASS if word == "stop:" else Outcome.FAIL)


def test_quantile_limits_name_the_percentile_budgets_by_row() -> None:
    limits = quantile_limits(
        Budget(p95_ms=100.0, error_rate=0.01), {"GET /a": Budget(p99_ms=300.0, max_ms=900.0)}
    )
    assert limits == {TOTAL: {"p95": 100.0}, "GET /a": {"p99": 300.0}}


@pytest.mark.parametrize("k", [0, 5, 50])
def test_the_anytime_proportion_interval_holds_the_observed_share(k: int) -> None:
    low, high = proportion_cs(k, 500)
    assert low <= k / 500 <= high
