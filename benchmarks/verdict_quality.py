"""Verdict quality by simulation: false fails, detections and time to a verdict.

    .venv/bin/python benchmarks/verdict_quality.py [--runs 1000] [--workers 2] [--seed 1]

Each case draws ``--runs`` load tests of ``--duration`` seconds at a fixed arrival rate
(``--rate`` req/s) against a ``p95_ms`` budget of 100 ms, from one latency distribution
whose true P95 sits at 80, 95, 105 or 125 % of the budget:

- ``lognormal``: log-normal, sigma 0.5;
- ``bimodal``: 90 % fast (log-normal, median 1) and 10 % slow (median 4), sigma 0.25 each;
- ``pareto``: Pareto with tail index 1.5 (infinite variance);
- ``ar1``: log-normal, sigma 0.5, whose log follows an AR(1) with phi 0.95 per request
  (bursts of slow requests lasting about a second at 20 req/s).

Two gates judge every run side by side:

- ``fixed``: run the whole duration, fail when the point estimate P95 > budget;
- ``gate``: this project's gate - ``sequential.StopRule`` asked once a second (early PASS
  after 30 s, abort on a breach held 10 s), then ``verdict.evaluate`` on the samples so
  far with ``inconclusive="auto"``. Both are the real modules; only the conversion of
  ``Sample`` objects is skipped (``StopRule.observe`` takes the plain arrays).

"fail %" is a false-fail rate where the true P95 is within budget (80 %, 95 %) and a
detection rate where it is over (105 %, 125 %). Targets: <= 1 % false fails at 80 %,
>= 95 % detections at 125 %. Numpy is used here only to draw the latencies.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from statistics import NormalDist, median

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from pytest_perfgate.config import Budget
from pytest_perfgate.core.sequential import StopRule
from pytest_perfgate.core.stats import TOTAL, RunStats, endpoint_stats, inflation, percentile
from pytest_perfgate.core.verdict import Outcome, Verdict, evaluate

BUDGET_MS = 100.0
RATIOS = (0.80, 0.95, 1.05, 1.25)
DISTRIBUTIONS = ("lognormal", "bimodal", "pareto", "ar1")
ENDPOINT = "POST /predict"
Z95 = NormalDist().inv_cdf(0.95)


# --- latency distributions with a given true P95 ---------------------------------------


def _bimodal_unit_p95() -> float:
    """P95 of the unit bimodal mixture, by bisection on its CDF."""
    fast, slow = NormalDist(0.0, 0.25), NormalDist(math.log(4.0), 0.25)

    def cdf(x: float) -> float:
        return 0.9 * fast.cdf(math.log(x)) + 0.1 * slow.cdf(math.log(x))

    lo, hi = 0.5, 20.0
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < 0.95 else (lo, mid)
    return (lo + hi) / 2


def draw(kind: str, p95: float, runs: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``runs`` x ``n`` response times (ms) in arrival order whose true P95 is ``p95``."""
    if kind == "lognormal":
        return np.exp(math.log(p95) - Z95 * 0.5 + 0.5 * rng.standard_normal((runs, n)))
    if kind == "bimodal":
        slow = rng.random((runs, n)) < 0.1
        logs = np.where(slow, math.log(4.0), 0.0) + 0.25 * rng.standard_normal((runs, n))
        return np.exp(logs) * (p95 / _bimodal_unit_p95())
    if kind == "pareto":
        tail = 1.5
        scale = p95 / 20.0 ** (1.0 / tail)  # P95 of x_m * U^(-1/a) is x_m * 20^(1/a)
        return scale * (1.0 - rng.random((runs, n))) ** (-1.0 / tail)
    if kind == "ar1":
        phi, sigma = 0.95, 0.5
        noise = rng.standard_normal((runs, n)) * math.sqrt(1 - phi * phi)
        z = np.empty((runs, n))
        z[:, 0] = rng.standard_normal(runs)
        for i in range(1, n):
            z[:, i] = phi * z[:, i - 1] + noise[:, i]
        return np.exp(math.log(p95) - Z95 * sigma + sigma * z)
    raise ValueError(kind)


# --- the two gates ---------------------------------------------------------------------


@dataclass(frozen=True)
class RunResult:
    fixed_failed: bool
    gate_failed: bool
    gate_outcome: Outcome
    gate_seconds: int
    gate_samples: int
    early: bool
    ess_failed: bool  # the same gate with summarize(correlated=True) intervals
    ess_outcome: Outcome


def judge(ms: np.ndarray, rate: int, duration: int, budget: Budget) -> RunResult:
    values: list[float] = ms.tolist()
    fixed_failed = percentile(sorted(values), 0.95) > BUDGET_MS
    rule = StopRule(budget, min_duration_s=30.0, abort_window_s=10.0, min_samples=50)
    ok = [True] * rate
    seconds, reason = duration, None
    for second in range(1, duration + 1):
        rule.observe(ENDPOINT, values[(second - 1) * rate : second * rate], ok)
        reason = rule.look(float(second))
        if reason is not None:
            seconds = second
            break
    arrival = values[: seconds * rate]
    plain = _verdict(arrival, 1.0, seconds, budget)
    widened = _verdict(arrival, inflation(arrival), seconds, budget)
    return RunResult(
        fixed_failed, plain.failed, plain.outcome, seconds, len(arrival), reason is not None,
        widened.failed, widened.outcome,
    )  # fmt: skip


def _verdict(arrival: list[float], factor: float, seconds: int, budget: Budget) -> Verdict:
    """``summarize`` + ``evaluate`` of one endpoint's samples (as ``summarize`` builds its rows)."""
    seen = sorted(arrival)
    row = endpoint_stats(ENDPOINT, seen, 0, float(seconds), ess_factor=factor)
    total = endpoint_stats(TOTAL, seen, 0, float(seconds), ess_factor=factor)
    stats = RunStats({ENDPOINT: row}, total, seconds)
    return evaluate("sim", budget, {}, stats, min_samples=50, inconclusive="auto")


def run_case(args: tuple[str, float, int, int, int, int]) -> tuple[str, float, list[RunResult]]:
    kind, ratio, runs, rate, duration, seed = args
    rng = np.random.default_rng([seed, DISTRIBUTIONS.index(kind), int(ratio * 100)])
    data = draw(kind, ratio * BUDGET_MS, runs, rate * duration, rng)
    budget = Budget(p95_ms=BUDGET_MS)
    return kind, ratio, [judge(row, rate, duration, budget) for row in data]


# --- the table -------------------------------------------------------------------------


def _pct(results: list[RunResult], pred: Callable[[RunResult], bool]) -> str:
    return f"{100 * sum(map(pred, results)) / len(results):5.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=20, help="requests per second")
    parser.add_argument("--duration", type=int, default=300, help="seconds")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    opts = parser.parse_args()
    cases = [
        (kind, ratio, opts.runs, opts.rate, opts.duration, opts.seed)
        for kind in DISTRIBUTIONS
        for ratio in RATIOS
    ]
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=opts.workers) as pool:
        done = list(pool.map(run_case, cases))
    print(
        f"{opts.runs} runs per case, {opts.rate} req/s for at most {opts.duration} s, "
        f"budget p95 <= {BUDGET_MS:g} ms; fail % = false fails (P95 <= budget) or "
        f"detections (P95 > budget)"
    )
    head = (
        f"{'distribution':<12} {'P95/budget':>10} | {'fixed fail %':>12} {'s':>4} {'n':>5} | "
        f"{'gate fail %':>11} {'FAIL %':>6} {'INCONCL %':>9} {'early %':>7} "
        f"{'median s':>8} {'median n':>8} | {'fail %':>6} {'FAIL %':>6} {'INCONCL %':>9}"
    )
    print(
        f"{'':<23} | {'fixed point estimate':<23} | {'gate: sequential + verdict (auto)':<59} | "
        f"{'gate, correlated CIs'}"
    )
    print(head)
    print("-" * len(head))
    for kind, ratio, results in done:
        print(
            f"{kind:<12} {100 * ratio:>9.0f}% | {_pct(results, lambda r: r.fixed_failed):>12} "
            f"{opts.duration:>4} {opts.rate * opts.duration:>5} | "
            f"{_pct(results, lambda r: r.gate_failed):>11} "
            f"{_pct(results, lambda r: r.gate_outcome is Outcome.FAIL):>6} "
            f"{_pct(results, lambda r: r.gate_outcome is Outcome.INCONCLUSIVE):>9} "
            f"{_pct(results, lambda r: r.early):>7} "
            f"{median(r.gate_seconds for r in results):>8.0f} "
            f"{median(r.gate_samples for r in results):>8.0f} | "
            f"{_pct(results, lambda r: r.ess_failed):>6} "
            f"{_pct(results, lambda r: r.ess_outcome is Outcome.FAIL):>6} "
            f"{_pct(results, lambda r: r.ess_outcome is Outcome.INCONCLUSIVE):>9}"
        )
    print(
        "gate fail % = the test fails (FAIL, or INCONCLUSIVE with the point estimate over "
        "budget: policy auto); FAIL % = outcome FAIL (the CI wholly over budget); early % = "
        "runs the stopping rule ended before the full duration; median s / n = seconds and "
        "samples to the verdict. The last three columns: the same gate with "
        "summarize(correlated=True), percentile intervals widened by the AR(1) factor."
    )
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
