"""The GitHub step summary in Markdown (``results.markdown``)."""

from __future__ import annotations

import dataclasses

from report_samples import make_result

from pytest_perfgate.core.regression import RegressionCheck
from pytest_perfgate.core.stats import TOTAL
from pytest_perfgate.core.verdict import Outcome
from pytest_perfgate.results.markdown import github_summary_markdown


def test_the_github_summary_has_a_budget_table_and_top_findings() -> None:
    md = github_summary_markdown([make_result(outcome=Outcome.FAIL, p95=250.0,
                                              endpoint="POST /a|b")])  # fmt: skip
    assert "### light: ❌ FAIL - grade Poor" in md
    assert "| endpoint | metric | observed | budget | 95 % CI | verdict | grade |" in md
    assert "| Total | p95 | 250 ms | p95 < 100 ms | 238-265 ms | ❌ FAIL | Poor |" in md
    assert "| Total | errors | 0.17 % | errors < 1.00 % | 0.04-0.90 % | ✅ PASS | Poor |" in md
    assert "| POST /a\\|b | p95 | 250 ms | - | 238-265 ms | - | Poor |" in md  # unbudgeted, escaped
    assert "- **warning** POST /a\\|b: P95 250 ms is above 200 ms: POST /a\\|b answered" in md


def test_the_summary_sections_join_under_one_header() -> None:
    md = github_summary_markdown([make_result()], header=False)
    assert md.startswith("### light: ✅ PASS - grade Good")
    assert "## pytest-perfgate" not in md


def test_a_regression_check_reads_as_a_change_against_its_allowance() -> None:
    result = make_result()
    check = RegressionCheck(
        "light", TOTAL, "rps_regression", 0.10, 0.25, 600, Outcome.FAIL, ci=(0.2, 0.3),
        baseline="main", base_value=10.0, new_value=7.5,
    )  # fmt: skip
    verdict = dataclasses.replace(result.verdict, checks=(check,))
    md = github_summary_markdown([dataclasses.replace(result, verdict=verdict)])
    assert (
        "| Total | req/s vs baseline | -25 % | req/s vs baseline >= -10 % | -30 % to -20 % "
        "| ❌ FAIL | Good |"
    ) in md
