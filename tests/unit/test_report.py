"""Reports: the result JSON, the terminal table, the GitHub summary, the HTML page."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pytest_perfgate.config import Budget, Scenario
from pytest_perfgate.core.findings import analyze
from pytest_perfgate.core.stats import TOTAL, EndpointStats, RunStats
from pytest_perfgate.core.verdict import Check, Outcome, Verdict
from pytest_perfgate.load.locust_driver import Progress, RawRun
from pytest_perfgate.results.html import render_html, write_html
from pytest_perfgate.results.report import (
    ScenarioResult,
    github_summary_markdown,
    progress_line,
    terminal_table,
    write_all,
    write_json,
)


def ep(name: str, requests: int, failures: int, p95: float, std: float = 6.0) -> EndpointStats:
    return EndpointStats(
        name=name, requests=requests, failures=failures, rps=requests / 60, mean=p95 / 2,
        std=std, min=2.0, max=p95 * 3, p50=p95 / 2.2, p95=p95, p99=p95 * 1.6,
        ci={"p50": (p95 / 2.4, p95 / 2.0), "p95": (p95 * 0.95, p95 * 1.06),
            "p99": (p95 * 1.4, p95 * 1.9)},
    )  # fmt: skip


def make_result(
    *,
    name: str = "light",
    outcome: Outcome = Outcome.PASS,
    p95: float = 48.2,
    endpoint: str = "POST /predict mlp",
    std: float = 6.0,
    reasons: tuple[str, ...] = (),
) -> ScenarioResult:
    scenario = Scenario(
        name=name, users=10, spawn_rate=2.0, duration_s=60.0, wait_min_s=0.5, wait_max_s=2.0,
        warmup_s=5.0, budget=Budget(p95_ms=100.0, error_rate=0.01),
        description="steady light traffic",
    )  # fmt: skip
    mlp = ep(endpoint, 450, 1, p95, std)
    enc = ep("POST /predict encoder", 150, 0, p95 * 0.8)
    total = ep(TOTAL, 600, 1, p95, std)
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
        Check(name, TOTAL, "p95_ms", 100.0, p95, 600, outcome, ci=total.ci["p95"]),
        Check(name, TOTAL, "error_rate", 0.01, 1 / 600, 600, Outcome.PASS, ci=(0.0004, 0.009)),
    )
    verdict = Verdict(name, outcome, checks, reasons)
    return ScenarioResult(
        scenario=scenario, raw=raw, stats=stats, verdict=verdict,
        analysis=analyze(stats, history, loadgen_cpu_percent=31.0),
        started_at=datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC),
        thresholds=Path("/repo/thresholds.yaml"),
    )  # fmt: skip


# --- JSON ----------------------------------------------------------------------------


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
        "shape": None,
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


# --- terminal ------------------------------------------------------------------------


def test_the_terminal_table_shows_endpoints_budgets_grade_and_verdict() -> None:
    lines = terminal_table([make_result(), make_result(name="medium", outcome=Outcome.FAIL,
                                                       p95=250.0)])  # fmt: skip
    text = "\n".join(lines)
    assert lines[0].startswith("light: PASS, grade Good - 10 users, measured 0:55, 600 requests")
    assert "medium: FAIL, grade Poor" in text
    row = next(line for line in lines if "POST /predict mlp" in line)
    assert re.search(r"POST /predict mlp\s+450\s+1\s+7\.5\s+21\.9\s+48\.2 \(45\.8-51\.1\)\s+77\.1"
                     r"\s+Good", row)  # fmt: skip
    assert re.search(r"budget Total\s+p95 < 100 ms\s+observed 48\.2 ms\s+PASS", text)
    assert re.search(r"budget Total\s+errors < 1\.00 %\s+observed 0\.17 %\s+PASS", text)
    assert re.search(r"budget Total\s+p95 < 100 ms\s+observed 250 ms\s+FAIL", text)
    assert "finding (warning): Total: P95" not in text  # the endpoints carry it, not the total
    assert "finding (warning): POST /predict mlp: P95 250 ms is above 200 ms" in text


def test_the_terminal_table_is_aligned_and_at_most_120_columns() -> None:
    lines = terminal_table([make_result(endpoint="POST /a/very/long/endpoint/name/that/goes/on")])
    assert max(len(line) for line in lines) <= 120
    header = next(line for line in lines if "endpoint" in line and "requests" in line)
    rows = [line for line in lines if line.rstrip().endswith(("Excellent", "Good"))]
    assert len(rows) == 3
    # right-aligned numbers end where their header ends
    for column in ("requests", "p50 ms", "p99 ms"):
        end = header.index(column) + len(column)
        assert all(row[end - 1] != " " and row[end] == " " for row in rows), column
    assert any("POST /a/very/long/endpoint/na~" in row for row in rows)


def test_the_terminal_table_lists_invalid_reasons() -> None:
    result = make_result(outcome=Outcome.INVALID, reasons=("only 12 samples, 50 needed",))
    table = terminal_table([result])
    assert "  - only 12 samples, 50 needed" in table
    assert any(line.startswith("light: INVALID") for line in table)


def test_the_progress_line_shows_time_users_rate_p95_and_failures() -> None:
    progress = Progress(elapsed_s=65.2, users=10, requests=612, failures=3, rps=12.34, p95_ms=48.2)
    line = progress_line(progress, duration_s=300.0, scenario="light")
    assert line == (
        "light 1:05/5:00 (3:55 left)  10 users  12.3 req/s  p95 48.2 ms  "
        "612 requests, 3 failures (0.49 %)"
    )
    early = Progress(elapsed_s=2.0, users=1, requests=0, failures=0, rps=0.0, p95_ms=None)
    assert progress_line(early) == (
        "0:02  1 users  0.0 req/s  p95 -  0 requests, 0 failures (0.00 %)"
    )


# --- GitHub step summary -------------------------------------------------------------


def test_the_github_summary_has_a_budget_table_and_top_findings() -> None:
    md = github_summary_markdown([make_result(outcome=Outcome.FAIL, p95=250.0,
                                              endpoint="POST /a|b")])  # fmt: skip
    assert "### light: ❌ FAIL - grade Poor" in md
    assert "| endpoint | metric | observed | budget | 95 % CI | verdict | grade |" in md
    assert "| Total | p95 | 250 ms | p95 < 100 ms | 238-265 ms | ❌ FAIL | Poor |" in md
    assert "| Total | errors | 0.17 % | errors < 1.00 % | 0.04-0.90 % | ✅ PASS | Poor |" in md
    assert "| POST /a\\|b | p95 | 250 ms | - | 238-265 ms | - | Poor |" in md  # unbudgeted, escaped
    assert "- **warning** POST /a\\|b: P95 250 ms is above 200 ms: POST /a\\|b answered" in md


# --- HTML ----------------------------------------------------------------------------


def test_the_html_report_is_self_contained_and_holds_verdict_charts_and_findings() -> None:
    page = render_html(make_result(outcome=Outcome.FAIL, p95=250.0, endpoint="POST <x>"))
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page and "<link" not in page and "src=" not in page
    assert re.findall(r"https?://[^\"' ]+", page) == ["http://www.w3.org/2000/svg"] * 4
    assert "POST &lt;x&gt;" in page and "POST <x>" not in page
    assert ">FAIL<" in page and "grade Poor" in page
    for title in ("Response time percentiles", "Requests per second", "Errors per second", "Users"):
        assert f">{title}</text>" in page
    paths = re.findall(r'<path class="line" d="(M[^"]+)"', page)
    assert len(paths) == 5  # p50, p95, req/s, errors/s, users
    assert all(p.count("L") == 59 for p in paths)  # 60 points each
    assert "P95 budget" in page and "warm-up" in page
    assert "P95 250 ms is above 200 ms" in page and "Profile one inference" in page


def test_a_run_without_history_says_so_in_each_chart(tmp_path: Path) -> None:
    result = make_result()
    raw = RawRun(result.scenario, (), 1.0, "interrupted", {})
    bare = dataclasses.replace(result, raw=raw)
    page = render_html(bare)
    assert page.count("no data recorded") == 4
    assert write_html(tmp_path / "r.html", bare).read_text() == page


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--enable-logging=stderr", "--v=0", "--window-size=1280,1600",
]  # fmt: skip


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True, text=True, timeout=120, check=False,
            env={**os.environ, "HOME": profile},
        )  # fmt: skip


@pytest.mark.e2e
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_the_html_report_renders_offline_in_headless_chromium(tmp_path: Path) -> None:
    page = write_html(tmp_path / "light.html", make_result(outcome=Outcome.FAIL, p95=250.0))
    dom = chromium("--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count("<svg") == 4
    assert len(re.findall(r'<path class="line" d="M[\d.]+,[\d.]+ L', dom.stdout)) == 5
    assert "CONSOLE" not in dom.stderr, dom.stderr  # no console message, no script error
    shot = tmp_path / "light.png"
    run = chromium(f"--screenshot={shot}", page.as_uri())
    assert run.returncode == 0, run.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one


def test_an_interval_side_the_samples_cannot_bound_reads_inf_and_a_latency_never_below_0() -> None:
    from pytest_perfgate.results.report import format_range

    assert format_range("p95_ms", (37.8, float("inf"))) == "37.8-inf ms"
    assert format_range("p95_ms", (float("-inf"), 40.0)) == "0-40 ms"
    assert format_range("gpu_mem_mb", (2000.0, 2500.0)) == "2 000-2 500 MB"
