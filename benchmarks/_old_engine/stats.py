"""Samples -> statistics: exact percentiles with distribution-free confidence intervals.

Pure functions over frozen values; no pytest, no locust, no numpy (this module is
imported by the pytest plugin). The one percentile function of the project lives here
(``percentile``); everything else calls it.

Methods, and what they guarantee:

- ``percentile``: the nearest-rank quantile, ``sorted[ceil(q*n) - 1]`` (numpy's
  ``method="inverted_cdf"``), so every reported percentile is a response time that
  some request actually had.
- ``quantile_ci``: the equal-tailed order-statistic interval ``[X_(l), X_(u)]``. With
  ``B ~ Binomial(n, q)``, ``l`` is the largest rank with ``P(B <= l-1) <= alpha/2`` and
  ``u`` the smallest with ``P(B >= u) <= alpha/2``, both from the exact binomial
  distribution. For i.i.d. samples of any distribution (ties included) the interval
  covers the true quantile with probability ``>= level``; a side that ``n`` samples
  cannot bound is ``-inf`` / ``inf`` (the upper side of a p95 needs ``n >= 72`` at 95 %).
- ``proportion_ci``: the Clopper-Pearson interval (exact binomial, coverage ``>= level``).
- ``mean_ci``: ``mean +- z * std / sqrt(n)``, a normal (central-limit) approximation;
  it can cover less than ``level`` for heavy tails and small ``n``.

All intervals assume independent samples; ``sequential`` widens its own evidence for
correlation in time.

Over 450 lines on purpose: each interval method sits beside the exact computation it
needs (binomial tails, rank searches) and the argument for its coverage.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist

from pytest_perfgate.core.metrics import METRICS

__all__ = [
    "TOTAL",
    "EndpointStats",
    "LagOne",
    "RunStats",
    "Sample",
    "endpoint_stats",
    "inflation",
    "mean_ci",
    "percentile",
    "proportion_ci",
    "quantile_ci",
    "quantile_ci_ranks",
    "samples_needed",
    "summarize",
]

TOTAL = "Total"  #: key of the all-endpoints row, as in Locust's "Aggregated"
#: ``Sample.status`` of a task that raised before sending anything: a failure with no
#: response time, so it counts in the error rate but not in latency percentiles
NOT_SENT = -1
#: the quantiles a row reports, by ``EndpointStats`` field: the registry's quantile metrics
QUANTILES: Mapping[str, float] = {
    m.stat: m.q for m in METRICS if m.judge == "quantile" and m.stat and m.q is not None
}

# q * n is compared with integers; this absorbs float noise such as 0.07 * 100 = 7.000000000000001
_RANK_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class Sample:
    """One request as the load generator saw it."""

    t: float  # request start, seconds since the run started (intended start in open mode)
    name: str  # endpoint key, "POST /predict"
    ms: float  # response time in milliseconds, full precision
    ok: bool
    status: int = 0  # HTTP status; 0: no response (connection error, timeout); NOT_SENT: -1
    error: str = ""  # error text for failures ("" for successes)


@dataclass(frozen=True)
class EndpointStats:
    """Figures of one endpoint (or of ``TOTAL``) over the measured window.

    Response times include failed requests (as Locust does); ``std`` is the sample
    standard deviation (divisor ``n - 1``, 0 for a single request).
    """

    name: str
    requests: int
    failures: int
    rps: float
    mean: float
    std: float
    min: float
    max: float
    p50: float
    p95: float
    p99: float
    #: confidence interval (low, high) of each reported percentile, keyed "p50", "p95", "p99"
    ci: Mapping[str, tuple[float, float]]
    ci_level: float = 0.95
    #: variance inflation the intervals allow for (``LagOne``); 1 means independent samples
    ess_factor: float = 1.0

    @property
    def success_rate(self) -> float:
        return 1.0 - self.error_rate

    @property
    def error_rate(self) -> float:
        return self.failures / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class RunStats:
    endpoints: Mapping[str, EndpointStats]  # by endpoint key, without TOTAL
    total: EndpointStats
    duration_s: float  # length of the measured window (after warm-up)


# --- percentiles and their intervals -------------------------------------------------


def _check_q(q: float) -> None:
    if not 0.0 <= q <= 1.0:  # also rejects nan
        raise ValueError(f"quantile must lie in [0, 1], got {q!r}")


def _nearest_rank(n: int, q: float) -> int:
    """1-based rank of the nearest-rank ``q``-quantile among ``n`` values."""
    return min(max(math.ceil(q * n - _RANK_EPS), 1), n)


def percentile(sorted_ms: Sequence[float], q: float) -> float:
    """The exact ``q``-quantile (0 <= q <= 1) of sorted values, nearest-rank definition.

    The smallest value ``x`` with ``F(x) >= q``: ``sorted_ms[ceil(q * n) - 1]``.
    """
    _check_q(q)
    if not sorted_ms:
        raise ValueError("percentile of no values")
    return sorted_ms[_nearest_rank(len(sorted_ms), q) - 1]


def _binom_sum(n: int, p: float, a: int, b: int) -> float:
    """``P(a <= B <= b)`` for ``B ~ Binomial(n, p)``, summed outwards from the mode.

    Terms shrink monotonically away from the mode (the pmf is log-concave), so the sum
    stops once a term is negligible: O(sqrt(n p (1-p))) terms, exact to ~1e-15.
    """
    a, b = max(a, 0), min(b, n)
    if a > b:
        return 0.0
    if p <= 0.0:
        return 1.0 if a == 0 else 0.0
    if p >= 1.0:
        return 1.0 if b == n else 0.0
    m = min(max(int((n + 1) * p), a), b)
    log_pm = (
        math.lgamma(n + 1) - math.lgamma(m + 1) - math.lgamma(n - m + 1)
        + m * math.log(p) + (n - m) * math.log1p(-p)
    )  # fmt: skip
    top = math.exp(log_pm)
    if top == 0.0:
        return 0.0
    odds = p / (1.0 - p)
    total = term = top
    for j in range(m, b):
        term *= (n - j) / (j + 1) * odds
        total += term
        if term < total * 1e-20:
            break
    term = top
    for j in range(m, a, -1):
        term *= j / ((n - j + 1) * odds)
        total += term
        if term < total * 1e-20:
            break
    return min(total, 1.0)


def _largest_true(lo: int, hi: int, pred: Callable[[int], bool]) -> int:
    """Largest ``k`` in ``[lo, hi]`` with ``pred(k)`` (true, then false); ``lo - 1`` if none."""
    if lo > hi or not pred(lo):
        return lo - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if pred(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


@lru_cache(maxsize=4096)
def quantile_ci_ranks(n: int, q: float, level: float = 0.95) -> tuple[int, int]:
    """1-based ranks ``(l, u)`` of the order statistics bounding the ``q``-quantile.

    ``l == 0`` means the lower side cannot be bounded with ``n`` samples, ``u == n + 1``
    the upper side. ``P(X_(l) <= Q_q <= X_(u)) >= level`` for i.i.d. samples.
    """
    _check_q(q)
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must lie in (0, 1), got {level!r}")
    half = (1.0 - level) / 2.0
    # P(B <= l - 1) <= alpha/2: largest such l
    lower = _largest_true(1, n, lambda k: _binom_sum(n, q, 0, k - 1) <= half)
    # P(B >= u) <= alpha/2: smallest such u; the predicate "P(B >= u) > alpha/2" is true then false
    upper = _largest_true(0, n, lambda k: k == 0 or _binom_sum(n, q, k, n) > half) + 1
    return max(lower, 0), upper


def quantile_ci(
    sorted_ms: Sequence[float], q: float, level: float = 0.95, *, ess_factor: float = 1.0
) -> tuple[float, float]:
    """A distribution-free confidence interval for the ``q``-quantile from order statistics.

    ``(-inf, inf)`` for no values; a side that too few samples cannot bound is infinite.
    ``ess_factor`` ``f > 1`` (correlated samples, see ``LagOne``) takes the ranks of
    ``n / f`` samples and scales them back to ``n``, outwards.
    """
    n = len(sorted_ms)
    if n == 0:
        _check_q(q)
        return -math.inf, math.inf
    lower, upper = _scaled_ranks(n, q, level, ess_factor)
    low = sorted_ms[lower - 1] if lower >= 1 else -math.inf
    high = sorted_ms[upper - 1] if upper <= n else math.inf
    return low, high


def _scaled_ranks(n: int, q: float, level: float, ess_factor: float) -> tuple[int, int]:
    if ess_factor <= 1.0:
        return quantile_ci_ranks(n, q, level)
    n_eff = max(1, math.floor(n / ess_factor))
    lower, upper = quantile_ci_ranks(n_eff, q, level)
    scale = n / n_eff
    low = math.floor((lower - 1) * scale) + 1 if lower >= 1 else 0
    high = math.ceil(upper * scale) if upper <= n_eff else n + 1
    return max(0, min(low, n)), max(1, min(high, n + 1))


def min_samples_to_bound(q: float, level: float = 0.95, *, side: str = "upper") -> int:
    """Fewest samples whose order statistics bound the ``q``-quantile on ``side`` at ``level``."""
    half = (1.0 - level) / 2.0
    share = q if side == "upper" else 1.0 - q
    if share <= 0.0:
        return 1
    if share >= 1.0:
        raise ValueError(f"the {side} side of the {q!r}-quantile can never be bounded")
    return max(1, math.ceil(math.log(half) / math.log(share) - _RANK_EPS))


# --- other intervals -----------------------------------------------------------------


def proportion_ci(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson interval of a proportion from ``k`` hits in ``n`` trials.

    Found by bisection on the exact binomial distribution; ``(0, 1)`` when ``n == 0``.
    """
    if not 0 <= k <= n:
        raise ValueError(f"expected 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 0.0, 1.0
    half = (1.0 - level) / 2.0
    # lower: P(B >= k | p) = alpha/2, increasing in p
    low = 0.0 if k == 0 else _bisect_p(lambda p: _binom_sum(n, p, k, n) - half)
    # upper: P(B <= k | p) = alpha/2, decreasing in p
    high = 1.0 if k == n else _bisect_p(lambda p: half - _binom_sum(n, p, 0, k))
    return low, high


def _bisect_p(increasing: Callable[[float], float]) -> float:
    """Root in (0, 1) of an increasing function, to about 1e-13."""
    lo, hi = 0.0, 1.0
    for _ in range(45):
        mid = (lo + hi) / 2.0
        if increasing(mid) < 0.0:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


def mean_ci(mean: float, std: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Normal-approximation interval ``mean +- z * std / sqrt(n)``; unbounded below 2 samples."""
    if n < 2:
        return -math.inf, math.inf
    z = NormalDist().inv_cdf((1.0 + level) / 2.0)
    half = z * std / math.sqrt(n)
    return mean - half, mean + half


def samples_needed(
    n: int,
    estimate: float,
    ci: tuple[float, float],
    limit: float,
    *,
    q: float | None = None,
    level: float = 0.95,
    ess_factor: float = 1.0,
) -> int | None:
    """About how many samples in total would put ``limit`` outside the interval.

    ``ess_factor`` (from time correlation) scales the order-statistic floor: ``n``
    correlated samples bound a quantile only as well as ``n / ess_factor`` independent ones.

    Assumes the estimate stays where it is and the interval narrows as ``1/sqrt(n)``
    (true for quantile, mean and proportion intervals alike). ``q`` (the quantile) adds
    the floor below which order statistics cannot bound that side at all. ``None`` when
    the estimate sits exactly on the limit: no sample count would decide it.
    """
    low, high = ci
    if estimate < limit:
        half, gap, side = high - estimate, limit - estimate, "upper"
    elif estimate > limit:
        half, gap, side = estimate - low, estimate - limit, "lower"
    else:
        return None
    floor = n + 1
    if q is not None:
        bound = min_samples_to_bound(q, level, side=side)
        floor = max(floor, math.ceil(bound * max(ess_factor, 1.0)))
    if not math.isfinite(half):
        return floor
    return max(floor, math.ceil(n * (half / gap) ** 2))


class LagOne:
    """Streaming lag-1 autocorrelation ``r`` of log response times, as an AR(1) inflation.

    ``factor() = (1 + r) / (1 - r)`` is the variance inflation of the mean of an AR(1)
    series: ``n`` correlated samples carry about as much information as ``n / factor``
    independent ones. For a Gaussian-copula process no function of the values (such as
    "over the budget") is more correlated than the underlying normals (Lancaster's
    maximal correlation), so an AR(1) in log space inflates every percentile's variance
    by at most this factor. ``r`` below ``2 / sqrt(n)`` counts as noise (factor 1).
    """

    def __init__(self) -> None:
        self.n = 0
        self._sum = self._squares = self._products = 0.0
        self._first: float | None = None
        self._last: float | None = None

    def extend(self, ms: Iterable[float]) -> None:
        """Add response times in arrival order."""
        n, total, squares, products, last = (
            self.n, self._sum, self._squares, self._products, self._last
        )  # fmt: skip
        for x in ms:
            v = math.log(x) if x > 1e-6 else -13.8  # log(1e-6): 0 ms stays finite
            if last is not None:
                products += last * v
            elif self._first is None:
                self._first = v
            total += v
            squares += v * v
            n += 1
            last = v
        self.n, self._sum, self._squares, self._products, self._last = (
            n, total, squares, products, last
        )  # fmt: skip

    @property
    def r(self) -> float:
        """The lag-1 autocorrelation so far (0 below 10 values or for constant values)."""
        n = self.n
        if n < 10 or self._first is None or self._last is None:
            return 0.0
        mean = self._sum / n
        var = self._squares / n - mean * mean
        if var <= 1e-12 * max(1.0, mean * mean):
            return 0.0
        # the n - 1 products pair x_1..x_{n-1} with x_2..x_n
        head, tail = self._sum - self._last, self._sum - self._first
        cov = (self._products - mean * (head + tail)) / (n - 1) + mean * mean
        return max(-1.0, min(cov / var, 1.0))

    def factor(self) -> float:
        """``(1 + r) / (1 - r)``, with ``r`` clipped to ``[0, 0.99]``; 1 when ``r`` is noise."""
        r = self.r
        if r < 2.0 / math.sqrt(max(self.n, 1)):
            return 1.0
        r = min(r, 0.99)
        return (1.0 + r) / (1.0 - r)


def inflation(ms_in_arrival_order: Iterable[float]) -> float:
    """``LagOne`` over a whole series: the factor ``f`` that turns ``n`` into ``n / f``."""
    lag = LagOne()
    lag.extend(ms_in_arrival_order)
    return lag.factor()


# --- summaries -----------------------------------------------------------------------


def endpoint_stats(
    name: str,
    sorted_ms: Sequence[float],
    failures: int,
    duration_s: float,
    level: float = 0.95,
    *,
    ess_factor: float = 1.0,
    not_sent: int = 0,
) -> EndpointStats:
    """Figures of one endpoint from its sorted response times; ``summarize`` calls this per row.

    ``not_sent`` failures (tasks that raised before a request) count as requests and
    failures, but have no response time.
    """
    n = len(sorted_ms)
    rps = (n + not_sent) / duration_s if duration_s > 0 else 0.0
    if n == 0:
        unbounded = (-math.inf, math.inf)
        return EndpointStats(
            name, not_sent, failures, rps, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
            dict.fromkeys(QUANTILES, unbounded), level, ess_factor,
        )  # fmt: skip
    mean = math.fsum(sorted_ms) / n
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in sorted_ms) / (n - 1)) if n > 1 else 0.0
    points = {key: percentile(sorted_ms, q) for key, q in QUANTILES.items()}
    ci = {
        key: quantile_ci(sorted_ms, q, level, ess_factor=ess_factor) for key, q in QUANTILES.items()
    }
    return EndpointStats(
        name=name,
        requests=n + not_sent,
        failures=failures,
        rps=rps,
        mean=mean,
        std=std,
        min=sorted_ms[0],
        max=sorted_ms[-1],
        p50=points["p50"],
        p95=points["p95"],
        p99=points["p99"],
        ci=ci,
        ci_level=level,
        ess_factor=ess_factor,
    )


def summarize(
    samples: Iterable[Sample], duration_s: float, level: float = 0.95, *, correlated: bool = False
) -> RunStats:
    """Per-endpoint and total statistics of ``samples`` over a window of ``duration_s``.

    Sorts each endpoint once; the total row sorts the concatenated sorted runs, which
    Timsort merges in linear time per run. ``correlated=True`` widens every interval for
    correlation in time, measured by ``LagOne`` on each row's samples in arrival order
    (the order of ``samples``).
    """
    times: dict[str, list[float]] = {}
    failures: dict[str, int] = {}
    not_sent: dict[str, int] = {}
    arrival_all: list[float] | None = [] if correlated else None
    for s in samples:
        bucket = times.get(s.name)
        if bucket is None:
            bucket = times[s.name] = []
            failures[s.name] = not_sent[s.name] = 0
        if not s.ok:
            failures[s.name] += 1
        if s.status == NOT_SENT:
            not_sent[s.name] += 1
            continue
        bucket.append(s.ms)
        if arrival_all is not None:
            arrival_all.append(s.ms)
    rows: dict[str, EndpointStats] = {}
    every: list[float] = []
    for name in sorted(times):
        arrival = times[name]
        factor = inflation(arrival) if correlated else 1.0
        ordered = sorted(arrival)
        rows[name] = endpoint_stats(
            name, ordered, failures[name], duration_s, level, ess_factor=factor,
            not_sent=not_sent[name],
        )  # fmt: skip
        every.extend(ordered)
    every.sort()
    total_factor = inflation(arrival_all) if arrival_all is not None else 1.0
    total = endpoint_stats(
        TOTAL, every, sum(failures.values()), duration_s, level, ess_factor=total_factor,
        not_sent=sum(not_sent.values()),
    )  # fmt: skip
    return RunStats(endpoints=rows, total=total, duration_s=duration_s)
