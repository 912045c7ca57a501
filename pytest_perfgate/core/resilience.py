"""Run-level figures for graceful degradation: hard errors, recovery time, memory growth.

Pure functions over the samples, the load shape and the service's ``/metrics`` before and
after; no pytest, no locust. They feed the budgets ``hard_error_rate``, ``recovery_s``
and ``rss_growth_mb`` (their entries in ``core.metrics``). ``None`` means the figure cannot be
measured in this run (no shape, no ``/metrics``); a budget on it is then INVALID.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pytest_perfgate.core.model import LoadShape
from pytest_perfgate.core.service_metrics import DEFAULT_METRICS, Gauge, gauge_value
from pytest_perfgate.core.stats import Sample, percentile

__all__ = ["SHED_STATUSES", "hard_error_rate", "recovery_seconds", "rss_growth_mb"]

#: answers that shed load on purpose: failures, but graceful ones
SHED_STATUSES = frozenset({429, 503})
_WINDOW_S = 2.0


def hard_error_rate(samples: Sequence[Sample]) -> float | None:
    """Share of requests that failed other than by a 429/503 (5xx, 504, other 4xx, no answer)."""
    if not samples:
        return None
    hard = sum(1 for s in samples if not s.ok and s.status not in SHED_STATUSES)
    return hard / len(samples)


def _p95(samples: Sequence[Sample]) -> float:
    return percentile(sorted(s.ms for s in samples), 0.95)


def recovery_seconds(
    samples: Sequence[Sample], shape: LoadShape | None, warmup_s: float, *, min_window: int = 20
) -> float | None:
    """Seconds from the end of the peak stage until the P95 is back near its level before it.

    "Back" means: the P95 of every later 2 s window (with at least ``min_window`` requests)
    is at most 1.2 x the P95 of the first stage (after warm-up) + 10 ms; the 10 ms keep a
    P95 of a few ms from failing on noise. ``None`` without a shape with a stage before the
    peak, or without enough requests before it; ``inf`` when the run ended unrecovered.
    """
    if shape is None or len(shape.stages) < 3:
        return None
    peak = max(range(len(shape.stages)), key=lambda i: shape.stages[i][1])
    if peak == 0 or peak == len(shape.stages) - 1:
        return None
    first_end, peak_end = shape.stages[0][0], shape.stages[peak][0]
    before = [s for s in samples if warmup_s <= s.t < first_end and s.ok]
    if len(before) < min_window:
        return None
    limit = 1.2 * _p95(before) + 10.0
    after = [s for s in samples if s.t >= peak_end]
    windows: list[tuple[float, bool]] = []  # (start relative to the peak's end, recovered)
    start = peak_end
    while True:
        inside = [s for s in after if start <= s.t < start + _WINDOW_S]
        if len(inside) < min_window:
            break
        windows.append((start - peak_end, _p95(inside) <= limit))
        start += _WINDOW_S
    recovered_from = None
    for offset, ok in reversed(windows):
        if not ok:
            break
        recovered_from = offset
    return float("inf") if recovered_from is None else recovered_from


def rss_growth_mb(
    before: Mapping[str, float] | None,
    after: Mapping[str, float] | None,
    rss: Sequence[Gauge] = DEFAULT_METRICS.rss,
) -> float | None:
    """Growth of the service's resident memory over the run, from its ``/metrics``.

    ``rss`` are the metrics to try (``service.metrics.rss``): the first one that both
    scrapes hold is read, so the two figures always come from the same metric.
    """
    for gauge in rss:
        start, end = gauge_value(before, (gauge,)), gauge_value(after, (gauge,))
        if start is not None and end is not None:
            return (end - start) / 2**20
    return None
