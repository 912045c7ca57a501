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

with the alternatives ``p_j`` at odds ratios 1.1 to 30 from ``p0`` (``_ODDS_RATIOS``).
Under any ``p <= p0`` every factor has mean ``<= 1``, so ``M_fail`` is a nonnegative
supermartingale starting at 1, and Ville's inequality gives
``P(M_fail ever reaches 2 / alpha) <= alpha / 2``. So:

**Guarantee.** For independent requests, the rule declares a breach of a budget that
holds (or a pass of one that does not) with probability at most ``alpha / 2`` per
budget, *however many times it looks* - no alpha spending, no bound on the number of
looks. Budgets are not corrected for multiplicity, as in ``verdict``.

**Time correlation.** Latencies under load come in bursts, so hits cluster and the
evidence above would look stronger than it is. Every log-likelihood ratio is divided by
an inflation factor ``f`` (an effective sample size ``n / f``), the larger of:

- the hits' own: ``1 + 2 * sum(rho_k)`` over their autocorrelations in arrival order up
  to lag ``max_lag`` (256), summed over Geyer's initial positive sequence;
- ``stats.LagOne``: ``(1 + r) / (1 - r)`` from the lag-1 autocorrelation ``r`` of the log
  response times of the budget's endpoint (an AR(1) fit). For a Gaussian-copula process
  it bounds the inflation of every hit sequence, and it works while hits are still too
  few to show their own clustering.

For data made of blocks of ``f`` identical hits the tempering is exact (the tempered
ratio is the likelihood ratio of the blocks); for other dependence it is an
approximation, measured by ``benchmarks/verdict_quality.py`` on AR(1) latencies, where
it is conservative (phi 0.95 in log space gives ``f = 39``; p95 hits need about 18).

What is not decided early: ``avg_ms`` and ``min_rps`` (no interval that stays valid
under repeated looks without assumptions on the tails), and the pass side of ``max_ms``
and of ``error_rate: 0`` (one more request may breach them; their breach is certain at
the first offending request). A scenario with such a blocking budget never stops early
for PASS. An early PASS also needs ``min_duration_s`` of measured time (slow drifts,
periodic pauses) and ``min_samples`` requests; an abort needs the breach to hold at every
look for ``abort_window_s`` (a short stall does not end a run).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from benchmarks._old_engine.stats import TOTAL, LagOne, Sample
from pytest_perfgate.core.metrics import SECONDS, Metric, metric
from pytest_perfgate.core.model import Budget, Scenario
from pytest_perfgate.core.numbers import format_count

__all__ = [
    "Decision",
    "ShareTest",
    "StopRule",
    "decide",
    "make_stop_rule",
]

State = Literal["continue", "pass", "fail"]

#: alternatives of the mixture, as odds ratios against p0 (fail side; the pass side uses 1/r)
_ODDS_RATIOS = (1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
_MAX_LAG = 256


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


def _alternatives(p0: float, ratios: Iterable[float]) -> tuple[tuple[float, float], ...]:
    """``(log(p1/p0), log((1-p1)/(1-p0)))`` for each alternative p1 at the given odds ratios."""
    odds0 = p0 / (1.0 - p0)
    coefficients = []
    for r in ratios:
        p1 = odds0 * r / (1.0 + odds0 * r)
        coefficients.append((math.log(p1 / p0), math.log((1.0 - p1) / (1.0 - p0))))
    return tuple(coefficients)


def _log_mean_exp(values: Sequence[float]) -> float:
    top = max(values)
    return top + math.log(math.fsum(math.exp(v - top) for v in values) / len(values))


class ShareTest:
    """The two mixture tests of one budget ``p <= p0``, fed one hit (bool) at a time."""

    def __init__(self, p0: float, alpha: float = 0.05, *, max_lag: int = _MAX_LAG) -> None:
        if not 0.0 < p0 < 1.0:
            raise ValueError(f"p0 must lie in (0, 1), got {p0!r}")
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
        self.p0 = p0
        self.alpha = alpha
        self.threshold = math.log(2.0 / alpha)
        self.max_lag = max_lag
        self.n = 0
        self.hits = 0
        self._fail = _alternatives(p0, _ODDS_RATIOS)
        self._pass = _alternatives(p0, (1.0 / r for r in _ODDS_RATIOS))
        self._pairs = [0] * (max_lag + 1)  # _pairs[k]: hits k requests after another hit
        self._recent: deque[int] = deque()  # indices of hits within max_lag of the last

    def extend(self, hits: Iterable[bool]) -> None:
        """Add requests in arrival order; ``True`` is a request over the budget (or failed)."""
        n, recent, pairs, max_lag = self.n, self._recent, self._pairs, self.max_lag
        for hit in hits:
            if hit:
                while recent and n - recent[0] > max_lag:
                    recent.popleft()
                for j in recent:
                    pairs[n - j] += 1
                recent.append(n)
                self.hits += 1
            n += 1
        self.n = n

    def ess_factor(self) -> float:
        """Variance inflation ``f >= 1`` of the hit sequence (Geyer's initial positive sequence)."""
        n, p = self.n, self.hits / self.n if self.n else 0.0
        if n < 4 or p in (0.0, 1.0):
            return 1.0
        var = p * (1.0 - p)
        last = min(self.max_lag, n - 2)
        rho = [1.0] + [(self._pairs[k] / (n - k) - p * p) / var for k in range(1, last + 1)]
        total = 0.0
        for m in range(0, len(rho) - 1, 2):
            pair = rho[m] + rho[m + 1]
            if pair <= 0.0:
                break
            total += pair
        return min(max(2.0 * total - 1.0, 1.0), float(n))

    def decision(self, min_ess_factor: float = 1.0) -> Decision:
        """The current state: ``"pass"``, ``"fail"`` or ``"continue"``.

        ``min_ess_factor`` is a floor for ``f`` known from elsewhere (``LagOne``).
        """
        misses = self.n - self.hits
        fail = [self.hits * a + misses * b for a, b in self._fail]
        pass_ = [self.hits * a + misses * b for a, b in self._pass]
        # log mean exp(l / f) <= max(max l, 0): if no l reaches the threshold, no f >= 1 can
        f: float | None = None
        if max(*fail, *pass_) >= self.threshold:
            f = max(self.ess_factor(), min_ess_factor)
            fail, pass_ = [v / f for v in fail], [v / f for v in pass_]
        log_fail, log_pass = _log_mean_exp(fail), _log_mean_exp(pass_)
        state: State = "continue"
        if log_fail >= self.threshold:
            state = "fail"
        elif log_pass >= self.threshold:
            state = "pass"
        return Decision(state, self.n, self.hits, self.p0, log_pass, log_fail, self.threshold, f)


def decide(
    samples_ms: Sequence[float], budget_ms: float, q: float, alpha: float = 0.05
) -> Decision:
    """Whether the ``q``-quantile of ``samples_ms`` (arrival order) is decided against a budget.

    A pure function over all samples so far; the answer is valid however often it is
    asked (see the module docstring). ``alpha`` is two-sided: each wrong call has
    probability ``<= alpha / 2``.
    """
    test = ShareTest(1.0 - q, alpha)
    test.extend(x > budget_ms for x in samples_ms)
    lag = LagOne()
    lag.extend(samples_ms)
    return test.decision(lag.factor())


# --- budgets of a scenario -----------------------------------------------------------


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

    def feed(self, ms: Sequence[float], ok: Sequence[bool]) -> None:
        """Add one endpoint's new requests in arrival order."""
        if self.entry.judge == "proportion":
            hits: list[bool] = [not good for good in ok]
        elif self.entry.judge == "quantile" or self._on_each_request():
            limit = self.limit
            hits = [x > limit for x in ms]
        else:
            hits = []
        self.n += len(ms)
        self.hits += sum(hits)
        if self.test is not None:
            self.test.extend(hits)

    def state(self, min_ess_factor: float = 1.0) -> State:
        if self.any_hit_fails:
            return "fail" if self.hits else "continue"
        if self.passes:
            return "pass"
        if self.test is None:
            return "continue"
        return self.test.decision(min_ess_factor).state

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
        self._seen = 0
        self._reset()

    def _reset(self) -> None:
        self.requests = 0
        self._seen = 0
        self._lags: dict[str, LagOne] = {}  # by endpoint, and TOTAL
        self.monitors = [
            _Monitor(endpoint, key, limit, self._alpha)
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
        for name, group in by_endpoint.items():
            self._feed(name, [s.ms for s in group], [s.ok for s in group])
        # the total in arrival order: grouped by endpoint, a mix of fast and slow endpoints
        # would look like bursts (autocorrelation) and inflate the evidence needed
        self._feed(TOTAL, [s.ms for s in new], [s.ok for s in new])
        self.requests += len(new)
        return self.look(elapsed_s)

    def observe(self, endpoint: str, ms: Sequence[float], ok: Sequence[bool]) -> None:
        """Add one endpoint's new measured (post-warm-up) requests, in arrival order.

        For callers holding plain arrays of one endpoint at a time; the total then sees
        each endpoint's requests as one group.
        """
        self.requests += len(ms)
        self._feed(endpoint, ms, ok)
        if endpoint != TOTAL:
            self._feed(TOTAL, ms, ok)

    def _feed(self, stream: str, ms: Sequence[float], ok: Sequence[bool]) -> None:
        self._lags.setdefault(stream, LagOne()).extend(ms)
        for m in self.monitors:
            if m.endpoint == stream:
                m.feed(ms, ok)

    def _inflation(self, endpoint: str) -> float:
        lag = self._lags.get(endpoint)
        return lag.factor() if lag is not None else 1.0

    def look(self, elapsed_s: float) -> str | None:
        """Decide at ``elapsed_s`` seconds since the load started (warm-up included)."""
        if not self.monitors:
            return None
        states = [m.state(self._inflation(m.endpoint)) for m in self.monitors]
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
