"""The confidence level of ``--perfgate-confidence`` is the one every view prints."""

from __future__ import annotations

import re

from report_samples import make_result

from pytest_perfgate.results.html import render_html
from pytest_perfgate.results.markdown import github_summary_markdown
from pytest_perfgate.results.terminal import terminal_table


def test_a_90_percent_level_reads_90_percent_ci_in_the_terminal_markdown_and_html() -> None:
    result = make_result(level=0.9)
    views = {
        "terminal": "\n".join(terminal_table([result])),
        "markdown": github_summary_markdown([result]),
        "html": render_html(result),
    }
    for name, text in views.items():
        assert "90 % CI" in text, name
        assert re.search(r"(?<![\d.])95 %", text) is None, name  # "78.95 %" is a share


def test_the_html_names_the_level_in_its_cards_tables_and_footnote() -> None:
    page = render_html(make_result(level=0.9))
    assert page.count("90 % CI") == 3  # the P95 card, the verdict table, the endpoint table
    assert "distribution-free 90 % confidence" in page
