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
- ``quantile_cs`` / ``proportion_cs``: confidence sequences, the values the mixture
  martingale test of ``sequential`` cannot reject (Howard and Ramdas, Bernoulli 2022,
  in its test form; ``confseq`` on PyPI implements the paper but needs a C++ build and
  numpy, which this module may not import). By Ville's inequality they hold at every
  sample size at once, so at a data-dependent stopping time (an early stop or abort),
  for i.i.d. samples of a continuous law; about 1.3 to 1.8 times as wide as the
  fixed-sample intervals.

The intervals above assume independent samples. ``summarize(correlated=True)`` widens
them for dependence in time by batch means: the share of requests over a figure (or
failed) is counted per block of whole seconds, and the blocks' variance over the
binomial one is the factor ``f`` by which ``n`` requests weigh as ``n / f`` independent
ones (``block_dependence``). The block length is the first at which the variance stops
growing with it (``Dependence.settled``; the verdict passes nothing while it still
grows). A percentile's ``f`` is at least that of the requests over a lower quantile
(``reference_dependence``, p75 for a p95): its own hits may be too few to show how they
cluster. Valid as ``n`` grows for any stationary dependence shorter than the
blocks (queues, GC pauses, clustered failures); a run too short for blocks longer than
its dependence is undercorrected, and a run whose halves disagree beyond chance is not
stationary: ``EndpointStats.drift`` says so.

Streamed responses (``Sample.stream``) add series of their own (``core.metrics.Series``):
each response's TTFT and TPOT, and every per-token gap (ITL). Each quantile metric of the
registry is computed over its series with the same percentile, intervals and, by blocks
of the requests' seconds, dependence and drift (``EndpointStats.figures``/``ci``); goodput
is a share of requests (``meets_slo``), output tokens/s a count over the window.

Over 800 lines on purpose: each interval method sits beside the exact computation it
needs (binomial tails, rank searches, mixture evidence, blocks) and the argument for its coverage.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from statistics import NormalDist

from pytest_perfgate.core.metrics import METRICS, Series
from pytest_perfgate.errors import SampleError

__all__ = [
    "MIN_BLOCKS",
    "NOT_SENT",
    "ODDS_RATIOS",
    "STREAM_QUANTILES",
    "TOTAL",
    "Dependence",
    "EndpointStats",
    "RunStats",
    "Sample",
    "Stream",
    "StreamStats",
    "block_dependence",
    "bonferroni",
    "check_ms",
    "endpoint_stats",
    "evidence",
    "halves_disagree",
    "log_mean_exp",
    "mean_ci",
    "meets_slo",
    "mixture",
    "percentile",
    "proportion_ci",
    "proportion_cs",
    "quantile_ci",
    "quantile_ci_ranks",
    "quantile_cs",
    "quantile_cs_ranks",
    "reference_dependence",
    "samples_needed",
    "series_values",
    "summarize",
    "tick_counts",
]

TOTAL = "Total"  #: key of the all-endpoints row, as in Locust's "Aggregated"
#: ``Sample.status`` of a task that raised before sending anything: a failure with no
#: response time, so it counts in the error rate but not in latency percentiles
NOT_SENT = -1
#: the quantiles a row reports, by ``EndpointStats`` field: the registry's quantile metrics
#: over response times
QUANTILES: Mapping[str, float] = {
    m.stat: m.q
    for m in METRICS
    if m.judge == "quantile" and m.stat and m.q is not None and m.series == "latency"
}
#: the quantiles of streamed responses, by ``EndpointStats.figures`` key: (series, q)
STREAM_QUANTILES: Mapping[str, tuple[Series, float]] = {
    m.stat: (m.series, m.q)
    for m in METRICS
    if m.judge == "quantile" and m.stat and m.q is not None and m.series != "latency"
}
#: every figure of streamed responses (``EndpointStats.figures``): absent from rows without
_STREAM_STATS = frozenset(m.stat for m in METRICS if m.streamed and m.stat)

# q * n is compared with integers; this absorbs float noise such as 0.07 * 100 = 7.000000000000001
_RANK_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class Stream:
    """What a streamed response (SSE, OpenAI-compatible) showed, token by token.

    ``ttft_ms`` is timed from the request's start (its scheduled start in the open model)
    to the first chunk that carries generated content: not the first byte, not a
    role-only or empty chunk. ``itl_ms`` holds one gap per generated token after the
    first: a chunk that carried ``k`` tokens ``g`` ms after the previous content chunk
    adds ``k`` gaps of ``g / k`` ms (``batched`` says that happened). ``tpot_ms`` is
    ``(end - first token) / (output_tokens - 1)``; None for fewer than two tokens.
    """

    ttft_ms: float | None  # None: no content arrived
    itl_ms: tuple[float, ...]  # per-token gaps after the first token
    output_tokens: int  # from ``usage`` when the stream gave it, else counted per chunk
    chunks: int  # content chunks received
    batched: bool  # some chunk carried several tokens
    wellformed: bool  # every chunk parsed, ``[DONE]`` arrived, usage agreed with what came
    problem: str = ""  # why it is not well-formed ("" when it is)

    @property
    def tpot_ms(self) -> float | None:
        if self.ttft_ms is None or self.output_tokens < 2:
            return None
        return math.fsum(self.itl_ms) / (self.output_tokens - 1) if self.itl_ms else None


@dataclass(frozen=True, slots=True)
class Sample:
    """One request as the load generator saw it."""

    t: float  # request start, seconds since the run started (intended start in open mode)
    name: str  # endpoint key, "POST /predict"
    ms: float  # response time in milliseconds, full precision
    ok: bool
    status: int = 0  # HTTP status; 0: no response (connection error, timeout); NOT_SENT: -1
    error: str = ""  # error text for failures ("" for successes)
    stream: Stream | None = None  # a streamed response's tokens; None for a plain one
    pair: int = 0  # an A/B duet's pair: both sides' requests of one task share it; 0: none


def series_values(s: Sample, series: Series) -> tuple[float, ...]:
    """The values ``s`` adds to ``series`` (``core.metrics.Series``): its response time
    (none when never sent), its TTFT, its per-token gaps, its TPOT (none without them)."""
    if series == "latency":
        return () if s.status == NOT_SENT else (s.ms,)
    stream = s.stream
    if stream is None:
        return ()
    if series == "itl":
        return stream.itl_ms
    value = stream.ttft_ms if series == "ttft" else stream.tpot_ms if series == "tpot" else None
    return () if value is None else (value,)


def meets_slo(s: Sample, slo: Mapping[str, float]) -> bool:
    """Whether ``s`` counts for goodput: a successful, well-formed stream within every
    objective of ``slo`` (``core.metrics.SLO_KEYS``). A response of fewer than two tokens
    has no TPOT and meets ``tpot_ms``; one without content misses ``ttft_ms``."""
    stream = s.stream
    if not s.ok or stream is None or not stream.wellformed:
        return False
    if "e2e_ms" in slo and s.ms > slo["e2e_ms"]:
        return False
    if "ttft_ms" in slo and (stream.ttft_ms is None or stream.ttft_ms > slo["ttft_ms"]):
        return False
    tpot = stream.tpot_ms
    return not ("tpot_ms" in slo and tpot is not None and tpot > slo["tpot_ms"])


@dataclass(frozen=True)
class StreamStats:
    """What one row's streamed responses showed, beside its figures (``EndpointStats``).

    ``counts`` says how many values each series holds (``"ttft"``, ``"itl"``, ``"tpot"``)
    and how many requests goodput was judged over (``"goodput"``: every request of an
    endpoint that streamed, failures included; 0 without ``slo``).
    """

    requests: int  # streamed responses
    output_tokens: int
    batched: int  # responses whose chunks carried several tokens (ITL is then per token)
    malformed: Mapping[str, int]  # responses that were not well-formed, by problem
    counts: Mapping[str, int]
    good: int = 0  # requests meeting every objective of the scenario's ``slo``

    @property
    def malformed_total(self) -> int:
        return sum(self.malformed.values())


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
    #: the largest variance inflation the intervals allow for; 1 means independent samples
    ess_factor: float = 1.0
    #: variance inflation by figure ("p50", "p95", "p99", "error_rate"): batch means over
    #: blocks of seconds (``block_dependence``); a figure left out has ``ess_factor``
    ess: Mapping[str, float] = field(default_factory=dict)
    #: figures whose two halves of the run disagree beyond chance: (first half, second half)
    drift: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    #: intervals valid at a data-dependent stopping time (``quantile_cs``, ``proportion_cs``)
    anytime: bool = False
    #: figures whose block variance still grew at the longest blocks the run allows: their
    #: dependence is longer than the run can measure, so their intervals are too narrow
    unsettled: frozenset[str] = frozenset()
    #: the figures of streamed responses by registry ``stat`` (``"ttft_p95"``, ``"itl_p99"``,
    #: ``"output_tokens_per_s"``, ``"goodput"``); a figure without values is left out.
    #: Their intervals are in ``ci``, their dependence in ``ess``/``drift``/``unsettled``.
    figures: Mapping[str, float] = field(default_factory=dict)
    stream: StreamStats | None = None  # None: no streamed response in this row

    def factor(self, key: str) -> float:
        """The variance inflation of figure ``key`` (``"p95"``, ``"error_rate"``...)."""
        return max(self.ess.get(key, self.ess_factor), 1.0)

    def figure(self, key: str) -> float | None:
        """The figure a registry ``stat`` names (``"p95"``, ``"rps"``, ``"ttft_p95"``...);
        ``None`` when this row has none (a stream figure of a row without streams)."""
        if key in _STREAM_STATS:
            return self.figures.get(key)
        value = getattr(self, key, None)
        return float(value) if isinstance(value, int | float) else None

    def count(self, key: str) -> int:
        """How many values figure ``key`` is computed over: requests, or TTFTs, token gaps..."""
        if key not in _STREAM_STATS or self.stream is None:
            return self.requests
        if key in STREAM_QUANTILES:
            return self.stream.counts.get(STREAM_QUANTILES[key][0], 0)
        return self.stream.counts.get(key, self.stream.requests)

    def proportion(self, key: str) -> tuple[int, int]:
        """``(k, n)`` of a share figure: failed requests for ``"error_rate"``, good ones
        for ``"goodput"``."""
        if key == "goodput":
            return (
                (self.stream.good, self.stream.counts.get("goodput", 0)) if self.stream else (0, 0)
            )
        return self.failures, self.requests

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


def bonferroni(level: float, tests: int) -> float:
    """The level of each of ``tests`` intervals so that all cover at once with ``level``."""
    return 1.0 - (1.0 - level) / max(tests, 1)


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


# --- anytime-valid intervals: the mixture martingale inverted ----------------------

#: alternatives of the mixture, as odds ratios against p0 (fail side; the pass side uses 1/r)
ODDS_RATIOS = (1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)

Coefficients = tuple[tuple[float, float], ...]


def _alternatives(p0: float, ratios: Iterable[float]) -> Coefficients:
    """``(log(p1/p0), log((1-p1)/(1-p0)))`` for each alternative p1 at the given odds ratios."""
    odds0 = p0 / (1.0 - p0)
    coefficients = []
    for r in ratios:
        p1 = odds0 * r / (1.0 + odds0 * r)
        coefficients.append((math.log(p1 / p0), math.log((1.0 - p1) / (1.0 - p0))))
    return tuple(coefficients)


@lru_cache(maxsize=1024)
def mixture(p0: float) -> tuple[Coefficients, Coefficients]:
    """The fail-side and pass-side alternatives of the mixture test of ``p <= p0``."""
    return _alternatives(p0, ODDS_RATIOS), _alternatives(p0, (1.0 / r for r in ODDS_RATIOS))


def log_mean_exp(values: Sequence[float]) -> float:
    top = max(values)
    return top + math.log(math.fsum(math.exp(v - top) for v in values) / len(values))


def evidence(hits: int, n: int, p0: float, factor: float = 1.0) -> tuple[float, float]:
    """``(log M_fail, log M_pass)`` of ``hits`` in ``n`` against ``p0``, tempered by ``factor``.

    ``M_fail`` is the mixture likelihood ratio for ``p > p0``, ``M_pass`` for ``p < p0``
    (``sequential``'s module docstring): each a nonnegative martingale under its null, so
    by Ville's inequality it ever reaches ``2 / alpha`` with probability ``<= alpha / 2``.
    """
    fail, pass_ = mixture(p0)
    misses = n - hits
    f = max(factor, 1.0)
    return (
        log_mean_exp([(hits * a + misses * b) / f for a, b in fail]),
        log_mean_exp([(hits * a + misses * b) / f for a, b in pass_]),
    )


def quantile_cs_ranks(
    n: int, q: float, level: float = 0.95, factor: float = 1.0
) -> tuple[int, int]:
    """Ranks ``(l, u)`` of a confidence sequence for the ``q``-quantile (0 / n + 1: unbounded).

    The inversion of ``sequential``'s test at every order statistic (the test form of
    Howard and Ramdas, "Sequential estimation of quantiles", Bernoulli 2022): ``Q > X_(l)``
    once the share of values ``>= X_(l)`` is shown above ``1 - q``, ``Q <= X_(u)`` once
    the share above ``X_(u)`` is shown below it. For independent samples of a continuous
    law, ``P(some n has Q outside [X_(l), X_(u)]) <= 1 - level``: it holds at any
    stopping time, such as an early stop or abort. A value judged against a budget with it
    gets the outcome ``sequential``'s rule gives on the same data.
    """
    _check_q(q)
    if not 0.0 < q < 1.0 or n == 0:
        return 0, n + 1
    p0, threshold = 1.0 - q, math.log(2.0 / (1.0 - level))
    # the share >= X_(j) is (n - j + 1) / n: evidence of "over" falls as j grows
    lower = _largest_true(1, n, lambda j: evidence(n - j + 1, n, p0, factor)[0] >= threshold)
    # the share > X_(j) is (n - j) / n: evidence of "under" grows with j
    upper = _largest_true(1, n, lambda j: evidence(n - j, n, p0, factor)[1] < threshold) + 1
    return max(lower, 0), upper


def quantile_cs(
    sorted_ms: Sequence[float], q: float, level: float = 0.95, factor: float = 1.0
) -> tuple[float, float]:
    """The anytime-valid interval of ``quantile_cs_ranks`` as values (infinite if unbounded)."""
    n = len(sorted_ms)
    lower, upper = quantile_cs_ranks(n, q, level, factor)
    low = sorted_ms[lower - 1] if lower >= 1 else -math.inf
    high = sorted_ms[upper - 1] if upper <= n else math.inf
    return low, high


def proportion_cs(k: int, n: int, level: float = 0.95, factor: float = 1.0) -> tuple[float, float]:
    """An anytime-valid interval of a proportion: the ``p0`` the mixture test cannot reject."""
    if not 0 <= k <= n:
        raise ValueError(f"expected 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 0.0, 1.0
    threshold = math.log(2.0 / (1.0 - level))
    share = k / n
    # below the share, "p > p0" is shown for small p0; above it, "p < p0" for large p0
    low = _bisect_edge(0.0, share, lambda p: evidence(k, n, p, factor)[0] >= threshold)
    high = _bisect_edge(share, 1.0, lambda p: evidence(k, n, p, factor)[1] < threshold)
    return low, high


def _bisect_edge(lo: float, hi: float, rejected_below: Callable[[float], bool]) -> float:
    """Where a predicate true at ``lo`` turns false before ``hi`` (``lo`` if never true)."""
    lo, hi = max(lo, 1e-12), min(hi, 1.0 - 1e-12)
    if lo >= hi or not rejected_below(lo):
        return lo if lo > 1e-12 else 0.0
    for _ in range(60):
        mid = (lo + hi) / 2.0
        if rejected_below(mid):
            lo = mid
        else:
            hi = mid
    return hi


# --- dependence in time: batch means over blocks ------------------------------------

#: fewest blocks a block length needs for its variance to count
MIN_BLOCKS = 10
#: a block length is kept once doubling it changes the variance by less than this factor
_PLATEAU = 1.25
#: the hits count as independent while every factor is within this many standard errors
#: of 1 (a factor from K blocks has a standard error of about sqrt(2 / (K - 1)))
_INDEPENDENT_SE = 2.0
#: |z| between the two halves of a run beyond which its blocks disagree beyond chance
DRIFT_Z = 3.5
#: the largest burst of failures (or goodput misses) assumed where a run stopped early
#: without any: none came, so their clustering could not be measured, and a run that
#: stops on "no failure in n requests" claims only what bursts of this size allow
FAILURE_BURST = 10.0


def check_ms(ms: float, where: str) -> float:
    """``ms`` if it is a finite, non-negative response time; ``SampleError`` naming ``where``."""
    if not 0.0 <= ms < math.inf:  # also rejects nan
        raise SampleError(where, ms)
    return ms


def tick_counts(ticks: Iterable[int], hits: Iterable[bool]) -> list[tuple[int, int]]:
    """``(requests, hits)`` per tick (a second, or a request index), from the first tick on."""
    counts: dict[int, list[int]] = {}
    for tick, hit in zip(ticks, hits, strict=True):
        row = counts.setdefault(tick, [0, 0])
        row[0] += 1
        row[1] += hit
    if not counts:
        return []
    first, last = min(counts), max(counts)
    return [tuple(counts.get(k, (0, 0))) for k in range(first, last + 1)]  # type: ignore[misc]


def _batch_factor(counts: Sequence[tuple[int, int]], length: int, p: float, n: int) -> float:
    """Variance of the hit share from blocks of ``length`` ticks over the binomial variance."""
    squares = 0.0
    blocks = 0
    for start in range(0, len(counts), length):
        chunk = counts[start : start + length]
        requests = sum(c[0] for c in chunk)
        hits = sum(c[1] for c in chunk)
        squares += (hits - p * requests) ** 2
        blocks += 1
    return blocks / (blocks - 1) * squares / (n * p * (1.0 - p))


@dataclass(frozen=True)
class Dependence:
    """How much a hit sequence's blocks vary beyond independent requests (batch means)."""

    factor: float  # f >= 1: n requests weigh as n / f independent ones
    block: int  # the block length chosen, in ticks (0: too few blocks to measure, f = 1)
    #: whether the variance stopped growing with the block length (or had nothing to
    #: measure): False means dependence longer than the longest blocks, so ``f`` is low
    settled: bool = True
    #: every block length's factor was within noise of 1 (``factor`` is then their largest)
    independent: bool = False

    @property
    def excess(self) -> float:
        """``factor``, or 1 where every block length looked independent (noise alone)."""
        return 1.0 if self.independent else self.factor


def block_dependence(
    counts: Sequence[tuple[int, int]], noise: float = _INDEPENDENT_SE
) -> Dependence:
    """The variance inflation of the hit share from batch means over blocks of ticks.

    Blocks of 1, 2, 4, ... ticks while there are ``MIN_BLOCKS`` of them. The variance has
    settled at the first length ``L`` where doubling and quadrupling the block change it
    by less than ``_PLATEAU`` (blocks about independent of each other), or when no length
    shows any dependence (every factor within noise of 1); ``f`` is then the largest
    factor from ``L`` on (conservative: batch means underestimate with few blocks). When it
    never settles, ``f`` is the largest factor measured and ``settled`` is False: the
    dependence is longer than the run can measure. Batch means are consistent for any
    stationary dependence shorter than the blocks; the floor 1 keeps regular
    (anti-correlated) arrivals from narrowing intervals.
    """
    n = sum(c[0] for c in counts)
    hits = sum(c[1] for c in counts)
    if n < 2 or hits in (0, n):
        return Dependence(1.0, 0)
    p = hits / n
    found: list[tuple[int, float]] = []
    length, independent = 1, True
    while (blocks := math.ceil(len(counts) / length)) >= MIN_BLOCKS:
        factor = _batch_factor(counts, length, p, n)
        independent &= factor <= 1.0 + noise * math.sqrt(2.0 / (blocks - 1))
        found.append((length, factor))
        length *= 2
    if not found:
        # fewer than MIN_BLOCKS ticks (a run of a few seconds, a smoke run): too short to
        # measure any dependence, so its intervals assume independent requests (README)
        return Dependence(1.0, 0)
    factors = [f for _, f in found]
    top = max(1.0, *factors)
    if independent:
        return Dependence(top, found[-1][0], independent=True)
    for i in range(len(found) - 2):
        base = max(factors[i], 1.0)
        if max(factors[i + 1], factors[i + 2]) <= _PLATEAU * base:
            return Dependence(max(1.0, *factors[i:]), found[i][0])
    return Dependence(top, found[-1][0], settled=False)


#: a percentile's reference hits are the requests over the quantile with this many times
#: its own share of hits (at most half): p95 -> p75, p99 -> p95, p50 -> itself
REFERENCE_SHARES = 5.0
#: the reference counts as independent while every factor is within this many standard
#: errors of 1: it is looked at again and again, and only a clear dependence may slow a run
_REFERENCE_SE = 4.0


def reference_dependence(
    ticks: Sequence[int], ms: Sequence[float], q: float, sorted_ms: Sequence[float] | None = None
) -> Dependence:
    """The dependence of the requests over a lower quantile: a floor for the ``q``-quantile's.

    A budget's own hits are few (about 5 % of the requests for a p95 at its budget), and a
    run that has not yet seen some clusters of them cannot measure how they cluster (no
    hit at all: no variance to measure). The requests over the quantile with
    ``REFERENCE_SHARES`` times the share (p75 for a p95) are five times as many, so their
    blocks show early how long the run's latencies stay high together; a percentile's
    inflation is the larger of its own and this one. The floor is a basis, not a bound:
    in a queue the tail's own is larger (long waits come in longer runs), where the floor
    keeps short runs from passing on too few clusters; for independent requests it is 1
    (``Dependence.excess``) and costs nothing. ``sorted_ms``: ``ms`` sorted, if at hand.
    """
    if len(ms) < 2:
        return Dependence(1.0, 0)
    share = min(0.5, REFERENCE_SHARES * (1.0 - q))
    line = percentile(sorted(ms) if sorted_ms is None else sorted_ms, 1.0 - share)
    return block_dependence(tick_counts(ticks, (x > line for x in ms)), _REFERENCE_SE)


def halves_disagree(counts: Sequence[tuple[int, int]]) -> bool:
    """Whether the hit shares of the run's two halves differ beyond chance (``DRIFT_Z``).

    The difference is scaled by each half's own block variance, so hits that cluster
    (a burst, a pause) do not count as a drift; a level shift or a trend does.
    """
    middle = len(counts) // 2
    if middle < MIN_BLOCKS:
        return False
    var, shares = 0.0, []
    for part in (counts[:middle], counts[middle:]):
        n, hits = sum(c[0] for c in part), sum(c[1] for c in part)
        if not n:
            return False
        p = hits / n
        # a half without hits (or all hits) has no variance of its own: take one hit's
        p_var = min(max(p, 1.0 / n), 1.0 - 1.0 / n)
        var += block_dependence(part).factor * p_var * (1.0 - p_var) / n
        shares.append(p)
    return abs(shares[0] - shares[1]) > DRIFT_Z * math.sqrt(var)


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
    ess: Mapping[str, float] | None = None,
    drift: Mapping[str, tuple[float, float]] | None = None,
    anytime: bool = False,
    unsettled: frozenset[str] = frozenset(),
) -> EndpointStats:
    """Figures of one endpoint from its sorted response times; ``summarize`` calls this per row.

    ``not_sent`` failures (tasks that raised before a request) count as requests and
    failures, but have no response time. ``ess`` holds a variance inflation per figure
    (``"p95"``, ``"error_rate"``...), ``ess_factor`` the one for figures it leaves out.
    ``anytime`` takes the percentiles' intervals from ``quantile_cs`` (valid at a
    data-dependent stopping time) instead of ``quantile_ci``.
    """
    n = len(sorted_ms)
    rps = (n + not_sent) / duration_s if duration_s > 0 else 0.0
    factors = {key: max(ess_factor, 1.0) for key in (*QUANTILES, "error_rate")}
    factors.update(ess or {})
    top = max(factors.values())
    if n == 0:
        unbounded = (-math.inf, math.inf)
        return EndpointStats(
            name, not_sent, failures, rps, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
            dict.fromkeys(QUANTILES, unbounded), level, top, factors, dict(drift or {}), anytime,
            unsettled,
        )  # fmt: skip
    mean = math.fsum(sorted_ms) / n
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in sorted_ms) / (n - 1)) if n > 1 else 0.0
    points = {key: percentile(sorted_ms, q) for key, q in QUANTILES.items()}
    ci = {
        key: quantile_cs(sorted_ms, q, level, factors[key])
        if anytime
        else quantile_ci(sorted_ms, q, level, ess_factor=factors[key])
        for key, q in QUANTILES.items()
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
        ess_factor=top,
        ess=factors,
        drift=dict(drift or {}),
        anytime=anytime,
        unsettled=unsettled,
    )


@dataclass
class _Values:
    """One series of a row in arrival order, each value with its request's whole second."""

    values: list[float] = field(default_factory=list)
    ticks: list[int] = field(default_factory=list)


@dataclass
class _Streams:
    """One row's streamed responses (and goodput's requests) while ``summarize`` reads them."""

    series: dict[Series, _Values] = field(default_factory=dict)
    requests: int = 0
    tokens: int = 0
    batched: int = 0
    malformed: dict[str, int] = field(default_factory=dict)
    good: _Values = field(default_factory=_Values)  # 1.0 / 0.0 per request of goodput

    def add(self, s: Sample, slo: Mapping[str, float] | None) -> None:
        """A request of an endpoint that streams: its stream's figures, its goodput."""
        tick = math.floor(s.t)
        if slo is not None:
            self.good.values.append(1.0 if meets_slo(s, slo) else 0.0)
            self.good.ticks.append(tick)
        stream = s.stream
        if stream is None:
            return
        self.requests += 1
        self.tokens += stream.output_tokens
        self.batched += stream.batched
        if not stream.wellformed:
            problem = stream.problem or "malformed"
            self.malformed[problem] = self.malformed.get(problem, 0) + 1
        for series in ("ttft", "itl", "tpot"):
            found = self.series.setdefault(series, _Values())
            for value in series_values(s, series):
                found.values.append(check_ms(value, f"{s.name} {series} at {s.t:.3f} s"))
                found.ticks.append(tick)


@dataclass
class _Collected:
    """One row's requests in arrival order, while ``summarize`` reads the samples."""

    ms: list[float] = field(default_factory=list)  # response times of sent requests
    ticks: list[int] = field(default_factory=list)  # their whole seconds since the start
    failed: list[bool] = field(default_factory=list)  # every request, not-sent ones included
    every_tick: list[int] = field(default_factory=list)
    not_sent: int = 0
    streams: _Streams = field(default_factory=_Streams)

    def add(self, s: Sample) -> None:
        tick = math.floor(s.t)
        self.failed.append(not s.ok)
        self.every_tick.append(tick)
        if s.status == NOT_SENT:
            self.not_sent += 1
            return
        self.ms.append(check_ms(s.ms, f"{s.name} request at {s.t:.3f} s"))
        self.ticks.append(tick)


def _halves(ticks: Sequence[int], counts_len: int) -> tuple[list[int], list[int]]:
    """Indices of the requests in the first and second half of the run's ticks."""
    middle = min(ticks) + counts_len // 2 if ticks else 0
    first = [i for i, t in enumerate(ticks) if t < middle]
    second = [i for i, t in enumerate(ticks) if t >= middle]
    return first, second


@dataclass(frozen=True)
class _Found:
    """What ``_dependence`` measured in one row."""

    ess: dict[str, float]
    drift: dict[str, tuple[float, float]]
    unsettled: frozenset[str]


def _dependence(
    c: _Collected, ordered: Sequence[float], limits: Mapping[str, float], stopped: bool
) -> _Found:
    """Per figure: the block variance inflation, and the halves' figures where they disagree.

    A percentile's hits are the requests over its limit where ``limits`` has one (the
    variance that matters for judging it, and the one ``sequential`` measures), else over
    its point estimate; its inflation is at least its ``reference_dependence``. The error
    rate of a run ``stopped`` early without a failure has ``FAILURE_BURST``.
    """
    ess: dict[str, float] = {}
    drift: dict[str, tuple[float, float]] = {}
    unsettled: set[str] = set()
    floors: dict[float, Dependence] = {}  # by quantile: the keys share a few
    for key, q in QUANTILES.items() if ordered else ():
        point = limits.get(key, percentile(ordered, q))
        counts = tick_counts(c.ticks, (x > point for x in c.ms))
        found = block_dependence(counts)
        if q not in floors:  # f is at least a lower quantile's
            floors[q] = reference_dependence(c.ticks, c.ms, q, ordered)
        floor = floors[q]
        ess[key] = max(found.factor, floor.excess)
        if not found.settled:
            unsettled.add(key)
        if halves_disagree(counts):
            a, b = _halves(c.ticks, len(counts))
            drift[key] = (
                percentile(sorted(c.ms[i] for i in a), q),
                percentile(sorted(c.ms[i] for i in b), q),
            )
    counts = tick_counts(c.every_tick, c.failed)
    found = block_dependence(counts)
    ess["error_rate"] = FAILURE_BURST if stopped and not any(c.failed) else found.factor
    if not found.settled:
        unsettled.add("error_rate")
    if halves_disagree(counts):
        a, b = _halves(c.every_tick, len(counts))
        drift["error_rate"] = (
            sum(c.failed[i] for i in a) / len(a),
            sum(c.failed[i] for i in b) / len(b),
        )
    return _Found(ess, drift, frozenset(unsettled))


@dataclass(frozen=True)
class _How:
    """How ``summarize`` treats each row: its options, gathered."""

    level: float
    correlated: bool
    anytime: bool
    limits: Mapping[str, Mapping[str, float]]
    slo: Mapping[str, float] | None = None
    stopped: bool = False  # the run was stopped early by its stop rule


def _summary_row(name: str, c: _Collected, duration_s: float, how: _How) -> EndpointStats:
    ordered = sorted(c.ms)
    found = (
        _dependence(c, ordered, how.limits.get(name, {}), how.stopped)
        if how.correlated
        else _Found({}, {}, frozenset())
    )
    row = endpoint_stats(
        name, ordered, sum(c.failed), duration_s, how.level, not_sent=c.not_sent,
        ess=found.ess, drift=found.drift, anytime=how.anytime, unsettled=found.unsettled,
    )  # fmt: skip
    if not c.streams.requests:
        return row
    return _with_streams(row, c.streams, duration_s, how, how.limits.get(name, {}))


# --- figures of streamed responses ---------------------------------------------------


def _series_dependence(
    values: Sequence[float], ticks: Sequence[int], hit: Callable[[float], bool], q: float | None
) -> tuple[Dependence, tuple[float, float] | None]:
    """The block dependence of a series' hits, and its halves' figures where they disagree
    (the ``q``-quantile of each half; the share of hits for ``q=None``)."""
    counts = tick_counts(ticks, (hit(x) for x in values))
    found = block_dependence(counts)
    if not halves_disagree(counts):
        return found, None
    a, b = _halves(ticks, len(counts))
    if q is None:
        return found, (
            sum(values[i] for i in a) / len(a),
            sum(values[i] for i in b) / len(b),
        )
    first, second = sorted(values[i] for i in a), sorted(values[i] for i in b)
    return found, (percentile(first, q), percentile(second, q))


def _over(limit: float) -> Callable[[float], bool]:
    return lambda x: x > limit


@dataclass
class _StreamFigures:
    """The stream figures of one row as they are found, before they join its ``EndpointStats``."""

    figures: dict[str, float] = field(default_factory=dict)
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    ess: dict[str, float] = field(default_factory=dict)
    drift: dict[str, tuple[float, float]] = field(default_factory=dict)
    unsettled: set[str] = field(default_factory=set)

    def depend(self, key: str, found: tuple[Dependence, tuple[float, float] | None]) -> None:
        dependence, halves = found
        self.ess[key] = dependence.factor
        if not dependence.settled:
            self.unsettled.add(key)
        if halves is not None:
            self.drift[key] = halves


def _stream_quantiles(
    out: _StreamFigures, streams: _Streams, how: _How, limits: Mapping[str, float]
) -> None:
    """Each quantile of a streamed series: point, interval, and (correlated) dependence
    by blocks of the requests' seconds (every token gap of a request in its second)."""
    for key, (series, q) in STREAM_QUANTILES.items():
        found = streams.series.get(series, _Values())
        if not found.values:
            continue
        ordered = sorted(found.values)
        point = percentile(ordered, q)
        if how.correlated:
            limit = limits.get(key, point)
            out.depend(key, _series_dependence(found.values, found.ticks, _over(limit), q))
        f = out.ess.get(key, 1.0)
        out.figures[key] = point
        out.ci[key] = (
            quantile_cs(ordered, q, how.level, f)
            if how.anytime
            else quantile_ci(ordered, q, how.level, ess_factor=f)
        )


def _with_streams(
    row: EndpointStats, streams: _Streams, duration_s: float, how: _How,
    limits: Mapping[str, float],
) -> EndpointStats:  # fmt: skip
    """``row`` with the figures of its streamed responses (``EndpointStats.figures``)."""
    out = _StreamFigures()
    _stream_quantiles(out, streams, how, limits)
    out.figures["output_tokens_per_s"] = streams.tokens / duration_s if duration_s > 0 else 0.0
    good = streams.good
    if good.values:
        out.figures["goodput"] = math.fsum(good.values) / len(good.values)
        if how.correlated:  # a miss is a hit of the goodput's dependence
            out.depend(
                "goodput", _series_dependence(good.values, good.ticks, lambda x: x < 1.0, None)
            )
            if how.stopped and min(good.values) >= 1.0:  # no miss: as for no failure
                out.ess["goodput"] = FAILURE_BURST
    counts: dict[str, int] = {str(k): len(v.values) for k, v in streams.series.items()}
    counts["goodput"] = len(good.values)
    stream = StreamStats(
        streams.requests, streams.tokens, streams.batched, dict(streams.malformed), counts,
        good=round(math.fsum(good.values)),
    )  # fmt: skip
    return replace(
        row, figures=out.figures, ci={**row.ci, **out.ci},
        ess={**row.ess, **{k: max(v, 1.0) for k, v in out.ess.items()}},
        drift={**row.drift, **out.drift}, unsettled=row.unsettled | out.unsettled, stream=stream,
    )  # fmt: skip


def summarize(
    samples: Iterable[Sample],
    duration_s: float,
    level: float = 0.95,
    *,
    correlated: bool = False,
    anytime: bool = False,
    limits: Mapping[str, Mapping[str, float]] | None = None,
    slo: Mapping[str, float] | None = None,
    stopped: bool = False,
) -> RunStats:
    """Per-endpoint and total statistics of ``samples`` over a window of ``duration_s``.

    Requests never sent (``NOT_SENT``) count as failures and have no response time; a
    NaN, infinite or negative response time raises ``SampleError`` naming the request.
    ``correlated=True`` measures dependence in time by batch means over blocks of whole
    seconds (``block_dependence``) for each percentile and the error rate, widens their
    intervals by it, and records in ``drift`` the figures whose two halves disagree beyond
    chance (``halves_disagree``). ``anytime=True`` (a run an early-stop rule watched)
    gives intervals valid at a data-dependent stopping time. ``limits`` (by row, then
    ``"p95"``...) are the budgets the percentiles will be judged against. ``stopped``:
    the stop rule ended the run early; an error rate (goodput) without any failure (miss)
    is then taken as bursts of ``FAILURE_BURST``, the assumption the rule stopped on.

    Rows with streamed responses (``Sample.stream``) also get their stream figures
    (``EndpointStats.figures``: TTFT, ITL per token, TPOT quantiles with the same
    intervals and dependence, output tokens/s over the window) and, given the scenario's
    per-request ``slo`` (``core.metrics.SLO_KEYS``), goodput: the share of the requests
    of every endpoint that streamed meeting every objective (``meets_slo``).
    """
    measured = list(samples)
    streaming = {s.name for s in measured if s.stream is not None}
    rows: dict[str, _Collected] = {}
    every = _Collected()
    for s in measured:
        row = rows.setdefault(s.name, _Collected())
        row.add(s)
        every.add(s)
        if s.name in streaming:
            row.streams.add(s, slo)
            every.streams.add(s, slo)
    how = _How(level, correlated, anytime, limits or {}, slo, stopped)
    endpoints = {name: _summary_row(name, rows[name], duration_s, how) for name in sorted(rows)}
    total = _summary_row(TOTAL, every, duration_s, how)
    return RunStats(endpoints=endpoints, total=total, duration_s=duration_s)
