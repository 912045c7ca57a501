"""An A/B run's reports: both sides side by side, the change of each allowance, the noise floor.

Pure formatting over ``core.duet.Comparison`` (a result's ``comparison``); no pytest, no
I/O. ``results.result`` (JSON), ``terminal``, ``markdown`` and ``html`` each call one
function here for an A/B result; this module imports none of them (``ScenarioResult``
only for typing), so there is no cycle.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pytest_perfgate.core.duet import Comparison, PairChange, noise_floor_text
from pytest_perfgate.core.metrics import regression
from pytest_perfgate.core.numbers import format_count
from pytest_perfgate.core.stats import TOTAL, EndpointStats, RunStats, Sample
from pytest_perfgate.core.verdict import Check
from pytest_perfgate.results.cells import ERRORS, P50, P95, P99
from pytest_perfgate.results.charts import (
    PERCENTILE_TICKS,
    Series,
    percentile_points,
    svg_line_chart,
)

if TYPE_CHECKING:
    from pytest_perfgate.results.result import ScenarioResult

__all__ = [
    "comparison_to_dict",
    "html_section",
    "markdown_lines",
    "noise_floor_line",
    "terminal_lines",
]

_CANDIDATE_COLOUR, _BASELINE_COLOUR = "#2563eb", "#6b7280"


def _measured_s(result: ScenarioResult) -> float:
    return result.stats.duration_s


def noise_floor_line(result: ScenarioResult) -> str:
    """``noise floor: p95 +-3.1 % (...)``; "" for a result that is no A/B run."""
    c = result.comparison
    return "" if c is None else noise_floor_text(c, _measured_s(result))


def _change_dict(c: PairChange) -> dict[str, Any]:
    return {
        "key": c.key, "endpoint": c.endpoint, "change": c.observed,
        "ci": list(c.ci) if c.ci else None, "baseline": c.base_value, "candidate": c.new_value,
        "baseline_requests": c.base_n, "candidate_requests": c.new_n, "noise_floor": c.floor,
        "paired_blocks": c.blocks, "pairs": c.pairs or None, "reason": c.reason or None,
    }  # fmt: skip


def comparison_to_dict(c: Comparison, baseline_statistics: Mapping[str, Any]) -> dict[str, Any]:
    """The ``"ab"`` section of the result JSON: the baseline, how paired, both sides, ratios.

    ``baseline_statistics`` is the baseline side as ``results.result.stats_to_dict`` writes
    the candidate's ``"statistics"``."""
    return {
        "baseline": c.baseline, "mode": c.mode, "block_s": c.block_s, "paired_blocks": c.blocks,
        "interval_level": c.level, "looks_s": list(c.looks), "looks_taken": c.looked,
        "baseline_statistics": dict(baseline_statistics),
        "changes": [_change_dict(ch) for ch in c.changes],
    }  # fmt: skip


# --- the terminal --------------------------------------------------------------------


def _side_row(label: str, e: EndpointStats) -> str:
    return (
        f"{label:<10} {format_count(e.requests):>9} {format_count(e.failures):>7} "
        f"{ERRORS.format(e.error_rate):>9} {P50.bare(e.p50):>8} {P95.bare(e.p95):>8} "
        f"{P99.bare(e.p99):>8}"
    )


def _figure(key: str, value: float | None) -> str:
    if value is None:
        return "-"
    allowed = regression(key)
    if allowed.change == "points":
        return ERRORS.format(value)
    if allowed.change == "drop":
        return f"{format_count(value)} req"
    return f"{value:.1f} ms"


def _check_of(result: ScenarioResult, c: PairChange) -> Check | None:
    for check in result.verdict.checks:
        if check.metric == c.key and check.endpoint == c.endpoint:
            return check
    return None


def _change_row(result: ScenarioResult, c: PairChange) -> str:
    allowed = regression(c.key)
    check = _check_of(result, c)
    verdict = check.outcome.value if check else "-"
    limit = allowed.format_change(check.limit) if check else "-"
    if c.observed is None or c.ci is None:
        change, ci = "-", f"({c.reason})"
    else:
        change, ci = allowed.format_change(c.observed), allowed.format_interval(*c.ci)
    return (
        f"{c.label:<16} {c.endpoint[:20]:<20} {_figure(c.key, c.base_value):>10} "
        f"{_figure(c.key, c.new_value):>10} {change:>9} {ci:<22} {limit:>8}  {verdict}"
    )


def terminal_lines(result: ScenarioResult) -> list[str]:
    """The A/B block under a result's headline: both sides, each change, the noise floor."""
    c = result.comparison
    if c is None:
        return []
    lines = [
        f"A/B against {c.baseline}, {c.mode}, {c.blocks} paired blocks of {c.block_s:g} s, "
        f"{100 * c.level:.2f} % intervals",
        f"{'side':<10} {'requests':>9} {'fails':>7} {'errors':>9} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'p99 ms':>8}",
        _side_row("candidate", result.stats.total),
        _side_row("baseline", c.baseline_stats.total),
        f"{'allowance':<16} {'endpoint':<20} {'baseline':>10} {'candidate':>10} {'change':>9} "
        f"{'CI of the change':<22} {'allowed':>8}  verdict",
        *(_change_row(result, ch) for ch in c.changes),
        noise_floor_line(result),
    ]
    return lines


# --- Markdown (the step summary) and HTML --------------------------------------------


def _change_cells(result: ScenarioResult, ch: PairChange) -> list[str]:
    """allowance, endpoint, baseline, candidate, change, CI (or why none), allowed, verdict"""
    allowed, check = regression(ch.key), _check_of(result, ch)
    return [
        ch.label, ch.endpoint, _figure(ch.key, ch.base_value), _figure(ch.key, ch.new_value),
        "-" if ch.observed is None else allowed.format_change(ch.observed),
        ch.reason if ch.ci is None else allowed.format_interval(*ch.ci),
        allowed.format_change(check.limit) if check else "-",
        check.outcome.value if check else "-",
    ]  # fmt: skip


def markdown_lines(result: ScenarioResult) -> list[str]:
    """The A/B table for ``$GITHUB_STEP_SUMMARY``: one row per allowance."""
    c = result.comparison
    if c is None:
        return []
    out = [
        "",
        f"A/B against `{c.baseline}` ({c.mode}, {c.blocks} paired blocks of {c.block_s:g} s)",
        "",
        "| allowance | endpoint | baseline | candidate | change | CI | allowed | verdict |",
        "|---|---|---:|---:|---:|---|---:|---|",
    ]
    out += ["| " + " | ".join(_change_cells(result, ch)) + " |" for ch in c.changes]
    return [*out, "", noise_floor_line(result), ""]


# --- HTML ----------------------------------------------------------------------------


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _sorted_ms(samples: tuple[Sample, ...] | list[Sample], endpoint: str) -> list[float]:
    return sorted(s.ms for s in samples if endpoint == TOTAL or s.name == endpoint)


def _distribution(result: ScenarioResult, c: Comparison, endpoint: str) -> str:
    warmup = min(result.scenario.warmup_s, result.raw.duration_s)
    candidate = [s for s in result.raw.samples if s.t >= warmup]
    series = [
        Series("candidate", _CANDIDATE_COLOUR, percentile_points(_sorted_ms(candidate, endpoint))),
        Series(f"baseline {c.baseline}", _BASELINE_COLOUR,
               percentile_points(_sorted_ms(c.baseline_samples, endpoint)), dashed=True),
    ]  # fmt: skip
    return svg_line_chart(
        f"Latency distribution, both sides ({endpoint})", series, y_unit=P95.unit.symbol,
        x_unit="percentile", x_ticks=PERCENTILE_TICKS,
    )  # fmt: skip


def _stats_rows(label: str, stats: RunStats) -> str:
    e = stats.total
    cells = [
        label, format_count(e.requests), format_count(e.failures), ERRORS.format(e.error_rate),
        P50.bare(e.p50), P95.bare(e.p95), P99.bare(e.p99),
    ]  # fmt: skip
    return "<tr>" + "".join(f"<td>{_e(x)}</td>" for x in cells) + "</tr>"


def html_section(result: ScenarioResult) -> str:
    """The A/B section of the HTML report: both sides, the changes, both distributions."""
    c = result.comparison
    if c is None:
        return ""
    sides = (
        "<table><tr><th>side</th><th>requests</th><th>fails</th><th>errors</th>"
        "<th>p50 ms</th><th>p95 ms</th><th>p99 ms</th></tr>"
        + _stats_rows("candidate", result.stats)
        + _stats_rows(f"baseline ({c.baseline})", c.baseline_stats)
        + "</table>"
    )
    rows = "".join(
        "<tr>" + "".join(f"<td>{_e(x)}</td>" for x in _change_cells(result, ch)) + "</tr>"
        for ch in c.changes
    )
    changes = (
        "<table><tr><th>allowance</th><th>endpoint</th><th>baseline</th><th>candidate</th>"
        "<th>change</th><th>CI</th><th>allowed</th><th>verdict</th></tr>" + rows + "</table>"
    )
    endpoints = [TOTAL, *(e for e in result.stats.endpoints if e != TOTAL)]
    charts = "".join(f"<figure>{_distribution(result, c, e)}</figure>" for e in endpoints)
    return (
        f"<h2>A/B against {_e(c.baseline)}</h2><p>{_e(c.mode)}: {c.blocks} paired blocks of "
        f"{c.block_s:g} s; {_e(noise_floor_line(result))}</p>{sides}{changes}"
        f'<div class="charts">{charts}</div>'
    )
