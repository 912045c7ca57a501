"""How a budget check and a run's figures read in a table: one wording for the terminal,
Markdown and HTML tables.

Pure formatting: every label, unit, direction and number comes from the registry
(``core.metrics``) and ``core.numbers``; this module only picks the entry of a check.
"""

from __future__ import annotations

from collections.abc import Iterator

from pytest_perfgate.core.metrics import Metric, Regression, lookup, metric
from pytest_perfgate.core.numbers import format_level
from pytest_perfgate.core.stats import EndpointStats, RunStats
from pytest_perfgate.core.verdict import Check

__all__ = [
    "ERRORS",
    "MEAN",
    "P50",
    "P95",
    "P99",
    "RPS",
    "budget_cell",
    "ci_heading",
    "clock",
    "figure",
    "interval_cell",
    "metric_cell",
    "observed_cell",
    "rows",
    "unitless_interval",
]

P50, P95, P99 = metric("p50_ms"), metric("p95_ms"), metric("p99_ms")
MEAN, ERRORS, RPS = metric("avg_ms"), metric("error_rate"), metric("min_rps")


def figure(key: str) -> Metric | Regression:
    """The registry entry of a check's metric: a budget metric or a regression allowance."""
    return lookup(key, f"budget check {key!r}")


def metric_cell(check: Check) -> str:
    """``p95``, ``errors``, ``p95 vs baseline``."""
    return figure(check.metric).column


def budget_cell(check: Check) -> str:
    """``p95 < 100 ms``, ``req/s >= 10 req/s``, ``p95 vs baseline < +10 %``."""
    return figure(check.metric).budget_text(check.limit)


def observed_cell(check: Check) -> str:
    """``48.2 ms``, ``0.17 %``, ``+31 %``; ``-`` when nothing was observed."""
    return figure(check.metric).format(check.observed)


def interval_cell(check: Check) -> str:
    """``238-265 ms``, ``0.04-0.90 %``; "" for a check without interval."""
    return "" if check.ci is None else figure(check.metric).format_interval(*check.ci)


def unitless_interval(m: Metric, ci: tuple[float, float] | None) -> str:
    """``45.8-51.1``: an interval in a column headed by its unit; "" when unknown."""
    if ci is None:
        return ""
    return m.format_interval(*ci).removesuffix(f" {m.unit.symbol}")


def ci_heading(level: float) -> str:
    """``95 % CI``: the heading of an interval column at the run's confidence level."""
    return f"{format_level(level)} CI"


def clock(seconds: float) -> str:
    """``1:05``: minutes and seconds of a run."""
    minutes, secs = divmod(max(0, round(seconds)), 60)
    return f"{minutes}:{secs:02d}"


def rows(stats: RunStats) -> Iterator[EndpointStats]:
    """Each endpoint, then the total: the order of every endpoint table."""
    yield from stats.endpoints.values()
    yield stats.total
