"""Graceful degradation figures: hard errors, recovery after a spike, memory growth."""

from __future__ import annotations

import math

import pytest

from pytest_perfgate.core.model import LoadShape
from pytest_perfgate.core.resilience import hard_error_rate, recovery_seconds, rss_growth_mb
from pytest_perfgate.core.stats import Sample

SPIKE = LoadShape("spike", ((10.0, 5, 5.0), (20.0, 100, 50.0), (40.0, 5, 50.0)))


def steady(t0: float, t1: float, ms: float, rate: int = 20) -> list[Sample]:
    n = int((t1 - t0) * rate)
    return [Sample(t=t0 + i / rate, name="POST /p", ms=ms, ok=True, status=200) for i in range(n)]


def test_only_failures_other_than_429_and_503_are_hard_errors() -> None:
    samples = [
        Sample(0, "GET /x", 5, True, 200),
        Sample(0, "GET /x", 1, False, 503, "503"),
        Sample(0, "GET /x", 1, False, 429, "429"),
        Sample(0, "GET /x", 9, False, 500, "500"),
        Sample(0, "GET /x", 10_000, False, 0, "timeout"),
    ]
    assert hard_error_rate(samples) == pytest.approx(2 / 5)
    assert hard_error_rate([]) is None


def test_recovery_is_the_time_after_the_peak_until_the_p95_stays_near_its_level_before() -> None:
    samples = steady(0, 10, 20) + steady(10, 20, 900) + steady(20, 26, 400) + steady(26, 40, 21)
    assert recovery_seconds(samples, SPIKE, warmup_s=2) == 6.0


def test_a_service_that_never_recovers_reads_infinity() -> None:
    samples = steady(0, 10, 20) + steady(10, 40, 900)
    assert math.isinf(recovery_seconds(samples, SPIKE, warmup_s=2) or 0.0)


def test_a_relapse_after_a_good_window_restarts_the_clock() -> None:
    samples = (
        steady(0, 10, 20) + steady(10, 20, 900) + steady(20, 22, 20) + steady(22, 24, 500)
        + steady(24, 40, 20)
    )  # fmt: skip
    assert recovery_seconds(samples, SPIKE, warmup_s=2) == 4.0


def test_recovery_cannot_be_measured_without_a_spike_shape_or_a_calm_first_stage() -> None:
    samples = steady(0, 40, 20)
    assert recovery_seconds(samples, None, warmup_s=0) is None
    ramp = LoadShape("ramp", ((10.0, 5, 5.0), (20.0, 100, 50.0)))
    assert recovery_seconds(samples, ramp, warmup_s=0) is None
    assert recovery_seconds(samples, SPIKE, warmup_s=10) is None  # the warm-up ate stage one


def test_memory_growth_comes_from_the_services_resident_memory_gauge() -> None:
    key = "service_process_resident_memory_bytes"
    assert rss_growth_mb({key: 400 * 2**20}, {key: 431.5 * 2**20}) == pytest.approx(31.5)
    assert rss_growth_mb({key: 1.0}, None) is None
    assert rss_growth_mb({"up": 1}, {"up": 1}) is None
