"""The GitHub step summary in Markdown: per scenario a budget table and the top findings.

Pure formatting; ``results.github`` appends it to ``$GITHUB_STEP_SUMMARY``. Labels, units
and numbers come from the registry through ``results.cells``.
"""

from __future__ import annotations

from collections.abc import Sequence

from pytest_perfgate.core.numbers import format_count
from pytest_perfgate.core.stats import EndpointStats
from pytest_perfgate.core.verdict import Check, Outcome
from pytest_perfgate.results import duet
from pytest_perfgate.results.cells import (
    ERRORS,
    P95,
    RPS,
    budget_cell,
    ci_heading,
    clock,
    interval_cell,
    metric_cell,
    observed_cell,
    rows,
)
from pytest_perfgate.results.result import ScenarioResult
from pytest_perfgate.results.streams import stream_markdown
from pytest_perfgate.results.terminal import attempt_text, noise_lines, stop_text

__all__ = ["github_summary_markdown"]

_OUTCOME_MARK = {
    Outcome.PASS: "✅ PASS",
    Outcome.FAIL: "❌ FAIL",
    Outcome.INCONCLUSIVE: "⚠️ INCONCLUSIVE",
    Outcome.INVALID: "⛔ INVALID",
}


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def _check_row(endpoint: str, c: Check, grade: str) -> str:
    return (
        f"| {_md(endpoint)} | {metric_cell(c)} | {observed_cell(c)} | {budget_cell(c)} | "
        f"{interval_cell(c)} | {_OUTCOME_MARK[c.outcome]} | {grade} |"
    )


def _unbudgeted_row(e: EndpointStats, grade: str) -> str:
    """An endpoint without budget shows its p95."""
    ci = e.ci.get("p95")
    interval = P95.format_interval(*ci) if ci else ""
    return f"| {_md(e.name)} | p95 | {P95.format(e.p95)} | - | {interval} | - | {grade} |"


def _head(r: ScenarioResult) -> list[str]:
    summary = r.analysis.summary
    return [
        f"### {_md(r.scenario.name)}{attempt_text(r)}: {_OUTCOME_MARK[r.verdict.outcome]} - "
        f"grade {summary.grade}",
        "",
        f"{r.scenario.users} users, {format_count(summary.requests)} requests in "
        f"{clock(r.stats.duration_s)} (ended by {_md(stop_text(r.raw.stop_reason))}), "
        f"{RPS.format(summary.rps)}, errors {ERRORS.format(summary.error_rate)}",
        "",
        f"| endpoint | metric | observed | budget | {ci_heading(r.level)} | verdict | grade |",
        "|---|---|---:|---|---|---|---|",
    ]


def _table(r: ScenarioResult) -> list[str]:
    """Each endpoint's checks (an unbudgeted endpoint: its p95), then budgeted endpoints
    that got no request."""
    by_endpoint: dict[str, list[Check]] = {}
    for c in r.verdict.checks:
        by_endpoint.setdefault(c.endpoint, []).append(c)
    out: list[str] = []
    for e in rows(r.stats):
        grade = r.analysis.grades.get(e.name, "-")
        checks = by_endpoint.pop(e.name, [])
        out += [_check_row(e.name, c, grade) for c in checks]
        if not checks:
            out.append(_unbudgeted_row(e, grade))
    for endpoint, checks in by_endpoint.items():
        out += [_check_row(endpoint, c, "-") for c in checks]
    return out


def _notes(r: ScenarioResult, top_findings: int) -> list[str]:
    out = [f"- {_md(reason)}" for reason in r.verdict.reasons]
    out += [f"- {_md(line)}" for line in noise_lines(r)]
    for f in r.analysis.findings[:top_findings]:
        out.append(f"- **{f.severity}** {_md(f.title)}: {_md(f.evidence)}")
        if f.recommendations:
            out.append(f"  - {_md(f.recommendations[0])}")
    return out


def github_summary_markdown(
    results: Sequence[ScenarioResult], top_findings: int = 3, *, header: bool = True
) -> str:
    """Markdown for ``$GITHUB_STEP_SUMMARY``: per scenario a budget table and top findings.

    ``header=False`` gives the scenario sections alone, to be joined under one header.
    """
    out: list[str] = ["## pytest-perfgate", ""] if header else []
    for r in results:
        out += [*_head(r), *_table(r), *stream_markdown(r.stats), *duet.markdown_lines(r)]
        out += ["", *_notes(r, top_findings), ""]
    return "\n".join(out)
