"""Verdicts under dependence (issue 13): the floor a lower quantile gives a percentile's
dependence, early PASS held back until clusters would have shown, the mean's interval at
a stopping time, and never-sent requests left out of stored baselines."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

from pytest_perfgate.core.model import Budget
from pytest_perfgate.core.regression import compare, samples_by_endpoint
from pytest_perfgate.core.sequential import MIN_EXPECTED_HITS, StopRule
from pytest_perfgate.core.stats import (
    NOT_SENT,
    TOTAL,
    Sample,
    mean_ci,
    reference_dependence,
    summarize,
)
from pytest_perfgate.core.verdict import Outcome, evaluate, mean_cs
from pytest_perfgate.results.baselines import load_baseline, save_baseline

PREDICT = "POST /predict"
RATE = 20


def _level_switching(seconds: int, seed: int = 1, period: int = 5) -> list[Sample]:
    """Latencies whose level switches every ``period`` seconds (10 or 30 ms), far under
    100 ms: no request is over a 100 ms budget, but they stay high or low together."""
    rng = random.Random(seed)
    samples = []
    for i in range(seconds * RATE):
        t = i / RATE
        level = 10.0 if (int(t) // period) % 2 == 0 else 30.0
        samples.append(Sample(t, PREDICT, level * math.exp(0.1 * rng.gauss(0, 1)), True, 200))
    return samples


def _independent(seconds: int, seed: int = 1) -> list[Sample]:
    rng = random.Random(seed)
    return [
        Sample(i / RATE, PREDICT, 20.0 * math.exp(0.1 * rng.gauss(0, 1)), True, 200)
        for i in range(seconds * RATE)
    ]


def _stop_second(samples: list[Sample], rule: StopRule, seconds: int) -> int | None:
    for second in range(1, seconds + 1):
        seen = [s for s in samples if s.t < second]
        reason = rule(seen, float(second))
        if reason is not None:
            assert reason.startswith("stop:")
            return second
    return None


def test_the_reference_of_independent_requests_adds_nothing() -> None:
    samples = _independent(120)
    found = reference_dependence([math.floor(s.t) for s in samples], [s.ms for s in samples], 0.95)
    assert found.excess == 1.0


def test_the_reference_shows_latencies_that_stay_high_together() -> None:
    samples = _level_switching(120)
    found = reference_dependence([math.floor(s.t) for s in samples], [s.ms for s in samples], 0.95)
    # 100 requests at a time over (or under) the p75 together
    assert found.excess > 10.0


def test_independent_requests_pass_at_the_minimum_duration() -> None:
    rule = StopRule(Budget(p95_ms=100.0), min_duration_s=30.0)
    assert _stop_second(_independent(60), rule, 60) == 30


def test_an_early_pass_waits_while_latencies_cluster_though_none_is_over_budget() -> None:
    # no request is ever over 100 ms, yet the run's requests stay high or low together
    # for 5 s (100 requests): a 30 s run holds about 6 independent ones, too few to pass
    rule = StopRule(Budget(p95_ms=100.0), min_duration_s=30.0)
    second = _stop_second(_level_switching(300), rule, 300)
    assert second is None or second * RATE * 0.05 / 20.0 >= MIN_EXPECTED_HITS * 0.9


def test_the_final_interval_of_clustered_latencies_is_widened_by_the_reference() -> None:
    samples = _level_switching(120)
    plain = summarize(samples, 120.0, correlated=True, limits={TOTAL: {"p95": 100.0}})
    assert plain.total.factor("p95") > 10.0  # its own hits (none) could not show it
    ranks = summarize(samples, 120.0, correlated=False)
    low, high = plain.total.ci["p95"]
    assert high - low >= ranks.total.ci["p95"][1] - ranks.total.ci["p95"][0]


def test_the_mean_at_a_stopping_time_gets_a_confidence_sequence() -> None:
    low, high = mean_cs(50.0, 10.0, 1000)
    fixed = mean_ci(50.0, 10.0, 1000)
    assert low < fixed[0] < 50.0 < fixed[1] < high
    assert mean_cs(50.0, 10.0, 1) == (-math.inf, math.inf)
    samples = _independent(60)
    budget = Budget(avg_ms=21.0)
    anytime = summarize(samples, 60.0, correlated=True, anytime=True)
    fixed_run = summarize(samples, 60.0, correlated=True)
    wide = evaluate("s", budget, {}, anytime).checks[0].ci
    narrow = evaluate("s", budget, {}, fixed_run).checks[0].ci
    assert wide is not None and narrow is not None
    assert wide[0] < narrow[0] and wide[1] > narrow[1]


def _with_never_sent() -> list[Sample]:
    samples = _independent(50)
    samples += [
        Sample(50.0 + i / 10, PREDICT, 0.0, False, NOT_SENT, "ConnectionError") for i in range(10)
    ]
    return samples


def test_a_baseline_stores_no_response_time_for_a_never_sent_request(tmp_path: Path) -> None:
    samples = _with_never_sent()
    run = summarize(samples, 51.0)
    path = save_baseline(tmp_path, "main", "light", samples_by_endpoint(samples), run, {})
    stored = json.loads(path.read_text())["endpoints"][PREDICT]
    assert stored["us_deltas"][0] > 0  # the smallest stored time is a real one, not 0 ms
    assert (stored["requests"], stored["failures"]) == (1010, 10)
    base = load_baseline(tmp_path, "main", "light")
    row = base.endpoints[PREDICT]
    assert (len(row.sorted_ms), row.not_sent, row.requests) == (1000, 10, 1010)
    assert min(row.sorted_ms) > 0.0
    assert base.total.not_sent == 10


def test_never_sent_requests_count_as_failures_against_a_baseline(tmp_path: Path) -> None:
    samples = _with_never_sent()
    run = summarize(samples, 51.0)
    save_baseline(tmp_path, "main", "light", samples_by_endpoint(samples), run, {})
    base = load_baseline(tmp_path, "main", "light")
    clean = _independent(50, seed=2)
    checks = compare(
        base, samples_by_endpoint(clean), summarize(clean, 50.0),
        {"error_rate_regression": 0.0, "p95_regression": 0.5},
    )  # fmt: skip
    by_key = {c.metric: c for c in checks}
    error = by_key["error_rate_regression"]
    assert error.observed is not None
    assert math.isclose(error.observed, 0.0 - 10 / 1010)  # the baseline's share: 10 of 1 010
    p95 = by_key["p95_regression"]
    assert p95.outcome is Outcome.PASS  # no 0 ms among the baseline's response times
