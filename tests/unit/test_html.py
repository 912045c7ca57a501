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

from pytest_perfgate.core.verdict import Outcome
from pytest_perfgate.load.driver import RawRun
from pytest_perfgate.results.files import write_html
from pytest_perfgate.results.html import render_html


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
