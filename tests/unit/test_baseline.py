"""Baselines: store a run and load it back (``results.baselines``), and judge a later
run's regressions against it (``core.regression``)."""

from __future__ import annotations

import dataclasses
import json
import math
import random
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from pytest_perfgate.core.regression import (
    REGRESSION_KEYS,
    Baseline,
    RegressionCheck,
    compare,
    parse_regressions,
    regression_message,
    samples_by_endpoint,
)
from pytest_perfgate.core.stats import TOTAL, RunStats, Sample, summarize
from pytest_perfgate.core.verdict import Check, Outcome
from pytest_perfgate.errors import BaselineError, ConfigError
from pytest_perfgate.results.baselines import (
    baseline_path,
    load_baseline,
    quantize_ms,
    save_baseline,
)

PREDICT = "POST /predict"
HEALTH = "GET /health"
Run = tuple[dict[str, list[float]], RunStats]


def _run(
    seed: int,
    n: int,
    *,
    slower: float = 1.0,
    error_rate: float = 0.01,
    duration_s: float = 100.0,
    poisson: bool = False,
) -> Run:
    """Lognormal response times (median 100 ms) on two endpoints, 3:1."""
    rng = random.Random(seed)
    if poisson:  # a random count, as arrivals at a steady rate give
        n = max(1, round(rng.gauss(n, math.sqrt(n))))
    samples = [
        Sample(
            t=i * duration_s / n,
            name=HEALTH if i % 4 == 0 else PREDICT,
            ms=slower * rng.lognormvariate(math.log(100.0), 0.5),
            ok=rng.random() >= error_rate,
        )
        for i in range(n)
    ]
    return samples_by_endpoint(samples), summarize(samples, duration_s)


def _save(store: Path, run: Run, name: str = "main", meta: Mapping[str, object] = {}) -> Path:
    by_endpoint, stats = run
    return save_baseline(store, name, "light", by_endpoint, stats, meta)


def _compare(base: Baseline, run: Run, **regressions: float) -> dict[str, Check]:
    by_endpoint, stats = run
    return {c.metric: c for c in compare(base, by_endpoint, stats, regressions)}


# --- storage -------------------------------------------------------------------------


def test_a_saved_baseline_loads_back_exactly(tmp_path: Path) -> None:
    by_endpoint, stats = run = _run(1, 3000)
    meta = {"settings": {"users": 10}, "git_sha": "abc123"}
    path = _save(tmp_path, run, meta=meta)
    assert path == tmp_path / "main" / "light.json"

    base = load_baseline(tmp_path, "main", "light")

    assert (base.name, base.scenario, base.path) == ("main", "light", path)
    assert base.duration_s == stats.duration_s
    assert base.meta == meta
    assert set(base.endpoints) == {PREDICT, HEALTH}
    for name, ms in by_endpoint.items():
        row = base.endpoints[name]
        assert row.sorted_ms == tuple(sorted(quantize_ms(x) for x in ms))
        assert (row.requests, row.failures) == (len(ms), stats.endpoints[name].failures)
        assert row.rps == stats.endpoints[name].rps
    every = [quantize_ms(x) for ms in by_endpoint.values() for x in ms]
    assert base.total.sorted_ms == tuple(sorted(every))
    assert (base.total.failures, base.total.rps) == (stats.total.failures, stats.total.rps)


def test_response_times_on_the_microsecond_grid_survive_unchanged(tmp_path: Path) -> None:
    ms = [0.0, 0.001, 12.345, 12.345, 99.999, 1234.567, 30000.0]
    run = ({PREDICT: ms}, summarize([Sample(0.0, PREDICT, x, True) for x in ms], 1.0))

    _save(tmp_path, run)

    assert load_baseline(tmp_path, "main", "light").endpoints[PREDICT].sorted_ms == tuple(ms)


def test_a_baseline_of_100_000_samples_stays_under_half_a_megabyte(tmp_path: Path) -> None:
    path = _save(tmp_path, _run(2, 100_000))

    assert path.stat().st_size < 500_000
    assert load_baseline(tmp_path, "main", "light").total.requests == 100_000


def test_saving_a_name_again_replaces_it_and_records_the_replaced_one(tmp_path: Path) -> None:
    first = _save(tmp_path, _run(1, 200))
    saved_at = json.loads(first.read_text())["saved_at"]

    second = _save(tmp_path, _run(2, 300))

    assert second == first
    assert json.loads(second.read_text())["replaces"] == saved_at
    assert load_baseline(tmp_path, "main", "light").total.requests == 300
    assert [p.name for p in (tmp_path / "main").iterdir()] == ["light.json"]  # no temp left


def test_samples_that_do_not_match_the_statistics_are_refused(tmp_path: Path) -> None:
    by_endpoint, stats = _run(1, 200)
    by_endpoint[PREDICT].append(1.0)

    with pytest.raises(ValueError, match=r"POST /predict: 151 response times but 150 requests"):
        save_baseline(tmp_path, "main", "light", by_endpoint, stats, {})


def test_a_name_that_is_not_one_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"expected a baseline name .* got '\.\./x'"):
        baseline_path(tmp_path, "../x", "light")


def test_a_missing_baseline_names_it_its_path_and_the_stored_ones(tmp_path: Path) -> None:
    _save(tmp_path, _run(1, 100), name="release-1.2")

    with pytest.raises(BaselineError) as info:
        load_baseline(tmp_path, "main", "light")

    assert str(info.value) == (
        f"baseline 'main': no such baseline: {tmp_path / 'main'} does not exist; "
        f"baselines in {tmp_path}: release-1.2"
    )


def test_a_missing_store_says_there_is_no_baseline_at_all(tmp_path: Path) -> None:
    with pytest.raises(BaselineError, match=r"baselines in .*nowhere: none$"):
        load_baseline(tmp_path / "nowhere", "main", "light")


def test_a_missing_scenario_names_the_scenarios_the_baseline_holds(tmp_path: Path) -> None:
    _save(tmp_path, _run(1, 100))

    with pytest.raises(BaselineError) as info:
        load_baseline(tmp_path, "main", "heavy")

    assert str(info.value) == (
        f"baseline 'main': no scenario 'heavy' in it: {tmp_path / 'main' / 'heavy.json'} "
        f"does not exist; scenarios in {tmp_path / 'main'}: light"
    )


def test_a_path_to_a_baseline_file_or_folder_loads_it(tmp_path: Path) -> None:
    path = _save(tmp_path / "store", _run(1, 100))

    by_file = load_baseline(tmp_path / "elsewhere", str(path), "light")
    by_folder = load_baseline(tmp_path / "elsewhere", "store/main/", "light", cwd=tmp_path)

    assert by_file == by_folder
    assert by_file.total.requests == 100


def test_a_file_of_another_scenario_is_refused(tmp_path: Path) -> None:
    path = _save(tmp_path, _run(1, 100))

    with pytest.raises(BaselineError, match=r"light.json holds scenario 'light', not 'heavy'"):
        load_baseline(tmp_path, str(path), "heavy")


def test_a_file_that_is_not_a_baseline_is_refused_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "main" / "light.json"
    path.parent.mkdir()
    path.write_text('{"format": "pytest-perfgate/result/1"}')

    with pytest.raises(BaselineError, match=r"light.json is not a perfgate baseline file"):
        load_baseline(tmp_path, "main", "light")


# --- the baseline is never the run under test -----------------------------------------


def test_comparing_while_saving_the_same_name_judges_against_the_older_run(
    tmp_path: Path,
) -> None:
    _save(tmp_path, _run(1, 2000))
    older = load_baseline(tmp_path, "main", "light")  # before the run, as the gate does
    run = _run(2, 2000, slower=1.3)
    _save(tmp_path, run)  # after the run: the baseline update

    against_older = _compare(older, run, p95_regression=0.10)
    against_itself = _compare(load_baseline(tmp_path, "main", "light"), run, p95_regression=0.10)

    assert older.total.requests == 2000
    assert against_older["p95_regression"].outcome is Outcome.FAIL
    assert against_itself["p95_regression"].outcome is Outcome.PASS  # what we must never do


# --- statistics ----------------------------------------------------------------------


@pytest.mark.parametrize("metric", REGRESSION_KEYS)
def test_the_same_distribution_twice_is_not_a_regression_in_95_percent_of_trials(
    tmp_path: Path, metric: str
) -> None:
    # allowance 0: any FAIL is a false alarm, so this checks the interval's error rate
    false_alarms = 0
    for trial in range(200):
        _save(tmp_path, _run(2 * trial, 400, poisson=True))
        base = load_baseline(tmp_path, "main", "light")
        check = _compare(base, _run(2 * trial + 1, 400, poisson=True), **{metric: 0.0})[metric]
        false_alarms += check.outcome is Outcome.FAIL
    assert false_alarms <= 10  # at least 95 % not FAIL (the design bound is 2.5 %)


@pytest.mark.parametrize("metric", ["p50_regression", "p95_regression", "avg_regression"])
def test_a_30_percent_slower_service_fails_with_2000_samples(tmp_path: Path, metric: str) -> None:
    _save(tmp_path, _run(1, 2000))
    base = load_baseline(tmp_path, "main", "light")

    check = _compare(base, _run(2, 2000, slower=1.3), **{metric: 0.10})[metric]

    assert check.outcome is Outcome.FAIL
    assert check.ci is not None
    assert 0.10 < check.ci[0] <= check.observed <= check.ci[1]  # type: ignore[operator]
    assert check.observed == pytest.approx(0.3, abs=0.08)


def test_a_rise_in_errors_fails_its_percentage_point_allowance(tmp_path: Path) -> None:
    _save(tmp_path, _run(1, 4000, error_rate=0.01))
    base = load_baseline(tmp_path, "main", "light")

    check = _compare(base, _run(2, 4000, error_rate=0.04), error_rate_regression=0.01)[
        "error_rate_regression"
    ]

    assert check.outcome is Outcome.FAIL
    assert check.observed == pytest.approx(0.03, abs=0.008)


def test_a_throughput_drop_fails_and_a_steady_one_passes(tmp_path: Path) -> None:
    _save(tmp_path, _run(1, 4000, duration_s=100.0))
    base = load_baseline(tmp_path, "main", "light")

    dropped = _compare(base, _run(2, 3000, duration_s=100.0), rps_regression=0.10)
    steady = _compare(base, _run(3, 4000, duration_s=100.0), rps_regression=0.10)

    assert dropped["rps_regression"].outcome is Outcome.FAIL
    assert dropped["rps_regression"].observed == pytest.approx(0.25)
    assert steady["rps_regression"].outcome is Outcome.PASS


def test_tiny_samples_are_inconclusive_even_when_slower(tmp_path: Path) -> None:
    _save(tmp_path, _run(1, 12))
    base = load_baseline(tmp_path, "main", "light")

    checks = _compare(
        base, _run(2, 12, slower=1.3), p50_regression=0.1, p95_regression=0.1,
        p99_regression=0.1, avg_regression=0.1, error_rate_regression=0.01,
    )  # fmt: skip

    assert {m: c.outcome for m, c in checks.items()} == dict.fromkeys(checks, Outcome.INCONCLUSIVE)
    assert checks["p95_regression"].ci == (-1.0, math.inf)  # 12 samples bound no p95


def test_an_endpoint_missing_from_the_baseline_is_invalid_and_says_why(tmp_path: Path) -> None:
    _save(tmp_path, _run(1, 400))
    base = load_baseline(tmp_path, "main", "light")
    by_endpoint, stats = _run(2, 400)

    (check,) = compare(base, by_endpoint, stats, {"p95_regression": 0.1}, endpoint="GET /new")

    assert check.outcome is Outcome.INVALID
    assert check.message() == (
        "light: GET /new p95 vs baseline 'main' (allowed +10 %): invalid, baseline 'main' "
        f"({base.path}) has no request of GET /new; save a new baseline"
    )


def test_a_baseline_of_another_load_makes_every_check_invalid(tmp_path: Path) -> None:
    settings = {"users": 10, "wait_s": [0.5, 2.0], "arrival_rate": None, "duration_s": 300}
    _save(tmp_path, _run(1, 400), meta={"settings": settings})
    base = load_baseline(tmp_path, "main", "light")
    by_endpoint, stats = _run(2, 400)
    smoke = {**settings, "duration_s": 20}  # a shorter run of the same load compares fine
    other = {**settings, "users": 5}

    same = compare(base, by_endpoint, stats, {"p95_regression": 0.5}, settings=smoke)
    (check,) = compare(base, by_endpoint, stats, {"p95_regression": 0.5}, settings=other)

    assert same[0].outcome is not Outcome.INVALID
    assert check.outcome is Outcome.INVALID
    assert check.reason.startswith("baseline 'main' ran another load (users=10; this run users=5)")


def test_a_baseline_saved_with_stages_under_shape_still_compares_its_stages(
    tmp_path: Path,
) -> None:
    stages = [[10.0, 5, 5.0], [20.0, 50, 50.0]]
    older = {"users": 5, "wait_s": [0.0, 0.0], "arrival_rate": None, "shape": stages}
    _save(tmp_path, _run(1, 400), meta={"settings": older})
    base = load_baseline(tmp_path, "main", "light")
    assert base.meta["settings"]["stages"] == stages
    by_endpoint, stats = _run(2, 400)
    now = {"users": 5, "wait_s": [0.0, 0.0], "arrival_rate": None, "shape": "spike"}
    same = compare(base, by_endpoint, stats, {"p95_regression": 0.5},
                   settings={**now, "stages": stages})  # fmt: skip
    (check,) = compare(base, by_endpoint, stats, {"p95_regression": 0.5},
                       settings={**now, "stages": stages[:1]})  # fmt: skip

    assert same[0].outcome is not Outcome.INVALID
    assert check.outcome is Outcome.INVALID and "stages=" in check.reason


def test_regression_checks_are_checks_that_merge_into_a_verdict(tmp_path: Path) -> None:
    _save(tmp_path, _run(1, 2000))
    base = load_baseline(tmp_path, "main", "light")

    (check,) = compare(base, *_run(2, 2000, slower=1.3), {"p95_regression": 0.1}, severity="warn")

    assert isinstance(check, Check)
    assert (check.scenario, check.endpoint, check.severity) == ("light", TOTAL, "warn")
    assert check.over_budget
    assert check.message().endswith("[warn]")


# --- messages ------------------------------------------------------------------------


def _check(metric: str, outcome: Outcome, **kw: object) -> RegressionCheck:
    values: dict[str, object] = {
        "scenario": "light", "endpoint": PREDICT, "metric": metric, "limit": 0.10,
        "observed": 0.31, "n": 2000, "outcome": outcome, "ci": (0.18, 0.45),
        "baseline": "main", "base_value": 100.0, "new_value": 131.0, "base_n": 1800,
    }  # fmt: skip
    return RegressionCheck(**{**values, **kw})  # type: ignore[arg-type]


def test_a_failed_latency_regression_reads_as_a_sentence() -> None:
    assert _check("p95_regression", Outcome.FAIL).message() == (
        "light: POST /predict p95 +31 % vs baseline 'main', beyond the allowed +10 % "
        "(100 -> 131 ms, n=1 800 -> 2 000, 95 % CI +18 % to +45 %)"
    )


def test_a_throughput_drop_reads_as_a_negative_change() -> None:
    check = _check(
        "rps_regression", Outcome.FAIL, observed=0.25, ci=(0.2, 0.3), base_value=20.0,
        new_value=15.0,
    )  # fmt: skip
    assert check.message() == (
        "light: POST /predict throughput -25 % vs baseline 'main', beyond the allowed -10 % "
        "(20 -> 15 req/s, n=1 800 -> 2 000, 95 % CI -30 % to -20 %)"
    )


def test_an_error_rate_regression_reads_in_percentage_points() -> None:
    check = _check(
        "error_rate_regression", Outcome.PASS, limit=0.005, observed=0.001, ci=(-0.002, 0.004),
        base_value=0.01, new_value=0.011,
    )  # fmt: skip
    assert check.message() == (
        "light: POST /predict error rate +0.10 pp vs baseline 'main', within the allowed "
        "+0.50 pp (1.00 -> 1.10 %, n=1 800 -> 2 000, 95 % CI -0.20 pp to +0.40 pp)"
    )


def test_an_inconclusive_regression_says_how_many_samples_would_decide_it() -> None:
    check = _check("p50_regression", Outcome.INCONCLUSIVE, observed=0.042, ci=(-0.05, 0.14),
                   more_samples=3100)  # fmt: skip
    assert check.message() == (
        "light: POST /predict p50 +4.2 % vs baseline 'main' ~ allowed +10 % (100 -> 131 ms, "
        "n=1 800 -> 2 000, 95 % CI -5.0 % to +14 %): inconclusive, the allowance lies inside "
        "the CI; about 3 100 more samples would decide it"
    )


def test_a_plain_check_of_a_regression_metric_gets_a_sentence_too() -> None:
    plain = Check("light", TOTAL, "avg_regression", 0.2, 0.05, 500, Outcome.PASS, ci=(0.0, 0.1))

    assert regression_message(plain) == (
        "light: Total mean +5.0 % vs the baseline, within the allowed +20 % "
        "(n=500, 95 % CI +0.0 % to +10 %)"
    )


# --- regression budgets --------------------------------------------------------------


def test_regression_budgets_accept_percent_strings_and_fractions() -> None:
    parsed = parse_regressions(
        {"p95_regression": "10%", "p99_regression": "150 %", "avg_regression": 0.2,
         "error_rate_regression": "0.5%", "rps_regression": 0},
        "thresholds.yaml: scenarios.light.budgets",
    )  # fmt: skip

    assert parsed == {
        "p95_regression": pytest.approx(0.10), "p99_regression": pytest.approx(1.5),
        "avg_regression": 0.2, "error_rate_regression": pytest.approx(0.005),
        "rps_regression": 0.0,
    }  # fmt: skip


SHARE = "expected a share such as '10%' or 0.10"
KNOWN = ", ".join(REGRESSION_KEYS)


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("p95_regression", "10", f"{SHARE}, got '10'"),
        ("p95_regression", 10, "expected a fraction between 0 and 1 or a percent such as '10%', "
                               "got 10"),
        ("p95_regression", "ten%", f"{SHARE}, got 'ten%'"),
        ("p95_regression", "-5%", f"{SHARE} (finite, >= 0), got '-5%'"),
        ("p95_regression", True, f"{SHARE}, got True"),
        ("rps_regression", "120%", "expected at most 100 %, got '120%'"),
        ("p95_ms", "10%", f"unknown regression key 'p95_ms'; known keys: {KNOWN}"),
    ],
)  # fmt: skip
def test_a_bad_regression_budget_names_where_key_and_value(
    key: str, value: object, problem: str
) -> None:
    where = "thresholds.yaml: scenarios.light.endpoints.POST /predict"

    with pytest.raises(ConfigError) as info:
        parse_regressions({key: value}, where)

    assert str(info.value) == f"{where}.{key}: {problem}"


def test_regression_budgets_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError, match=r"^perf_budget: expected a mapping of regression"):
        parse_regressions(["p95_regression"], "perf_budget")


def test_samples_are_grouped_by_endpoint_in_arrival_order() -> None:
    samples: Sequence[Sample] = [
        Sample(0.0, PREDICT, 3.0, True), Sample(0.1, HEALTH, 1.0, True),
        Sample(0.2, PREDICT, 2.0, False),
    ]  # fmt: skip
    assert samples_by_endpoint(samples) == {PREDICT: [3.0, 2.0], HEALTH: [1.0]}


@pytest.mark.parametrize(
    "change", [{"arrivals": "uniform"}, {"burstiness": 0.5}, {"seed": 1}], ids=str
)
def test_a_baseline_of_other_arrivals_makes_every_check_invalid(
    tmp_path: Path, change: Mapping[str, object]
) -> None:
    settings = {"users": 16, "arrival_rate": 2.0, "arrivals": "poisson", "burstiness": None,
                "seed": 0}  # fmt: skip
    _save(tmp_path, _run(1, 400), meta={"settings": settings})
    base = load_baseline(tmp_path, "main", "light")
    by_endpoint, stats = _run(2, 400)

    (check,) = compare(
        base, by_endpoint, stats, {"p95_regression": 0.5}, settings={**settings, **change}
    )

    assert check.outcome is Outcome.INVALID
    (key,) = change
    assert check.reason.startswith(f"baseline 'main' ran another load ({key}=")


@pytest.mark.parametrize("metric", ["p95_regression", "avg_regression"])
def test_a_run_a_stop_rule_watched_is_compared_with_intervals_valid_at_its_stop(
    tmp_path: Path, metric: str
) -> None:
    _save(tmp_path, _run(1, 2000))
    base = load_baseline(tmp_path, "main", "light")
    by_endpoint, stats = _run(2, 2000, slower=1.05)
    watched = RunStats(
        {k: dataclasses.replace(v, anytime=True) for k, v in stats.endpoints.items()},
        dataclasses.replace(stats.total, anytime=True),
        stats.duration_s,
    )
    (fixed,) = compare(base, by_endpoint, stats, {metric: 0.10})
    (anytime,) = compare(base, by_endpoint, watched, {metric: 0.10})
    assert fixed.ci is not None and anytime.ci is not None
    # the same change, a wider interval: a confidence sequence on both sides
    assert anytime.observed == fixed.observed
    assert anytime.ci[0] < fixed.ci[0] and anytime.ci[1] > fixed.ci[1]
