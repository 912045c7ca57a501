"""Early stop and early abort: a stopping rule that may look at the data again and again.

Pure; no pytest, no locust, no numpy. The runner asks ``StopRule(samples, elapsed_s)``
about once a second; it answers ``None`` (go on), ``"stop: ..."`` (every blocking budget
is decided and passes) or ``"abort: ..."`` (a clear breach held for ``abort_window_s``).
The verdict itself is always ``verdict.evaluate`` on the samples collected so far; this
module only decides when collecting more cannot change it.

Method
------
A budget on a share of requests is a test on a proportion ``p``:

- ``p95_ms <= B`` holds exactly when ``p = P(response time > B) <= 0.05`` (``p0 = 1 - q``);
- ``error_rate <= r`` holds exactly when ``p = P(failure) <= r`` (``p0 = r``).

Each request gives a hit ``y = 1[x > B]`` (or ``1[failed]``). For each budget two mixture
sequential probability ratio tests run side by side (Robbins' mixture martingale, see
Howard, Ramdas et al., "Time-uniform, nonparametric, nonasymptotic confidence sequences",
2021)::

    M_fail(n) = mean_j prod_i (p_j / p0)^y_i ((1 - p_j) / (1 - p0))^(1 - y_i),  p_j > p0
    M_pass(n) = the same with p_j < p0

with the alternatives ``p_j`` at odds ratios 1.1 to 30 from ``p0`` (``stats.ODDS_RATIOS``).
Under any ``p <= p0`` every factor has mean ``<= 1``, so ``M_fail`` is a nonnegative
supermartingale starting at 1, and Ville's inequality gives
``P(M_fail ever reaches 2 / alpha) <= alpha / 2``. So:

**Guarantee.** For independent requests, the rule declares a breach of a budget that
holds (or a pass of one that does not) with probability at most ``alpha / 2`` per
budget, *however many times it looks* - no alpha spending, no bound on the number of
looks. ``make_stop_rule`` splits ``alpha`` over the scenario's blocking budgets
(Bonferroni), so the guarantee holds for the scenario as a whole.

**Dependence in time.** Latencies under load come in bursts (queues, GC pauses,
clustered failures), so hits cluster and the evidence above would look stronger than it
is. Every log-likelihood ratio is divided by the variance inflation ``f`` of the hits,
measured by batch means over blocks of whole seconds (``stats.block_dependence``: the
blocks' variance of the hit count over the binomial one, at the first block length where
it stops growing; while it still grows at the longest blocks the run allows, no early
PASS). A percentile's ``f`` is at least that of the requests over a lower quantile
(``stats.reference_dependence``: p75 for a p95), which are five times as many: a run
that has seen few or no hits over the budget cannot measure how they cluster, but the
latencies around them show how long they stay high together (in a queue, the tail's own
``f`` is larger still). Tempering is exact for blocks of ``f`` identical hits (the
tempered ratio is the likelihood ratio of the blocks) and approximate for other
dependence; ``benchmarks/verdict_quality.py`` measures it on queues, GC pauses, AR(1)
and bursts.
A budget on a streamed series (TTFT, ITL per token, TPOT) is the same test on the hits
of its own values, each in its request's second; ``goodput`` counts the requests that
miss the scenario's ``slo`` (``stats.meets_slo``) among those of endpoints seen streaming.
Requests never sent (``stats.NOT_SENT``) have no response time: they count as failures
for the error rate and are left out of every latency budget.

What is not decided early: ``avg_ms`` and ``min_rps`` (no interval that stays valid
under repeated looks without assumptions on the tails), and the pass side of ``max_ms``
and of ``error_rate: 0`` (one more request may breach them; their breach is certain at
the first offending request). A scenario with such a blocking budget never stops early
for PASS. An early PASS also needs ``min_duration_s`` of measured time (slow drifts,
periodic pauses), ``min_samples`` requests, and enough requests that clusters of hits
would have shown had they come: for a percentile ``n * p0 / f >= MIN_EXPECTED_HITS``
(500 requests for a p95 of independent requests, ``f`` times as many under dependence),
for an error rate ``n * p0 >= MIN_EXPECTED_FAILURES`` (5 000 requests for a 1 % budget:
failures have no latency to measure their clustering by before they come). While no
failure (goodput miss) has come, the error rate's ``f`` is ``stats.FAILURE_BURST`` (10):
"none in ``n``" is judged as none in ``n / 10`` bursts, and the interval the run then
reports after stopping says the same (``stats.summarize(stopped=True)``). An abort
needs the breach to hold at every look for ``abort_window_s`` (a short stall does not
end a run).

Over 450 lines: the stopping rule, its monitors and the confidence sequences inverted
from the same test stay in one module, so the rule and the intervals it leaves agree.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import count
from typing import Literal

from pytest_perfgate.core.metrics import SECONDS, Metric, Series, metric
from pytest_perfgate.core.model import Budget, Scenario
from pytest_perfgate.core.numbers import format_count
from pytest_perfgate.core.stats import (
    FAILURE_BURST,
    NOT_SENT,
    TOTAL,
    Dependence,
    Sample,
    block_dependence,
    check_ms,
    log_mean_exp,
    meets_slo,
    mixture,
    reference_dependence,
    series_values,
)

__all__ = [
    "Decision",
    "ShareTest",
    "StopRule",
    "blocking_tests",
    "decide",
    "make_stop_rule",
    "quantile_limits",
]

State = Literal["continue", "pass", "fail"]

#: an early PASS of a percentile needs the requests in which the budget's own share makes
#: this many hits in independent units (``n * p0 / f``, ``f`` at least a lower quantile's):
#: hits that come in clusters show only once some clusters have come
MIN_EXPECTED_HITS = 25
#: an early PASS of an error rate needs this many failures expected at the budget's share
#: (``n * p0``): failures have no latency to measure their clustering by before they
#: come, so the run must be long enough that bursts of up to 10 would have shown (about
#: 5 of them; none at all has probability under 1 %)
MIN_EXPECTED_FAILURES = 50
#: for those counts, a factor counts as dependence once it is this many standard errors
#: over 1 (``stats.block_dependence``'s ``noise``): it is asked at every look
GUARD_SE = 4.0
#: a percentile's floor is measured again once its requests grew by this factor
FLOOR_GROWTH = 1.05


@dataclass(frozen=True)
class Decision:
    """Where one budget's sequential test stands after ``n`` requests."""

    state: State
    n: int  # requests seen
    hits: int  # requests over the budget (or failed)
    p0: float  # largest share of hits the budget allows
    log_evidence_pass: float  # log M_pass, tempered by ``ess_factor``
    log_evidence_fail: float  # log M_fail, tempered by ``ess_factor``
    threshold: float  # log(2 / alpha): evidence that decides
    ess_factor: float | None  # f; None when no side came near the threshold (f not needed)

    @property
    def share(self) -> float:
        return self.hits / self.n if self.n else 0.0


class ShareTest:
    """The two mixture tests of one budget ``p <= p0``, fed one hit (bool) at a time.

    Each hit comes with its tick (a whole second since the start; by default its index),
    so that the hits' dependence in time is measured by blocks of ticks.
    """

    def __init__(self, p0: float, alpha: float = 0.05) -> None:
        if not 0.0 < p0 < 1.0:
            raise ValueError(f"p0 must lie in (0, 1), got {p0!r}")
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
        self.p0 = p0
        self.alpha = alpha
        self.threshold = math.log(2.0 / alpha)
        self.n = 0
        self.hits = 0
        self._fail, self._pass = mixture(p0)
        self._ticks: dict[int, list[int]] = {}  # tick -> [requests, hits]

    def extend(self, hits: Iterable[bool], ticks: Iterable[int] | None = None) -> None:
        """Add requests in arrival order; ``True`` is a request over the budget (or failed)."""
        counts, n = self._ticks, self.n
        for tick, hit in zip(ticks if ticks is not None else count(n), hits, strict=False):
            row = counts.get(tick)
            if row is None:
                row = counts[tick] = [0, 0]
            row[0] += 1
            if hit:
                row[1] += 1
                self.hits += 1
            n += 1
        self.n = n

    def dependence(self, noise: float | None = None) -> Dependence:
        """The hits' dependence in time, by batch means over blocks of ticks.

        ``noise``: how many standard errors from 1 every factor may be and still count
        as independent (``stats.block_dependence``'s default when None).
        """
        if not self._ticks:
            return Dependence(1.0, 0)
        first, last = min(self._ticks), max(self._ticks)
        empty = (0, 0)
        counts = [tuple(self._ticks.get(k, empty)) for k in range(first, last + 1)]
        if noise is None:
            return block_dependence(counts)  # type: ignore[arg-type]
        return block_dependence(counts, noise)  # type: ignore[arg-type]

    def ess_factor(self) -> float:
        """Variance inflation ``f >= 1`` of the hits (``dependence().factor``)."""
        return self.dependence().factor

    def decision(self, min_ess_factor: float = 1.0) -> Decision:
        """The current state: ``"pass"``, ``"fail"`` or ``"continue"``.

        ``min_ess_factor`` is a floor for ``f`` known from elsewhere.
        """
        misses = self.n - self.hits
        fail = [self.hits * a + misses * b for a, b in self._fail]
        pass_ = [self.hits * a + misses * b for a, b in self._pass]
        # log mean exp(l / f) <= max(max l, 0): if no l reaches the threshold, no f >= 1 can
        f: float | None = None
        settled = True
        if max(*fail, *pass_) >= self.threshold:
            dependence = self.dependence()
            f, settled = max(dependence.factor, min_ess_factor), dependence.settled
            fail, pass_ = [v / f for v in fail], [v / f for v in pass_]
        log_fail, log_pass = log_mean_exp(fail), log_mean_exp(pass_)
        state: State = "continue"
        # neither side while the variance still grows with the block length: the
        # dependence is longer than the run can measure yet, and ``f`` too low (a queue
        # that starts in a long busy period would otherwise abort in its first seconds)
        if log_fail >= self.threshold and settled:
            state = "fail"
        elif log_pass >= self.threshold and settled:
            state = "pass"
        return Decision(state, self.n, self.hits, self.p0, log_pass, log_fail, self.threshold, f)


def decide(
    samples_ms: Sequence[float],
    budget_ms: float,
    q: float,
    alpha: float = 0.05,
    *,
    ticks: Sequence[int] | None = None,
) -> Decision:
    """Whether the ``q``-quantile of ``samples_ms`` (arrival order) is decided against a budget.

    A pure function over all samples so far; the answer is valid however often it is
    asked (see the module docstring). ``alpha`` is two-sided: each wrong call has
    probability ``<= alpha / 2``. Without ``ticks`` (whole seconds of each sample) the
    blocks of the dependence measure are runs of consecutive samples. A NaN, infinite or
    negative time raises ``SampleError``.
    """
    test = ShareTest(1.0 - q, alpha)
    test.extend((check_ms(x, f"sample {i}") > budget_ms for i, x in enumerate(samples_ms)), ticks)
    return test.decision()


# --- budgets of a scenario -----------------------------------------------------------


@dataclass(frozen=True)
class _Batch:
    """New requests of one stream in arrival order: times, outcomes, whole seconds (ticks)."""

    ms: Sequence[float]
    ok: Sequence[bool]
    ticks: Sequence[int] | None  # None: by arrival index
    samples: Sequence[Sample] = ()  # the requests themselves (their streams), when known

    @classmethod
    def of(cls, samples: Sequence[Sample]) -> _Batch:
        ms = [check_ms(s.ms, f"{s.name} request at {s.t:.3f} s") for s in samples]
        return cls(ms, [s.ok for s in samples], [math.floor(s.t) for s in samples], samples)

    def series(self, series: Series) -> tuple[list[float], list[int]]:
        """The values of a streamed series (``stats.series_values``), each with its
        request's tick: every token gap of a request in the request's second."""
        values: list[float] = []
        ticks: list[int] = []
        for s in self.samples:
            found = series_values(s, series)
            values += (check_ms(x, f"{s.name} {series} at {s.t:.3f} s") for x in found)
            ticks += [math.floor(s.t)] * len(found)
        return values, ticks

    def goodput_misses(
        self, slo: Mapping[str, float], streaming: set[str]
    ) -> tuple[list[bool], list[int]]:
        """Requests of the endpoints that stream that miss the ``slo``, and their ticks."""
        counted = [s for s in self.samples if s.name in streaming]
        return [not meets_slo(s, slo) for s in counted], [math.floor(s.t) for s in counted]


class _Monitor:
    """One budgeted metric of one endpoint (or of TOTAL) followed during the run.

    Its registry entry says how: a quantile is a share of requests over the limit, a
    proportion (the error rate) a share of failed requests, the maximum is breached by
    any request over it; other metrics (mean, throughput, run figures) are not decided
    early.
    """

    def __init__(
        self, endpoint: str, key: str, limit: float, alpha: float,
        slo: Mapping[str, float] | None = None, streaming: set[str] | None = None,
    ) -> None:  # fmt: skip
        self.endpoint = endpoint
        self.metric = key
        self.entry: Metric = metric(key)
        self.limit = limit
        self.slo = slo  # goodput's objectives; None: goodput is not decided early
        self.streaming = streaming if streaming is not None else set()
        self.test: ShareTest | None = None
        self.any_hit_fails = False  # max_ms and error_rate 0: one hit decides
        self.passes = False  # error_rate 1: nothing can breach it
        self.hits = 0
        self.n = 0
        self.failing_since: float | None = None
        #: a percentile's requests (time, tick), for a lower quantile's dependence (its floor)
        self._ms: list[float] = []
        self._ticks: list[int] = []
        self._floor_at: tuple[int, Dependence] = (0, Dependence(1.0, 0))  # (n, floor then)
        judge, q = self.entry.judge, self.entry.q
        if judge == "quantile" and q is not None:
            self.test = ShareTest(1.0 - q, alpha)
        elif self.entry.floor and judge == "proportion":  # goodput: a share of misses
            if slo is not None and 0.0 < limit < 1.0:
                self.test = ShareTest(1.0 - limit, alpha)
            elif slo is not None:
                self.any_hit_fails, self.passes = limit >= 1.0, limit <= 0.0
        elif judge == "proportion" and 0.0 < limit < 1.0:
            self.test = ShareTest(limit, alpha)
        elif judge == "proportion":
            self.any_hit_fails, self.passes = limit <= 0.0, limit >= 1.0
        elif self._on_each_request():
            self.any_hit_fails = True

    def _on_each_request(self) -> bool:
        """The maximum: a ceiling on every single response time."""
        return self.entry.judge == "fact" and self.entry.stat == "max"

    def feed(self, sent: _Batch, every: _Batch) -> None:
        """Add one endpoint's new requests in arrival order.

        ``sent``: the requests with a response time; ``every``: all of them, never-sent
        ones included (their ``ms`` unused), for the error rate.
        """
        batch = every if self.entry.judge == "proportion" else sent
        ms, ticks, series = batch.ms, batch.ticks, self.entry.series
        hits: list[bool]
        if self.entry.judge == "proportion" and series == "stream":
            if self.slo is None:
                return
            hits, ticks = batch.goodput_misses(self.slo, self.streaming)
        elif self.entry.judge == "proportion":
            hits = [not good for good in batch.ok]
        elif self.entry.judge == "quantile" or self._on_each_request():
            if series != "latency":  # a streamed series: TTFT, token gaps, TPOT
                ms, ticks = batch.series(series)
            limit = self.limit
            hits = [x > limit for x in ms]
        else:
            return
        if self.entry.judge == "quantile":
            self._ms.extend(ms)
            self._ticks.extend(ticks if ticks is not None else range(self.n, self.n + len(hits)))
        self.n += len(hits)
        self.hits += sum(hits)
        if self.test is not None:
            self.test.extend(hits, ticks)

    def state(self) -> State:
        if self.any_hit_fails:
            return "fail" if self.hits else "continue"
        if self.passes:
            return "pass"
        if self.test is None:
            return "continue"
        found = self.test.decision()
        if found.state == "continue":
            return "continue"
        floor = self._floor()
        if floor.excess > (found.ess_factor or 1.0):
            found = self.test.decision(floor.excess)
        if found.state == "pass" and not self._pass_holds(found, floor):
            return "continue"
        return found.state

    def _floor(self) -> Dependence:
        """A percentile's floor for ``f``: the dependence of a lower quantile's hits; an
        error rate's (goodput's) while it has none: bursts of ``FAILURE_BURST``.

        Measured again once the requests grew by ``FLOOR_GROWTH`` (it sorts them all,
        and a run of token gaps holds millions), so it changes slowly, as ``f`` does.
        """
        if self.entry.judge == "proportion" and self.test is not None and not self.test.hits:
            return Dependence(FAILURE_BURST, 0)
        if self.entry.judge != "quantile" or self.entry.q is None:
            return Dependence(1.0, 0)
        n, found = self._floor_at
        if n == 0 or len(self._ms) >= n * FLOOR_GROWTH:
            found = reference_dependence(self._ticks, self._ms, self.entry.q)
            self._floor_at = (len(self._ms), found)
        return found

    def _pass_holds(self, found: Decision, floor: Dependence) -> bool:
        """Whether an early PASS stands once the run's dependence is fully counted.

        The run must hold ``MIN_EXPECTED_HITS`` hits at the budget's share in independent
        units (``n * p0 / f``, ``f`` at least the floor ``stats.reference_dependence``),
        so that clusters of hits would have shown had they come; an error rate needs
        ``MIN_EXPECTED_FAILURES`` expected failures.
        """
        assert self.test is not None
        if self.entry.judge == "proportion":
            return self.test.n * self.test.p0 >= MIN_EXPECTED_FAILURES
        # clusters, not the noise of a factor near 1, make the run wait (``GUARD_SE``)
        f = max(floor.excess, self.test.dependence(GUARD_SE).excess)
        return self.test.n * self.test.p0 / f >= MIN_EXPECTED_HITS

    def describe(self, state: State) -> str:
        what = f"{self.endpoint} {self.entry.label}".rstrip()
        limit = self.entry.format(self.limit)
        values = "token gaps" if self.entry.series == "itl" else "requests"
        counted = f"{format_count(self.hits)} of {format_count(self.n)} {values}"
        if self.entry.judge != "proportion":
            share = f"{counted} over {limit}"
        else:
            share = f"{counted} {'missed the slo' if self.entry.floor else 'failed'}"
        relation = self.entry.relation(failed=state != "pass")
        return f"{what} {relation} {limit} ({share})"


class StopRule:
    """Ends a run early once every blocking budget is decided, or on a held clear breach.

    Call it as ``runner.StopRule``: ``rule(samples, elapsed_s)`` with every sample so far
    (warm-up included, in arrival order; the sequence only grows) returns ``None``,
    ``"stop: ..."`` or ``"abort: ..."``. ``observe`` and ``look`` are the same two steps
    for callers holding plain arrays (``benchmarks/verdict_quality.py``).
    """

    def __init__(
        self,
        budget: Budget,
        endpoint_budgets: Mapping[str, Budget] | None = None,
        *,
        alpha: float = 0.05,
        warmup_s: float = 0.0,
        min_duration_s: float = 30.0,
        abort_window_s: float = 10.0,
        min_samples: int = 1,
        slo: Mapping[str, float] | None = None,
    ) -> None:
        self.slo = slo  # the scenario's per-request objectives, for goodput
        self.warmup_s = warmup_s
        self.min_duration_s = min_duration_s
        self.abort_window_s = abort_window_s
        self.min_samples = min_samples
        self._budgets = [(TOTAL, budget), *(endpoint_budgets or {}).items()]
        self._alpha = alpha
        #: the blocking budgets ``alpha`` is split over (Bonferroni), ``blocking_tests``
        self.tests = blocking_tests(budget, endpoint_budgets or {})
        self._seen = 0
        self._reset()

    def _reset(self) -> None:
        self.requests = 0
        self._seen = 0
        self._streaming: set[str] = set()  # endpoints seen streaming: goodput's requests
        alpha = self._alpha / max(self.tests, 1)
        self.monitors = [
            _Monitor(endpoint, key, limit, alpha, self.slo, self._streaming)
            for endpoint, b in self._budgets
            if b.severity == "block"
            for key, limit in b.limits().items()
        ]

    def __call__(self, samples: Sequence[Sample], elapsed_s: float) -> str | None:
        if len(samples) < self._seen:  # a new run
            self._reset()
        new = [s for s in samples[self._seen :] if s.t >= self.warmup_s]
        self._seen = len(samples)
        self._streaming.update(s.name for s in new if s.stream is not None)
        by_endpoint: dict[str, list[Sample]] = {}
        for s in new:
            by_endpoint.setdefault(s.name, []).append(s)
        for name, group in [*by_endpoint.items(), (TOTAL, new)]:
            sent = [s for s in group if s.status != NOT_SENT]
            self._feed(name, _Batch.of(sent), _Batch.of(group))
        self.requests += len(new)
        return self.look(elapsed_s)

    def observe(
        self,
        endpoint: str,
        ms: Sequence[float],
        ok: Sequence[bool],
        ticks: Sequence[int] | None = None,
    ) -> None:
        """Add one endpoint's new measured (post-warm-up) requests, all sent, in arrival order.

        For callers holding plain arrays of one endpoint at a time (``ticks``: whole
        seconds of each request); the total then sees each endpoint's requests as one group.
        """
        self.requests += len(ms)
        batch = _Batch(
            [check_ms(x, f"{endpoint} request {i}") for i, x in enumerate(ms)], ok, ticks
        )
        self._feed(endpoint, batch, batch)
        if endpoint != TOTAL:
            self._feed(TOTAL, batch, batch)

    def _feed(self, stream: str, sent: _Batch, every: _Batch) -> None:
        for m in self.monitors:
            if m.endpoint == stream:
                m.feed(sent, every)

    def look(self, elapsed_s: float) -> str | None:
        """Decide at ``elapsed_s`` seconds since the load started (warm-up included)."""
        if not self.monitors:
            return None
        states = [m.state() for m in self.monitors]
        breaches = []
        for m, state in zip(self.monitors, states, strict=True):
            if state != "fail":
                m.failing_since = None
                continue
            if m.failing_since is None:
                m.failing_since = elapsed_s
            if elapsed_s - m.failing_since >= self.abort_window_s:
                breaches.append(m)
        if breaches:
            held = max(elapsed_s - m.failing_since for m in breaches if m.failing_since is not None)
            found = "; ".join(m.describe("fail") for m in breaches)
            return f"abort: clear breach held for {SECONDS.format(held)}: {found}"
        measured = elapsed_s - self.warmup_s
        if (
            measured >= self.min_duration_s
            and self.requests >= self.min_samples
            and all(state == "pass" for state in states)
        ):
            found = "; ".join(m.describe("pass") for m in self.monitors)
            return (
                f"stop: every blocking budget decided (PASS) after {SECONDS.format(measured)} "
                f"and {format_count(self.requests)} requests: {found}"
            )
        return None


def make_stop_rule(
    scenario: Scenario,
    level: float = 0.95,
    min_duration_s: float | None = None,
    abort_window_s: float = 10.0,
) -> StopRule:
    """The stopping rule of ``scenario``'s blocking budgets at confidence ``level``.

    ``1 - level`` is split over the blocking budgets (``blocking_tests``, Bonferroni).

    ``min_duration_s`` defaults to 30 s of measured time (or the whole measured window
    when it is shorter, which means no early PASS).
    """
    window = max(scenario.duration_s - scenario.warmup_s, 0.0)
    return StopRule(
        scenario.budget,
        scenario.endpoint_budgets,
        alpha=1.0 - level,
        warmup_s=scenario.warmup_s,
        min_duration_s=min(30.0, window) if min_duration_s is None else min_duration_s,
        abort_window_s=abort_window_s,
        min_samples=scenario.min_samples,
        slo=scenario.slo,
    )


def blocking_tests(budget: Budget, endpoint_budgets: Mapping[str, Budget]) -> int:
    """How many blocking checks the scenario's false-fail rate is split over (Bonferroni).

    Every blocking budget judged by an interval (percentiles, mean, error rate strictly
    between 0 and 1), of every endpoint; facts (maximum, throughput, run figures) carry
    no sampling error and do not count.
    """
    found = 0
    for b in (budget, *endpoint_budgets.values()):
        if b.severity != "block":
            continue
        for key, limit in b.limits().items():
            judge = metric(key).judge
            found += judge in ("quantile", "mean") or (judge == "proportion" and 0 < limit < 1)
    return found


def quantile_limits(
    budget: Budget, endpoint_budgets: Mapping[str, Budget]
) -> dict[str, dict[str, float]]:
    """The percentile budgets by row (``TOTAL`` or an endpoint), then ``"p95"``...: the
    limits ``stats.summarize`` measures the dependence at, as this rule does."""
    found: dict[str, dict[str, float]] = {}
    for endpoint, b in [(TOTAL, budget), *endpoint_budgets.items()]:
        for key, limit in b.limits().items():
            m = metric(key)
            if m.judge == "quantile" and m.stat:
                found.setdefault(endpoint, {})[m.stat] = limit
    return found
