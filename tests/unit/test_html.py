"""The HTML report (``results.html``): self-contained, offline, rendered by Chromium."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from report_samples import make_result

from pytest_perfgate.core.regression import Baseline, BaselineRow
from pytest_perfgate.core.stats import Sample
from pytest_perfgate.core.verdict import Outcome
from pytest_perfgate.load.driver import RawRun
from pytest_perfgate.results.charts import percentile_points, windowed_p95
from pytest_perfgate.results.files import write_html
from pytest_perfgate.results.html import render_html
from pytest_perfgate.results.result import ScenarioResult


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
    assert len(paths) == 5  # p50, p95, req/s, errors/s, users (no samples: no endpoint charts)
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


# --- per endpoint: the latency distribution and the P95 over time, from the samples ---------


def with_samples(*, baseline: bool = False) -> ScenarioResult:
    """The sample result with 60 s of samples (slower after 30 s), maybe a baseline."""
    result = make_result()
    names = list(result.stats.endpoints)
    samples = tuple(
        Sample(i / 40, names[i % 4 == 0], 10.0 + i % 50 + (40.0 if i >= 1200 else 0.0), True, 200)
        for i in range(2400)
    )  # fmt: skip
    files = {"stats_csv": Path("/r/x_stats.csv"), "log": Path("/r/x.log")}
    raw = dataclasses.replace(result.raw, samples=samples, files=files)
    base = None
    if baseline:
        rows = {n: BaselineRow(n, tuple(float(v) for v in range(1, 501)), 0, 8.0) for n in names}
        base = Baseline("main", "light", Path("/b/main.json"), "2024-04-01T00:00:00+00:00",
                        60.0, rows, rows[names[0]])  # fmt: skip
    extra = {"baseline": Path("/b/main.json")} if baseline else {}
    return dataclasses.replace(result, raw=raw, baseline=base, files=extra)


def test_each_endpoint_gets_a_latency_distribution_and_a_p95_over_time_chart() -> None:
    page = render_html(with_samples())
    for name in ("POST /predict mlp", "POST /predict encoder"):
        assert f'<h3 class="endpoint">{name}</h3>' in page
    assert page.count('aria-label="Latency distribution"') == 2
    assert page.count('aria-label="P95 over time (1 s windows)"') == 2
    for tick in ("0 %", "90 %", "99 %", "99.9 %"):
        assert f'text-anchor="middle">{tick}</text>' in page
    assert ">percentile</text>" in page
    assert "baseline" not in page.split("<h2>Per endpoint</h2>")[1].split("<h2>Findings")[0]


def test_the_baseline_is_drawn_beside_the_run_when_there_is_one() -> None:
    page = render_html(with_samples(baseline=True))
    assert page.count('<path class="line dashed"') == 2  # one distribution per endpoint
    assert page.count("<title>baseline main</title>") == 2
    assert page.count('class="basereflabel"') == 2  # its P95 across each P95-over-time chart


def test_the_files_of_the_run_are_relative_links() -> None:
    page = render_html(with_samples(baseline=True))
    files = page.split("<h2>Files</h2>")[1]
    assert '<a href="x_stats.csv">x_stats.csv</a>' in files
    assert '<a href="x.log">x.log</a>' in files
    assert '<a href="../b/main.json">main.json</a>' in files


def test_the_page_reflows_on_a_narrow_screen_and_tables_scroll_in_their_own_box() -> None:
    page = render_html(with_samples(baseline=True))
    assert "@media (max-width:900px)" in page and "@media (max-width:640px)" in page
    assert page.count('<div class="scroll"><table>') == 2  # the verdict and the endpoints
    assert "<script" not in page and "src=" not in page
    assert set(re.findall(r"https?://[^\"' ]+", page)) == {"http://www.w3.org/2000/svg"}


def test_the_percentile_spectrum_is_placed_on_a_log_axis_of_one_over_one_minus_q() -> None:
    points = dict(percentile_points([float(v) for v in range(1, 1001)]))
    assert points[0.0] == 1.0  # q = 0: the minimum
    assert points[1.0] == 900.0  # q = 90 %
    assert points[2.0] == 990.0  # q = 99 %
    assert max(points) == pytest.approx(3.0) and points[max(points)] == 1000.0  # 1 - 1/n
    assert percentile_points([]) == ()


def test_the_p95_over_time_leaves_a_gap_where_a_window_has_too_few_requests() -> None:
    samples = [Sample(t / 10, "GET /x", float(t), True) for t in range(10)]  # second 0
    samples += [Sample(2.5, "GET /x", 1.0, True)]  # second 2: one request only
    assert windowed_p95(samples, 1.0) == ((0.5, 9.0), (1.5, None), (2.5, None))


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


#: appended to a copy of the page only: the report itself holds no script
MEASURE = (
    "<script>document.title = document.documentElement.scrollWidth + '/' + innerWidth + '/' + "
    "[...document.querySelectorAll('.scroll')].map(e => e.scrollWidth > e.clientWidth)"
    "</script></body>"
)


@pytest.mark.e2e
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_at_600_px_nothing_is_cut_off_and_the_endpoint_table_scrolls_in_its_box(
    tmp_path: Path,
) -> None:
    page = write_html(tmp_path / "light.html", with_samples(baseline=True))
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", MEASURE))
    dom = chromium("--window-size=600,2000", "--dump-dom", probe.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    width, viewport, scrolling = re.findall(r"<title>(\d+)/(\d+)/([^<]*)</title>", dom.stdout)[0]
    assert int(width) <= int(viewport) == 600  # the page itself never scrolls sideways
    assert scrolling == "false,true"  # the verdict fits; the endpoint table scrolls in its box
    assert dom.stdout.count("<svg") == 8  # 4 over time + 2 per endpoint
