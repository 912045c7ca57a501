"""core.model: budgets keyed by the registry, scenarios, and the one Scenario -> dict."""

from __future__ import annotations

import pickle

import pytest

from pytest_perfgate import config
from pytest_perfgate.core.model import (
    Budget,
    LoadShape,
    Scenario,
    Task,
    budget_from_mapping,
    scenario_settings,
)
from pytest_perfgate.errors import ConfigError


def test_budget_from_mapping_accepts_percent_error_rates_and_the_mean_alias() -> None:
    budget = budget_from_mapping({"error_rate": "1%", "mean_ms": 20, "severity": "warn"}, "m")
    assert budget == Budget(error_rate=0.01, avg_ms=20, severity="warn")
    assert repr(budget) == "Budget(avg_ms=20, error_rate=0.01, warn)"


def test_budget_from_mapping_refuses_an_error_rate_above_one() -> None:
    with pytest.raises(ConfigError, match=r"^m.error_rate: expected a fraction between 0 and 1"):
        budget_from_mapping({"error_rate": 5}, "m")


def test_a_metric_and_its_alias_together_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"^m.mean_ms: avg_ms and mean_ms are the same budget"):
        budget_from_mapping({"avg_ms": 10, "mean_ms": 20}, "m")


def test_a_bad_severity_names_the_key_and_the_value() -> None:
    with pytest.raises(ConfigError, match=r"^m.severity: expected 'block' or 'warn', got 'x'$"):
        budget_from_mapping({"severity": "x"}, "m")


def test_regression_allowances_go_with_the_budget_and_read_in_its_repr() -> None:
    budget = budget_from_mapping({"p95_ms": 100, "p95_regression": "10%"}, "m")
    assert budget.regressions == {"p95_regression": 0.10}
    assert repr(budget) == "Budget(p95_ms=100, p95_regression=0.1)"


def test_merged_budget_takes_the_other_budgets_limits() -> None:
    merged = Budget(p95_ms=100, error_rate=0.01).merged(Budget(p95_ms=80))
    assert merged == Budget(p95_ms=80, error_rate=0.01)


def test_a_budget_reads_each_limit_as_an_attribute_in_registry_order() -> None:
    budget = Budget(error_rate=0.01, p95_ms=100)
    assert (budget.p95_ms, budget.error_rate, budget.p99_ms, budget.mean_ms) == (
        100, 0.01, None, None,
    )  # fmt: skip
    assert list(budget.limits()) == ["p95_ms", "error_rate"]
    assert not Budget() and Budget(regressions={"p95_regression": 0.1})
    with pytest.raises(AttributeError):
        budget.p96_ms  # noqa: B018


def test_a_budget_refuses_an_unknown_metric_and_survives_pickling() -> None:
    with pytest.raises(TypeError, match="p96_ms"):
        Budget(p96_ms=1)
    budget = Budget(p95_ms=100, severity="warn", regressions={"p95_regression": 0.1})
    assert pickle.loads(pickle.dumps(budget)) == budget


def test_scenario_settings_is_one_json_ready_dict_of_the_load() -> None:
    shape = LoadShape("spike", ((10.0, 5, 5.0), (20.0, 50, 50.0), (30.0, 5, 5.0)))
    task = Task("GET", "/", "GET /")
    scenario = Scenario("s", users=5, spawn_rate=5.0, duration_s=30.0, wait_min_s=0.5,
                        wait_max_s=2.0, tasks=(task,), shape=shape)  # fmt: skip
    assert scenario_settings(scenario) == {
        "users": 5, "spawn_rate": 5.0, "duration_s": 30.0, "wait_s": [0.5, 2.0],
        "warmup_s": 0.0, "processes": 1, "request_timeout_s": 10.0, "min_samples": 50,
        "arrival_rate": None, "arrivals": "uniform", "burstiness": 1.0, "seed": 0,
        "shape": "spike", "stages": [[10.0, 5, 5.0], [20.0, 50, 50.0], [30.0, 5, 5.0]],
    }  # fmt: skip


def test_config_re_exports_the_values_it_reads_the_file_into() -> None:
    for name in ("Budget", "Scenario", "Task", "LoadShape", "ServiceSpec", "Thresholds"):
        assert name in config.__all__
        assert getattr(config, name).__module__ == "pytest_perfgate.core.model"
    assert config.RUN_FIGURES == (
        "gpu_mem_mb", "gpu_util_min", "hard_error_rate", "recovery_s", "rss_growth_mb",
    )  # fmt: skip
