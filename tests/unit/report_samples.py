"""A sample ``ScenarioResult`` for the tests of the results layer (JSON, terminal,
Markdown, HTML); imported by those test modules, not collected itself."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pytest_perfgate.config import Budget, Scenario
from pytest_perfgate.core.findings import analyze
from pytest_perfgate.core.stats import TOTAL, EndpointStats, RunStats
from pytest_perfgate.core.verdict import Check, Outcome, Verdict
from pytest_perfgate.load.driver import RawRun
from pytest_perfgate.results.result import ScenarioResult


def ep(
    name: str, requests: int, failures: int, p95: float, std: float = 6.0, level: float = 0.95
) -> EndpointStats:
    return EndpointStats(
        name=name, requests=requests, failures=failures, rps=requests / 60, mean=p95 / 2,
        std=std, min=2.0, max=p95 * 3, p50=p95 / 2.2, p95=p95, p99=p95 * 1.6,
        ci={"p50": (p95 / 2.4, p95 / 2.0), "p95": (p95 * 0.95, p95 * 1.06),
            "p99": (p95 * 1.4, p95 * 1.9)},
        ci_level=level,
    )  # fmt: skip


def make_result(
    *,
    name: str = "light",
    outcome: Outcome = Outcome.PASS,
    p95: float = 48.2,
    endpoint: str = "POST /predict mlp",
    std: float = 6.0,
    reasons: tuple[str, ...] = (),
    level: float = 0.95,
) -> ScenarioResult:
    scenario = Scenario(
        name=name, users=10, spawn_rate=2.0, duration_s=60.0, wait_min_s=0.5, wait_max_s=2.0,
        warmup_s=5.0, budget=Budget(p95_ms=100.0, error_rate=0.01),
        description="steady light traffic",
    )  # fmt: skip
    mlp = ep(endpoint, 450, 1, p95, std, level)
    enc = ep("POST /predict encoder", 150, 0, p95 * 0.8, level=level)
    total = ep(TOTAL, 600, 1, p95, std, level)
    stats = RunStats(endpoints={mlp.name: mlp, enc.name: enc}, total=total, duration_s=55.0)
    history = tuple(
        {"t": float(t), "users": min(10, 2 * (t + 1)), "rps": min(10.0, 2.0 * (t + 1)),
         "fails": 0.5 if t == 30 else 0.0, "p50": 20.0 + t % 7, "p95": 40.0 + (t * 7) % 13}
        for t in range(60)
    )  # fmt: skip
    raw = RawRun(
        scenario=scenario, samples=(), duration_s=60.0, stop_reason="duration",
        files={"stats_csv": Path("/r/x_stats.csv"), "log": Path("/r/x.log")},
        history=history, loadgen_cpu_percent=31.0,
    )  # fmt: skip
    checks = (
        Check(name, TOTAL, "p95_ms", 100.0, p95, 600, outcome, ci=total.ci["p95"], level=level),
        Check(name, TOTAL, "error_rate", 0.01, 1 / 600, 600, Outcome.PASS, ci=(0.0004, 0.009),
              level=level),
    )  # fmt: skip
    verdict = Verdict(name, outcome, checks, reasons)
    return ScenarioResult(
        scenario=scenario, raw=raw, stats=stats, verdict=verdict,
        analysis=analyze(stats, history, loadgen_cpu_percent=31.0),
        started_at=datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC),
        thresholds=Path("/repo/thresholds.yaml"),
    )  # fmt: skip
