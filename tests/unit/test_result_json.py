"""The result JSON (``results.result``) and the files of a run (``results.files``)."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from report_samples import make_result

from pytest_perfgate.core.stats import TOTAL
from pytest_perfgate.core.verdict import Outcome
from pytest_perfgate.results.files import write_all, write_json
from pytest_perfgate.results.result import result_to_dict, stats_from_dict, stats_to_dict


def test_the_json_result_has_the_total_p95_at_analysis_summary_p95(tmp_path: Path) -> None:
    path = write_json(tmp_path / "light.json", make_result(p95=48.2))
    data = json.loads(path.read_text())
    assert data["analysis"]["summary"]["p95"] == 48.2
    assert data["analysis"]["summary"]["grade"] == "Good"  # p95 Excellent, errors 0.17 % Good
    # the CI step of the README reads it exactly like this
    check = (
        "import json,sys; d=json.load(open(sys.argv[1])); "
        "assert d['analysis']['summary']['p95'] < 200"
    )
    subprocess.run([sys.executable, "-c", check, str(path)], check=True)


def test_the_json_result_holds_settings_statistics_budgets_verdict_and_findings(
    tmp_path: Path,
) -> None:
    result = make_result(outcome=Outcome.FAIL, p95=250.0)
    data = json.loads(write_json(tmp_path / "r.json", result).read_text())
    assert data["format"] == "pytest-perfgate/result/1"
    assert (data["scenario"], data["thresholds"]) == ("light", "/repo/thresholds.yaml")
    assert data["settings"] == {
        "users": 10, "spawn_rate": 2.0, "duration_s": 60.0, "wait_s": [0.5, 2.0],
        "warmup_s": 5.0, "processes": 1, "request_timeout_s": 10.0, "min_samples": 50,
        "arrival_rate": None, "shape": None, "stages": None,
        "arrivals": "uniform", "burstiness": 1.0, "seed": 0,
        }  # fmt: skip
    assert data["started_at"] == "2024-05-01T10:00:00+00:00"
    assert (data["duration_s"], data["stop_reason"]) == (60.0, "duration")
    mlp = data["statistics"]["endpoints"]["POST /predict mlp"]
    assert set(mlp) >= {"requests", "failures", "success_rate", "rps", "mean", "std", "min",
                        "max", "p50", "p95", "p99", "ci"}  # fmt: skip
    assert mlp["ci"]["p95"] == [pytest.approx(237.5), pytest.approx(265.0)]
    assert data["statistics"]["total"]["requests"] == 600
    p95_budget = data["budgets"][0]
    assert p95_budget | {"message": "x"} == {
        "endpoint": TOTAL, "metric": "p95_ms", "limit": 100.0, "observed": 250.0, "n": 600,
        "outcome": "FAIL", "severity": "block", "ci": [pytest.approx(237.5), 265.0],
        "message": "x",
    }  # fmt: skip
    assert p95_budget["message"] == result.verdict.checks[0].message()
    assert data["verdict"] == {"outcome": "FAIL", "passed": False, "reasons": []}
    assert data["grades"][TOTAL] == "Poor"
    assert "high_latency" in [f["kind"] for f in data["analysis"]["findings"]]
    assert len(data["history"]) == 60
    assert data["files"]["stats_csv"] == "/r/x_stats.csv"


def test_the_json_result_is_strict_json_with_unknown_figures_as_null(tmp_path: Path) -> None:
    text = write_json(tmp_path / "r.json", make_result(std=float("nan"))).read_text()

    def refuse(name: str) -> Any:
        raise AssertionError(f"non-standard JSON constant {name}")

    data = json.loads(text, parse_constant=refuse)
    assert data["statistics"]["total"]["std"] is None


def test_the_result_dict_is_strict_json_data_too() -> None:
    data = result_to_dict(make_result(std=float("nan")))
    assert data["statistics"]["total"]["std"] is None
    json.dumps(data, allow_nan=False)


def test_statistics_read_back_as_written_with_unbounded_interval_sides_as_infinities() -> None:
    stats = make_result().stats
    ci = {**stats.total.ci, "p99": (77.0, math.inf), "p50": (-math.inf, 22.0)}
    stats = dataclasses.replace(stats, total=dataclasses.replace(stats.total, ci=ci))
    data = json.loads(json.dumps(stats_to_dict(stats), allow_nan=False))
    assert data["total"]["ci"]["p99"][1] is None
    back = stats_from_dict(data)
    assert (back.total.ci["p99"], back.total.ci["p50"]) == ((77.0, math.inf), (-math.inf, 22.0))
    assert back.endpoints == stats.endpoints
    assert (back.total.requests, back.total.ci_level) == (600, 0.95)


def test_an_existing_result_file_is_never_overwritten(tmp_path: Path) -> None:
    taken = tmp_path / "light.json"
    taken.write_text("an earlier run")
    first = write_json(taken, make_result())
    second = write_json(taken, make_result())
    assert (first.name, second.name) == ("light-1.json", "light-2.json")
    assert taken.read_text() == "an earlier run"
    assert json.loads(first.read_text())["scenario"] == "light"


def test_write_all_writes_the_html_and_the_json_that_lists_it(tmp_path: Path) -> None:
    files = write_all(make_result(), tmp_path / "results", "20240501-100000_light")
    assert files == {
        "html": tmp_path / "results" / "20240501-100000_light.html",
        "json": tmp_path / "results" / "20240501-100000_light.json",
    }
    data = json.loads(files["json"].read_text())
    assert data["files"]["html"] == str(files["html"])
    assert data["files"]["log"] == "/r/x.log"
    again = write_all(make_result(), tmp_path / "results", "20240501-100000_light")
    assert again["json"].name == "20240501-100000_light-1.json"
