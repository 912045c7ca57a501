"""pytest-benchmark timings -> the same statistics and verdict as a load test.

Pure: no pytest, no pytest-benchmark import. ``judge`` takes the raw per-iteration
timings that pytest-benchmark keeps (``benchmark.stats.stats.data``, in seconds) and a
``perf_budget``; percentiles come from those timings, not from its summary.
"""

from __future__ import annotations

from collections.abc import Sequence

from pytest_perfgate.core.model import Budget
from pytest_perfgate.core.stats import Sample, check_ms, summarize
from pytest_perfgate.core.verdict import Verdict, evaluate

__all__ = ["judge"]


def judge(
    name: str,
    timings_s: Sequence[float],
    budget: Budget,
    *,
    level: float = 0.95,
    inconclusive: str = "fail",
) -> Verdict:
    """The verdict of ``budget`` on the benchmark ``name`` whose rounds took ``timings_s``.

    A NaN, infinite or negative timing raises ``SampleError`` naming the round.
    """
    samples = [
        Sample(t=float(i), name=name, ms=check_ms(seconds * 1000.0, f"{name}: round {i}"), ok=True)
        for i, seconds in enumerate(timings_s)
    ]
    # throughput of a benchmark is rounds per second of measured time
    stats = summarize(samples, max(sum(timings_s), 1e-12), level)
    return evaluate(name, budget, {}, stats, min_samples=1, inconclusive=inconclusive)
