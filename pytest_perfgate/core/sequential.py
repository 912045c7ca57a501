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
PASS). Tempering is exact for blocks of ``f`` identical hits (the tempered
ratio is the likelihood ratio of the blocks) and approximate for other dependence;
``benchmarks/verdict_quality.py`` measures it on queues, GC pauses, AR(1) and bursts.
Requests never sent (``stats.NOT_SENT``) have no response time: they count as failures
for the error rate and are left out of every latency budget.

What is not decided early: ``avg_ms`` and ``min_rps`` (no interval that stays valid
under repeated looks without assumptions on the tails), and the pass side of ``max_ms``
and of ``error_rate: 0`` (one more request may breach them; their breach is certain at
the first offending request). A scenario with such a blocking budget never stops early
for PASS. An early PASS also needs ``min_duration_s`` of measured time (slow drifts,
periodic pauses) and ``min_samples`` requests; an abort needs the breach to hold at every
look for ``abort_window_s`` (a short stall does not end a run), and, for a share budget,
``MIN_EXPECTED_HITS / p0`` requests (500 for a p95, 2 500 for a 1 % error rate): failures
in bursts that have not come yet cannot be measured.

Over 450 lines: the stopping rule, its monitors and the confidence sequences inverted
from the same test stay in one module, so the rule and the intervals it leaves agree.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import count
from typing import Literal

from pytest_perfgate.core.metrics import SECONDS, Metric, metric
from pytest_perfgate.core.model import Budget, Scenario
from pytest_perfgate.core.numbers import format_count
from pytest_perfgate.core.stats import (
    NOT_SENT,
    TOTAL,
    Dependence,
    Sample,
    block_dependence,
    check_ms,
    log_mean_exp,
    mixture,
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

#: an early PASS needs the requests in which the budget's own share makes this many hits:
#: hits that come in clusters (bursts of failures) show only once some clusters have
#: come, and a run too short to have seen one cannot measure them
MIN_EXPECTED_HITS = 25


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

    def dependence(self) -> Dependence:
        """The hits' dependence in time, by batch means over blocks of ticks."""
        if not self._ticks:
            return Dependence(1.0, 0)
        first, last = min(self._ticks), max(self._ticks)
        empty = (0, 0)
        counts = [tuple(self._ticks.get(k, empty)) for k in range(first, last + 1)]
        return block_dependence(counts)  # type: ignore[arg-type]

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
        if log_fail >= self.threshold:
            state = "fail"
        elif log_pass >= self.threshold and settled:
            # no PASS while the variance still grows with the block length: the dependence
            # is longer than the run can measure, and ``f`` too low
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

    @classmethod
    def of(cls, samples: Sequence[Sample]) -> _Batch:
        ms = [check_ms(s.ms, f"{s.name} request at {s.t:.3f} s") for s in samples]
        return cls(ms, [s.ok for s in samples], [math.floor(s.t) for s in samples])


class _Monitor:
    """One budgeted metric of one endpoint (or of TOTAL) followed during the run.

    Its registry entry says how: a quantile is a share of requests over the limit, a
    proportion (the error rate) a share of failed requests, the maximum is breached by
    any request over it; other metrics (mean, throughput, run figures) are not decided
    early.
    """

    def __init__(self, endpoint: str, key: str, limit: float, alpha: float) -> None:
        self.endpoint = endpoint
        self.metric = key
        self.entry: Metric = metric(key)
        self.limit = limit
        self.test: ShareTest | None = None
        self.any_hit_fails = False  # max_ms and error_rate 0: one hit decides
        self.passes = False  # error_rate 1: nothing can breach it
        self.hits = 0
        self.n = 0
        self.failing_since: float | None = None
        judge, q = self.entry.judge, self.entry.q
        if judge == "quantile" and q is not None:
            self.test = ShareTest(1.0 - q, alpha)
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
        if self.entry.judge == "proportion":
            hits: list[bool] = [not good for good in batch.ok]
        elif self.entry.judge == "quantile" or self._on_each_request():
            limit = self.limit
            hits = [x > limit for x in batch.ms]
        else:
            return
        self.n += len(hits)
        self.hits += sum(hits)
        if self.test is not None:
            self.test.extend(hits, batch.ticks)

    def state(self) -> State:
        if self.any_hit_fails:
            return "fail" if self.hits else "continue"
        if self.passes:
            return "pass"
        if self.test is None:
            return "continue"
        state = self.test.decision().state
        if state == "pass" and self.test.n * self.test.p0 < MIN_EXPECTED_HITS:
            return "continue"  # too few requests for clustered hits to have shown
        return state

    def describe(self, state: State) -> str:
        what = f"{self.endpoint} {self.entry.label}".rstrip()
        limit = self.entry.format(self.limit)
        counted = f"{format_count(self.hits)} of {format_count(self.n)} requests"
        share = (
            f"{counted} failed" if self.entry.judge == "proportion" else f"{counted} over {limit}"
        )
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
    ) -> None:
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
        alpha = self._alpha / max(self.tests, 1)
        self.monitors = [
            _Monitor(endpoint, key, limit, alpha)
            for endpoint, b in self._budgets
            if b.severity == "block"
            for key, limit in b.limits().items()
        ]

    def __call__(self, samples: Sequence[Sample], elapsed_s: float) -> str | None:
        if len(samples) < self._seen:  # a new run
            self._reset()
        new = [s for s in samples[self._seen :] if s.t >= self.warmup_s]
        self._seen = len(samples)
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
