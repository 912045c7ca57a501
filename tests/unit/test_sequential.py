"""sequential: early stop once every budget is decided, early abort on a held clear breach."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

import pytest

from pytest_perfgate.core import stats
from pytest_perfgate.core.model import Budget, Scenario, Task
from pytest_perfgate.core.sequential import (
    ShareTest,
    StopRule,
    blocking_tests,
    decide,
    make_stop_rule,
)
from pytest_perfgate.core.stats import FAILURE_BURST, NOT_SENT, TOTAL, Sample, proportion_cs
from pytest_perfgate.core.verdict import Outcome, evaluate
from pytest_perfgate.errors import SampleError
from pytest_perfgate.load.driver import StopRule as RunnerStopRule

PREDICT = "POST /predict"
Z95 = 1.6448536269514722


def _lognormal_p95(p95: float, rng: random.Random) -> float:
    """A response time from a log-normal (sigma 0.5) whose true P95 is ``p95``."""
    return math.exp(math.log(p95) - Z95 * 0.5 + 0.5 * rng.gauss(0.0, 1.0))


def _drive(
    rule: Callable[[Sequence[Sample], float], str | None],
    p95: float,
    *,
    seconds: int,
    rate: int = 20,
    seed: int = 1,
    ok: Callable[[int], bool] = lambda i: True,
) -> tuple[int, str | None]:
    """Feed ``rate`` requests a second and ask ``rule`` each second, as the runner does."""
    rng = random.Random(seed)
    samples: list[Sample] = []
    for second in range(1, seconds + 1):
        for k in range(rate):
            i = len(samples)
            t = second - 1 + k / rate
            samples.append(Sample(t, PREDICT, _lognormal_p95(p95, rng), ok(i)))
        reason = rule(samples, float(second))
        if reason is not None:
            return second, reason
    return seconds, None


# --- the test of one budget ----------------------------------------------------------


def test_decide_passes_a_clearly_fast_service() -> None:
    rng = random.Random(1)
    decision = decide([_lognormal_p95(70.0, rng) for _ in range(2000)], 100.0, 0.95)
    assert decision.state == "pass"
    assert decision.log_evidence_pass >= decision.threshold == pytest.approx(math.log(40))
    assert decision.ess_factor == pytest.approx(1.0, abs=0.2)


def test_decide_fails_a_clearly_slow_service() -> None:
    rng = random.Random(2)
    decision = decide([_lognormal_p95(140.0, rng) for _ in range(2000)], 100.0, 0.95)
    assert decision.state == "fail"
    assert decision.share > 0.05


def test_decide_keeps_going_when_the_quantile_sits_on_the_budget() -> None:
    rng = random.Random(3)
    decision = decide([_lognormal_p95(100.0, rng) for _ in range(1000)], 100.0, 0.95)
    assert decision.state == "continue"


def test_wrong_early_decisions_stay_rare_however_often_the_rule_looks() -> None:
    # the worst case: the true share of slow requests is exactly the allowed 5 %
    rng = random.Random(4)
    runs, looks, per_look = 400, 150, 20
    wrong = 0
    for _ in range(runs):
        test = ShareTest(0.05, alpha=0.05)
        for _ in range(looks):
            test.extend(rng.random() < 0.05 for _ in range(per_look))
            if test.decision().state != "continue":
                wrong += 1
                break
    # each side is bounded by alpha / 2 = 2.5 % (Ville), both together by 5 %
    assert wrong / runs <= 0.05


def test_clustered_hits_inflate_the_variance_by_the_cluster_size() -> None:
    rng = random.Random(5)
    test = ShareTest(0.05)
    for _ in range(2000):
        test.extend([rng.random() < 0.05] * 10)  # every draw repeated 10 times
    assert test.ess_factor() == pytest.approx(10.0, rel=0.3)


def test_correlated_latencies_delay_a_pass() -> None:
    rng = random.Random(6)
    z, correlated = 0.0, []
    for _ in range(2000):
        z = 0.95 * z + math.sqrt(1 - 0.95**2) * rng.gauss(0.0, 1.0)
        correlated.append(math.exp(math.log(70.0) - Z95 * 0.5 + 0.5 * z))
    independent = [_lognormal_p95(70.0, rng) for _ in range(2000)]
    plain = decide(independent, 100.0, 0.95)
    assert plain.state == "pass"
    decision = decide(correlated, 100.0, 0.95)
    # the blocks measure the hits' own inflation (4 to 8 here), not the lag-1 bound of 39
    assert decision.ess_factor is not None and decision.ess_factor > 3
    assert decision.log_evidence_pass < plain.log_evidence_pass


def test_share_test_rejects_a_share_outside_zero_to_one() -> None:
    with pytest.raises(ValueError, match="p0 must lie in"):
        ShareTest(0.0)


# --- the stopping rule of a scenario -------------------------------------------------


def test_the_rule_never_stops_before_the_minimum_duration() -> None:
    rule = StopRule(Budget(p95_ms=100.0), min_duration_s=60.0)
    second, reason = _drive(rule, 50.0, seconds=120)
    assert second == 60
    assert reason is not None and reason.startswith("stop: every blocking budget decided (PASS)")
    assert "Total p95 <= 100 ms" in reason


def test_the_rule_aborts_on_a_clear_breach_held_for_the_window() -> None:
    rule = StopRule(Budget(p95_ms=100.0), min_duration_s=60.0, abort_window_s=10.0)
    second, reason = _drive(rule, 200.0, seconds=120)
    assert reason is not None and reason.startswith("abort: clear breach held for 10 s")
    assert "Total p95 > 100 ms" in reason
    assert 10 < second < 60  # before the minimum duration: an abort does not wait for it


def test_a_breach_that_does_not_hold_does_not_abort() -> None:
    rule = StopRule(Budget(p95_ms=100.0), min_duration_s=1000.0, abort_window_s=10.0)
    rng = random.Random(8)
    samples: list[Sample] = []
    answers = []
    for second in range(1, 61):
        slow = second <= 3  # a short stall, then a fast service
        for k in range(20):
            ms = 500.0 if slow else _lognormal_p95(30.0, rng)
            samples.append(Sample(second - 1 + k / 20, PREDICT, ms, True))
        answers.append(rule(samples, float(second)))
    assert all(a is None for a in answers)
    assert rule.monitors[0].failing_since is None


def test_the_rule_waits_for_min_samples() -> None:
    rule = StopRule(Budget(p95_ms=100.0), min_duration_s=30.0, min_samples=2000)
    second, reason = _drive(rule, 50.0, seconds=200)
    assert reason is not None and second == 100  # 2 000 requests at 20 req/s


def test_warm_up_samples_are_not_counted() -> None:
    rule = StopRule(Budget(p95_ms=100.0), warmup_s=20.0, min_duration_s=30.0)
    second, reason = _drive(rule, 50.0, seconds=120)
    assert reason is not None and second == 50
    assert rule.requests == 30 * 20


def test_every_blocking_budget_must_be_decided_before_a_pass() -> None:
    budget = Budget(p95_ms=100.0, error_rate=0.01)
    rule = StopRule(budget, min_duration_s=30.0)
    second, reason = _drive(rule, 50.0, seconds=300)
    # no failures: the error rate's pass needs about 5 000 requests, the p95's fewer
    assert reason is not None and "Total error rate <= 1.00 %" in reason
    assert second >= 30


def test_a_run_without_failures_stops_on_what_bursts_of_ten_allow_and_reports_that() -> None:
    """No failure in n requests is judged as none in n / 10 bursts (``FAILURE_BURST``),
    by the rule and by the interval the stopped run reports, so the two agree."""
    budget = Budget(p95_ms=100.0, error_rate=0.01)
    rule = StopRule(budget, min_duration_s=30.0, alpha=0.05)
    rng = random.Random(3)
    samples: list[Sample] = []
    for second in range(1, 601):
        samples += [Sample(second - 1 + k / 20, PREDICT, _lognormal_p95(50.0, rng), True)
                    for k in range(20)]  # fmt: skip
        if (reason := rule(samples, float(second))) is not None:
            break
    assert reason is not None and reason.startswith("stop:")
    n, level = len(samples), stats.bonferroni(0.95, 2)
    # the CS of 0 failures in n / 10 must have cleared 1 %: about 50 expected at the budget
    assert proportion_cs(0, n, level, FAILURE_BURST)[1] <= 0.01
    assert proportion_cs(0, n - 20 * 30, level, FAILURE_BURST)[1] > 0.01

    def judged(stopped: bool) -> tuple[Outcome, tuple[float, float] | None]:
        run = stats.summarize(samples, float(second), level, correlated=True, anytime=True,
                              limits={TOTAL: {"p95": 100.0}}, stopped=stopped)  # fmt: skip
        v = evaluate("light", budget, {}, run)
        (check,) = [c for c in v.checks if c.metric == "error_rate"]
        return v.outcome, check.ci

    outcome, ci = judged(stopped=True)
    assert outcome is Outcome.PASS and ci is not None
    assert ci[1] == pytest.approx(proportion_cs(0, n, level, FAILURE_BURST)[1])
    # a run that went to its end is judged as before: independent failures where none came
    _, full = judged(stopped=False)
    assert full is not None and full[1] < ci[1] / 5


def test_an_error_rate_breach_aborts() -> None:
    rule = StopRule(Budget(error_rate=0.01), min_duration_s=30.0, abort_window_s=5.0)
    _, reason = _drive(rule, 50.0, seconds=120, ok=lambda i: i % 10 != 0)
    assert reason is not None and reason.startswith("abort:")
    assert "Total error rate > 1.00 %" in reason


@pytest.mark.parametrize("budget", [Budget(p95_ms=100.0, avg_ms=500.0), Budget(max_ms=10_000.0)])
def test_budgets_that_cannot_be_decided_early_prevent_an_early_pass(budget: Budget) -> None:
    rule = StopRule(budget, min_duration_s=30.0)
    assert _drive(rule, 50.0, seconds=120) == (120, None)


def test_a_max_ms_breach_aborts_after_the_window() -> None:
    rule = StopRule(Budget(max_ms=60.0), abort_window_s=10.0)
    _, reason = _drive(rule, 50.0, seconds=120)
    assert reason is not None and reason.startswith("abort:") and "Total max > 60 ms" in reason


def test_warn_budgets_neither_block_a_pass_nor_abort() -> None:
    rule = StopRule(
        Budget(p95_ms=100.0), {PREDICT: Budget(p95_ms=10.0, severity="warn")}, min_duration_s=30
    )
    second, reason = _drive(rule, 50.0, seconds=120)
    assert second == 30 and reason is not None and reason.startswith("stop:")


def test_endpoint_budgets_only_see_their_endpoint() -> None:
    rule = StopRule(Budget(), {"GET /other": Budget(p95_ms=100.0)}, min_duration_s=30.0)
    assert _drive(rule, 50.0, seconds=60) == (60, None)
    assert rule.monitors[0].n == 0


def test_a_rule_without_blocking_budgets_never_stops() -> None:
    rule = StopRule(Budget(), min_duration_s=1.0)
    assert _drive(rule, 50.0, seconds=60) == (60, None)


def test_the_rule_starts_over_when_a_new_run_begins() -> None:
    rule = StopRule(Budget(p95_ms=100.0), min_duration_s=30.0)
    _drive(rule, 50.0, seconds=40)
    assert rule.requests == 30 * 20
    rule([Sample(0.0, PREDICT, 10.0, True)], 1.0)
    assert rule.requests == 1


def test_make_stop_rule_takes_budgets_warm_up_and_min_samples_from_the_scenario() -> None:
    scenario = Scenario(
        name="light",
        users=10,
        spawn_rate=2,
        duration_s=300.0,
        warmup_s=5.0,
        tasks=(Task("POST", "/predict", PREDICT),),
        budget=Budget(p95_ms=100.0, error_rate=0.01),
        endpoint_budgets={PREDICT: Budget(p99_ms=400.0)},
        min_samples=50,
    )
    rule: RunnerStopRule = make_stop_rule(scenario, level=0.9)
    assert isinstance(rule, StopRule)
    assert (rule.warmup_s, rule.min_duration_s, rule.abort_window_s, rule.min_samples) == (
        5.0,
        30.0,
        10.0,
        50,
    )
    assert [(m.endpoint, m.metric) for m in rule.monitors] == [
        (TOTAL, "p95_ms"),
        (TOTAL, "error_rate"),
        (PREDICT, "p99_ms"),
    ]
    assert rule.monitors[0].test is not None
    # 1 - level split over the three blocking budgets (Bonferroni)
    assert rule.tests == 3
    assert rule.monitors[0].test.threshold == pytest.approx(math.log(2 * 3 / 0.1))


def test_a_short_scenario_gets_no_early_pass_before_its_end() -> None:
    scenario = Scenario(
        name="health",
        users=2,
        spawn_rate=2,
        duration_s=20.0,
        warmup_s=5.0,
        tasks=(Task("GET", "/health", "GET /health"),),
        budget=Budget(p95_ms=100.0),
    )
    assert make_stop_rule(scenario).min_duration_s == 15.0


def test_a_random_mix_of_fast_and_slow_endpoints_is_not_mistaken_for_bursts() -> None:
    rng = random.Random(7)
    samples = []
    for i in range(1200):
        slow = rng.random() < 0.25
        name = "POST /predict encoder" if slow else "POST /predict mlp"
        ms = rng.lognormvariate(math.log(30 if slow else 8), 0.3)
        samples.append(Sample(t=i / 10, name=name, ms=ms, ok=True, status=200))
    rule = StopRule(Budget(p95_ms=100), min_duration_s=30)
    for second in range(1, 121):
        rule(samples[: second * 10], float(second))
    # endpoint by endpoint the total would alternate between blocks of 8 ms and 30 ms
    assert rule.monitors[0].test is not None and rule.monitors[0].test.ess_factor() < 1.5


# --- clean inputs and several budgets ------------------------------------------------


def test_decide_rejects_response_times_that_are_not_numbers() -> None:
    with pytest.raises(SampleError, match="sample 0: response time nan ms"):
        decide([math.nan] * 2000, 100.0, 0.95)
    with pytest.raises(SampleError, match="sample 1: "):
        decide([5.0, -1.0], 100.0, 0.95)


def test_the_rule_names_the_request_with_a_broken_response_time() -> None:
    rule = StopRule(Budget(p95_ms=100.0))
    with pytest.raises(SampleError, match=r"POST /predict request at 1\.500 s"):
        rule([Sample(1.5, PREDICT, math.inf, True)], 2.0)


def test_never_sent_requests_are_failures_and_no_latency() -> None:
    rule = StopRule(Budget(p95_ms=100.0, error_rate=0.5), min_duration_s=1.0)
    samples = [Sample(i / 10, PREDICT, 500.0, True, 200) for i in range(5)]
    samples += [Sample(1 + i / 10, PREDICT, 0.0, False, NOT_SENT, "boom") for i in range(50)]
    rule(samples, 7.0)
    p95, errors = rule.monitors
    assert (p95.n, p95.hits) == (5, 5)  # the never-sent ones are not 0 ms "within budget"
    assert (errors.n, errors.hits) == (55, 50)


def test_the_error_budget_splits_over_every_blocking_budget_and_endpoint() -> None:
    nine = {e: Budget(p95_ms=100.0, p99_ms=200.0, error_rate=0.01) for e in ("GET /a", "GET /b")}
    total = Budget(p95_ms=100.0, p99_ms=200.0, error_rate=0.01)
    assert blocking_tests(total, nine) == 9
    assert blocking_tests(Budget(max_ms=10.0, error_rate=0.0, min_rps=5.0), {}) == 0
    warn = {"GET /a": Budget(p95_ms=100.0, severity="warn")}
    assert blocking_tests(Budget(p95_ms=100.0, avg_ms=50.0), warn) == 2
    rule = StopRule(total, nine, alpha=0.05)
    assert all(m.test is None or m.test.alpha == pytest.approx(0.05 / 9) for m in rule.monitors)


def test_an_early_pass_waits_until_clustered_hits_would_have_shown() -> None:
    # 1 % budget: 5 000 requests (250 s at 20 req/s) before a run without failures passes
    rule = StopRule(Budget(error_rate=0.01), min_duration_s=30.0)
    second, reason = _drive(rule, 50.0, seconds=300)
    assert reason is not None and reason.startswith("stop:")
    assert second == 250
