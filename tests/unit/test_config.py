"""thresholds.yaml validation: every error names the file, the key path and the value."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pytest_perfgate.config import Budget, ConfigError, load_thresholds, parse_duration

ROOT = Path(__file__).resolve().parents[2]

MINIMAL = """
service:
  command: "{python} -m service --port {port}"
scenarios:
  light:
    users: 10
    spawn_rate: 2
    duration: 5m
    wait_time: [0.5, 2]
    tasks:
      - {method: POST, path: /predict, name: /predict mlp, json: {model: mlp}, weight: 3}
      - {method: GET, path: /health}
    budgets: {p95_ms: 100, error_rate: 0.01}
    endpoints:
      "POST /predict mlp": {p99_ms: 300}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "thresholds.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_thresholds(write(tmp_path, text))
    return str(info.value)


def test_the_shipped_thresholds_file_has_the_six_scenarios_of_the_mission() -> None:
    thresholds = load_thresholds(ROOT / "thresholds.yaml")
    six = {"health", "models", "light", "medium", "heavy", "spike"}
    assert set(thresholds.scenarios) == six | {"chat_light"}  # and issue 15's streaming one
    light = thresholds.scenario("light")
    assert (light.users, light.spawn_rate, light.duration_s) == (10, 2.0, 300.0)
    assert (light.wait_min_s, light.wait_max_s) == (0.5, 2.0)
    assert light.budget == Budget(p95_ms=100, error_rate=0.01)
    assert thresholds.scenario("medium").budget == Budget(p95_ms=200, error_rate=0.05)
    assert thresholds.scenario("heavy").users == 200
    assert thresholds.scenario("spike").shape is not None


def test_a_valid_file_becomes_frozen_values_with_task_names_that_include_the_method(
    tmp_path: Path,
) -> None:
    light = load_thresholds(write(tmp_path, MINIMAL)).scenario("light")
    assert [t.name for t in light.tasks] == ["POST /predict mlp", "GET /health"]
    assert light.tasks[0].weight == 3 and light.tasks[0].json == {"model": "mlp"}
    assert light.endpoint_budgets == {"POST /predict mlp": Budget(p99_ms=300)}
    with pytest.raises(AttributeError):
        light.users = 3  # type: ignore[misc]


def test_a_bad_budget_value_names_file_key_path_and_value(tmp_path: Path) -> None:
    message = error_of(tmp_path, MINIMAL.replace("p95_ms: 100", "p95_ms: '1OO'"))
    assert message == (
        "thresholds.yaml: scenarios.light.budgets.p95_ms: "
        "expected a number of milliseconds, got '1OO'"
    )


def test_an_unknown_budget_key_lists_the_known_ones(tmp_path: Path) -> None:
    message = error_of(tmp_path, MINIMAL.replace("p95_ms: 100", "p96_ms: 100"))
    assert message.startswith("thresholds.yaml: scenarios.light.budgets.p96_ms: unknown budget key")
    assert "p95_ms" in message


def test_an_unknown_scenario_key_is_refused(tmp_path: Path) -> None:
    message = error_of(tmp_path, MINIMAL.replace("users: 10", "userz: 10"))
    assert message.startswith("thresholds.yaml: scenarios.light.userz: unknown key 'userz'")


def test_an_unknown_top_level_key_is_refused(tmp_path: Path) -> None:
    message = error_of(tmp_path, MINIMAL + "extra: 1\n")
    assert message.startswith("thresholds.yaml: extra: unknown key 'extra'")


def test_a_bad_task_method_names_the_task_index(tmp_path: Path) -> None:
    message = error_of(tmp_path, MINIMAL.replace("method: GET", "method: FETCH"))
    assert message.startswith("thresholds.yaml: scenarios.light.tasks[1].method:")
    assert "'FETCH'" in message


def test_a_bad_duration_names_the_key_and_the_value(tmp_path: Path) -> None:
    message = error_of(tmp_path, MINIMAL.replace("duration: 5m", "duration: 5 minutes"))
    assert message == (
        "thresholds.yaml: scenarios.light.duration: "
        "expected a duration such as '30s' or '5m', got '5 minutes'"
    )


def test_an_endpoint_budget_must_name_a_task(tmp_path: Path) -> None:
    message = error_of(tmp_path, MINIMAL.replace('"POST /predict mlp": {p99', '"POST /x": {p99'))
    assert "scenarios.light.endpoints.POST /x: no task has this name" in message


def test_invalid_yaml_reports_the_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, "scenarios:\n  light: [unclosed\n")
    assert message.startswith("thresholds.yaml: line 3")
    assert "invalid YAML" in message


def test_a_duplicate_key_is_an_error_not_a_silent_override(tmp_path: Path) -> None:
    message = error_of(tmp_path, MINIMAL.replace("users: 10", "users: 10\n    users: 20"))
    assert "duplicate key 'users'" in message


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="thresholds file not found"):
        load_thresholds(tmp_path / "nope.yaml")


def test_a_service_command_needs_a_port_placeholder(tmp_path: Path) -> None:
    message = error_of(tmp_path, MINIMAL.replace("--port {port}", "--port 8000"))
    assert message.startswith("thresholds.yaml: service.command: expected a command with a {port}")


def test_defaults_apply_to_every_scenario_and_a_scenario_overrides_them(tmp_path: Path) -> None:
    text = MINIMAL.replace("scenarios:", "defaults:\n  warmup: 7s\n  min_samples: 9\nscenarios:")
    light = load_thresholds(write(tmp_path, text)).scenario("light")
    assert (light.warmup_s, light.min_samples) == (7.0, 9)


def test_budget_lines_are_remembered_for_annotations(tmp_path: Path) -> None:
    light = load_thresholds(write(tmp_path, MINIMAL)).scenario("light")
    assert light.source_lines["budgets.p95_ms"] == 13
    assert light.source_lines["endpoints.POST /predict mlp.p99_ms"] == 15


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(90, 90.0), ("90s", 90.0), ("1m30s", 90.0), ("1.5h", 5400.0), ("250ms", 0.25), ("2", 2.0)],
)
def test_parse_duration_reads_the_usual_spellings(text: object, seconds: float) -> None:
    assert parse_duration(text, "x") == seconds


@pytest.mark.parametrize("bad", ["", "5 minutes", "-3s", True, [1], "1m-"])
def test_parse_duration_refuses_everything_else(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"^x: "):
        parse_duration(bad, "x")


def test_overrides_shorten_a_run_and_cap_its_warm_up() -> None:
    light = load_thresholds(ROOT / "thresholds.yaml").scenario("light")
    short = light.with_overrides(duration_s=8, users=3)
    assert (short.duration_s, short.users, short.warmup_s) == (8, 3, 2.0)


def test_an_open_workload_needs_a_positive_rate_and_its_own_tasks(tmp_path: Path) -> None:
    message = error_of(tmp_path, MINIMAL.replace("users: 10", "users: 10\n    arrival_rate: 0"))
    assert message == "thresholds.yaml: scenarios.light.arrival_rate: expected a rate > 0, got 0"
    shaped = MINIMAL.replace(
        "users: 10",
        "users: 10\n    arrival_rate: 5\n    shape: {type: ramp, stages: [{until: 5s, users: 2}]}",
    )
    assert "takes neither a locustfile nor a shape" in error_of(tmp_path, shaped)
    light = load_thresholds(
        write(tmp_path, MINIMAL.replace("users: 10", "users: 10\n    arrival_rate: 5"))
    ).scenario("light")
    assert light.arrival_rate == 5.0
