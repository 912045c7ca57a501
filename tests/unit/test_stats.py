"""stats: exact percentiles, their intervals, and the per-endpoint summary."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import pytest

from pytest_perfgate.core.stats import (
    NOT_SENT,
    TOTAL,
    Sample,
    block_dependence,
    bonferroni,
    check_ms,
    halves_disagree,
    mean_ci,
    min_samples_to_bound,
    percentile,
    proportion_ci,
    quantile_ci,
    quantile_ci_ranks,
    samples_needed,
    summarize,
    tick_counts,
)
from pytest_perfgate.errors import PerfgateError, SampleError

np = pytest.importorskip("numpy")


def _binom_cdf(k: int, n: int, p: Fraction) -> Fraction:
    """Exact P(B <= k) with rational arithmetic, the reference for the float code."""
    return sum((math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(k + 1)), Fraction(0))


# --- percentile ----------------------------------------------------------------------


def test_percentile_is_the_nearest_rank_value() -> None:
    values = [10.0, 20.0, 30.0, 40.0]
    assert percentile(values, 0.5) == 20.0
    assert percentile(values, 0.75) == 30.0
    assert percentile(values, 0.76) == 40.0
    assert percentile(values, 1.0) == 40.0
    assert percentile(values, 0.0) == 10.0


def test_percentile_equals_numpys_inverted_cdf_on_random_data() -> None:
    rng = random.Random(7)
    for _ in range(500):
        n = rng.randint(1, 400)
        values = sorted(rng.lognormvariate(3.0, 1.0) for _ in range(n))
        for q in (0.5, 0.9, 0.95, 0.99, rng.random()):
            expected = float(np.quantile(values, q, method="inverted_cdf"))
            assert percentile(values, q) == expected, (n, q)


def test_percentile_reads_q_as_the_decimal_the_user_wrote() -> None:
    # 0.07 * 100 is 7.000000000000001 in floating point; numpy then answers the 8th value
    assert percentile([float(i) for i in range(1, 101)], 0.07) == 7.0


def test_percentile_of_no_values_raises_value_error() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 0.95)


@pytest.mark.parametrize("q", [-0.1, 1.5, math.nan])
def test_percentile_rejects_a_quantile_outside_zero_to_one(q: float) -> None:
    with pytest.raises(ValueError, match="quantile must lie in"):
        percentile([1.0], q)


# --- quantile intervals --------------------------------------------------------------


def test_quantile_ci_ranks_match_the_published_median_table() -> None:
    # n = 100, median, 95 %: the 40th and 61st order statistics (e.g. Conover, table A3)
    assert quantile_ci_ranks(100, 0.5, 0.95) == (40, 61)


@pytest.mark.parametrize("n", [5, 20, 60, 150])
@pytest.mark.parametrize("q", [0.5, 0.9, 0.95, 0.99])
def test_quantile_ci_ranks_are_the_tightest_with_each_tail_under_half_alpha(
    n: int, q: float
) -> None:
    lower, upper = quantile_ci_ranks(n, q, 0.95)
    half = Fraction(1, 40)
    p = Fraction(q)
    if lower >= 1:
        assert _binom_cdf(lower - 1, n, p) <= half < _binom_cdf(lower, n, p)
    else:
        assert _binom_cdf(0, n, p) > half
    if upper <= n:
        assert 1 - _binom_cdf(upper - 1, n, p) <= half < 1 - _binom_cdf(upper - 2, n, p)
    else:
        assert 1 - _binom_cdf(n - 1, n, p) > half


@pytest.mark.parametrize(("q", "n"), [(0.95, 200), (0.5, 40), (0.99, 1000)])
def test_quantile_ci_covers_the_true_quantile_at_the_stated_level(q: float, n: int) -> None:
    rng = np.random.default_rng(11)
    draws = 2000
    true_quantile = -math.log(1.0 - q)  # exponential(1)
    data = np.sort(rng.exponential(size=(draws, n)), axis=1)
    covered = 0
    for row in data:
        low, high = quantile_ci(row.tolist(), q, 0.95)
        covered += low <= true_quantile <= high
    # the order-statistic interval is conservative: its exact coverage is >= 95 %
    assert covered / draws >= 0.95 - 0.012


def test_quantile_ci_is_unbounded_above_until_enough_samples_exist() -> None:
    assert min_samples_to_bound(0.95, 0.95) == 72
    assert quantile_ci([float(i) for i in range(71)], 0.95)[1] == math.inf
    assert quantile_ci([float(i) for i in range(72)], 0.95)[1] == 71.0
    assert quantile_ci([], 0.95) == (-math.inf, math.inf)


def test_quantile_ci_contains_the_point_estimate() -> None:
    rng = random.Random(3)
    values = sorted(rng.expovariate(1.0) for _ in range(500))
    for q in (0.5, 0.95, 0.99):
        low, high = quantile_ci(values, q)
        assert low <= percentile(values, q) <= high


def test_an_ess_factor_widens_the_quantile_interval_outwards() -> None:
    rng = random.Random(5)
    values = sorted(rng.expovariate(1.0) for _ in range(2000))
    low, high = quantile_ci(values, 0.95)
    wide_low, wide_high = quantile_ci(values, 0.95, ess_factor=4.0)
    assert wide_low < low and wide_high > high
    # n / 4 samples give the ranks; their proportions match
    lower, upper = quantile_ci_ranks(500, 0.95)
    assert wide_low <= values[(lower - 1) * 4] and wide_high >= values[upper * 4 - 1]


# --- other intervals -----------------------------------------------------------------


def test_proportion_ci_solves_the_clopper_pearson_equations() -> None:
    low, high = proportion_ci(26, 812, 0.95)
    assert (round(100 * low, 1), round(100 * high, 1)) == (2.1, 4.7)
    assert 1 - float(_binom_cdf(25, 812, Fraction(low))) == pytest.approx(0.025, abs=1e-6)
    assert float(_binom_cdf(26, 812, Fraction(high))) == pytest.approx(0.025, abs=1e-6)


def test_proportion_ci_with_no_hits_has_the_closed_form_upper_bound() -> None:
    assert proportion_ci(0, 3000) == pytest.approx((0.0, 1 - 0.025 ** (1 / 3000)), rel=1e-9)
    assert proportion_ci(50, 50)[0] == pytest.approx(0.025 ** (1 / 50), rel=1e-9)
    assert proportion_ci(0, 0) == (0.0, 1.0)


def test_proportion_ci_covers_at_the_stated_level() -> None:
    rng = np.random.default_rng(2)
    p, n = 0.02, 400
    hits = rng.binomial(n, p, size=2000)
    covered = sum(lo <= p <= hi for lo, hi in (proportion_ci(int(k), n) for k in hits))
    assert covered / 2000 >= 0.95


def test_mean_ci_is_the_normal_approximation() -> None:
    low, high = mean_ci(100.0, 20.0, 400, 0.95)
    assert (low, high) == pytest.approx((100 - 1.959964, 100 + 1.959964))
    assert mean_ci(100.0, 0.0, 1) == (-math.inf, math.inf)


def test_samples_needed_assumes_the_interval_narrows_as_one_over_root_n() -> None:
    # the upper half-width 20 must shrink below the gap 10: four times the samples
    assert samples_needed(1000, 90.0, (75.0, 110.0), 100.0) == 4000
    assert samples_needed(1000, 110.0, (95.0, 130.0), 100.0) == 2250
    assert samples_needed(1000, 100.0, (90.0, 110.0), 100.0) is None
    # an unbounded side needs at least the samples that can bound it
    assert samples_needed(30, 80.0, (60.0, math.inf), 100.0, q=0.95) == 72


# --- correlation ---------------------------------------------------------------------


def test_blocks_see_no_dependence_in_independent_samples() -> None:
    rng = random.Random(9)
    counts = tick_counts((i // 20 for i in range(6000)), (rng.random() < 0.05 for _ in range(6000)))
    assert len(counts) == 300
    assert block_dependence(counts).factor == pytest.approx(1.0, abs=0.3)


def test_blocks_measure_hits_that_come_in_clusters() -> None:
    rng = random.Random(5)
    hits = [h for _ in range(3000) for h in [rng.random() < 0.05] * 10]
    counts = tick_counts(range(len(hits)), hits)  # one request a tick
    found = block_dependence(counts)
    assert found.factor == pytest.approx(10.0, rel=0.3)
    assert found.block >= 8  # the variance stops growing once blocks hold whole clusters


def test_blocks_measure_the_pauses_of_a_garbage_collector() -> None:
    rng = random.Random(2)
    ticks, hits = [], []
    for i in range(20 * 300):  # 20 requests a second, a 0.5 s pause every 8 s
        t = i / 20
        ticks.append(math.floor(t))
        hits.append(t % 8 < 0.5 or rng.random() < 0.01)
    assert block_dependence(tick_counts(ticks, hits)).factor > 3


def test_a_run_too_short_for_blocks_counts_as_independent() -> None:
    assert block_dependence([(20, 1)] * 5).factor == 1.0
    assert block_dependence([]).factor == 1.0
    assert block_dependence([(20, 0)] * 50).factor == 1.0  # no hit: no variance to inflate


def test_halves_that_disagree_beyond_chance_are_a_drift() -> None:
    steady = [(20, 1)] * 60
    shifted = [(20, 1)] * 30 + [(20, 4)] * 30
    burst = [(20, 1)] * 30 + [(20, 1)] * 20 + [(20, 20)] * 3 + [(20, 1)] * 7
    assert not halves_disagree(steady)
    assert halves_disagree(shifted)
    assert not halves_disagree(burst)  # one cluster of hits is dependence, not a drift
    assert not halves_disagree(shifted[22:38])  # too few blocks a half to tell


def test_bonferroni_splits_the_error_over_the_checks() -> None:
    assert bonferroni(0.95, 1) == 0.95
    assert bonferroni(0.95, 5) == pytest.approx(0.99)
    assert bonferroni(0.95, 0) == 0.95


# --- clean inputs --------------------------------------------------------------------


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, -0.5])
def test_a_response_time_that_is_not_a_finite_non_negative_number_is_rejected(bad: float) -> None:
    with pytest.raises(SampleError, match=r"^GET /a request at 3\.250 s: response time"):
        summarize([Sample(1.0, "GET /a", 5.0, True), Sample(3.25, "GET /a", bad, True)], 5.0)
    with pytest.raises(PerfgateError):
        check_ms(bad, "somewhere")
    assert issubclass(SampleError, ValueError)


def test_zero_and_finite_response_times_are_accepted() -> None:
    assert check_ms(0.0, "x") == 0.0 and check_ms(12.5, "x") == 12.5


# --- summaries -----------------------------------------------------------------------


def test_summarize_reports_every_endpoint_and_the_total() -> None:
    samples = [
        Sample(0.0, "GET /a", 10.0, True),
        Sample(0.1, "GET /a", 30.0, False, 500, "HTTP 500"),
        Sample(0.2, "POST /b", 20.0, True),
        Sample(0.3, "GET /a", 20.0, True),
    ]
    run = summarize(samples, duration_s=2.0)
    a = run.endpoints["GET /a"]
    assert (a.requests, a.failures, a.rps, a.min, a.max) == (3, 1, 1.5, 10.0, 30.0)
    assert a.mean == 20.0
    assert a.std == pytest.approx(10.0)  # sample standard deviation, divisor n - 1
    assert (a.p50, a.p95, a.p99) == (20.0, 30.0, 30.0)
    assert a.error_rate == pytest.approx(1 / 3)
    assert set(a.ci) == {"p50", "p95", "p99"} and a.ci_level == 0.95
    assert run.total.name == TOTAL
    assert (run.total.requests, run.total.failures, run.total.rps) == (4, 1, 2.0)
    assert run.total.p50 == 20.0  # failed requests count too, as in Locust
    assert list(run.endpoints) == ["GET /a", "POST /b"]


def test_summarize_of_no_samples_has_an_empty_total() -> None:
    run = summarize([], duration_s=10.0)
    assert run.endpoints == {}
    assert run.total.requests == 0
    assert run.total.ci["p95"] == (-math.inf, math.inf)


def test_summarize_widens_intervals_for_correlation_when_asked() -> None:
    rng = random.Random(4)
    z, samples = 0.0, []
    for i in range(3000):
        z = 0.9 * z + math.sqrt(1 - 0.81) * rng.gauss(0, 1)
        samples.append(Sample(i / 20, "GET /a", math.exp(4 + 0.5 * z), True))
    plain = summarize(samples, 150.0)
    widened = summarize(samples, 150.0, correlated=True)
    assert plain.total.ess_factor == 1.0
    # batch means measure the p95 hits' own inflation (about 8 for phi 0.9 in log space),
    # less than the lag-1 factor (1 + phi) / (1 - phi) = 19 that bounded it before
    assert widened.total.factor("p95") > 4 and widened.endpoints["GET /a"].factor("p95") > 4
    assert widened.total.ess_factor > 6  # the median's hits are the most correlated
    low, high = plain.total.ci["p95"]
    wide_low, wide_high = widened.total.ci["p95"]
    assert wide_low < low and wide_high > high
    assert widened.total.p95 == plain.total.p95


def test_summarize_handles_a_million_samples() -> None:
    rng = random.Random(1)
    names = ["GET /a", "POST /b", "POST /c"]
    samples = [
        Sample(i / 1000, names[i % 3], rng.random() * 100, i % 97 != 0) for i in range(1_000_000)
    ]
    run = summarize(samples, 1000.0)
    assert run.total.requests == 1_000_000
    assert run.total.failures == len(range(0, 1_000_000, 97))
    assert run.total.p50 == pytest.approx(50.0, abs=0.5)  # uniform on [0, 100)
    assert sum(row.requests for row in run.endpoints.values()) == 1_000_000
    # how long it takes is benchmarks/ territory (tests check behaviour, not time)


def test_a_task_that_raised_counts_as_a_failure_without_a_response_time() -> None:
    from pytest_perfgate.core.findings import classify_failure
    from pytest_perfgate.core.stats import NOT_SENT

    samples = [Sample(t=float(i), name="GET /x", ms=20.0, ok=True, status=200) for i in range(9)]
    samples.append(Sample(t=9.0, name="GET /x", ms=0.0, ok=False, status=NOT_SENT, error="boom"))
    row = summarize(samples, 10.0).endpoints["GET /x"]
    assert (row.requests, row.failures, row.error_rate) == (10, 1, 0.1)
    assert row.min == 20.0 and row.p50 == 20.0  # the 0 ms placeholder is not a latency
    assert row.rps == 1.0
    assert classify_failure(NOT_SENT, "boom") == "task_error"


def test_never_sent_requests_are_failures_of_the_error_rate_blocks_too() -> None:
    samples = [Sample(i / 10, "GET /x", 20.0, True, 200) for i in range(600)]
    burst = [Sample(30 + i / 100, "GET /x", 0.0, False, NOT_SENT, "boom") for i in range(300)]
    row = summarize(samples + burst, 60.0, correlated=True).endpoints["GET /x"]
    assert row.min == 20.0 and row.failures == 300
    assert row.factor("error_rate") > 10  # all failures in one burst: few independent units
    assert "error_rate" not in row.drift  # a burst is dependence, not a drift
    steady = [Sample(30 + i / 10, "GET /x", 0.0, False, NOT_SENT, "boom") for i in range(300)]
    row = summarize(samples + steady, 60.0, correlated=True).endpoints["GET /x"]
    assert row.drift["error_rate"] == (0.0, 0.5)  # none in the first half, half in the second


def test_summarize_reports_the_halves_of_a_run_that_shifted() -> None:
    rng = random.Random(3)
    samples = [
        Sample(i / 20, "GET /a", rng.lognormvariate(3 if i < 1200 else 3.6, 0.3), True)
        for i in range(2400)
    ]
    row = summarize(samples, 120.0, correlated=True).total
    first, second = row.drift["p95"]
    assert first < row.p95 < second
    assert summarize(samples, 120.0).total.drift == {}  # only measured when asked
