"""The ``perfgate`` command: analyze, compare, run; user mistakes are one line and exit 2."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pytest_perfgate.cli import main
from pytest_perfgate.cli.compare import parse_tolerance
from pytest_perfgate.config import Budget, Scenario
from pytest_perfgate.core.findings import analyze
from pytest_perfgate.core.stats import TOTAL, EndpointStats, RunStats
from pytest_perfgate.core.verdict import Check, Outcome, Verdict
from pytest_perfgate.load.driver import RawRun
from pytest_perfgate.results.files import write_json
from pytest_perfgate.results.result import ScenarioResult

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[2]


def result_json(
    path: Path,
    *,
    p95: float,
    failures: int = 0,
    rps: float = 10.0,
    budget: bool = True,
    level: float = 0.95,
) -> Path:
    """Write a perfgate result whose only endpoint has this P95 (and a p95 budget on it)."""
    scenario = Scenario(name="light", users=10, spawn_rate=2.0, duration_s=60.0,
                        budget=Budget(p95_ms=100.0) if budget else Budget())  # fmt: skip

    def ep(name: str) -> EndpointStats:
        return EndpointStats(
            name=name, requests=1000, failures=failures, rps=rps, mean=p95 / 2, std=3.0,
            min=1.0, max=p95 * 2, p50=p95 / 2, p95=p95, p99=p95 * 1.5,
            ci={"p95": (p95 * 0.9, p95 * 1.1)}, ci_level=level,
        )  # fmt: skip

    stats = RunStats({"POST /predict": ep("POST /predict")}, ep(TOTAL), duration_s=100.0)
    outcome = Outcome.PASS if p95 < 100 else Outcome.FAIL
    checks = (Check("light", TOTAL, "p95_ms", 100.0, p95, 1000, outcome),) if budget else ()
    result = ScenarioResult(
        scenario=scenario,
        raw=RawRun(scenario, (), 100.0, "duration", {}),
        stats=stats,
        verdict=Verdict("light", outcome, checks),
        analysis=analyze(stats),
        started_at=datetime(2024, 5, 1, tzinfo=UTC),
    )
    return write_json(path, result)


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("perfgate: error: ")
    return lines[0]


# --- analyze -------------------------------------------------------------------------


def test_analyze_prints_grades_and_findings_of_a_locust_csv_and_its_siblings(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["analyze", str(DATA / "heavy_stats.csv")]) == 0
    out = capsys.readouterr().out
    assert "(locust-csv, scenario heavy)" in out
    assert "grade Poor: p50 150 ms, p95 400 ms, p99 680 ms" in out
    assert "errors 2.50 % (200 of 8000)" in out
    assert "[warning] Throughput saturates at about 27.1 req/s (about 100 users)" in out  # history
    assert "150 x 429/503 backpressure" in out  # failures CSV
    assert "note: Figures come from Locust's CSV: its percentiles are rounded" in out


def test_analyze_writes_the_analysis_as_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "analysis.json"
    assert main(["analyze", str(DATA / "heavy_stats.csv"), "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["analysis"]["summary"]["p95"] == 400
    assert data["results"][0]["statistics"]["endpoints"]["POST /predict mlp"]["std"] is None
    assert f"wrote {out}" in capsys.readouterr().out


def test_analyze_a_folder_reads_our_results_and_locust_csv_sets_and_skips_other_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result_json(tmp_path / "20240501_light.json", p95=48.0)
    shutil.copy(DATA / "light_stats.csv", tmp_path / "health_stats.csv")
    (tmp_path / "baseline-config.json").write_text('{"something": "else"}')
    out = tmp_path / "all.json"
    assert main(["analyze", str(tmp_path), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "(perfgate, scenario light, verdict PASS)" in printed
    assert "(locust-csv, scenario health)" in printed
    data = json.loads(out.read_text())
    assert [r["kind"] for r in data["results"]] == ["perfgate", "locust-csv"]
    assert "analysis" not in data  # only for a single result
    assert data["files"][:2] == ["read 20240501_light.json (perfgate result)",
                                 "skipped baseline-config.json: not a pytest-perfgate result "
                                 "(no format 'pytest-perfgate/result/1')"]  # fmt: skip


def test_analyze_a_folder_skips_the_locust_csv_files_of_our_own_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result_json(tmp_path / "20240501T100000_light.json", p95=48.0)
    shutil.copy(DATA / "light_stats.csv", tmp_path / "20240501T100000_light_stats.csv")
    assert main(["analyze", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("== ") == 1
    assert "(perfgate, scenario light, verdict PASS)" in printed


def test_analyze_a_result_json_shows_its_stored_analysis(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = result_json(tmp_path / "r.json", p95=250.0)
    assert main(["analyze", str(path)]) == 0
    out = capsys.readouterr().out
    assert "verdict FAIL" in out
    assert "p95 250 ms (95 % CI 225-275 ms)" in out
    assert "[warning] POST /predict: P95 250 ms is above 200 ms" in out


def test_analyze_prints_the_confidence_level_the_result_was_judged_at(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = result_json(tmp_path / "r.json", p95=250.0, level=0.9)
    assert main(["analyze", str(path)]) == 0
    out = capsys.readouterr().out
    assert "p95 250 ms (90 % CI 225-275 ms)" in out
    assert "(90 % CI)" in out  # the endpoint table's heading
    assert "95 % CI" not in out


def test_analyze_reads_back_a_result_whose_interval_has_an_unbounded_side(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = result_json(tmp_path / "r.json", p95=250.0)
    data = json.loads(path.read_text())
    data["statistics"]["total"]["ci"]["p95"][1] = None  # as the plugin writes +inf
    path.write_text(json.dumps(data))
    assert main(["analyze", str(path)]) == 0
    assert "(225-inf)" in capsys.readouterr().out


# --- compare -------------------------------------------------------------------------


def test_compare_flags_a_budgeted_figure_that_got_worse_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = result_json(tmp_path / "old.json", p95=50.0)
    new = result_json(tmp_path / "new.json", p95=60.0)
    assert main(["compare", str(old), str(new)]) == 1
    out = capsys.readouterr().out
    assert re.search(r"\n  Total\s+p95\s+50 ms\s+60 ms\s+\+20\.0 % WORSE \(budgeted\)\n", out)
    assert "1 budgeted figure(s) got worse beyond 10 %:" in out
    assert "Total p95 50 ms -> 60 ms (+20.0 %)" in out
    # the unbudgeted endpoint's p95 changed as much, but is only shown
    assert re.search(r"\n  POST /predict\s+p95\s+50 ms\s+60 ms\s+\+20\.0 %\n", out)


def test_compare_passes_within_the_tolerance_and_on_improvements(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = result_json(tmp_path / "old.json", p95=50.0)
    new = result_json(tmp_path / "new.json", p95=60.0)
    assert main(["compare", str(old), str(new), "--tolerance", "25%"]) == 0
    assert main(["compare", str(old), str(new), "--tolerance", "0.25"]) == 0
    assert main(["compare", str(new), str(old)]) == 0
    assert "no budgeted figure got worse beyond 10 %" in capsys.readouterr().out


def test_compare_without_budgets_gates_the_total_p95_and_error_rate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = result_json(tmp_path / "old.json", p95=50.0, budget=False)
    new = result_json(tmp_path / "new.json", p95=50.0, failures=20, budget=False)
    assert main(["compare", str(old), str(new)]) == 1
    out = capsys.readouterr().out
    assert "neither result has budgets: gating the total p95 and error rate" in out
    assert "Total error_rate 0.00 % -> 2.00 % (+2.00 pp)" in out


def test_compare_judges_a_throughput_drop_as_worse_and_groups_it_as_everywhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = result_json(tmp_path / "old.json", p95=50.0, rps=1234.5, budget=False)
    new = result_json(tmp_path / "new.json", p95=50.0, rps=1000.0, budget=False)
    assert main(["compare", str(old), str(new)]) == 0  # unbudgeted: shown, not gated
    out = capsys.readouterr().out
    assert re.search(r"\n  Total\s+rps\s+1 234\.5 req/s\s+1 000 req/s\s+-19\.0 %\n", out)


def test_compare_reads_locust_csv_too(capsys: pytest.CaptureFixture[str]) -> None:
    light, heavy = str(DATA / "light_stats.csv"), str(DATA / "heavy_stats.csv")
    assert main(["compare", light, heavy]) == 1
    assert "Total p95 12 ms -> 400 ms" in capsys.readouterr().out


def test_a_bad_tolerance_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "a.json", "b.json", "--tolerance", "10"])
    assert exit_info.value.code == 2
    assert "expected a tolerance such as 10% or 0.1" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "share"), [("10%", 0.10), ("0.1", 0.10), (" 150 % ", 1.5), ("0", 0.0)]
)
def test_a_tolerance_is_a_percent_or_a_fraction(text: str, share: float) -> None:
    assert parse_tolerance(text) == pytest.approx(share)


@pytest.mark.parametrize(
    ("text", "message"),
    [("abc", "expected a tolerance such as 10% or 0.1, got 'abc'"),
     ("x%", "expected a tolerance such as 10% or 0.1, got 'x%'"),
     ("10", "expected a tolerance such as 10% or 0.1 (a fraction <= 1), got '10'"),
     ("-5%", "expected a tolerance such as 10% or 0.1 (a fraction <= 1), got '-5%'"),
     ("nan", "expected a tolerance such as 10% or 0.1 (a fraction <= 1), got 'nan'")],
)  # fmt: skip
def test_a_bad_tolerance_says_what_was_expected(text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape(message)):
        parse_tolerance(text)


# --- error paths ---------------------------------------------------------------------


def test_a_missing_file_is_one_error_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", str(tmp_path / "nope_stats.csv")]) == 2
    assert one_error_line(capsys).endswith("nope_stats.csv: no such file or directory")
    assert main(["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 2
    assert one_error_line(capsys).endswith("a.json: no such file or directory")


def test_an_unreadable_csv_is_one_error_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", str(DATA / "broken_stats.csv")]) == 2
    assert "broken_stats.csv: not a Locust CSV file: missing column(s) Type, Name" in (
        one_error_line(capsys)
    )
    bad = tmp_path / "bad_stats.csv"
    bad.write_text(
        (DATA / "light_stats.csv").read_text().replace("600,0,4,4.8", "six hundred,0,4,4.8", 1)
    )
    assert main(["analyze", str(bad)]) == 2
    assert "column 'Request Count': expected a number, got 'six hundred'" in one_error_line(capsys)


def test_json_that_is_no_result_is_one_error_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "broken.json").write_text("{not json")
    assert main(["analyze", str(tmp_path / "broken.json")]) == 2
    assert "broken.json: not valid JSON" in one_error_line(capsys)
    (tmp_path / "other.json").write_text("[1, 2]")
    assert main(["analyze", str(tmp_path / "other.json")]) == 2
    assert "other.json: not a pytest-perfgate result" in one_error_line(capsys)


def test_a_folder_without_results_is_one_error_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", str(tmp_path)]) == 2
    assert "no results found" in one_error_line(capsys)


def test_an_unknown_scenario_is_one_error_line_and_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    thresholds = str(ROOT / "thresholds.yaml")
    assert main(["run", "nosuch", "--thresholds", thresholds]) == 2
    line = one_error_line(capsys)
    assert "thresholds.yaml: unknown scenario 'nosuch'; known scenarios: " in line
    assert "light" in line.split("known scenarios: ")[1]


def test_a_missing_thresholds_file_is_one_error_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "light", "--thresholds", str(tmp_path / "t.yaml")]) == 2
    assert "t.yaml: thresholds file not found" in one_error_line(capsys)


def test_run_hands_its_parsed_arguments_to_the_gate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[argparse.Namespace] = []

    def run_cli(args: argparse.Namespace) -> int:
        seen.append(args)
        return 3

    run = types.ModuleType("pytest_perfgate.cli.run")
    run.run_cli = run_cli  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pytest_perfgate.cli.run", run)
    argv = ["run", "light", "--users", "4", "--spawn-rate", "2", "--duration", "1m30s",
            "--url", "http://127.0.0.1:9", "--thresholds", str(ROOT / "thresholds.yaml"),
            "--results-dir", str(tmp_path)]  # fmt: skip
    assert main(argv) == 3
    (args,) = seen
    # raw strings: options.resolve checks them, as it does pytest's --perfgate-* flags
    got = (args.scenario, args.users, args.spawn_rate, args.duration)
    assert got == ("light", "4", "2", "1m30s")
    assert (args.url, args.results_dir) == ("http://127.0.0.1:9", str(tmp_path))


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [("--users", "0", "--users: expected a number >= 1, got '0'"),
     ("--duration", "soon", "--duration: expected a duration such as '30s' or '5m', got 'soon'"),
     ("--spawn-rate", "-1", "--spawn-rate: expected a number > 0, got '-1'")],
)  # fmt: skip
def test_bad_run_options_are_one_error_line_naming_the_option(
    option: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "light", option, value, "--url", "http://127.0.0.1:9"]) == 2
    assert one_error_line(capsys) == f"perfgate: error: {message}"


def test_python_dash_m_runs_the_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest_perfgate", "analyze", str(DATA / "light_stats.csv")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "grade Excellent" in done.stdout


# --- a real Locust run ---------------------------------------------------------------

LOCUSTFILE = """
from locust import HttpUser, constant, task

class Client(HttpUser):
    wait_time = constant(0.05)

    @task(3)
    def fast(self):
        self.client.get("/fast")

    @task(1)
    def busy(self):
        self.client.get("/busy")
"""


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/fast":
            time.sleep(0.002)
        self.send_response(503 if self.path == "/busy" else 200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.e2e
def test_analyze_reads_the_csv_files_of_a_real_locust_run(
    tmp_path: Path, http_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "locustfile.py").write_text(LOCUSTFILE)
    prefix = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "locust", "--headless", "-f", "locustfile.py",
         "--host", http_server, "-u", "2", "-r", "2", "-t", "3s", "--csv", str(prefix),
         "--only-summary", "--exit-code-on-error", "0"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "analysis.json"
    assert main(["analyze", f"{prefix}_stats.csv", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "POST" not in printed and "GET /fast" in printed and "GET /busy" in printed
    result = json.loads(out.read_text())["results"][0]
    endpoints = result["statistics"]["endpoints"]
    assert endpoints["GET /busy"]["failures"] == endpoints["GET /busy"]["requests"] > 0
    assert endpoints["GET /fast"]["failures"] == 0
    errors = next(f for f in result["analysis"]["findings"] if f["kind"] == "errors")
    busy = endpoints["GET /busy"]["failures"]
    assert f"GET /busy: {busy} x 429/503 backpressure" in errors["evidence"]
    assert result["analysis"]["summary"]["requests"] == sum(
        e["requests"] for e in endpoints.values()
    )


def test_analyze_a_folder_says_which_files_it_read_and_which_it_skipped_and_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result_json(tmp_path / "20240501T100000_light.json", p95=48.0)
    for name in ("heavy_stats.csv", "heavy_stats_history.csv"):
        shutil.copy(DATA / name, tmp_path / name.replace("heavy", "20240501T100000_light"))
    shutil.copy(DATA / "light_stats.csv", tmp_path / "health_stats.csv")
    shutil.copy(DATA / "broken_stats.csv", tmp_path / "broken_stats.csv")
    (tmp_path / "baseline-config.json").write_text('{"something": "else"}')
    for name in ("20240501T100000_light.html", "20240501T100000_light.log", "summary.md"):
        (tmp_path / name).write_text("")
    assert main(["analyze", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[: out.index("")] == [
        f"{tmp_path}:",
        "  read 20240501T100000_light.json (perfgate result)",
        "  skipped baseline-config.json: not a pytest-perfgate result "
        "(no format 'pytest-perfgate/result/1')",
        "  skipped 20240501T100000_light_stats.csv, 20240501T100000_light_stats_history.csv: "
        "Locust's files of the run in 20240501T100000_light.json, whose figures (the "
        "measured window, exact percentiles) are read instead",
        "  skipped broken_stats.csv: not a Locust CSV file: missing column(s) Type, Name, "
        "Request Count, Failure Count, Average Response Time, Requests/s, 50%, 95%, 99%",
        "  read health_stats.csv (Locust CSV set)",
        "  skipped 1 .html, 1 .log, 1 .md: not results (reports, logs, summaries)",
    ]


def test_a_folder_without_results_says_what_it_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "other.json").write_text("[1, 2]")
    assert main(["analyze", str(tmp_path)]) == 2
    assert one_error_line(capsys).endswith(
        "no results found (expected perfgate *.json results or Locust *_stats.csv files); "
        "skipped other.json: not a pytest-perfgate result (no format 'pytest-perfgate/result/1')"
    )
