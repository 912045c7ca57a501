"""Clean inputs: never-sent requests have no latency; broken response times are refused."""

from __future__ import annotations

import math

import pytest

from pytest_perfgate.core.bench import judge
from pytest_perfgate.core.model import Budget
from pytest_perfgate.core.regression import samples_by_endpoint
from pytest_perfgate.core.stats import NOT_SENT, Sample
from pytest_perfgate.errors import SampleError


def test_a_benchmark_round_with_a_broken_timing_is_named() -> None:
    with pytest.raises(SampleError, match=r"^test_predict: round 2: response time nan ms"):
        judge("test_predict", [0.01, 0.02, math.nan], Budget(p95_ms=100.0))


def test_a_benchmark_with_clean_timings_is_judged() -> None:
    verdict = judge("test_predict", [0.001] * 200, Budget(p95_ms=100.0))
    assert verdict.passed


def test_the_regression_side_of_a_run_leaves_never_sent_requests_out() -> None:
    samples = [
        Sample(0.0, "GET /a", 12.0, True, 200),
        Sample(0.5, "GET /a", 0.0, False, NOT_SENT, "boom"),
        Sample(0.7, "GET /b", 0.0, False, NOT_SENT, "boom"),
    ]
    assert samples_by_endpoint(samples) == {"GET /a": [12.0], "GET /b": []}
    # their placeholder times only on request (never stored: results.baselines)
    assert samples_by_endpoint(samples, sent_only=False) == {"GET /a": [12.0, 0.0], "GET /b": [0.0]}
