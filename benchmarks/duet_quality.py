"""Duet quality: how often an A/A pair says FAIL, how often a 10 % slowdown is caught.

    .venv/bin/python benchmarks/duet_quality.py [--quick] [--runs 200] [--seconds 40]
        [--allowance 0.05] [--slower 1.10] [--noise shared,order,imbalance,stalls]
        [--spend equal,half,final] [--keys p95] [--pairing paired]

Simulated A/B runs judged by ``core.duet``'s real functions (``paired_blocks``,
``judge_pair``, ``PairStopRule`` at the plan's looks, as ``duet_gate`` does: 1 s blocks
after a 3 s warm-up, looks at 13, 19.5, 29.25 and 40 s), on paired samples shaped like
``benchmarks/noise_robustness.py``'s CPU-bound service under a CPU hog: pairs at about
60 a second (35 while hogged), a latency of 8 ms times a factor both sides share (x2.5
while the hog runs, from about a quarter of the run for half of it, with heavy-tailed
descheduling delays). The noises, each adding to the one before:

- ``shared``: only that; ``order``: the first request of each pair (random order) 15 %
  slower (it carries the user's scheduling lateness, the second finds a warm cache);
- ``imbalance``: while the hog runs, a factor per side that wanders (log sd 0.06, a
  correlation of 5 s): the OS scheduler giving one service less CPU for a while, noise
  that hits one side only; ``stalls``: instead, each side's process stalls 3 times a
  second for about 40 ms (Pareto tail) while the hog runs.

Prints, per noise: the false-FAIL rate of A/A runs and the detection (FAIL) rate of a
``--slower`` candidate, for each way of spending the error over the looks (``--spend``):
``equal`` (``alpha / K`` at each of ``K`` looks), ``half`` (half at the last look, the
rest shared by the others) and ``final`` (``duet.FINAL_SHARE``, four fifths at the last
look: the gate), on the same simulated runs; and for each way of judging the median
(``--pairing``, with ``--keys p50`` or ``p50,p95``): ``paired`` (the gate: the median of
the pairs' log ratios, the samples carrying their pair as the Locust child's do) and
``pooled`` (the same samples without their pairs: the ratio of the sides' medians).
A run's outcome is the gate's over all ``--keys``: FAIL when one fails. Pure CPU,
about 0.2 s a run: run it with ``nice``.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from collections import Counter

from pytest_perfgate.core import duet
from pytest_perfgate.core.stats import TOTAL, Sample, bonferroni
from pytest_perfgate.core.verdict import Outcome

NAME = "POST /work"
WARMUP_S = 3.0
MIN_DURATION_S = 10.0  # noise_robustness.py's --perfgate-min-duration


def _wander(rng: random.Random, seconds: float, sigma: float, tau: float) -> list[float]:
    """A log-AR(1) factor per 0.1 s with stationary sd ``sigma`` and correlation time ``tau``."""
    steps = int(seconds * 10) + 2
    rho = math.exp(-0.1 / tau)
    x = rng.gauss(0.0, sigma)
    out = []
    for _ in range(steps):
        out.append(x)
        x = rho * x + rng.gauss(0.0, sigma * math.sqrt(1 - rho * rho))
    return out


def _stalls(rng: random.Random, start: float, end: float, rate: float) -> list[tuple[float, float]]:
    """One process's stalls between ``start`` and ``end``: ``rate`` a second, Pareto
    lengths (mean about 40 ms, a tail to a few hundred): descheduled behind the hog."""
    out = []
    t = start
    while rate > 0:
        t += rng.expovariate(rate)
        if t >= end:
            return out
        out.append((t, t + 0.024 * rng.paretovariate(2.5)))
    return out


def _stalled(stalls: list[tuple[float, float]], t: float) -> float:
    """Milliseconds a request sent at ``t`` waits for its process's stall to end."""
    return max((1000.0 * (end - t) for begin, end in stalls if begin <= t < end), default=0.0)


def simulate(
    seed: int, *, seconds: float, slower: float = 1.0, order: float = 1.1,
    imbalance: float = 0.0, tau: float = 5.0, stalls: float = 0.0, pairs: bool = True,
) -> list[Sample]:  # fmt: skip
    """One A/B run's samples (both sides); the candidate ``slower`` times the baseline."""
    rng = random.Random(seed)
    hog_on = seconds * (0.25 + rng.uniform(-0.05, 0.05))
    hog_off = hog_on + seconds * 0.5
    sides = [_wander(rng, seconds, imbalance, tau) for _ in range(2)]
    stops = [_stalls(rng, hog_on, hog_off, stalls) for _ in range(2)]
    out: list[Sample] = []
    t = 0.0
    while t < seconds:
        pair = len(out) // 2 + 1 if pairs else 0
        hog = hog_on <= t < hog_off
        t += rng.expovariate(35.0 if hog else 60.0)
        shared = 8.0 * (2.5 if hog else 1.0) * rng.lognormvariate(0.0, 0.25)
        first_is_candidate = rng.random() < 0.5
        for side in (0, 1):  # 0 candidate, 1 baseline
            ms = shared * rng.lognormvariate(0.0, 0.15)
            if rng.random() < (0.25 if hog else 0.03):  # descheduled for a slice or more
                ms += rng.paretovariate(2.5) * (6.0 if hog else 2.0)
            if hog:
                ms *= math.exp(sides[side][int(t * 10)])
                ms += _stalled(stops[side], t)
            if (side == 0) == first_is_candidate:
                ms *= order
            if side == 0:
                ms *= slower
            name = NAME if side == 0 else duet.baseline_name(NAME)
            out.append(Sample(t + 0.001 * side, name, ms, True, 200, pair=pair))
    out.sort(key=lambda s: s.t)
    return out


def plan_for(
    seconds: float, allowance: float, keys: tuple[str, ...] = ("p95",), level: float = 0.95
) -> duet.PairPlan:
    """The plan ``duet_gate.DuetGate.plan`` makes for a duet of ``seconds`` (early stop on)."""
    block_s = duet.block_length(seconds - WARMUP_S, "duet", 0.0)
    origin = duet.plan_origin(WARMUP_S, block_s)
    looks = duet.look_times(origin + MIN_DURATION_S, seconds)
    allowances = {TOTAL: ({f"{k}_regression": allowance for k in keys}, "block")}
    return duet.PairPlan("sim", "duet", block_s, origin, looks, bonferroni(level, len(keys)),
                         allowances, "simulated")  # fmt: skip


def _outcome(judged: duet.Judged) -> Outcome:
    outcomes = {c.outcome for c in judged.checks}
    if Outcome.FAIL in outcomes:
        return Outcome.FAIL
    return Outcome.PASS if outcomes == {Outcome.PASS} else Outcome.INCONCLUSIVE


def verdict(plan: duet.PairPlan, samples: list[Sample]) -> Outcome:
    """The outcome the gate would give: early looks by ``PairStopRule``, then the end."""
    rule = duet.PairStopRule(plan)
    for look in plan.looks[:-1]:
        upto = [s for s in samples if s.t < look]
        if rule(upto, look + 1e-6) is not None:
            return _outcome(duet.judge_pair(plan, upto, look))
    return _outcome(duet.judge_pair(plan, samples, plan.looks[-1]))


NOISES = {
    "shared": {"order": 1.0, "imbalance": 0.0},
    "order": {"order": 1.15, "imbalance": 0.0},
    "imbalance": {"order": 1.15, "imbalance": 0.06},
    "stalls": {"order": 1.15, "stalls": 3.0},
}


#: the share of the error the last look gets: None for 1 / K (an equal split)
SPENDS = {"equal": None, "half": 0.5, "final": duet.FINAL_SHARE}


def rates(
    noise: str, runs: int, seconds: float, allowance: float, slower: float, spend: str,
    keys: tuple[str, ...] = ("p95",), pairing: str = "paired",
) -> str:  # fmt: skip
    plan = plan_for(seconds, allowance, keys)
    share = SPENDS[spend]
    duet.FINAL_SHARE = 1.0 / len(plan.looks) if share is None else share
    kw = {**NOISES[noise], "pairs": pairing == "paired"}
    aa: Counter[str] = Counter()
    ab: Counter[str] = Counter()
    for seed in range(runs):
        aa[verdict(plan, simulate(seed, seconds=seconds, **kw)).value] += 1
        ab[verdict(plan, simulate(10**6 + seed, seconds=seconds, slower=slower, **kw)).value] += 1
    return (
        f"{noise:<10} {spend:<6} {pairing:<7} "
        f"A/A false FAIL {aa['FAIL']}/{runs} ({100 * aa['FAIL'] / runs:.1f} %), "
        f"PASS {aa['PASS']}; x{slower:g} detected {ab['FAIL']}/{runs} "
        f"({100 * ab['FAIL'] / runs:.0f} %), PASS {ab['PASS']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="40 runs a noise")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=40.0, help="load per run (40)")
    parser.add_argument("--allowance", type=float, default=0.05, help="p95_regression (0.05)")
    parser.add_argument("--slower", type=float, default=1.10, help="the B of A/B (1.10)")
    parser.add_argument("--noise", default=",".join(NOISES), help="which noises")
    parser.add_argument("--spend", default=",".join(SPENDS), help="error spending over looks")
    parser.add_argument("--keys", default="p95", help="regression keys (p95; p50,p95)")
    parser.add_argument(
        "--pairing", default="paired", help="how the median is judged: paired, pooled or both"
    )
    args = parser.parse_args()
    keys = tuple(args.keys.split(","))
    runs = 40 if args.quick else args.runs
    began = time.monotonic()
    print(f"duet quality: {runs} simulated runs a noise and case, {args.seconds:g} s, "
          f"{', '.join(k + '_regression' for k in keys)} {100 * args.allowance:g} %")  # fmt: skip
    for noise in args.noise.split(","):
        for spend in args.spend.split(","):
            for pairing in args.pairing.split(","):
                line = rates(noise, runs, args.seconds, args.allowance, args.slower, spend,
                             keys, pairing)  # fmt: skip
                print("  " + line, flush=True)
    print(f"done in {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
