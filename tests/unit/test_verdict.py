"""verdict: budgets against statistics -> PASS / FAIL / INCONCLUSIVE / INVALID, and the lines."""

from __future__ import annotations

import dataclasses
import math

import pytest

from pytest_perfgate.core.model import Budget
from pytest_perfgate.core.numbers import format_count, format_ms
from pytest_perfgate.core.stats import TOTAL, EndpointStats, RunStats
from pytest_perfgate.core.verdict import Check, Outcome, Verdict, evaluate

PREDICT = "POST /predict"


def _row(
    name: str = TOTAL,
    *,
    n: int = 5812,
    p95: float = 412.0,
    ci95: tuple[float, float] = (398.0, 426.0),
    failures: int = 0,
    rps: float = 20.0,
    mean: float = 200.0,
    std: float = 50.0,
    max_ms: float = 900.0,
) -> EndpointStats:
    ci = {"p50": (90.0, 110.0), "p95": ci95, "p99": (700.0, 800.0)}
    return EndpointStats(
        name, n, failures, rps, mean, std, 5.0, max_ms, 100.0, p95, 750.0, ci, 0.95
    )


def _run(total: EndpointStats, *rows: EndpointStats) -> RunStats:
    return RunStats({r.name: r for r in rows}, total, 300.0)


def _evaluate(budget: Budget, total: EndpointStats, **kwargs: object) -> Verdict:
    return evaluate("light", budget, {}, _run(total), **kwargs)  # type: ignore[arg-type]


# --- outcomes of one check -----------------------------------------------------------


def test_a_latency_budget_passes_when_the_whole_interval_is_below_it() -> None:
    v = _evaluate(Budget(p95_ms=500), _row(p95=412, ci95=(398, 426)))
    assert v.outcome is Outcome.PASS and v.passed
    assert v.checks[0].outcome is Outcome.PASS


def test_a_latency_budget_fails_when_the_whole_interval_is_above_it() -> None:
    v = _evaluate(Budget(p95_ms=300), _row(p95=412, ci95=(398, 426)))
    assert v.outcome is Outcome.FAIL and not v.passed
    assert v.breaches == v.checks


def test_a_budget_inside_the_interval_is_inconclusive_with_more_samples_named() -> None:
    v = _evaluate(Budget(p95_ms=420), _row(n=1000, p95=412, ci95=(398, 426)), inconclusive="fail")
    check = v.checks[0]
    assert v.outcome is Outcome.INCONCLUSIVE and check.outcome is Outcome.INCONCLUSIVE
    # the upper half-width 14 must shrink to the gap 8: (14 / 8)^2 = 3.06 times the samples
    assert check.more_samples == 3063 - 1000
    assert v.reasons == (
        "inconclusive: Total p95: the budget lies inside the CI; about 2 063 more samples "
        "(about 104 s more at this rate) would decide it; policy 'fail' fails it",
    )


def test_max_ms_is_judged_on_the_observed_maximum() -> None:
    assert _evaluate(Budget(max_ms=900), _row(max_ms=900)).outcome is Outcome.PASS
    v = _evaluate(Budget(max_ms=800), _row(max_ms=900))
    assert v.outcome is Outcome.FAIL and v.checks[0].ci is None


def test_avg_ms_uses_the_normal_approximation_interval() -> None:
    # mean 200, std 50, n 100: 200 +- 9.8
    assert _evaluate(Budget(avg_ms=210), _row(n=100)).outcome is Outcome.PASS
    assert _evaluate(Budget(avg_ms=190), _row(n=100)).outcome is Outcome.FAIL
    v = _evaluate(Budget(avg_ms=205), _row(n=100), inconclusive="fail")
    assert v.outcome is Outcome.INCONCLUSIVE
    low, high = v.checks[0].ci or (0.0, 0.0)
    assert (low, high) == pytest.approx((190.2, 209.8), abs=0.1)


def test_error_rate_uses_the_clopper_pearson_interval() -> None:
    assert _evaluate(Budget(error_rate=0.01), _row(n=812, failures=26)).outcome is Outcome.FAIL
    assert _evaluate(Budget(error_rate=0.01), _row(n=3000, failures=0)).outcome is Outcome.PASS
    v = _evaluate(Budget(error_rate=0.01), _row(n=300, failures=1), inconclusive="fail")
    assert v.outcome is Outcome.INCONCLUSIVE


def test_an_error_rate_budget_of_zero_is_judged_on_the_count() -> None:
    assert _evaluate(Budget(error_rate=0), _row(n=50, failures=0)).outcome is Outcome.PASS
    assert _evaluate(Budget(error_rate=0), _row(n=50000, failures=1)).outcome is Outcome.FAIL


def test_min_rps_is_judged_on_the_point_estimate() -> None:
    assert _evaluate(Budget(min_rps=10), _row(rps=10.0)).outcome is Outcome.PASS
    assert _evaluate(Budget(min_rps=10), _row(rps=9.99)).outcome is Outcome.FAIL


def test_endpoint_budgets_are_checked_against_their_own_row() -> None:
    total = _row(p95=100, ci95=(90, 110))
    predict = _row(PREDICT, p95=412, ci95=(398, 426))
    v = evaluate("light", Budget(p95_ms=200), {PREDICT: Budget(p95_ms=300)}, _run(total, predict))
    assert [(c.endpoint, c.outcome) for c in v.checks] == [
        (TOTAL, Outcome.PASS),
        (PREDICT, Outcome.FAIL),
    ]
    assert v.outcome is Outcome.FAIL


# --- INVALID -------------------------------------------------------------------------


def test_a_budgeted_endpoint_without_requests_makes_the_verdict_invalid() -> None:
    v = evaluate("light", Budget(), {PREDICT: Budget(p95_ms=300)}, _run(_row()))
    assert v.outcome is Outcome.INVALID and not v.passed
    check = v.checks[0]
    assert (check.outcome, check.observed, check.n) == (Outcome.INVALID, None, 0)
    assert v.reasons == ("POST /predict has a budget but got no request",)
    assert check.message() == (
        "light: POST /predict p95 budget 300 ms: invalid, the endpoint got no request"
    )


def test_too_few_samples_make_the_verdict_invalid() -> None:
    v = _evaluate(Budget(p95_ms=500), _row(n=12), min_samples=50)
    assert v.outcome is Outcome.INVALID
    assert v.reasons == ("only 12 samples, fewer than min_samples 50",)


def test_invalid_reasons_from_the_runner_make_the_verdict_invalid() -> None:
    v = _evaluate(Budget(p95_ms=500), _row(), invalid_reasons=["the load generator saturated"])
    assert v.outcome is Outcome.INVALID and not v.passed
    assert v.checks[0].outcome is Outcome.PASS  # the checks are still reported
    assert v.reasons == ("the load generator saturated",)


# --- severity and the INCONCLUSIVE policy --------------------------------------------


def test_a_warn_severity_breach_is_reported_but_never_fails() -> None:
    v = _evaluate(Budget(p95_ms=300, severity="warn"), _row())
    assert v.outcome is Outcome.PASS and v.passed
    assert v.breaches == () and len(v.warnings) == 1
    assert v.failure_text() == (
        "light: Total p95 412 ms > budget 300 ms (+37 %, n=5 812, 95 % CI 398-426 ms) [warn]"
    )


@pytest.mark.parametrize(
    ("policy", "limit", "passed"),
    [
        ("fail", 420.0, False),
        ("warn", 420.0, True),
        ("pass", 420.0, True),
    ],
)
def test_the_inconclusive_policy_decides_whether_the_test_passes(
    policy: str, limit: float, passed: bool
) -> None:
    v = _evaluate(Budget(p95_ms=limit), _row(), inconclusive=policy)
    assert v.outcome is Outcome.INCONCLUSIVE
    assert v.passed is passed and v.failed is not passed
    assert v.inconclusive == policy
    assert len(v.reasons) == 1
    assert "more samples (about 600 s more at this rate) would decide it" in v.reasons[0]


def test_evaluate_rejects_an_unknown_inconclusive_policy() -> None:
    with pytest.raises(
        ValueError, match="inconclusive: expected one of fail, warn, pass, got 'auto'"
    ):
        _evaluate(Budget(p95_ms=300), _row(), inconclusive="auto")  # no point-estimate fallback


def test_a_hand_made_verdict_passes_only_on_pass() -> None:
    assert Verdict("light", Outcome.PASS, ()).passed
    assert not Verdict("light", Outcome.INCONCLUSIVE, ()).passed


# --- lines ---------------------------------------------------------------------------


def test_the_breach_line_reads_as_in_the_style_guide() -> None:
    v = evaluate("light", Budget(), {PREDICT: Budget(p95_ms=300)}, _run(_row(), _row(PREDICT)))
    assert v.checks[0].message() == (
        "light: POST /predict p95 412 ms > budget 300 ms (+37 %, n=5 812, 95 % CI 398-426 ms)"
    )


def test_a_passing_latency_line_uses_at_most() -> None:
    v = _evaluate(Budget(p95_ms=500), _row())
    assert v.checks[0].message() == (
        "light: Total p95 412 ms <= budget 500 ms (-18 %, n=5 812, 95 % CI 398-426 ms)"
    )


def test_the_error_rate_line_shows_percentages_and_the_interval() -> None:
    v = _evaluate(Budget(error_rate=0.01), _row(n=812, failures=26))
    assert v.checks[0].message() == (
        "light: Total error rate 3.20 % > budget 1.00 % (n=812, 95 % CI 2.10-4.66 %)"
    )


def test_the_throughput_line_shows_requests_per_second() -> None:
    v = _evaluate(Budget(min_rps=10), _row(n=2370, rps=7.9))
    assert v.checks[0].message() == "light: Total 7.9 req/s < budget 10 req/s (-21 %, n=2 370)"
    v = _evaluate(Budget(min_rps=10), _row(n=2370, rps=12.1))
    assert v.checks[0].message() == "light: Total 12.1 req/s >= budget 10 req/s (+21 %, n=2 370)"


def test_the_inconclusive_line_says_the_budget_is_inside_the_interval() -> None:
    v = _evaluate(Budget(p95_ms=420), _row(n=1000))
    assert v.checks[0].message() == (
        "light: Total p95 412 ms ~ budget 420 ms (-2 %, n=1 000, 95 % CI 398-426 ms): "
        "inconclusive, the budget lies inside the CI; about 2 063 more samples would decide it"
    )


def test_an_unbounded_interval_reads_from_zero_to_inf() -> None:
    v = _evaluate(Budget(p95_ms=50), _row(n=30, p95=40, ci95=(-math.inf, math.inf)))
    assert "95 % CI 0-inf ms" in v.checks[0].message()
    assert v.checks[0].more_samples == 72 - 30


@pytest.mark.parametrize(
    ("ms", "text"),
    [(412.4, "412"), (1234.4, "1 234"), (45.62, "45.6"), (9.8, "9.8"), (0.42, "0.42"),
     (50.0, "50"), (0.0, "0"), (math.inf, "inf")],
)  # fmt: skip
def test_milliseconds_are_shown_with_sensible_precision(ms: float, text: str) -> None:
    assert format_ms(ms) == text


def test_counts_group_thousands_with_a_space() -> None:
    assert (format_count(5812), format_count(1234567), format_count(12)) == (
        "5 812",
        "1 234 567",
        "12",
    )


def test_failure_text_lists_breaches_then_invalid_reasons_then_the_rest() -> None:
    total = _row(p95=412, ci95=(398, 426), n=12)
    v = evaluate(
        "light",
        Budget(p95_ms=300, p99_ms=760),
        {PREDICT: Budget(p95_ms=300)},
        _run(total),
        min_samples=50,
        invalid_reasons=["the service died"],
    )
    assert v.outcome is Outcome.INVALID
    # 356 more: order statistics bound a p99 from above only from 368 samples on
    assert v.failure_text().splitlines() == [
        "light: Total p95 412 ms > budget 300 ms (+37 %, n=12, 95 % CI 398-426 ms)",
        "light: POST /predict p95 budget 300 ms: invalid, the endpoint got no request",
        "light: invalid run: only 12 samples, fewer than min_samples 50",
        "light: invalid run: the service died",
        "light: invalid run: POST /predict has a budget but got no request",
        "light: Total p99 750 ms ~ budget 760 ms (-1 %, n=12, 95 % CI 700-800 ms): "
        "inconclusive, the budget lies inside the CI; about 356 more samples would decide it",
        "light: inconclusive: Total p99: the budget lies inside the CI; about 356 more samples "
        "(about 18 s more at this rate) would decide it; policy 'fail' fails it",
    ]


def test_check_is_a_frozen_value() -> None:
    check = Check("light", TOTAL, "p95_ms", 300.0, 412.0, 10, Outcome.FAIL)
    with pytest.raises(AttributeError):
        check.limit = 1.0  # type: ignore[misc]


# --- dependence, drift and the default policy ----------------------------------------


def test_an_inconclusive_scenario_fails_the_test_by_default() -> None:
    v = _evaluate(Budget(p95_ms=420), _row())
    assert v.outcome is Outcome.INCONCLUSIVE and v.failed
    assert v.inconclusive == "fail" and "policy 'fail' fails it" in v.reasons[0]


def test_clustered_failures_widen_the_error_rate_interval() -> None:
    plain = _evaluate(Budget(error_rate=0.02), _row(n=5000, failures=50))
    clustered = dataclasses.replace(_row(n=5000, failures=50), ess={"error_rate": 20.0})
    widened = _evaluate(Budget(error_rate=0.02), clustered)
    assert plain.outcome is Outcome.PASS
    assert widened.outcome is Outcome.INCONCLUSIVE
    assert plain.checks[0].ci is not None and widened.checks[0].ci is not None
    assert widened.checks[0].ci[1] > plain.checks[0].ci[1]


def test_a_pass_whose_halves_disagree_with_one_over_budget_is_inconclusive() -> None:
    drifted = dataclasses.replace(_row(ci95=(398, 426)), drift={"p95": (300.0, 520.0)})
    v = _evaluate(Budget(p95_ms=500), drifted)
    assert v.outcome is Outcome.INCONCLUSIVE and v.failed
    assert v.checks[0].message() == (
        "light: Total p95 412 ms ~ budget 500 ms: inconclusive, p95 300 ms in the first half "
        "of the run, 520 ms in the second: the halves disagree beyond chance (a drift or a "
        "regime switch)"
    )
    assert "the halves disagree beyond chance" in v.reasons[0]
    # a drift within the budget on both sides changes nothing
    calm = dataclasses.replace(_row(), drift={"p95": (300.0, 480.0)})
    assert _evaluate(Budget(p95_ms=500), calm).outcome is Outcome.PASS
