"""core.noise: machine samples in, a finding out, on synthetic samples."""

from __future__ import annotations

import pytest

from pytest_perfgate.core.model import Budget
from pytest_perfgate.core.noise import (
    MachineSample,
    NoiseFinding,
    NoiseLimits,
    assess,
    blame_noise,
    quiet_breaches,
    quiet_requests,
)
from pytest_perfgate.core.stats import Sample, summarize
from pytest_perfgate.core.verdict import Outcome, Verdict, evaluate


def _samples(
    n: int, busy: int, *, outside: float = 1.4, known: float = 0.5, **fields: float
) -> list[MachineSample]:
    """``n`` one-second samples, the first ``busy`` with ``outside`` cores of outside CPU."""
    return [
        MachineSample(
            t=float(i + 1),
            interval_s=1.0,
            busy_cores=known + (outside if i < busy else 0.05),
            known_cores=known,
            **fields,
        )
        for i in range(n)
    ]


def _assess(samples: list[MachineSample], **kwargs: object) -> NoiseFinding:
    finding = assess(samples, cores=2, **kwargs)  # type: ignore[arg-type]
    assert finding is not None
    return finding


def test_a_run_busy_for_most_of_its_time_is_noisy_and_says_how_busy() -> None:
    finding = assess(_samples(100, 63), cores=2)
    assert finding is not None and finding.noisy
    assert finding.sentence() == (
        "the machine was busy: other processes used 1.4 of 2 cores for 63 % of the run"
    )
    assert finding.busy_share == pytest.approx(0.63)
    assert finding.outside_peak == pytest.approx(1.4)


def test_a_quiet_run_is_not_noisy_and_still_reports_its_figures() -> None:
    finding = assess(_samples(60, 0), cores=2)
    assert finding is not None and not finding.noisy
    assert finding.sentence() == ""
    assert finding.outside_mean == pytest.approx(0.05)
    assert "outside CPU 0.1 of 2 cores on average" in finding.summary()


def test_outside_load_for_less_than_the_share_is_not_noise() -> None:
    assert not _assess(_samples(100, 4)).noisy  # the default share is 5 %
    assert _assess(_samples(100, 4), limits=NoiseLimits(share=0.03)).noisy
    assert not _assess(_samples(100, 20), limits=NoiseLimits(share=0.25)).noisy


def test_outside_load_under_the_cores_limit_is_not_noise() -> None:
    finding = assess(_samples(50, 50, outside=0.4), cores=2)
    assert finding is not None and not finding.noisy and finding.busy_share == 0
    assert _assess(_samples(50, 50, outside=0.4), limits=NoiseLimits(cores=0.3)).noisy


def test_outside_cpu_never_counts_below_zero() -> None:
    sample = MachineSample(t=1, interval_s=1, busy_cores=0.5, known_cores=0.7)
    assert sample.outside_cores == 0


def test_samples_of_different_length_weigh_by_their_time() -> None:
    long_busy = MachineSample(t=3, interval_s=3.0, busy_cores=2.0, known_cores=0.5)
    short_quiet = [MachineSample(t=3 + i, interval_s=1.0, busy_cores=0.5, known_cores=0.5)
                   for i in range(1, 3)]  # fmt: skip
    finding = assess([long_busy, *short_quiet], cores=2)
    assert finding is not None and finding.busy_share == pytest.approx(0.6)


def test_where_the_service_is_unknown_outside_load_is_a_note_not_noise() -> None:
    finding = assess(_samples(100, 80), cores=2, service_known=False)
    assert finding is not None and not finding.noisy
    assert "the service's own CPU is not known" in finding.notes[0]
    assert finding.to_dict()["service_known"] is False


def test_steal_time_makes_a_run_noisy() -> None:
    finding = assess(_samples(20, 0, steal=0.2), cores=2)
    assert finding is not None and finding.noisy
    assert finding.reasons == ("the hypervisor took 20 % of the CPU time (steal)",)


def test_a_saturated_load_generator_makes_a_run_noisy() -> None:
    finding = assess(_samples(20, 0, loadgen_peak=0.97), cores=2)
    assert finding is not None and finding.noisy
    assert finding.reasons[0].startswith("the load generator was saturated")
    assert finding.loadgen_peak == pytest.approx(0.97)
    calm = assess(_samples(20, 0, loadgen_peak=0.4), cores=2)
    assert calm is not None and not calm.noisy and calm.loadgen_saturated_share == 0


@pytest.mark.parametrize(
    "fields", [{"memory_stall": 0.3}, {"memory_available": 0.02}], ids=["psi", "meminfo"]
)
def test_memory_pressure_makes_a_run_noisy(fields: dict[str, float]) -> None:
    finding = assess(_samples(20, 0, **fields), cores=2)
    assert finding is not None
    assert finding.reasons == ("memory was under pressure for 100 % of the run",)


def test_too_few_samples_call_nothing_noisy() -> None:
    finding = assess(_samples(2, 2), cores=2)
    assert finding is not None and not finding.noisy
    assert "too few to call the run noisy" in finding.notes[0]


def test_no_samples_is_no_finding() -> None:
    assert assess([], cores=2) is None


def test_the_finding_as_json_data_holds_the_figures_and_the_limits() -> None:
    data = _assess(_samples(10, 10), limits=NoiseLimits(cores=0.7)).to_dict()
    assert data["noisy"] is True
    assert data["samples"] == 10 and data["cores"] == 2
    assert data["outside_cores_busy_mean"] == pytest.approx(1.4)
    assert data["limits"]["cores"] == 0.7
    assert data["reasons"] == [
        "the machine was busy: other processes used 1.4 of 2 cores for 100 % of the run"
    ]


# --- blame_noise: the verdict of a noisy run ---------------------------------------------


def _verdict(p95_limit: float, inconclusive: str = "fail") -> Verdict:
    samples = [Sample(i / 10, "GET /x", 30 + (i * 37 % 100) / 10, True, 200) for i in range(400)]
    stats = summarize(samples, 40.0, 0.95)
    budget = Budget(p95_ms=p95_limit)
    return evaluate("light", budget, {}, stats, inconclusive=inconclusive)


def test_a_breach_on_a_noisy_machine_becomes_invalid_and_blames_the_machine() -> None:
    judged = blame_noise(_verdict(10), _assess(_samples(10, 10)))
    assert judged.outcome is Outcome.INVALID and judged.failed
    assert judged.reasons == (
        "the machine was busy: other processes used 1.4 of 2 cores for 100 % of the run: "
        "that can explain the result, so it does not judge the service",
    )
    (check,) = judged.checks
    assert check.outcome is Outcome.INVALID
    assert check.message().startswith("light: Total p95 budget 10 ms: invalid, ")
    assert check.message().endswith(" ms measured on a noisy machine")


def test_a_pass_on_a_noisy_machine_stays_a_pass() -> None:
    judged = _verdict(100)
    assert blame_noise(judged, _assess(_samples(10, 10))) is judged
    assert judged.outcome is Outcome.PASS


def test_a_breach_on_a_quiet_machine_stays_a_fail() -> None:
    judged = _verdict(10)
    assert blame_noise(judged, _assess(_samples(10, 0))) is judged
    assert blame_noise(judged, None) is judged
    assert judged.outcome is Outcome.FAIL


def test_an_inconclusive_run_is_invalid_only_where_its_policy_fails_the_test() -> None:
    undecided = _verdict(39.5)
    assert undecided.outcome is Outcome.INCONCLUSIVE
    assert blame_noise(undecided, _assess(_samples(10, 10))).outcome is Outcome.INVALID
    passing = _verdict(39.5, inconclusive="pass")
    assert blame_noise(passing, _assess(_samples(10, 10))) is passing


# --- the quiet part of a noisy run ---------------------------------------------------------


def _machine(busy_until: float) -> list[MachineSample]:
    """Half-second samples over 10 s, busy (1.4 outside cores) up to ``busy_until``."""
    return [
        MachineSample(
            t=i / 2, interval_s=0.5, known_cores=0.5,
            busy_cores=0.5 + (1.4 if i / 2 <= busy_until else 0.0),
        )
        for i in range(1, 21)
    ]  # fmt: skip


def test_quiet_requests_leave_out_the_busy_time_and_a_second_around_it() -> None:
    requests = [Sample(i / 10, "GET /x", 50.0, True, 200) for i in range(100)]  # 0-9.9 s
    quiet = quiet_requests(requests, _machine(3.0), NoiseLimits(), offset_s=0.0)
    assert min(r.t for r in quiet) == pytest.approx(4.0)  # busy to 3 s, plus the margin
    assert len(quiet) == 60


def test_quiet_requests_line_the_samples_up_with_the_load() -> None:
    requests = [Sample(i / 10, "GET /x", 50.0, True, 200) for i in range(100)]
    # sampling began 2 s before the load: the sample at 3 s covers the load's first second
    quiet = quiet_requests(requests, _machine(3.0), NoiseLimits(), offset_s=2.0)
    assert min(r.t for r in quiet) == pytest.approx(2.0)


def test_a_request_that_ends_in_a_busy_time_is_not_quiet() -> None:
    slow = Sample(3.0, "GET /x", 2500.0, True, 200)  # 3.0-5.5 s, into a busy time from 5 s
    machine = [
        MachineSample(t=t, interval_s=0.5, known_cores=0.5, busy_cores=0.5 + (1.4 if t > 6 else 0))
        for t in (0.5 * i for i in range(1, 21))
    ]
    assert quiet_requests([slow], machine, NoiseLimits(), offset_s=0.0) == []
    assert quiet_requests([slow], _machine(0.0), NoiseLimits(), offset_s=0.0) == [slow]


def test_a_fail_stands_where_the_quiet_requests_breach_too() -> None:
    judged = _verdict(10)
    breaches = quiet_breaches(judged)  # the same requests: a p95 breach
    assert [c.metric for c in breaches] == ["p95_ms"]
    assert blame_noise(judged, _assess(_samples(10, 10)), breaches) is judged


def test_throughput_in_the_quiet_part_is_no_breach_of_its_own() -> None:
    samples = [Sample(i / 10, "GET /x", 5.0, True, 200) for i in range(400)]
    stats = summarize(samples, 40.0, 0.95)
    judged = evaluate("light", Budget(min_rps=100), {}, stats)
    assert judged.outcome is Outcome.FAIL and quiet_breaches(judged) == ()
