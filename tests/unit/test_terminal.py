"""The terminal views (``results.terminal``): the session table and the live line."""

from __future__ import annotations

import dataclasses
import re

from report_samples import make_result

from pytest_perfgate.core.metrics import metric
from pytest_perfgate.core.verdict import Outcome
from pytest_perfgate.load.driver import Progress
from pytest_perfgate.results.terminal import progress_line, stop_text, terminal_table


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
        "0:02  1 users  0 req/s  p95 -  0 requests, 0 failures (0.00 %)"
    )


def test_a_throughput_is_grouped_as_everywhere_else() -> None:
    progress = Progress(elapsed_s=1.0, users=1, requests=1, failures=0, rps=1234.5, p95_ms=1.0)
    assert "  1 234.5 req/s  " in progress_line(progress)


def test_a_run_ends_by_its_duration_an_early_stop_or_an_abort() -> None:
    assert stop_text("duration") == "its configured duration"
    assert stop_text("stopped: stop: every blocking budget decided") == (
        "early stop: every blocking budget decided"
    )
    assert stop_text("stopped: abort: p95 far above") == "early abort: p95 far above"
    assert stop_text("stopped: SIGTERM") == "a stop: SIGTERM"


def test_a_floor_budget_reads_at_least_in_the_table() -> None:
    result = make_result()
    check = dataclasses.replace(result.verdict.checks[0], metric="gpu_util_min", limit=50.0,
                                observed=42.0)  # fmt: skip
    verdict = dataclasses.replace(result.verdict, checks=(check,))
    (line,) = [ln for ln in terminal_table([dataclasses.replace(result, verdict=verdict)])
               if "budget" in ln]  # fmt: skip
    assert "GPU util >= 50 %" in line and "observed 42 %" in line


def test_an_interval_side_the_samples_cannot_bound_reads_inf_and_a_latency_never_below_0() -> None:
    p95 = metric("p95_ms")
    assert p95.format_interval(37.8, float("inf")) == "37.8-inf ms"
    assert p95.format_interval(float("-inf"), 40.0) == "0-40 ms"
    assert metric("gpu_mem_mb").format_interval(2000.0, 2500.0) == "2 000-2 500 MB"
