"""Regressions: judge a run relative to a stored baseline run, allowance by allowance.

Pure: no pytest, no locust, no numpy, no file I/O. Each ``*_regression`` allowance is a
registry entry (``core.metrics.Regression``): its key, label, parser and change format.

Where baselines are stored, and how, is ``results.baselines``; this module judges a run
against a ``Baseline`` already in memory (so never against the run under test).

Method
------
Each ``*_regression`` budget is an allowance on a change, judged by a confidence
interval on that change at ``level``: PASS when the whole interval is at or below the
allowance, FAIL when it is wholly above, INCONCLUSIVE otherwise (the rule of ``verdict``).
Both runs' samples count as independent draws (within a run, ``ess_factor`` widens for
dependence in time: the block factor of ``stats.summarize(correlated=True)``). The gate
judges allowances at the level Bonferroni gives over all the scenario's blocking checks.
When a stop rule watched the run under test (``EndpointStats.anytime``), both sides'
percentile and mean intervals are confidence sequences (``stats.quantile_cs``,
``verdict.mean_cs``), so a comparison made at an early stop or abort keeps its level.
Requests never sent have no response time: they are left out of every latency (here,
in ``samples_by_endpoint`` and in stored baselines) and count as failures in the error
rate and as requests in the throughput (``BaselineRow.not_sent``).

- ``p50/p95/p99_regression``: the relative change ``new_q / base_q - 1``. Each run's
  order-statistic interval (``stats.quantile_ci``) is taken at ``sqrt(level)``; the runs
  are independent, so both cover at once with probability ``>= level``, and then
  ``[new_low / base_high, new_high / base_low] - 1`` covers the true change. Distribution
  free, exact for any sample size, and one-sided: a false FAIL (or PASS) needs
  ``new_low > new_q`` or ``base_high < base_q``, probability ``<= 1 - sqrt(level)``
  (2.5 % at 95 %). A bootstrap was not chosen: it is approximate exactly where it
  matters (tail quantiles, small ``n``), random, and slow in pure Python.
- ``avg_regression``: the same combination of two normal-approximation mean intervals
  (``stats.mean_ci``); approximate for heavy tails and small ``n``.
- ``error_rate_regression``: the *absolute* change of the failure share, in percentage
  points (0.005 = +0.5 pp), by Newcombe's hybrid score interval (method 10, from two
  Wilson intervals); coverage close to ``level``, not guaranteed.
- ``rps_regression``: the relative *drop* ``1 - new_rps / base_rps``. Given the total
  count, the new run's count is binomial under Poisson arrivals; its Clopper-Pearson
  interval (``stats.proportion_ci``) maps to the rate ratio. Closed-loop users arrive
  more regularly than Poisson, which makes it conservative.

``observed`` is always "how much worse", so ``Check.over_budget`` (``observed > limit``)
holds for every metric. What no interval covers: drift between the two runs' machines
or neighbours. Give allowances above the run-to-run noise of the environment.

Just over 450 lines: every regression allowance's judgement and its sentence, which
read best beside each other.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

from pytest_perfgate.core.metrics import REGRESSIONS, Regression, Series, regression
from pytest_perfgate.core.model import scenario_settings
from pytest_perfgate.core.numbers import format_count, format_level
from pytest_perfgate.core.stats import (
    NOT_SENT,
    TOTAL,
    RunStats,
    Sample,
    mean_ci,
    percentile,
    proportion_ci,
    quantile_ci,
    quantile_cs,
    samples_needed,
    series_values,
)
from pytest_perfgate.core.verdict import (
    Check,
    Outcome,
    interval_outcome,
    mean_cs,
    more_samples_text,
)
from pytest_perfgate.errors import ConfigError

__all__ = [
    "REGRESSION_HELP",
    "REGRESSION_KEYS",
    "Baseline",
    "BaselineRow",
    "RegressionCheck",
    "compare",
    "parse_regressions",
    "regression_message",
    "samples_by_endpoint",
    "scenario_settings",
    "series_by_endpoint",
]

#: regression keys and their help text (the registry's), beside the metrics' in budgets
REGRESSION_HELP: Mapping[str, str] = {r.key: r.help for r in REGRESSIONS}
REGRESSION_KEYS = tuple(REGRESSION_HELP)
#: settings whose change makes latencies incomparable (duration only changes ``n``)
_LOAD_KEYS = ("users", "wait_s", "arrival_rate", "arrivals", "burstiness", "seed", "stages")


# --- regression budgets ----------------------------------------------------------------


def parse_regressions(mapping: object, where: str) -> dict[str, float]:
    """Validate ``{"p95_regression": "10%", ...}`` into fractions; errors name ``where.key``.

    Every key must be a regression key; each value is read by its ``Regression.parse``
    (a percent string, any size for latencies, or a fraction ``0 <= x <= 1``).
    """
    if not isinstance(mapping, Mapping):
        raise ConfigError(where, f"expected a mapping of regression budgets, got {mapping!r}")
    return {str(key): _allowance(key, value, f"{where}.{key}") for key, value in mapping.items()}


def _allowance(key: object, value: object, where: str) -> float:
    if key not in REGRESSION_HELP:
        known = ", ".join(REGRESSION_KEYS)
        raise ConfigError(where, f"unknown regression key {key!r}; known keys: {known}")
    return regression(str(key)).parse(value, where)


# --- values --------------------------------------------------------------------------


@dataclass(frozen=True)
class BaselineRow:
    """One endpoint (or ``TOTAL``) of a stored run."""

    name: str
    sorted_ms: tuple[float, ...]  # every response time of the measured window, on the µs grid
    failures: int
    rps: float
    ess_factor: float = 1.0
    #: streamed series ("ttft", "tpot"): sorted values and their variance inflation
    series: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    series_ess: Mapping[str, float] = field(default_factory=dict)
    #: requests never sent (``stats.NOT_SENT``): failures without a response time
    not_sent: int = 0

    @property
    def requests(self) -> int:
        """Every request, never-sent ones included (the error rate's denominator)."""
        return len(self.sorted_ms) + self.not_sent

    def __repr__(self) -> str:
        return f"BaselineRow({self.name!r}, n={self.requests}, failures={self.failures})"


@dataclass(frozen=True)
class Baseline:
    """A stored run of one scenario, read into memory (so never the run under test)."""

    name: str
    scenario: str
    path: Path
    saved_at: str  # ISO 8601, UTC
    duration_s: float  # measured window of the stored run
    endpoints: Mapping[str, BaselineRow]  # without TOTAL
    total: BaselineRow
    meta: Mapping[str, Any] = field(default_factory=dict)

    def row(self, endpoint: str) -> BaselineRow | None:
        return self.total if endpoint == TOTAL else self.endpoints.get(endpoint)

    def __repr__(self) -> str:
        return (
            f"Baseline({self.name!r}, {self.scenario!r}, n={self.total.requests}, "
            f"saved_at={self.saved_at!r})"
        )


def samples_by_endpoint(
    samples: Iterable[Sample], *, sent_only: bool = True
) -> dict[str, list[float]]:
    """Response times per endpoint key, in arrival order (failures included, as in ``stats``).

    Requests never sent (``stats.NOT_SENT``) have no response time and are left out (an
    endpoint whose requests were all unsent has an empty list), as everywhere latencies
    are judged or stored; ``sent_only=False`` keeps their placeholder ``ms``.
    """
    found: dict[str, list[float]] = {}
    for s in samples:
        times = found.setdefault(s.name, [])
        if not sent_only or s.status != NOT_SENT:
            times.append(s.ms)
    return found


#: the streamed series a baseline keeps (one value per response: TTFT, TPOT), and the
#: output tokens of each response (``TOKENS``, for ``output_tokens_regression``)
STORED_SERIES: tuple[Series, ...] = ("ttft", "tpot")
TOKENS = "output_tokens"


def series_by_endpoint(samples: Iterable[Sample]) -> dict[str, dict[str, list[float]]]:
    """The stored streamed series (``STORED_SERIES``) per endpoint key, in arrival order;
    endpoints without a streamed response are left out."""
    found: dict[str, dict[str, list[float]]] = {}
    for s in samples:
        if s.stream is None:
            continue
        row = found.setdefault(s.name, {})
        for series in STORED_SERIES:
            row.setdefault(series, []).extend(series_values(s, series))
        row.setdefault(TOKENS, []).append(float(s.stream.output_tokens))
    return found


# --- comparison ----------------------------------------------------------------------


@dataclass(frozen=True)
class RegressionCheck(Check):
    """A ``*_regression`` check: ``limit`` is the allowance, ``observed`` the change.

    Changes are fractions: relative for latencies and throughput (drop), percentage
    points for the error rate. ``base_value`` / ``new_value`` are the figures compared.
    """

    baseline: str = ""
    base_value: float | None = None
    new_value: float | None = None
    base_n: int = 0
    pairs: int = 0  # an A/B duet's median: judged on this many pairs' ratios

    def message(self) -> str:
        return regression_message(self)


@dataclass(frozen=True)
class _Side:
    """One run's data for one endpoint, as the comparisons need it."""

    sorted_ms: Sequence[float]  # values of the requests sent
    failures: int
    duration_s: float
    ess_factor: float
    not_sent: int = 0  # failed requests without a response time
    #: a run a stop rule watched (``EndpointStats.anytime``): intervals valid at its
    #: data-dependent stopping time
    anytime: bool = False

    @property
    def n(self) -> int:
        """Requests with a value: the latencies' sample size."""
        return len(self.sorted_ms)

    @property
    def requests(self) -> int:
        """Every request, never-sent ones included (error rate, throughput)."""
        return self.n + self.not_sent

    @property
    def n_eff(self) -> int:
        return max(1, math.floor(self.n / max(self.ess_factor, 1.0)))


@dataclass(frozen=True)
class _Change:
    observed: float
    ci: tuple[float, float]
    base_value: float
    new_value: float


def compare(
    baseline: Baseline,
    samples_ms_by_endpoint: Mapping[str, Sequence[float]],
    stats: RunStats,
    regressions: Mapping[str, float],
    level: float = 0.95,
    *,
    endpoint: str = TOTAL,
    severity: str = "block",
    settings: Mapping[str, Any] | None = None,
    series: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
) -> tuple[Check, ...]:
    """Judge this run's ``endpoint`` (``TOTAL`` by default) against ``baseline``.

    ``regressions`` maps regression keys to allowances (``parse_regressions``). With
    ``settings`` (``core.model.scenario_settings`` of this run), a baseline that ran another load
    makes every check INVALID. The checks join the scenario's verdict. ``series``
    (``series_by_endpoint``) holds this run's streamed series, for TTFT/TPOT allowances.
    """
    if not regressions:
        return ()
    checks = []
    for key, allowance in regressions.items():
        try:
            allowed = regression(key)
        except KeyError:
            raise ValueError(f"unknown regression metric {key!r}") from None
        base, new, reason = _sides(baseline, samples_ms_by_endpoint, stats, endpoint,
                                   allowed, series or {}, settings)  # fmt: skip
        head = (baseline.scenario, endpoint, key, allowance)
        if reason or base is None or new is None:
            checks.append(RegressionCheck(
                *head, None, 0 if new is None else new.n, Outcome.INVALID, severity,
                reason=reason, baseline=baseline.name,
            ))  # fmt: skip
            continue
        change = _change_of(allowed)(base, new, level)
        checks.append(_judge(head, allowed, change, base, new, level, severity, baseline.name))
    return tuple(checks)


def _judge(
    head: tuple[str, str, str, float], allowed: Regression, change: _Change, base: _Side,
    new: _Side, level: float, severity: str, name: str,
) -> RegressionCheck:  # fmt: skip
    outcome = interval_outcome(change.ci, head[3], allowed)
    more = None
    if outcome is Outcome.INCONCLUSIVE:
        q = allowed.metric.q  # each run's quantile interval is at sqrt(level)
        total = samples_needed(
            new.n, change.observed, change.ci, head[3], q=q, level=math.sqrt(level)
        )
        more = None if total is None else total - new.n
    return RegressionCheck(
        *head, change.observed, new.n, outcome, severity, change.ci, level, more,
        baseline=name, base_value=change.base_value, new_value=change.new_value,
        base_n=base.n,
    )  # fmt: skip


def _sides(
    baseline: Baseline, samples: Mapping[str, Sequence[float]], stats: RunStats, endpoint: str,
    allowed: Regression, series: Mapping[str, Mapping[str, Sequence[float]]],
    settings: Mapping[str, Any] | None,
) -> tuple[_Side | None, _Side | None, str]:  # fmt: skip
    """Both runs' data for one allowance, and why they cannot be compared ("" when they can)."""
    kind: str = allowed.metric.series
    if kind == "stream":  # output tokens/s: each response's tokens
        kind = TOKENS
    if kind == "latency":
        base, new = _base_side(baseline, endpoint), _new_side(samples, stats, endpoint)
        return base, new, _invalid_reason(baseline, endpoint, base, new, settings)
    base, new = _base_series(baseline, endpoint, kind), _new_series(series, stats, endpoint, kind)
    reason = _invalid_reason(baseline, endpoint, base, new, settings)
    if base is None and baseline.row(endpoint) is not None:
        reason = (
            f"baseline {baseline.name!r} ({baseline.path}) has no streamed response of "
            f"{endpoint}; save a new baseline"
        )
    elif new is None and base is not None:
        reason = f"{endpoint}: no streamed response in this run"
    return base, new, reason


def _base_series(baseline: Baseline, endpoint: str, kind: str) -> _Side | None:
    row = baseline.row(endpoint)
    values = row.series.get(kind, ()) if row is not None else ()
    if row is None or not values:
        return None
    return _Side(values, row.failures, baseline.duration_s, row.series_ess.get(kind, 1.0))


def _new_series(
    series: Mapping[str, Mapping[str, Sequence[float]]], stats: RunStats, endpoint: str, kind: str
) -> _Side | None:
    row = stats.total if endpoint == TOTAL else stats.endpoints.get(endpoint)
    rows = series.values() if endpoint == TOTAL else [series.get(endpoint, {})]
    values = sorted(x for found in rows for x in found.get(kind, ()))
    if row is None or not values:
        return None
    return _Side(
        values, row.failures, stats.duration_s, row.factor(f"{kind}_p95"), anytime=row.anytime
    )


def _base_side(baseline: Baseline, endpoint: str) -> _Side | None:
    row = baseline.row(endpoint)
    if row is None or not row.sorted_ms:
        return None
    return _Side(row.sorted_ms, row.failures, baseline.duration_s, row.ess_factor, row.not_sent)


def _new_side(
    samples: Mapping[str, Sequence[float]], stats: RunStats, endpoint: str
) -> _Side | None:
    row = stats.total if endpoint == TOTAL else stats.endpoints.get(endpoint)
    if row is None or row.requests == 0:
        return None
    values = [x for ms in samples.values() for x in ms] if endpoint == TOTAL else samples[endpoint]
    if not values:  # every request failed before it was sent: no response time to compare
        return None
    not_sent = max(row.requests - len(values), 0)  # ``samples`` holds sent requests only
    return _Side(
        sorted(values), row.failures, stats.duration_s, row.ess_factor, not_sent, row.anytime
    )


def _invalid_reason(
    baseline: Baseline, endpoint: str, base: _Side | None, new: _Side | None,
    settings: Mapping[str, Any] | None,
) -> str:  # fmt: skip
    if base is None:
        return (
            f"baseline {baseline.name!r} ({baseline.path}) has no request of {endpoint}; "
            "save a new baseline"
        )
    if new is None:
        return "no request was made" if endpoint == TOTAL else f"{endpoint} got no request"
    stored = baseline.meta.get("settings")
    if settings is None or not isinstance(stored, Mapping):
        return ""
    current = json.loads(json.dumps(dict(settings), default=str))  # lists, as stored
    differ = [k for k in _LOAD_KEYS if k in stored and k in current and stored[k] != current[k]]
    if not differ:
        return ""
    then = ", ".join(f"{k}={stored[k]}" for k in differ)
    now = ", ".join(f"{k}={current[k]}" for k in differ)
    return (
        f"baseline {baseline.name!r} ran another load ({then}; this run {now}), so its "
        "latencies are not comparable; save a baseline with the same settings"
    )


# --- the changes and their intervals -------------------------------------------------


def _ratio(a: float, b: float) -> float:
    """``a / b`` for non-negative bounds, where an unbounded or zero side stays honest."""
    if math.isinf(a):
        return math.inf
    if math.isinf(b):
        return 0.0
    if b <= 0:
        return math.inf if a > 0 else 1.0
    return a / b


def _relative(
    base_value: float, new_value: float, base_ci: tuple[float, float],
    new_ci: tuple[float, float],
) -> _Change:  # fmt: skip
    """``new / base - 1`` and its interval from two intervals that cover jointly."""
    low = _ratio(max(new_ci[0], 0.0), base_ci[1]) - 1.0
    high = _ratio(new_ci[1], max(base_ci[0], 0.0)) - 1.0
    return _Change(_ratio(new_value, base_value) - 1.0, (low, high), base_value, new_value)


def _quantile_interval(side: _Side, q: float, level: float, anytime: bool) -> tuple[float, float]:
    """A side's interval: a confidence sequence when the run under test was watched (the
    baseline's too: the comparison is made at the new run's stopping time)."""
    if anytime:
        return quantile_cs(side.sorted_ms, q, level, side.ess_factor)
    return quantile_ci(side.sorted_ms, q, level, ess_factor=side.ess_factor)


def _quantile_change(q: float) -> Callable[[_Side, _Side, float], _Change]:
    def change(base: _Side, new: _Side, level: float) -> _Change:
        inner = math.sqrt(level)  # independent runs: both cover with probability >= level
        return _relative(
            percentile(base.sorted_ms, q), percentile(new.sorted_ms, q),
            _quantile_interval(base, q, inner, new.anytime),
            _quantile_interval(new, q, inner, new.anytime),
        )  # fmt: skip

    return change


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    mean = math.fsum(values) / n
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def _mean_change(base: _Side, new: _Side, level: float) -> _Change:
    inner = math.sqrt(level)
    (b_mean, b_std), (n_mean, n_std) = _mean_std(base.sorted_ms), _mean_std(new.sorted_ms)
    interval = mean_cs if new.anytime else mean_ci  # a watched run: valid at its stop
    return _relative(
        b_mean, n_mean, interval(b_mean, b_std, base.n_eff, inner),
        interval(n_mean, n_std, new.n_eff, inner),
    )  # fmt: skip


def _wilson(k: int, n: int, z: float) -> tuple[float, float]:
    p, z2 = k / n, z * z
    center = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, center - half), min(1.0, center + half)


def _error_change(base: _Side, new: _Side, level: float) -> _Change:
    """Newcombe's hybrid score interval of ``p_new - p_base`` (method 10, 1998)."""
    z = NormalDist().inv_cdf((1.0 + level) / 2.0)
    p1, p2 = new.failures / new.requests, base.failures / base.requests
    (l1, u1) = _wilson(new.failures, new.requests, z)
    (l2, u2) = _wilson(base.failures, base.requests, z)
    d = p1 - p2
    ci = (d - math.hypot(p1 - l1, u2 - p2), d + math.hypot(u1 - p1, p2 - l2))
    return _Change(d, ci, p2, p1)


def _rps_change(base: _Side, new: _Side, level: float) -> _Change:
    """Drop ``1 - new_rate / base_rate``; new count | total ~ Binomial under Poisson arrivals."""
    t_base, t_new = base.duration_s, new.duration_s
    low, high = proportion_ci(new.requests, new.requests + base.requests, level)

    def rate_ratio(share: float) -> float:
        return math.inf if share >= 1.0 else share / (1.0 - share) * t_base / t_new

    base_rps, new_rps = base.requests / t_base, new.requests / t_new
    return _Change(1.0 - new_rps / base_rps, (1.0 - rate_ratio(high), 1.0 - rate_ratio(low)),
                   base_rps, new_rps)  # fmt: skip


def _tokens_change(base: _Side, new: _Side, level: float) -> _Change:
    """Drop of output tokens/s: the rate of streamed responses (``_rps_change``) times
    their mean tokens (two normal-approximation mean intervals), each ratio at
    ``sqrt(level)``; approximate as the mean intervals are."""
    inner = math.sqrt(level)
    rate = _rps_change(base, new, inner)  # drop of responses per second
    mean = _mean_change(base, new, inner)  # relative change of tokens per response
    low = (1.0 - rate.ci[1]) * max(1.0 + mean.ci[0], 0.0)
    high = (1.0 - rate.ci[0]) * (1.0 + mean.ci[1])
    base_tps = math.fsum(base.sorted_ms) / base.duration_s
    new_tps = math.fsum(new.sorted_ms) / new.duration_s
    drop = 1.0 - new_tps / base_tps if base_tps > 0 else 0.0
    return _Change(drop, (1.0 - high, 1.0 - low), base_tps, new_tps)


def _change_of(allowed: Regression) -> Callable[[_Side, _Side, float], _Change]:
    """How the change of an allowance is measured, by the kind of change and its metric."""
    if allowed.change == "points":
        return _error_change
    if allowed.change == "drop" and allowed.metric.series == "stream":
        return _tokens_change
    if allowed.change == "drop":
        return _rps_change
    if allowed.metric.judge == "quantile" and allowed.metric.q is not None:
        return _quantile_change(allowed.metric.q)
    return _mean_change


# --- messages ------------------------------------------------------------------------


def regression_message(check: Check) -> str:
    """The sentence for a ``*_regression`` check, e.g.

    ``light: POST /predict p95 +31 % vs baseline 'main', beyond the allowed +10 %
    (100 -> 131 ms, n=2 000 -> 2 000, 95 % CI +18 % to +45 %)``
    """
    allowed = regression(check.metric)
    name = check.baseline if isinstance(check, RegressionCheck) else ""
    against = f"vs baseline {name!r}" if name else "vs the baseline"
    what = f"{check.scenario}: {check.endpoint} {allowed.label}"
    limit = allowed.format_change(check.limit)
    if check.outcome is Outcome.INVALID or check.observed is None:
        text = f"{what} {against} (allowed {limit}): invalid, {check.reason or 'no data'}"
    else:
        change, details = allowed.format_change(check.observed), _details(check, allowed)
        if check.outcome is Outcome.INCONCLUSIVE:
            more = more_samples_text(check.more_samples, "the change sits on the allowance")
            text = (
                f"{what} {change} {against} ~ allowed {limit} ({details}): inconclusive, "
                f"the allowance lies inside the CI; {more}"
            )
        else:
            side = "beyond" if check.outcome is Outcome.FAIL else "within"
            text = f"{what} {change} {against}, {side} the allowed {limit} ({details})"
    return text if check.blocking else f"{text} [warn]"


def _details(check: Check, allowed: Regression) -> str:
    parts = []
    if isinstance(check, RegressionCheck) and None not in (check.base_value, check.new_value):
        parts.append(allowed.format_figures(check.base_value or 0.0, check.new_value or 0.0))
        parts.append(f"n={format_count(check.base_n)} -> {format_count(check.n)}")
        if check.pairs:
            parts.append(f"median of {format_count(check.pairs)} pairs' ratios")
    else:
        parts.append(f"n={format_count(check.n)}")
    if check.ci is not None:
        parts.append(f"{format_level(check.level)} CI {allowed.format_interval(*check.ci)}")
    return ", ".join(parts)
