"""A/B runs on one machine: a candidate judged against a baseline running beside it.

Pure: no pytest, no locust, no I/O. The gate for the pair (``duet_gate``) starts both
services and one Locust run whose users drive both; this module splits the samples into
the two sides, pairs them in time and judges each ``*_regression`` allowance on the pair.

How the load pairs the sides (``load.child``, the spec's ``twin``):

- ``duet``: every task sends its request to the candidate and to the baseline back to
  back, in random order, from the same simulated user: both sides get the same requests
  at the same moments, so both see the same machine noise.
- ``interleaved``: rounds of ``round_s`` seconds alternate the whole load between the
  sides, each pair of rounds in random order (A B, B A, B A, A B, ...): each side has the
  machine to itself in its round; only in this mode is throughput compared.

Method
------
The samples after the warm-up are cut into **paired blocks** of ``block_s`` seconds (a
pair of rounds when interleaved); a block counts when both sides have requests in it.
Each allowance is a statistic of the two pooled sides: the log ratio of a percentile or
of the mean (``p95_regression`` ...), the difference of the error rates
(``error_rate_regression``, points) or the log ratio of the request counts
(``rps_regression``, interleaved only). Its standard error comes from a **paired
moving-block bootstrap**: runs of consecutive blocks (``run_length``: the cube root of
the block count, and at least ``RUN_S`` seconds) are resampled with replacement, both
sides of a block together, so noise the sides shared (a neighbour's burst, a GC pause
of the load generator) moves both and cancels in the ratio, and noise that starves one
side for a few seconds moves whole runs. The interval is the estimate +- t SE, with
Student's t on ``units - 1`` degrees of freedom (at least ``MIN_DF``), mapped to the
change (``exp(...) - 1`` for a ratio); ``units`` are the runs' worth of blocks, or for a
percentile those holding requests above it on either side: a P95 pooled over a run where
a CPU hog ran for a few seconds is decided by those few blocks, and a normal quantile
over single blocks there said FAIL in 3 % of simulated A/A runs
(``benchmarks/duet_quality.py``).

**A duet judges its median on its pairs.** Both requests of a duet pair leave the same
user at the same moment, and their samples carry the pair (``Sample.pair``). The change
of the median, ``p50_regression``, is then the median of the pairs' log ratios
(candidate over baseline): the change of the typical request against its twin. The
noise both requests of a pair met cancels in their ratio; the two sides' medians keep
it, and in a run that a hog slowed for half its time each side's median falls between
the quiet and the hogged mode, where few requests lie, so it moves with every request
(``benchmarks/duet_quality.py --pairing paired,pooled``, 40 s hogged duets: a 10 %
slower candidate caught in 70-100 % of the runs, against 27-47 % by the sides' medians,
and no A/A FAIL in 300 either way). Assumed: what the interval assumes (runs of blocks
about independent), and each pair's order drawn at random (the child does), so that
what the first request of a pair carries (the user's lateness) cancels over the pairs.
For a candidate that is slower by a factor the two agree; otherwise the pairs' median is
the typical request's change, which is what a duet can measure best. A pair counts when
both requests were answered, in the block of the candidate's request, and is resampled
with its block. Other percentiles and the mean are judged on the pooled sides (a
percentile of the ratios is not the change of that percentile); interleaved rounds have
no pairs.

**Valid at the stopping time** by a union bound over a fixed schedule of looks
(``look_times``: from the warm-up's end plus the minimum duration, each 1.5 times the
last, the scenario's duration last): the gate judges the pair at those looks only, and
the error ``alpha = 1 - level`` is spent across them (``look_levels``): the last look,
which has the most data and decides most runs, gets ``FINAL_SHARE`` (four fifths) of
it, and the ``K - 1`` earlier looks share the rest equally. The errors add up to at
most ``alpha``, so the chance that any interval of the schedule misses is at most
``1 - level`` wherever the run stops (early PASS, abort on a clear regression, or the
end). This is the shape of O'Brien and Fleming's spending in group-sequential trials:
little error early, where only clear changes can be decided anyway, nearly all of it
at the end, where a small regression is told from noise. Against an equal split
(``alpha / K`` a look, Pocock's shape) the last interval is about a quarter narrower
at 7 looks; the early looks are stricter (``benchmarks/duet_quality.py`` prints the
three).

Assumptions: runs of blocks are about independent (dependence shorter than a run), each
side's statistic is about normal on the log scale (``n (1 - q) >= 10`` per side for a
percentile), and the noise is shared by both sides or hits one side for less than a run.
Not covered: one-sided noise that lasts (a service pinned to a busier core), and a
baseline whose warm state differs.

**Noise floor**: the half-width of an interval as a change (``+-3.1 %``): the smallest
change this machine could tell from none in this scenario's time, at that level.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist

from pytest_perfgate.core.metrics import Regression, regression
from pytest_perfgate.core.regression import RegressionCheck
from pytest_perfgate.core.stats import NOT_SENT, TOTAL, RunStats, Sample, percentile
from pytest_perfgate.core.verdict import Outcome, interval_outcome

__all__ = [
    "BASELINE_SUFFIX",
    "DEFAULT_ALLOWANCES",
    "MODES",
    "Block",
    "Comparison",
    "Half",
    "Judged",
    "PairChange",
    "PairPlan",
    "PairStopRule",
    "Sides",
    "baseline_name",
    "block_length",
    "judge_pair",
    "look_levels",
    "look_times",
    "noise_floor_text",
    "pair_changes",
    "pair_checks",
    "paired_blocks",
    "plan_origin",
    "run_length",
    "split_sides",
    "t_quantile",
]

#: the suffix of a baseline request's endpoint key: ``"POST /predict @baseline"``
BASELINE_SUFFIX = " @baseline"
MODES = ("duet", "interleaved")
#: what an A/B run judges when the scenario has no ``*_regression`` allowance
DEFAULT_ALLOWANCES: Mapping[str, float] = {"p95_regression": 0.10, "error_rate_regression": 0.01}
#: bootstrap resamples of the blocks (the SE's own error is about 1 / sqrt(2 * 400): 4 %)
RESAMPLES = 400
#: above this many requests (both sides), fewer resamples, down to 100
RESAMPLE_SAMPLES = 20_000
#: fewer paired blocks than this: too short to judge a pair
MIN_BLOCKS = 8
#: a percentile needs at least this many requests above it on each side
MIN_TAIL = 10
#: the bootstrap resamples runs of consecutive blocks spanning at least this many seconds
RUN_S = 4.0
#: the fewest degrees of freedom of an interval's t quantile
MIN_DF = 3
#: each look comes this many times later than the one before
LOOK_GROWTH = 1.5
#: the share of the error the last look gets; the earlier looks share the rest
FINAL_SHARE = 0.8


def baseline_name(name: str) -> str:
    """The key of ``name``'s baseline copy, ``"POST /predict @baseline"``."""
    return name + BASELINE_SUFFIX


@dataclass(frozen=True)
class Sides:
    """The samples of one A/B run split by side, the baseline's with their own names."""

    candidate: tuple[Sample, ...]
    baseline: tuple[Sample, ...]

    def __repr__(self) -> str:
        return f"Sides(candidate={len(self.candidate)}, baseline={len(self.baseline)})"


def split_sides(samples: Iterable[Sample]) -> Sides:
    """Candidate and baseline samples; the baseline's names lose ``BASELINE_SUFFIX``."""
    candidate: list[Sample] = []
    base: list[Sample] = []
    cut = len(BASELINE_SUFFIX)
    for s in samples:
        if s.name.endswith(BASELINE_SUFFIX):
            base.append(dataclasses.replace(s, name=s.name[:-cut]))
        else:
            candidate.append(s)
    return Sides(tuple(candidate), tuple(base))


# --- paired blocks ---------------------------------------------------------------------


@dataclass(frozen=True)
class Half:
    """One side of one block: response times of sent requests, requests and failures."""

    ms: tuple[float, ...]  # sorted
    n: int  # requests, unsent ones included (they count in the error rate)
    failures: int


@dataclass(frozen=True)
class Block:
    index: int  # blocks of ``block_s`` from the measured window's start
    candidate: Half
    baseline: Half
    #: log(candidate / baseline) of each duet pair whose candidate request started in this
    #: block, both requests answered without failure; sorted
    ratios: tuple[float, ...] = ()


def block_length(measured_s: float, mode: str, round_s: float) -> float:
    """Seconds per block: a pair of rounds when interleaved; else about 1/30 of the
    measured time in whole seconds, 1 to 5 (short enough for 8 blocks in a short run,
    long enough to hold a queue's dependence)."""
    if mode == "interleaved":
        return 2.0 * round_s
    return float(min(5, max(1, int(measured_s / 30))))


def _half(samples: Sequence[Sample]) -> Half:
    # sorted: a resample's pooled values are then sorted runs, which a sort merges fast
    ms = tuple(sorted(s.ms for s in samples if s.status != NOT_SENT))
    return Half(ms, len(samples), sum(1 for s in samples if not s.ok))


def paired_blocks(
    sides: Sides, block_s: float, *, origin_s: float, end_s: float, endpoint: str = TOTAL
) -> tuple[Block, ...]:
    """Whole blocks of ``block_s`` from ``origin_s`` to ``end_s`` where both sides of
    ``endpoint`` (or every endpoint: ``TOTAL``) have requests."""
    count = int((end_s - origin_s) / block_s + 1e-9)
    groups: dict[int, tuple[list[Sample], list[Sample]]] = {}
    for side, samples in enumerate((sides.candidate, sides.baseline)):
        for s in samples:
            index = math.floor((s.t - origin_s) / block_s)
            if 0 <= index < count and (endpoint == TOTAL or s.name == endpoint):
                groups.setdefault(index, ([], []))[side].append(s)
    ratios = _pair_ratios(groups.values(), origin_s, block_s)
    return tuple(
        Block(i, _half(cand), _half(base), tuple(sorted(ratios.get(i, ()))))
        for i, (cand, base) in sorted(groups.items())
        if cand and base
    )


def _pair_ratios(
    groups: Collection[tuple[list[Sample], list[Sample]]], origin_s: float, block_s: float
) -> dict[int, list[float]]:
    """Each block's log ratios of the duet pairs whose two requests are both in the
    window and answered, under the block of the candidate's request."""
    base_ms = {s.pair: s.ms for _, base in groups for s in base if s.pair and s.ok}
    out: dict[int, list[float]] = {}
    for cand, _ in groups:
        for s in cand:
            twin = base_ms.get(s.pair) if s.pair and s.ok else None
            if twin is not None:
                index = math.floor((s.t - origin_s) / block_s)
                out.setdefault(index, []).append(_log_ratio(s.ms, twin))
    return out


# --- the statistics of a pair ----------------------------------------------------------


@dataclass(frozen=True)
class _Pooled:
    candidate: list[float]  # sorted
    baseline: list[float]
    n: tuple[int, int]  # candidate, baseline
    failures: tuple[int, int]
    ratios: list[float]  # sorted log ratios of the duet pairs


def _pool(blocks: Sequence[Block], picks: Iterable[int], ratios: bool = True) -> _Pooled:
    """The picked blocks' sides pooled (and their pairs' ratios, when ``ratios``)."""
    cand: list[float] = []
    base: list[float] = []
    pairs: list[float] = []
    n = [0, 0]
    failures = [0, 0]
    for i in picks:
        b = blocks[i]
        cand.extend(b.candidate.ms)
        base.extend(b.baseline.ms)
        if ratios:
            pairs.extend(b.ratios)
        n[0], n[1] = n[0] + b.candidate.n, n[1] + b.baseline.n
        failures[0] += b.candidate.failures
        failures[1] += b.baseline.failures
    cand.sort()
    base.sort()
    pairs.sort()
    return _Pooled(cand, base, (n[0], n[1]), (failures[0], failures[1]), pairs)


#: a statistic of a pair: (estimate on its scale, baseline figure, candidate figure)
_Stat = Callable[[_Pooled], tuple[float, float, float]]


def _log_ratio(new: float, base: float) -> float:
    return math.log(max(new, 1e-9) / max(base, 1e-9))


def _quantile_stat(q: float) -> _Stat:
    def stat(p: _Pooled) -> tuple[float, float, float]:
        new, base = percentile(p.candidate, q), percentile(p.baseline, q)
        return _log_ratio(new, base), base, new

    return stat


def _paired_median_stat(p: _Pooled) -> tuple[float, float, float]:
    """The median of the pairs' log ratios; the figures shown are the sides' medians."""
    return percentile(p.ratios, 0.5), percentile(p.baseline, 0.5), percentile(p.candidate, 0.5)


def _mean_stat(p: _Pooled) -> tuple[float, float, float]:
    new, base = math.fsum(p.candidate) / len(p.candidate), math.fsum(p.baseline) / len(p.baseline)
    return _log_ratio(new, base), base, new


def _error_stat(p: _Pooled) -> tuple[float, float, float]:
    new, base = p.failures[0] / p.n[0], p.failures[1] / p.n[1]
    return new - base, base, new


def _count_stat(p: _Pooled) -> tuple[float, float, float]:
    return _log_ratio(p.n[0], p.n[1]), float(p.n[1]), float(p.n[0])


def _stat_of(allowed: Regression, paired: bool = False) -> _Stat:
    if allowed.change == "points":
        return _error_stat
    if allowed.change == "drop":
        return _count_stat
    if paired and _pairs_judge(allowed):
        return _paired_median_stat
    if allowed.metric.judge == "quantile" and allowed.metric.q is not None:
        return _quantile_stat(allowed.metric.q)
    return _mean_stat


def _pairs_judge(allowed: Regression) -> bool:
    """Whether a duet judges ``allowed`` on its pairs: the median's change only (a
    percentile of the ratios is not the change of that percentile)."""
    metric = allowed.metric
    return allowed.change == "growth" and metric.judge == "quantile" and metric.q == 0.5


def _as_change(allowed: Regression, theta: float) -> float:
    """The estimate's scale -> the allowance's change (growth, points, drop)."""
    if allowed.change == "points":
        return theta
    if allowed.change == "drop":
        return 1.0 - math.exp(theta)
    return math.exp(theta) - 1.0


def _change_interval(allowed: Regression, low: float, high: float) -> tuple[float, float]:
    a, b = _as_change(allowed, low), _as_change(allowed, high)
    return (min(a, b), max(a, b))


@dataclass(frozen=True)
class PairChange:
    """One allowance's change judged on the pair (``observed`` is "how much worse")."""

    key: str  # "p95_regression"
    endpoint: str
    observed: float | None
    ci: tuple[float, float] | None
    base_value: float | None  # the baseline's figure (ms, share, requests)
    new_value: float | None
    base_n: int
    new_n: int
    floor: float | None  # the noise floor: the interval's half-width as a change
    blocks: int
    reason: str = ""  # why it could not be judged
    pairs: int = 0  # judged on this many duet pairs' ratios; 0: on the pooled sides

    def __repr__(self) -> str:
        return f"PairChange({self.key!r}, {self.endpoint!r}, {self.observed!r}, ci={self.ci!r})"

    @property
    def label(self) -> str:
        """The allowance's label; ``p50 of pairs`` when judged on the duet's pairs (the
        median of each request's ratio to its twin), not on the two sides' medians."""
        label = regression(self.key).label
        return f"{label} of pairs" if self.pairs else label


def _unjudgeable(allowed: Regression, blocks: Sequence[Block], mode: str, whole: _Pooled) -> str:
    if allowed.change == "drop" and mode != "interleaved":
        return (
            "a duet sends both sides the same requests; throughput is compared in interleaved mode"
        )
    if len(blocks) < MIN_BLOCKS:
        return f"only {len(blocks)} paired blocks, at least {MIN_BLOCKS} are needed"
    if allowed.change == "growth":
        q = allowed.metric.q if allowed.metric.judge == "quantile" else 0.5
        need = math.ceil(MIN_TAIL / (1.0 - (q or 0.5)))
        have = min(len(whole.candidate), len(whole.baseline))
        if have < need:
            return f"{have} requests on a side, {allowed.label} needs at least {need}"
    return ""


def pair_changes(
    blocks: Sequence[Block], keys: Sequence[str], level: float, *, mode: str = "duet",
    endpoint: str = TOTAL, resamples: int = RESAMPLES, seed: int = 0, block_s: float = 1.0,
) -> tuple[PairChange, ...]:  # fmt: skip
    """Each allowance key's change and its ``level`` interval by the paired block bootstrap."""
    allowed = [regression(k) for k in keys]
    whole = _pool(blocks, range(len(blocks)))
    reasons = [_unjudgeable(a, blocks, mode, whole) for a in allowed]
    # a duet whose requests carry their pairs: the median is judged on the pairs
    paired = mode == "duet" and len(whole.ratios) >= 2 * MIN_TAIL
    live = [(a, _stat_of(a, paired)) for a, r in zip(allowed, reasons, strict=True) if not r]
    on_pairs = paired and any(_pairs_judge(a) for a, _ in live)
    draws: dict[str, list[float]] = {a.key: [] for a, _ in live}
    rng = random.Random(seed)
    m = len(blocks)
    run = run_length(m, block_s)
    # a long, busy run: fewer resamples keep a look within seconds (SE within about 7 %)
    resamples = max(100, min(resamples, resamples * RESAMPLE_SAMPLES // max(sum(whole.n), 1)))
    for _ in range(resamples if live else 0):
        pooled = _pool(blocks, _moving_picks(rng, m, run), on_pairs)
        if not pooled.candidate or not pooled.baseline or (on_pairs and not pooled.ratios):
            continue
        for a, stat in live:
            draws[a.key].append(stat(pooled)[0])
    out = []
    for a, reason in zip(allowed, reasons, strict=True):
        if reason:
            out.append(PairChange(a.key, endpoint, None, None, None, None, whole.n[1],
                                  whole.n[0], None, m, reason))  # fmt: skip
            continue
        mine = paired and _pairs_judge(a)
        df = max(MIN_DF, _units(a, blocks, whole, run, mine) - 1)
        z = t_quantile(1.0 - (1.0 - level) / 2.0, df)
        change = _change(a, _stat_of(a, paired)(whole), draws[a.key], z, whole, endpoint, m)
        out.append(dataclasses.replace(change, pairs=len(whole.ratios)) if mine else change)
    return tuple(out)


def run_length(blocks: int, block_s: float = 1.0) -> int:
    """Consecutive blocks the bootstrap resamples together: about the cube root of the
    block count (1 up to 7 blocks, 2 up to 26, 3 up to 63 ...) and at least ``RUN_S``
    seconds, so a slowdown of one side that lasts a few seconds (a process the
    scheduler starves for a while) moves whole resampled runs, not single blocks."""
    return max(1, int(blocks ** (1.0 / 3.0) + 1e-9), math.ceil(RUN_S / block_s - 1e-9))


def _moving_picks(rng: random.Random, m: int, run: int) -> list[int]:
    """``m`` block indexes: runs of ``run`` consecutive blocks from random starts (circular)."""
    picks: list[int] = []
    while len(picks) < m:
        start = rng.randrange(m)
        picks.extend((start + k) % m for k in range(run))
    return picks[:m]


def _units(
    allowed: Regression, blocks: Sequence[Block], whole: _Pooled, run: int, paired: bool = False
) -> int:
    """The independent units that carry a statistic, ``run`` consecutive blocks a unit:
    all of them for a mean, a rate or the pairs' median; for a pooled percentile, the
    units holding either side's requests above it (a P95 pooled over a run where a hog
    was busy for a few seconds is decided by those few seconds)."""
    q = allowed.metric.q
    if paired or allowed.change != "growth" or allowed.metric.judge != "quantile" or not q:
        return len(blocks) // run
    top_c, top_b = percentile(whole.candidate, q), percentile(whole.baseline, q)
    return len({
        b.index // run
        for b in blocks
        if (b.candidate.ms and b.candidate.ms[-1] > top_c)
        or (b.baseline.ms and b.baseline.ms[-1] > top_b)
    })  # fmt: skip


def t_quantile(p: float, df: int) -> float:
    """Student's t ``p``-quantile (``p >= 0.5``) with ``df`` degrees of freedom, by
    bisection on the CDF (Simpson's rule on the density; within 1e-4 of the tables)."""
    if df >= 200:
        return NormalDist().inv_cdf(p)
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)

    def cdf(x: float) -> float:
        n = 400
        h = x / n
        f = [c * math.pow(1 + (h * i) ** 2 / df, -(df + 1) / 2) for i in range(n + 1)]
        return 0.5 + h / 3 * (f[0] + f[-1] + 4 * sum(f[1:-1:2]) + 2 * sum(f[2:-1:2]))

    low, high = 0.0, 1.0
    while cdf(high) < p:
        high *= 2.0
    for _ in range(50):
        mid = (low + high) / 2
        low, high = (mid, high) if cdf(mid) < p else (low, mid)
    return (low + high) / 2


def _se(draws: Sequence[float]) -> float:
    if len(draws) < 2:
        return math.inf
    mean = math.fsum(draws) / len(draws)
    return math.sqrt(math.fsum((d - mean) ** 2 for d in draws) / (len(draws) - 1))


def _binomial_se(p: _Pooled) -> float:
    """The error-rate difference's SE for independent requests, smoothed (add one
    failure and one success): a floor when neither side failed in any resample."""
    share = (p.failures[0] + p.failures[1] + 1) / (p.n[0] + p.n[1] + 2)
    return math.sqrt(share * (1 - share) * (1 / p.n[0] + 1 / p.n[1]))


def _change(
    allowed: Regression, estimate: tuple[float, float, float], draws: Sequence[float],
    z: float, whole: _Pooled, endpoint: str, blocks: int,
) -> PairChange:  # fmt: skip
    theta, base_value, new_value = estimate
    se = _se(draws)
    if allowed.change == "points":
        se = max(se, _binomial_se(whole))
    half = z * se
    ci = _change_interval(allowed, theta - half, theta + half)
    if allowed.change == "points":
        floor = half
    elif allowed.change == "drop":
        floor = 1.0 - math.exp(-half)
    else:
        floor = math.exp(half) - 1.0
    return PairChange(
        allowed.key, endpoint, _as_change(allowed, theta), ci, base_value, new_value,
        whole.n[1], whole.n[0], floor, blocks,
    )  # fmt: skip


# --- looks, checks, the plan of one run --------------------------------------------------


def look_times(first_s: float, end_s: float, growth: float = LOOK_GROWTH) -> tuple[float, ...]:
    """The elapsed times the pair is judged at: ``first_s``, then each ``growth`` times
    the last, and ``end_s`` (the scenario's duration) last."""
    if end_s <= first_s:
        return (end_s,)
    times = []
    t = first_s
    while t < end_s - 1e-9:
        times.append(t)
        t *= growth
    return (*times, end_s)


def _level_of(alpha: float) -> float:
    """``1 - alpha`` with ``alpha`` rounded down to two digits (``1.67 %`` -> ``98.4 %``)."""
    step = 10.0 ** (math.floor(math.log10(alpha)) - 1)
    return round(1.0 - math.floor(alpha / step + 1e-9) * step, 12)


def look_levels(level: float, looks: int) -> tuple[float, ...]:
    """Each look's interval level, so that all ``looks`` cover at once with ``level``:
    the last look gets ``FINAL_SHARE`` of the error, the others the rest in equal parts
    (each rounded down, so the shares add up to at most ``1 - level``)."""
    alpha = 1.0 - level
    if looks <= 1:
        return (level,)
    early = _level_of(alpha * (1.0 - FINAL_SHARE) / (looks - 1))
    return (*([early] * (looks - 1)), _level_of(alpha * FINAL_SHARE))


def _more_requests(c: PairChange, allowance: float) -> int | None:
    """About how many more requests a side needs for the interval to clear the allowance
    (its width shrinks as 1 / sqrt(n)); None when the change sits on it."""
    assert c.ci is not None and c.observed is not None
    # the interval's reach towards the allowance (a ratio's interval is not symmetric)
    half = c.ci[1] - c.observed if allowance > c.observed else c.observed - c.ci[0]
    distance = abs(allowance - c.observed)
    if distance <= 0 or not math.isfinite(half):
        return None
    return max(1, math.ceil(c.new_n * ((half / distance) ** 2 - 1.0)))


def pair_checks(
    changes: Sequence[PairChange], allowances: Mapping[str, float], scenario: str,
    level: float, *, severity: str = "block", baseline: str = "",
) -> tuple[RegressionCheck, ...]:  # fmt: skip
    """The changes as checks of the verdict (the sentence is ``core.regression``'s)."""
    checks = []
    for c in changes:
        head = (scenario, c.endpoint, c.key, allowances[c.key])
        if c.ci is None or c.observed is None:
            checks.append(RegressionCheck(*head, None, c.new_n, Outcome.INVALID, severity,
                                          reason=c.reason, baseline=baseline))  # fmt: skip
            continue
        outcome = interval_outcome(c.ci, allowances[c.key], regression(c.key))
        more = _more_requests(c, allowances[c.key]) if outcome is Outcome.INCONCLUSIVE else None
        checks.append(RegressionCheck(
            *head, c.observed, c.new_n, outcome, severity, c.ci, level, more,
            baseline=baseline, base_value=c.base_value, new_value=c.new_value, base_n=c.base_n,
            pairs=c.pairs,
        ))  # fmt: skip
    return tuple(checks)


@dataclass(frozen=True)
class PairPlan:
    """How one A/B run is judged: decided before the run, so the looks are fixed."""

    scenario: str
    mode: str
    block_s: float
    origin_s: float  # the measured window starts here (a block edge after the warm-up)
    looks: tuple[float, ...]  # elapsed seconds
    level: float  # each check's level before the looks' union bound
    allowances: Mapping[str, tuple[Mapping[str, float], str]]  # endpoint -> (keys, severity)
    baseline: str  # what the baseline is, for messages: "HEAD (git worktree)", a URL
    resamples: int = RESAMPLES

    def level_at(self, end_s: float) -> float:
        """The interval level of the look at ``end_s``: the last look's from the end of
        the schedule on, an earlier look's before it (a run cut short included)."""
        levels = look_levels(self.level, len(self.looks))
        return levels[-1] if end_s >= self.looks[-1] - 1e-9 else levels[0]


def plan_origin(warmup_s: float, block_s: float) -> float:
    """The first block edge at or after the warm-up (rounds start at the load's start)."""
    return math.ceil(warmup_s / block_s - 1e-9) * block_s


@dataclass(frozen=True)
class Judged:
    changes: tuple[PairChange, ...]
    checks: tuple[RegressionCheck, ...]
    blocks: int  # paired blocks of the total


def judge_pair(plan: PairPlan, samples: Iterable[Sample], end_s: float) -> Judged:
    """Every allowance of the plan judged on the samples up to ``end_s`` elapsed."""
    sides = split_sides(samples)
    level = plan.level_at(end_s)
    changes: list[PairChange] = []
    checks: list[RegressionCheck] = []
    blocks_total = 0
    for endpoint, (keys, severity) in plan.allowances.items():
        blocks = paired_blocks(sides, plan.block_s, origin_s=plan.origin_s, end_s=end_s,
                               endpoint=endpoint)  # fmt: skip
        if endpoint == TOTAL:
            blocks_total = len(blocks)
        found = pair_changes(blocks, list(keys), level, mode=plan.mode, endpoint=endpoint,
                             resamples=plan.resamples, block_s=plan.block_s)  # fmt: skip
        changes += found
        checks += pair_checks(found, keys, plan.scenario, level, severity=severity,
                              baseline=plan.baseline)  # fmt: skip
    return Judged(tuple(changes), tuple(checks), blocks_total)


class PairStopRule:
    """The early stop and abort of an A/B run (a ``load.driver.StopRule``): at each look
    of the plan but the last, the run ends when every blocking allowance is decided, or
    at once when one is clearly over. ``looked`` counts the looks taken."""

    def __init__(self, plan: PairPlan) -> None:
        self.plan = plan
        self.looked = 0

    def __call__(self, samples: Sequence[Sample], elapsed_s: float) -> str | None:
        looks = self.plan.looks
        if self.looked >= len(looks) - 1 or elapsed_s < looks[self.looked]:
            return None  # the last look is the run's end: the gate judges it
        while self.looked < len(looks) - 1 and elapsed_s >= looks[self.looked]:
            self.looked += 1
        at = looks[self.looked - 1]  # the data up to the look, as the final verdict sees it
        blocking = [c for c in judge_pair(self.plan, samples, at).checks if c.blocking]
        over = [c for c in blocking if c.outcome is Outcome.FAIL]
        if over:
            return f"clear regression against the baseline: {over[0].message()}"
        if blocking and all(c.outcome is Outcome.PASS for c in blocking):
            return "every regression allowance is decided against the baseline"
        return None


# --- the comparison a result carries -----------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """What an A/B run adds to the candidate's result: the baseline's side and the pair."""

    baseline: str  # "HEAD (git worktree)", a URL or a command
    mode: str
    block_s: float
    blocks: int
    level: float  # each interval's
    looks: tuple[float, ...]
    looked: int  # looks taken before the end (early decisions)
    changes: tuple[PairChange, ...]
    baseline_stats: RunStats
    baseline_samples: tuple[Sample, ...]  # measured window, for the reports' charts

    def __repr__(self) -> str:
        return f"Comparison({self.baseline!r}, {self.mode!r}, {len(self.changes)} changes)"


def noise_floor_text(comparison: Comparison, measured_s: float) -> str:
    """``noise floor: p95 +-3.1 %, error rate +-0.40 pp (the smallest change this run
    could tell from none, 99.2 % intervals, 58 s, 29 paired blocks of 2 s)``."""
    parts = []
    for c in comparison.changes:
        if c.endpoint == TOTAL and c.floor is not None:
            size = regression(c.key).format_change(c.floor).lstrip("+-")
            parts.append(f"{c.label} +-{size}")
    if not parts:
        return "noise floor: not measured (no allowance could be judged on the pair)"
    return (
        f"noise floor: {', '.join(parts)} (the smallest change this run could tell from "
        f"none, {100 * comparison.level:.1f} % intervals, {measured_s:.0f} s, "
        f"{comparison.blocks} paired blocks of {comparison.block_s:g} s)"
    )
