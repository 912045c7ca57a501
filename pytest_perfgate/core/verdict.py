"""Statistics + budgets -> verdict: PASS, FAIL, INCONCLUSIVE or INVALID, with messages.

Pure functions; no pytest import. The one place that formats a breach line, e.g.
``light: POST /predict p95 412 ms > budget 300 ms (+37 %, n=5 812, 95 % CI 398-426 ms)``.

How each budgeted metric is judged (``level`` is the statistics' confidence level):

- ``p50_ms`` / ``p95_ms`` / ``p99_ms``: the order-statistic interval of ``stats.quantile_ci``.
  PASS when the whole interval is at or below the limit, FAIL when it is wholly above,
  INCONCLUSIVE when the limit lies inside it. Each wrong call has probability
  ``<= (1 - level) / 2`` for independent samples.
- ``avg_ms``: the same rule on the normal-approximation interval of the mean.
- ``max_ms``: the observed maximum against the limit (no interval: the maximum is a fact).
- ``error_rate``: the same rule on the Clopper-Pearson interval of the failure share; a
  limit of 0 means "no failure", judged on the count.
- ``min_rps``: the observed throughput against the limit (a point estimate).

The scenario is INVALID when the run cannot be trusted (too few samples, a budgeted
endpoint without requests, reasons from the runner); else FAIL when a blocking check
failed; else INCONCLUSIVE when a blocking check is; else PASS. Whether an INCONCLUSIVE
scenario fails the test is the ``inconclusive`` policy of ``evaluate``; checks with
``severity == "warn"`` are reported and never fail the scenario.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pytest_perfgate.config import RUN_FIGURES, Budget
from pytest_perfgate.core.stats import (
    QUANTILES,
    TOTAL,
    EndpointStats,
    RunStats,
    mean_ci,
    proportion_ci,
    samples_needed,
)

__all__ = [
    "INCONCLUSIVE_POLICIES",
    "Check",
    "Outcome",
    "Verdict",
    "evaluate",
    "format_count",
    "format_ms",
    "metric_label",
]

#: what an INCONCLUSIVE scenario does to the test: fail it, pass it with a warning, pass
#: it, or ("auto") fail it only where the point estimate is over the budget
INCONCLUSIVE_POLICIES = ("fail", "warn", "pass", "auto")

_LABELS = {
    "p50_ms": "p50",
    "p95_ms": "p95",
    "p99_ms": "p99",
    "avg_ms": "mean",
    "max_ms": "max",
    "error_rate": "error rate",
    "min_rps": "",
    "gpu_mem_mb": "GPU memory",
    "gpu_util_min": "GPU utilisation",
    "hard_error_rate": "hard error rate",
    "recovery_s": "recovery after the spike",
    "rss_growth_mb": "service memory growth",
    "p50_regression": "p50 vs baseline",
    "p95_regression": "p95 vs baseline",
    "p99_regression": "p99 vs baseline",
    "avg_regression": "mean vs baseline",
    "error_rate_regression": "error rate vs baseline",
    "rps_regression": "throughput vs baseline",
}


def metric_label(metric: str) -> str:
    """How a Budget key reads in a sentence: ``p95_ms`` -> ``p95``, ``min_rps`` -> ``""``."""
    return _LABELS.get(metric, metric)


class Outcome(enum.Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"
    INVALID = "INVALID"


# --- number formatting ---------------------------------------------------------------


def _grouped(text: str) -> str:
    return text.replace(",", " ")


def _trim(text: str) -> str:
    return text[:-2] if text.endswith(".0") else text


def format_count(n: int) -> str:
    """``5812`` -> ``"5 812"``."""
    return _grouped(f"{n:,d}")


def format_ms(ms: float) -> str:
    """Milliseconds with sensible precision, no unit: ``412``, ``9.8``, ``0.42``, ``1 234``."""
    if math.isinf(ms):
        return "inf" if ms > 0 else "-inf"
    size = abs(ms)
    if size >= 99.5:
        return _grouped(f"{ms:,.0f}")
    if size >= 0.995 or size == 0:
        return _trim(f"{ms:.1f}")
    return f"{ms:.2g}"


def _format_rps(rps: float) -> str:
    return _trim(_grouped(f"{rps:,.1f}"))


def _format_percent(share: float, decimals: int = 2) -> str:
    return f"{100 * share:.{decimals}f}"


def format_value(metric: str, value: float) -> str:
    """A budget metric's value with its unit: ``412 ms``, ``1.00 %``, ``2 500 MB``, ``4 s``."""
    if metric in ("error_rate", "hard_error_rate"):
        return f"{_format_percent(value)} %"
    if metric == "min_rps":
        return f"{_format_rps(value)} req/s"
    if metric in ("gpu_mem_mb", "rss_growth_mb"):
        return f"{format_count(round(value))} MB"
    if metric == "recovery_s":
        return "never" if math.isinf(value) else f"{value:.0f} s"
    if metric == "gpu_util_min":
        return f"{value:.0f} %"
    return f"{format_ms(value)} ms"


def _format_level(level: float) -> str:
    return f"{100 * level:.10g} %"


# --- checks --------------------------------------------------------------------------


_AT_LEAST = ("min_rps", "gpu_util_min")  # budgets that are floors, not ceilings


@dataclass(frozen=True)
class Check:
    """One budgeted metric of one endpoint compared with its measurement."""

    scenario: str
    endpoint: str  # endpoint key, or stats.TOTAL
    metric: str  # a Budget key: "p95_ms", "error_rate", "min_rps", ...
    limit: float
    observed: float | None  # None when the endpoint got no request
    n: int
    outcome: Outcome
    severity: str = "block"
    ci: tuple[float, float] | None = None
    level: float = 0.95  # confidence level of ``ci``
    more_samples: int | None = None  # INCONCLUSIVE: about this many more samples would decide
    reason: str = ""  # INVALID: why

    @property
    def blocking(self) -> bool:
        return self.severity == "block"

    @property
    def over_budget(self) -> bool:
        """Whether the point estimate alone breaches the limit (``auto`` policy's rule)."""
        if self.observed is None:
            return False
        if self.metric in _AT_LEAST:
            return self.observed < self.limit
        return self.observed > self.limit

    def message(self) -> str:
        """The sentence a reviewer reads, e.g. the breach line in the module docstring."""
        label = metric_label(self.metric)
        what = f"{self.scenario}: {self.endpoint}" + (f" {label}" if label else "")
        if self.outcome is Outcome.INVALID or self.observed is None:
            text = f"{what} budget {self._value(self.limit)}: invalid, {self.reason or 'no data'}"
        elif self.outcome is Outcome.INCONCLUSIVE:
            text = (
                f"{what} {self._value(self.observed)} ~ budget {self._value(self.limit)} "
                f"({self._details()}): inconclusive, the budget lies inside the CI; "
                + self._more_text()
            )
        else:
            text = (
                f"{what} {self._value(self.observed)} {self._relation()} "
                f"budget {self._value(self.limit)} ({self._details()})"
            )
        return text if self.blocking else f"{text} [warn]"

    def _value(self, value: float) -> str:
        return format_value(self.metric, value)

    def _relation(self) -> str:
        if self.metric in _AT_LEAST:
            return "<" if self.outcome is Outcome.FAIL else ">="
        return ">" if self.outcome is Outcome.FAIL else "<="

    def _details(self) -> str:
        parts = []
        if self.metric != "error_rate" and self.observed is not None and self.limit > 0:
            parts.append(f"{round(100 * (self.observed / self.limit - 1)):+d} %")
        parts.append(f"n={format_count(self.n)}")
        if self.ci is not None:
            parts.append(f"{_format_level(self.level)} CI {self._interval(*self.ci)}")
        return ", ".join(parts)

    def _interval(self, low: float, high: float) -> str:
        if self.metric == "error_rate":
            decimals = 1 if high >= 0.01 else 2
            return f"{_format_percent(low, decimals)}-{_format_percent(high, decimals)} %"
        # response times are never negative: an unbounded lower side reads as 0
        return f"{format_ms(max(low, 0.0))}-{format_ms(high)} ms"

    def _more_text(self) -> str:
        if self.more_samples is None:
            return "the estimate sits on the budget, so no sample count would decide it"
        return f"about {format_count(self.more_samples)} more samples would decide it"


def _interval_outcome(ci: tuple[float, float], limit: float) -> Outcome:
    low, high = ci
    if high <= limit:
        return Outcome.PASS
    if low > limit:
        return Outcome.FAIL
    return Outcome.INCONCLUSIVE


_ABSENT = {
    "gpu_mem_mb": "no GPU telemetry: no NVIDIA GPU, and the service's /metrics has none",
    "gpu_util_min": "no GPU telemetry: no NVIDIA GPU, and the service's /metrics has none",
    "hard_error_rate": "no request was made",
    "recovery_s": "no recovery to measure: it needs a shape with stages before and after "
    "its peak, and requests before the peak",
    "rss_growth_mb": "the service's /metrics has no service_process_resident_memory_bytes",
}


def _run_figure_check(
    scenario: str, metric: str, limit: float, observed: float | None, n: int, severity: str
) -> Check:
    """A figure of the whole run against its limit; an absent figure makes it INVALID."""
    if observed is None:
        return Check(scenario, TOTAL, metric, limit, None, 0, Outcome.INVALID, severity,
                     reason=_ABSENT[metric])  # fmt: skip
    breach = observed < limit if metric in _AT_LEAST else observed > limit
    return Check(scenario, TOTAL, metric, limit, observed, n,
                 Outcome.FAIL if breach else Outcome.PASS, severity)  # fmt: skip


def _check(
    scenario: str, endpoint: str, metric: str, limit: float, row: EndpointStats | None,
    severity: str, figures: Mapping[str, float | None],
) -> Check:  # fmt: skip
    """Judge one budgeted metric of one row (see the module docstring for the rules)."""
    if metric in RUN_FIGURES:
        n = row.requests if row is not None else 0
        return _run_figure_check(scenario, metric, limit, figures.get(metric), n, severity)
    if row is None or row.requests == 0:
        reason = "no request was made" if endpoint == TOTAL else "the endpoint got no request"
        return Check(scenario, endpoint, metric, limit, None, 0, Outcome.INVALID, severity,
                     reason=reason)  # fmt: skip
    n, level = row.requests, row.ci_level
    ci: tuple[float, float] | None = None
    q: float | None = None
    if metric in ("p50_ms", "p95_ms", "p99_ms"):
        key = metric[:3]
        observed, ci, q = getattr(row, key), row.ci[key], QUANTILES[key]
        outcome = _interval_outcome(ci, limit)
    elif metric == "avg_ms":
        observed = row.mean
        n_eff = max(1, math.floor(n / max(row.ess_factor, 1.0)))
        ci = mean_ci(row.mean, row.std, n_eff, level)
        outcome = _interval_outcome(ci, limit)
    elif metric == "max_ms":
        observed = row.max
        outcome = Outcome.PASS if observed <= limit else Outcome.FAIL
    elif metric == "error_rate":
        observed = row.error_rate
        ci = proportion_ci(row.failures, n, level)
        if limit <= 0:  # "no failure at all" is judged on the count, not on an interval
            outcome = Outcome.PASS if row.failures == 0 else Outcome.FAIL
        else:
            outcome = _interval_outcome(ci, limit)
    elif metric == "min_rps":
        observed = row.rps
        outcome = Outcome.PASS if observed >= limit else Outcome.FAIL
    else:
        raise ValueError(f"unknown budget metric {metric!r}")
    more = None
    if outcome is Outcome.INCONCLUSIVE and ci is not None:
        total = samples_needed(n, observed, ci, limit, q=q, level=level, ess_factor=row.ess_factor)
        more = None if total is None else total - n
    return Check(scenario, endpoint, metric, limit, observed, n, outcome, severity, ci, level,
                 more)  # fmt: skip


# --- verdicts ------------------------------------------------------------------------

_INCONCLUSIVE_PREFIX = "inconclusive: "


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
            if self.inconclusive == "auto":
                return any(c.over_budget for c in self.undecided)
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


def _inconclusive_note(check: Check, policy: str) -> str:
    label = metric_label(check.metric)
    more = (
        "no sample count would decide it while the estimate sits on the budget"
        if check.more_samples is None
        else f"about {format_count(check.more_samples)} more samples would decide it"
    )
    if policy == "auto":
        side = ">" if check.over_budget else "<="
        effect = "fails" if check.over_budget else "passes"
        treated = f"policy 'auto' {effect} it (point estimate {side} budget)"
    else:
        treated = {
            "fail": "policy 'fail' fails it",
            "warn": "policy 'warn' passes it with a warning",
            "pass": "policy 'pass' passes it",
        }[policy]
    where = f"{check.endpoint} {label}".rstrip()
    return f"{_INCONCLUSIVE_PREFIX}{where}: the budget lies inside the CI; {more}; {treated}"


def evaluate(
    scenario: str,
    budget: Budget,
    endpoint_budgets: Mapping[str, Budget],
    stats: RunStats,
    *,
    min_samples: int = 1,
    invalid_reasons: Sequence[str] = (),
    inconclusive: str = "auto",
    extra_checks: Sequence[Check] = (),
    figures: Mapping[str, float | None] | None = None,
) -> Verdict:
    """Compare every budget with its measurement and decide the scenario's outcome.

    ``inconclusive`` is what an INCONCLUSIVE scenario does to the test: ``"fail"``,
    ``"warn"`` (pass, and say so), ``"pass"``, or ``"auto"`` (fail only where the point
    estimate breaches the budget). Each undecided check also becomes a note in
    ``reasons`` saying about how many more samples would decide it. ``figures`` holds the
    run-level figures by budget key (``config.RUN_FIGURES``: GPU, hard errors, recovery,
    memory growth); ``None`` is absent, so a budget on it is INVALID.
    """
    if inconclusive not in INCONCLUSIVE_POLICIES:
        raise ValueError(
            f"inconclusive: expected one of {', '.join(INCONCLUSIVE_POLICIES)}, "
            f"got {inconclusive!r}"
        )
    budgets: list[tuple[str, Budget]] = [(TOTAL, budget), *endpoint_budgets.items()]
    run_figures = figures or {}
    own = tuple(
        _check(scenario, endpoint, metric, limit, _row(stats, endpoint), b.severity, run_figures)
        for endpoint, b in budgets
        for metric, limit in b.limits().items()
    )
    checks = own + tuple(extra_checks)  # baseline.compare's regression checks
    reasons: list[str] = []
    if stats.total.requests < min_samples:
        reasons.append(
            f"only {format_count(stats.total.requests)} samples, "
            f"fewer than min_samples {format_count(min_samples)}"
        )
    reasons += invalid_reasons
    reasons += dict.fromkeys(  # one line per reason, however many checks share it
        c.reason for c in extra_checks if c.outcome is Outcome.INVALID and c.blocking
    )
    reasons += dict.fromkeys(
        c.reason for c in own if c.metric in RUN_FIGURES and c.outcome is Outcome.INVALID
        and c.blocking
    )  # fmt: skip
    missing = {
        c.endpoint for c in own
        if c.outcome is Outcome.INVALID and c.blocking and c.metric not in RUN_FIGURES
    }  # fmt: skip
    if reasons:  # "only 0 samples" already says that the total got nothing
        missing.discard(TOTAL)
    reasons += [f"{endpoint} has a budget but got no request" for endpoint in sorted(missing)]
    if reasons:
        outcome = Outcome.INVALID
    elif any(c.outcome is Outcome.FAIL and c.blocking for c in checks):
        outcome = Outcome.FAIL
    elif any(c.outcome is Outcome.INCONCLUSIVE and c.blocking for c in checks):
        outcome = Outcome.INCONCLUSIVE
    else:
        outcome = Outcome.PASS
    reasons += [
        _inconclusive_note(c, inconclusive)
        for c in checks
        if c.outcome is Outcome.INCONCLUSIVE and c.blocking
    ]
    return Verdict(scenario, outcome, checks, tuple(reasons), inconclusive)


def _row(stats: RunStats, endpoint: str) -> EndpointStats | None:
    return stats.total if endpoint == TOTAL else stats.endpoints.get(endpoint)
