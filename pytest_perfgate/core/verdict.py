"""Statistics + budgets -> verdict: PASS, FAIL, INCONCLUSIVE or INVALID, with messages.

Pure functions; no pytest import. The one place that formats a breach line, e.g.
``light: POST /predict p95 412 ms > budget 300 ms (+37 %, n=5 812, 95 % CI 398-426 ms)``.

Pure: no pytest, no I/O. Each metric is judged by its registry entry (``Metric.judge``,
``direction``, ``q``, ``stat``) and written with its label, unit and relation from there;
``interval_outcome`` and ``more_samples_text`` are shared with ``regression``.

How each budgeted metric is judged (``level`` is the statistics' confidence level):

- ``p50_ms`` / ``p95_ms`` / ``p99_ms``: the order-statistic interval of ``stats.quantile_ci``
  (``stats.quantile_cs`` after a watched run: valid at its stopping time).
  PASS when the whole interval is at or below the limit, FAIL when it is wholly above,
  INCONCLUSIVE when the limit lies inside it. Each wrong call has probability
  ``<= (1 - level) / 2`` for independent samples.
- ``avg_ms``: the same rule on the normal-approximation interval of the mean on
  ``n / f`` requests (``f`` the row's largest inflation), or, after a run a stop rule
  watched, on an asymptotic confidence sequence (``mean_cs``), valid at the stopping time.
- ``max_ms``: the observed maximum against the limit (no interval: the maximum is a fact).
- ``error_rate``: the same rule on the Clopper-Pearson interval of the failure share,
  taken on ``n / f`` requests where failures cluster in time (``EndpointStats.factor``);
  a limit of 0 means "no failure", judged on the count.
- drift: a check that would PASS becomes INCONCLUSIVE where the run's two halves
  disagree beyond chance (``EndpointStats.drift``) and one half breaches the limit, or
  where its dependence in time did not settle (``EndpointStats.unsettled``).
- ``min_rps``: the observed throughput against the limit (a point estimate).
- streamed responses: ``ttft_*``/``itl_*``/``tpot_*`` as the percentiles, over their own
  series (``n`` is their count); ``goodput`` as the error rate, on the good requests;
  ``output_tokens_per_s`` as ``min_rps``. A row without streams makes them INVALID.
- run figures (``scope == "run"``: GPU, hard errors, recovery, memory growth): the
  figure against the limit; an absent figure makes the budget INVALID (``Metric.absent``).

The scenario is INVALID when the run cannot be trusted (too few samples, a budgeted
endpoint without requests, reasons from the runner); else FAIL when a blocking check
failed; else INCONCLUSIVE when a blocking check is; else PASS. Whether an INCONCLUSIVE
scenario fails the test is the ``inconclusive`` policy of ``evaluate``; checks with
``severity == "warn"`` are reported and never fail the scenario.

Over 450 lines: each check's rule and its sentence (the breach line) stay together, with
the one ``evaluate`` that orders them into a verdict.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from pytest_perfgate.core.metrics import Judge, Metric, Regression, metric, regression
from pytest_perfgate.core.model import Budget
from pytest_perfgate.core.numbers import format_count, format_level, format_signed_percent
from pytest_perfgate.core.stats import (
    TOTAL,
    EndpointStats,
    RunStats,
    mean_ci,
    proportion_ci,
    proportion_cs,
)
from pytest_perfgate.core.stats import samples_needed as _samples_needed

__all__ = [
    "INCONCLUSIVE_POLICIES",
    "Check",
    "Outcome",
    "Verdict",
    "entry",
    "evaluate",
    "format_value",
    "interval_outcome",
    "mean_cs",
    "metric_label",
    "more_samples_text",
]

#: what an INCONCLUSIVE scenario does to the test: fail it (the default: a required check
#: goes green only on evidence), pass it with a warning, or pass it. There is no policy
#: that falls back to the point estimate: near the budget it is a coin toss.
INCONCLUSIVE_POLICIES = ("fail", "warn", "pass")


class Outcome(enum.Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"
    INVALID = "INVALID"


# --- the registry, as checks read it ---------------------------------------------------


def entry(key: str) -> Metric | Regression | None:
    """The registry entry of a check's ``metric`` key: a budget metric, an allowance, or none."""
    try:
        return metric(key)
    except KeyError:
        pass
    try:
        return regression(key)
    except KeyError:
        return None


def metric_label(key: str) -> str:
    """How a check's key reads in a sentence: ``p95_ms`` -> ``p95``, ``min_rps`` -> ``""``,
    ``p95_regression`` -> ``p95 vs baseline``."""
    found = entry(key)
    if isinstance(found, Regression):
        return f"{found.label} vs baseline"
    return key if found is None else found.label


def format_value(key: str, value: float) -> str:
    """A budget metric's value with its unit (the registry's): ``412 ms``, ``1.00 %``."""
    return metric(key).format(value)


def interval_outcome(
    ci: tuple[float, float], limit: float, judged: Metric | Regression | None = None
) -> Outcome:
    """PASS when the whole interval is on the good side of ``limit``, FAIL when it is
    wholly on the bad side, INCONCLUSIVE when ``limit`` lies inside it.

    A ceiling (every regression allowance too) passes at ``high <= limit``; a floor
    (``judged.floor``) passes at ``low >= limit``.
    """
    low, high = ci
    if isinstance(judged, Metric) and judged.floor:
        low, high, limit = -high, -low, -limit
    if high <= limit:
        return Outcome.PASS
    if low > limit:
        return Outcome.FAIL
    return Outcome.INCONCLUSIVE


def more_samples_text(more: int | None, sits_on: str = "the estimate sits on the budget") -> str:
    """``about 2 063 more samples would decide it``; with no count, why none would."""
    if more is None:
        return f"{sits_on}, so no sample count would decide it"
    return f"about {format_count(more)} more samples would decide it"


# --- checks --------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One budgeted metric of one endpoint compared with its measurement."""

    scenario: str
    endpoint: str  # endpoint key, or stats.TOTAL
    metric: str  # a budget key of the registry: "p95_ms", "error_rate", "min_rps", ...
    limit: float
    observed: float | None  # None when the endpoint got no request
    n: int
    outcome: Outcome
    severity: str = "block"
    ci: tuple[float, float] | None = None
    level: float = 0.95  # confidence level of ``ci``
    more_samples: int | None = None  # INCONCLUSIVE: about this many more samples would decide
    reason: str = ""  # INVALID: why
    #: the figure in the run's first and second half, where they disagree beyond chance
    drift: tuple[float, float] | None = None
    #: INCONCLUSIVE: the run's request rate, to turn ``more_samples`` into seconds
    rps: float = 0.0
    #: INCONCLUSIVE: the dependence in time is longer than the run could measure
    unsettled: bool = False

    @property
    def blocking(self) -> bool:
        return self.severity == "block"

    @property
    def over_budget(self) -> bool:
        """Whether the point estimate alone breaches the limit (a hint, never a verdict)."""
        if self.observed is None:
            return False
        found = entry(self.metric)
        if isinstance(found, Metric):
            return found.breached(self.observed, self.limit)
        return self.observed > self.limit  # an allowance's change is "how much worse"

    def drift_text(self) -> str:
        """``p95 180 ms in the first half of the run, 320 ms in the second``; "" without drift."""
        if self.drift is None:
            return ""
        m = metric(self.metric)
        first, second = (m.format(v) for v in self.drift)
        label = f"{m.label} " if m.label else ""
        return (
            f"{label}{first} in the first half of the run, {second} in the second: the halves "
            "disagree beyond chance (a drift or a regime switch)"
        )

    def message(self) -> str:
        """The sentence a reviewer reads, e.g. the breach line in the module docstring."""
        label = metric_label(self.metric)
        what = f"{self.scenario}: {self.endpoint}" + (f" {label}" if label else "")
        m = metric(self.metric)
        budget = f"budget {m.format(self.limit)}"
        if self.outcome is Outcome.INVALID or self.observed is None:
            text = f"{what} {budget}: invalid, {self.reason or 'no data'}"
        elif self.outcome is Outcome.INCONCLUSIVE and self.drift is not None:
            text = f"{what} {m.format(self.observed)} ~ {budget}: inconclusive, {self.drift_text()}"
        elif self.outcome is Outcome.INCONCLUSIVE and self.unsettled:
            text = (
                f"{what} {m.format(self.observed)} {m.relation(failed=False)} {budget} "
                f"({self._details(m)}): inconclusive, {_UNSETTLED}"
            )
        elif self.outcome is Outcome.INCONCLUSIVE:
            text = (
                f"{what} {m.format(self.observed)} ~ {budget} ({self._details(m)}): "
                f"inconclusive, the budget lies inside the CI; "
                + more_samples_text(self.more_samples)
            )
        else:
            relation = m.relation(failed=self.outcome is Outcome.FAIL)
            text = f"{what} {m.format(self.observed)} {relation} {budget} ({self._details(m)})"
        return text if self.blocking else f"{text} [warn]"

    def _details(self, m: Metric) -> str:
        parts = []
        if m.judge != "proportion" and self.observed is not None and self.limit > 0:
            parts.append(f"{format_signed_percent(self.observed / self.limit - 1)} %")
        parts.append(f"n={format_count(self.n)}")
        if self.ci is not None:
            parts.append(f"{format_level(self.level)} CI {m.format_interval(*self.ci)}")
        return ", ".join(parts)


def _run_figure_check(
    scenario: str, m: Metric, limit: float, observed: float | None, n: int, severity: str
) -> Check:
    """A figure of the whole run against its limit; an absent figure makes it INVALID."""
    if observed is None:
        return Check(scenario, TOTAL, m.key, limit, None, 0, Outcome.INVALID, severity,
                     reason=m.absent)  # fmt: skip
    outcome = Outcome.FAIL if m.breached(observed, limit) else Outcome.PASS
    return Check(scenario, TOTAL, m.key, limit, observed, n, outcome, severity)


@dataclass(frozen=True)
class _Judged:
    """What one judge found in a row: the figure, its interval (if any) and the outcome."""

    observed: float
    outcome: Outcome
    ci: tuple[float, float] | None = None


def _stat(m: Metric, row: EndpointStats) -> float:
    value = row.figure(m.stat or "")
    return math.nan if value is None else value  # absent: ``_check`` made it INVALID


def _by_quantile(m: Metric, limit: float, row: EndpointStats) -> _Judged:
    ci = row.ci[m.stat or ""]  # the quantile over its own series (response times, TTFT...)
    return _Judged(_stat(m, row), interval_outcome(ci, limit, m), ci)


#: the effective sample size at which the mean's confidence sequence is tightest; fixed
#: before any data is seen, as the guarantee needs (any value keeps it)
MEAN_CS_AT = 1000


def mean_cs(mean: float, std: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """An asymptotic confidence sequence for the mean, valid at a data-dependent stopping time.

    Waudby-Smith, Arbour, Sinha, Kennedy and Ramdas, "Time-uniform central limit theory
    and asymptotic confidence sequences" (Annals of Statistics, 2024), eq. (2.6):
    ``mean +- std * sqrt(2 (n r + 1) / (n^2 r) * log(sqrt(n r + 1) / alpha))`` with ``r``
    tuned to ``MEAN_CS_AT``. Asymptotic like ``mean_ci`` (a central limit argument,
    approximate for heavy tails and small ``n``), and unbounded below 2 samples.
    """
    if n < 2:
        return -math.inf, math.inf
    alpha = 1.0 - level
    r = (-2.0 * math.log(alpha) + math.log(1.0 - 2.0 * math.log(alpha))) / MEAN_CS_AT
    half = std * math.sqrt(
        2.0 * (n * r + 1.0) / (n * n * r) * math.log(math.sqrt(n * r + 1.0) / alpha)
    )
    return mean - half, mean + half


def _by_mean(m: Metric, limit: float, row: EndpointStats) -> _Judged:
    # dependence: n requests weigh as n / f, f the largest of the row's block factors
    n_eff = max(1, math.floor(row.requests / max(row.ess_factor, 1.0)))
    interval = mean_cs if row.anytime else mean_ci
    ci = interval(row.mean, row.std, n_eff, row.ci_level)
    return _Judged(_stat(m, row), interval_outcome(ci, limit, m), ci)


def _by_proportion(m: Metric, limit: float, row: EndpointStats) -> _Judged:
    # clustered failures: the blocks' variance inflation f turns k of n into k/f of n/f
    f = row.factor(_key(m))
    k, n = row.proportion(_key(m))  # failed requests (error rate), good ones (goodput)
    n_eff = max(1, math.floor(n / f))
    k_eff = min(n_eff, round(k * n_eff / n))
    ci = (
        proportion_cs(k, n, row.ci_level, f)
        if row.anytime
        else proportion_ci(k_eff, n_eff, row.ci_level)
    )
    # "no failure at all" ("every request good") is judged on the count, not on an interval
    if limit <= 0 and not m.floor:
        return _Judged(_stat(m, row), Outcome.FAIL if k else Outcome.PASS, ci)
    if limit >= 1 and m.floor:
        return _Judged(_stat(m, row), Outcome.FAIL if k < n else Outcome.PASS, ci)
    return _Judged(_stat(m, row), interval_outcome(ci, limit, m), ci)


def _as_fact(m: Metric, limit: float, row: EndpointStats) -> _Judged:
    observed = _stat(m, row)
    return _Judged(observed, Outcome.FAIL if m.breached(observed, limit) else Outcome.PASS)


_JUDGES: Mapping[Judge, Callable[[Metric, float, EndpointStats], _Judged]] = {
    "quantile": _by_quantile,
    "mean": _by_mean,
    "proportion": _by_proportion,
    "fact": _as_fact,
}


def _check(
    scenario: str, endpoint: str, key: str, limit: float, row: EndpointStats | None,
    severity: str, figures: Mapping[str, float | None],
) -> Check:  # fmt: skip
    """Judge one budgeted metric of one row by its registry entry (module docstring)."""
    try:
        m = metric(key)
    except KeyError:
        raise ValueError(f"unknown budget metric {key!r}") from None
    if m.scope == "run":
        n = row.requests if row is not None else 0
        return _run_figure_check(scenario, m, limit, figures.get(m.key), n, severity)
    if row is None or row.requests == 0:
        reason = "no request was made" if endpoint == TOTAL else "the endpoint got no request"
        return Check(scenario, endpoint, m.key, limit, None, 0, Outcome.INVALID, severity,
                     reason=reason)  # fmt: skip
    if row.figure(_key(m)) is None or not row.count(_key(m)):  # a stream figure of no stream
        return Check(scenario, endpoint, m.key, limit, None, row.requests, Outcome.INVALID,
                     severity, reason=m.absent)  # fmt: skip
    judged = _JUDGES[m.judge](m, limit, row)
    more = _more_samples(m, limit, row, judged)
    drift = _drift(m, limit, row)
    unsettled = _key(m) in row.unsettled and judged.outcome is Outcome.PASS and drift is None
    outcome = judged.outcome
    if (drift is not None or unsettled) and outcome is Outcome.PASS:
        outcome = Outcome.INCONCLUSIVE  # one half over the budget, or f too low to trust
    n = row.count(_key(m))  # requests, or the values of a stream series (token gaps...)
    return Check(scenario, endpoint, m.key, limit, judged.observed, n,
                 outcome, severity, judged.ci, row.ci_level, more, drift=drift,
                 rps=row.rps * n / row.requests, unsettled=unsettled)  # fmt: skip


def _key(m: Metric) -> str:
    """The figure of ``EndpointStats.ess`` / ``drift`` / ``unsettled`` a metric reads."""
    return m.stat or ""


def _drift(m: Metric, limit: float, row: EndpointStats) -> tuple[float, float] | None:
    """The halves' figures of ``m`` where they disagree beyond chance and one breaches ``limit``."""
    halves = row.drift.get(_key(m))
    if halves is None or not any(m.breached(v, limit) for v in halves):
        return None
    return halves


def _more_samples(m: Metric, limit: float, row: EndpointStats, judged: _Judged) -> int | None:
    """About how many more samples would decide an INCONCLUSIVE check (``None`` otherwise)."""
    if judged.outcome is not Outcome.INCONCLUSIVE or judged.ci is None:
        return None
    n = row.count(_key(m))  # requests, or the values of a stream series
    total = _samples_needed(n, judged.observed, judged.ci, limit, q=m.q,
                            level=row.ci_level, ess_factor=row.factor(_key(m)))  # fmt: skip
    return None if total is None else total - n


# --- verdicts ------------------------------------------------------------------------

_INCONCLUSIVE_PREFIX = "inconclusive: "
_UNSETTLED = (
    "the requests depend on each other over longer than the run can measure (the "
    "variance still grows with the block length), so the interval is too narrow to "
    "trust; run longer"
)


@dataclass(frozen=True)
class Verdict:
    scenario: str
    outcome: Outcome
    checks: tuple[Check, ...]
    reasons: tuple[str, ...] = ()  # why INVALID (or other notes), one sentence each
    #: what an INCONCLUSIVE outcome does to the test, one of ``INCONCLUSIVE_POLICIES``
    inconclusive: str = "fail"

    @property
    def breaches(self) -> tuple[Check, ...]:
        """Blocking checks that failed."""
        return tuple(c for c in self.checks if c.outcome is Outcome.FAIL and c.severity == "block")

    @property
    def undecided(self) -> tuple[Check, ...]:
        """Blocking checks that are INCONCLUSIVE."""
        return tuple(c for c in self.checks if c.outcome is Outcome.INCONCLUSIVE and c.blocking)

    @property
    def warnings(self) -> tuple[Check, ...]:
        """Checks with ``severity == "warn"`` that did not pass: reported, never failing."""
        return tuple(c for c in self.checks if not c.blocking and c.outcome is not Outcome.PASS)

    @property
    def failed(self) -> bool:
        """Whether the test should fail; INCONCLUSIVE follows the ``inconclusive`` policy."""
        if self.outcome is Outcome.INCONCLUSIVE:
            return self.inconclusive == "fail"
        return self.outcome is not Outcome.PASS

    @property
    def passed(self) -> bool:
        """Whether the test should pass (INCONCLUSIVE handling decided in ``evaluate``)."""
        return not self.failed

    def failure_text(self) -> str:
        """All lines a failing test shows: breaches, then INVALID reasons.

        Then the INCONCLUSIVE checks and notes, then warn-severity checks that did not pass.
        """
        blocking = [c for c in self.checks if c.blocking]
        notes = [r for r in self.reasons if r.startswith(_INCONCLUSIVE_PREFIX)]
        invalid = [r for r in self.reasons if not r.startswith(_INCONCLUSIVE_PREFIX)]
        lines = [c.message() for c in blocking if c.outcome is Outcome.FAIL]
        lines += [c.message() for c in blocking if c.outcome is Outcome.INVALID]
        lines += [f"{self.scenario}: invalid run: {r}" for r in invalid]
        lines += [c.message() for c in self.undecided]
        lines += [f"{self.scenario}: {r}" for r in notes]
        lines += [c.message() for c in self.warnings]
        return "\n".join(lines)


_TREATED = {
    "fail": "policy 'fail' fails it",
    "warn": "policy 'warn' passes it with a warning",
    "pass": "policy 'pass' passes it",
}


def _inconclusive_note(check: Check, policy: str) -> str:
    label = metric_label(check.metric)
    where = f"{check.endpoint} {label}".rstrip()
    if check.drift is not None:
        return f"{_INCONCLUSIVE_PREFIX}{where}: {check.drift_text()}; {_TREATED[policy]}"
    if check.unsettled:
        return f"{_INCONCLUSIVE_PREFIX}{where}: {_UNSETTLED}; {_TREATED[policy]}"
    more = more_samples_text(check.more_samples)
    if check.more_samples is not None and check.rps > 0:
        seconds = format_count(math.ceil(check.more_samples / check.rps))
        more = more.replace(" would decide", f" (about {seconds} s more at this rate) would decide")
    return (
        f"{_INCONCLUSIVE_PREFIX}{where}: the budget lies inside the CI; {more}; {_TREATED[policy]}"
    )


def evaluate(
    scenario: str,
    budget: Budget,
    endpoint_budgets: Mapping[str, Budget],
    stats: RunStats,
    *,
    min_samples: int = 1,
    invalid_reasons: Sequence[str] = (),
    inconclusive: str = "fail",
    extra_checks: Sequence[Check] = (),
    figures: Mapping[str, float | None] | None = None,
) -> Verdict:
    """Compare every budget with its measurement and decide the scenario's outcome.

    ``inconclusive`` is what an INCONCLUSIVE scenario does to the test: ``"fail"`` (the
    default), ``"warn"`` (pass, and say so) or ``"pass"``. Each undecided check also
    becomes a note in ``reasons`` saying about how many more requests (and seconds at the
    run's rate) would decide it, or that the run's halves disagree. ``figures`` holds the
    run-level figures by budget key (the registry's ``scope == "run"`` metrics: GPU, hard errors,
    recovery, memory growth); ``None`` is absent, so a budget on it is INVALID.
    """
    if inconclusive not in INCONCLUSIVE_POLICIES:
        raise ValueError(
            f"inconclusive: expected one of {', '.join(INCONCLUSIVE_POLICIES)}, "
            f"got {inconclusive!r}"
        )
    budgets: list[tuple[str, Budget]] = [(TOTAL, budget), *endpoint_budgets.items()]
    run_figures = figures or {}
    own = tuple(
        _check(scenario, endpoint, key, limit, _row(stats, endpoint), b.severity, run_figures)
        for endpoint, b in budgets
        for key, limit in b.limits().items()
    )
    checks = own + tuple(extra_checks)  # regression.compare's checks
    reasons = _invalid_reasons(stats, min_samples, invalid_reasons, own, extra_checks)
    outcome = _outcome(checks, invalid=bool(reasons))
    reasons += [
        _inconclusive_note(c, inconclusive)
        for c in checks
        if c.outcome is Outcome.INCONCLUSIVE and c.blocking
    ]
    return Verdict(scenario, outcome, checks, tuple(reasons), inconclusive)


def _is_run_figure(check: Check) -> bool:
    """A run figure's check, or one whose row had no such figure (its reason: ``absent``)."""
    found = entry(check.metric)
    if not isinstance(found, Metric):
        return False
    return found.scope == "run" or (found.streamed and check.reason == found.absent)


def _invalid_reasons(
    stats: RunStats, min_samples: int, given: Sequence[str], own: Sequence[Check],
    extra: Sequence[Check],
) -> list[str]:  # fmt: skip
    """Why the run cannot be trusted, one line each; empty when it can."""
    reasons: list[str] = []
    if stats.total.requests < min_samples:
        reasons.append(
            f"only {format_count(stats.total.requests)} samples, "
            f"fewer than min_samples {format_count(min_samples)}"
        )
    reasons += given
    invalid = [c for c in own if c.outcome is Outcome.INVALID and c.blocking]
    # one line per reason, however many checks share it
    reasons += dict.fromkeys(c.reason for c in extra if c.outcome is Outcome.INVALID and c.blocking)
    reasons += dict.fromkeys(c.reason for c in invalid if _is_run_figure(c))
    missing = {c.endpoint for c in invalid if not _is_run_figure(c)}
    if reasons:  # "only 0 samples" already says that the total got nothing
        missing.discard(TOTAL)
    return reasons + [f"{endpoint} has a budget but got no request" for endpoint in sorted(missing)]


def _outcome(checks: Sequence[Check], *, invalid: bool) -> Outcome:
    blocking = [c.outcome for c in checks if c.blocking]
    if invalid:
        return Outcome.INVALID
    if Outcome.FAIL in blocking:
        return Outcome.FAIL
    if Outcome.INCONCLUSIVE in blocking:
        return Outcome.INCONCLUSIVE
    return Outcome.PASS


def _row(stats: RunStats, endpoint: str) -> EndpointStats | None:
    return stats.total if endpoint == TOTAL else stats.endpoints.get(endpoint)
