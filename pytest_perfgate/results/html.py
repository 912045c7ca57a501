"""A scenario's result -> one self-contained HTML page (inline CSS, inline SVG charts).

Renders offline: no CDN, no script, no external fetch. The charts (``results.charts``) are
drawn from the per-second history rows (``t``, ``users``, ``rps``, ``fails``, ``p50``,
``p95``) and, per endpoint, from the run's samples: the latency distribution (beside the
baseline's when the run was compared with one) and the P95 over time. Responsive down to
a phone's width: tables scroll in their own box, charts stack. Pure: ``render_html``
returns the page; ``results.files`` writes it. Labels, units and numbers come from the
registry through ``results.cells``.
"""

from __future__ import annotations

import html
import math
import os.path
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_perfgate.core.findings import Finding
from pytest_perfgate.core.metrics import MS
from pytest_perfgate.core.numbers import format_count, format_level
from pytest_perfgate.core.stats import EndpointStats, Sample, percentile
from pytest_perfgate.core.verdict import Outcome
from pytest_perfgate.results import duet
from pytest_perfgate.results.cells import (
    ERRORS,
    P50,
    P95,
    P99,
    RPS,
    budget_cell,
    ci_heading,
    interval_cell,
    observed_cell,
    unitless_interval,
)
from pytest_perfgate.results.charts import (
    PERCENTILE_TICKS,
    Reference,
    Series,
    percentile_points,
    svg_line_chart,
    windowed_p95,
)
from pytest_perfgate.results.result import ScenarioResult
from pytest_perfgate.results.streams import stream_charts, stream_html_table
from pytest_perfgate.results.terminal import noise_lines, stop_text

__all__ = ["Series", "render_html", "svg_line_chart"]  # the charts live in results.charts

_GRADE_COLOURS = {
    "Excellent": "#15803d", "Good": "#4d7c0f", "Acceptable": "#a16207",
    "Poor": "#c2410c", "Critical": "#b91c1c",
}  # fmt: skip
_OUTCOME_COLOURS = {
    Outcome.PASS: "#15803d", Outcome.FAIL: "#b91c1c",
    Outcome.INCONCLUSIVE: "#a16207", Outcome.INVALID: "#6b21a8",
}  # fmt: skip
_SEVERITY_COLOURS = {"critical": "#b91c1c", "warning": "#c2410c", "info": "#2563eb"}


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


# --- charts --------------------------------------------------------------------------


def _column(
    history: Sequence[Mapping[str, Any]], key: str
) -> tuple[tuple[float, float | None], ...]:
    points: list[tuple[float, float | None]] = []
    for row in history:
        t, v = row.get("t"), row.get(key)
        if not isinstance(t, int | float):
            continue
        value = float(v) if isinstance(v, int | float) and not isinstance(v, bool) else math.nan
        points.append((float(t), value if math.isfinite(value) else None))
    return tuple(points)


def _charts(result: ScenarioResult) -> str:
    h, warmup = result.raw.history, result.scenario.warmup_s or None
    p95_budget = result.scenario.budget.p95_ms
    limit = ("P95 budget", p95_budget) if p95_budget is not None else None
    charts = [
        svg_line_chart(
            "Response time percentiles",
            [Series("P50", "#2563eb", _column(h, "p50")),
             Series("P95", "#ea580c", _column(h, "p95"))],
            y_unit=P95.unit.symbol, shade_until=warmup, limit=limit,
        ),
        svg_line_chart("Requests per second", [Series(RPS.column, "#16a34a", _column(h, "rps"))],
                       y_unit=RPS.unit.symbol, shade_until=warmup),
        svg_line_chart("Errors per second", [Series("errors/s", "#dc2626", _column(h, "fails"))],
                       y_unit="errors/s", shade_until=warmup),
        svg_line_chart("Users", [Series("users", "#7c3aed", _column(h, "users"))],
                       y_unit="users", shade_until=warmup),
    ]  # fmt: skip
    return _grid(charts)


def _grid(charts: Sequence[str]) -> str:
    return '<div class="charts">' + "".join(f"<figure>{c}</figure>" for c in charts) + "</div>"


# --- per endpoint, from the samples --------------------------------------------------

_RUN_COLOUR, _BASE_COLOUR = "#2563eb", "#6b7280"


def _window_s(duration_s: float) -> float:
    """Per-second windows for a short run, 5 s ones past two minutes (enough per window)."""
    return 1.0 if duration_s <= 120 else 5.0


def _by_endpoint(samples: Sequence[Sample]) -> dict[str, list[Sample]]:
    found: dict[str, list[Sample]] = {}
    for s in samples:
        found.setdefault(s.name, []).append(s)
    return found


def _distribution(result: ScenarioResult, name: str, measured: Sequence[Sample]) -> str:
    series = [Series("this run", _RUN_COLOUR, percentile_points(sorted(s.ms for s in measured)))]
    row = result.baseline.row(name) if result.baseline else None
    if result.baseline and row and row.sorted_ms:
        label = f"baseline {result.baseline.name}"
        series.append(Series(label, _BASE_COLOUR, percentile_points(row.sorted_ms), dashed=True))
    return svg_line_chart("Latency distribution", series, y_unit=P95.unit.symbol,
                          x_unit="percentile", x_ticks=PERCENTILE_TICKS)  # fmt: skip


def _p95_over_time(result: ScenarioResult, name: str, samples: Sequence[Sample]) -> str:
    window = _window_s(result.raw.duration_s)
    budget = result.scenario.endpoint_budgets.get(name)
    limit = ("P95 budget", budget.p95_ms) if budget and budget.p95_ms is not None else None
    row = result.baseline.row(name) if result.baseline else None
    refs = [Reference("baseline P95", percentile(row.sorted_ms, 0.95), "baseref")] if (
        row and row.sorted_ms) else []  # fmt: skip
    return svg_line_chart(
        f"P95 over time ({window:g} s windows)",
        [Series("P95", "#ea580c", windowed_p95(samples, window))],
        y_unit=P95.unit.symbol, shade_until=result.scenario.warmup_s or None, limit=limit,
        references=refs,
    )  # fmt: skip


def _endpoint_charts(result: ScenarioResult) -> str:
    """A distribution and a P95-over-time chart for each endpoint with samples."""
    warmup = min(result.scenario.warmup_s, result.raw.duration_s)
    every = _by_endpoint(result.raw.samples)
    parts = []
    for name in [n for n in result.stats.endpoints if n in every]:
        measured = [s for s in every[name] if s.t >= warmup]
        charts = [_distribution(result, name, measured), _p95_over_time(result, name, every[name])]
        charts += stream_charts(every[name], measured, _window_s(result.raw.duration_s),
                                result.scenario.warmup_s)  # fmt: skip
        parts.append(f'<h3 class="endpoint">{_e(name)}</h3>{_grid(charts)}')
    return "".join(parts) or "<p>No samples were kept for this run: no per-endpoint charts.</p>"


# --- page parts ----------------------------------------------------------------------


def _badge(text: str, colour: str) -> str:
    return f'<span class="badge" style="background:{colour}">{_e(text)}</span>'


def _cards(result: ScenarioResult) -> str:
    s = result.analysis.summary
    ci = "&nbsp;"
    if s.p95_ci:
        ci = _e(f"{ci_heading(result.level)} {P95.format_interval(*s.p95_ci)}")
    cards = [
        ("P50", P50.format(s.p50), "&nbsp;"),
        ("P95", P95.format(s.p95), ci),
        ("P99", P99.format(s.p99), "&nbsp;"),
        ("Throughput", RPS.format(s.rps), f"{format_count(s.requests)} requests"),
        ("Errors", ERRORS.format(s.error_rate), f"{format_count(s.failures)} failed"),
    ]
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card"><div class="k">{k}</div><div class="v">{_e(v)}</div>'
            f'<div class="sub">{sub}</div></div>'
            for k, v, sub in cards
        )
        + "</div>"
    )


def _verdict_table(result: ScenarioResult) -> str:
    v = result.verdict
    if not v.checks:
        return "<p>No budget was set for this scenario.</p>"
    rows = [
        f"<tr><td>{_e(c.endpoint)}</td><td>{_e(budget_cell(c))}</td>"
        f'<td class="num">{_e(observed_cell(c))}</td>'
        f'<td class="num">{_e(interval_cell(c))}</td><td class="num">{format_count(c.n)}</td>'
        f"<td>{_badge(c.outcome.value, _OUTCOME_COLOURS[c.outcome])}"
        f"{' (warn only)' if c.severity == 'warn' else ''}</td></tr>"
        for c in v.checks
    ]
    return (
        '<div class="scroll"><table><thead><tr><th>endpoint</th><th>budget</th>'
        f'<th class="num">observed</th><th class="num">{ci_heading(result.level)}</th>'
        f'<th class="num">n</th><th>outcome</th></tr></thead><tbody>{"".join(rows)}</tbody>'
        "</table></div>"
    )


def _stats_table(result: ScenarioResult) -> str:
    grades = result.analysis.grades

    def row(e: EndpointStats, cls: str = "") -> str:
        ci = unitless_interval(P95, e.ci.get("p95"))
        g = grades.get(e.name, "-")
        cells = [
            format_count(e.requests), format_count(e.failures), ERRORS.unit.format(e.success_rate),
            RPS.bare(e.rps), MS.bare(e.mean), MS.bare(e.std), MS.bare(e.min), MS.bare(e.max),
            P50.bare(e.p50), P95.bare(e.p95) + (f' <span class="ci">({ci})</span>' if ci else ""),
            P99.bare(e.p99),
        ]  # fmt: skip
        return (
            f'<tr class="{cls}"><td>{_e(e.name)}</td>'
            + "".join(f'<td class="num">{c}</td>' for c in cells)
            + f'<td style="color:{_GRADE_COLOURS.get(g, "#444")}"><b>{_e(g)}</b></td></tr>'
        )

    head = "".join(
        f'<th class="num">{h}</th>'
        for h in ("requests", "failures", "success", "req/s", "mean", "std", "min", "max",
                  "p50", f"p95 ({ci_heading(result.level)})", "p99")
    )  # fmt: skip
    body = "".join(row(e) for e in result.stats.endpoints.values())
    body += row(result.stats.total, "total")
    return (
        f'<div class="scroll"><table><thead><tr><th>endpoint</th>{head}<th>grade</th></tr>'
        f'</thead><tbody>{body}</tbody></table></div><p class="hint">Times in ms.</p>'
    )


def _finding(f: Finding) -> str:
    recs = "".join(f"<li>{_e(r)}</li>" for r in f.recommendations)
    return (
        f'<div class="finding" style="border-left-color:{_SEVERITY_COLOURS[f.severity]}">'
        f"<h3>{_badge(f.severity, _SEVERITY_COLOURS[f.severity])} {_e(f.title)}</h3>"
        f'<p class="evidence">{_e(f.evidence)}</p>'
        + (f"<ul>{recs}</ul>" if recs else "")
        + "</div>"
    )


def _findings(result: ScenarioResult) -> str:
    a = result.analysis
    body = "".join(_finding(f) for f in a.findings) or (
        "<p>Nothing in the measurements called for a finding.</p>"
    )
    notes = "".join(f"<li>{_e(n)}</li>" for n in (*result.raw.problems, *a.notes))
    return body + (f'<ul class="notes">{notes}</ul>' if notes else "")


_CSS = """
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2937;
 background:#f3f4f6;margin:0}
main{max-width:1240px;margin:0 auto;padding:24px}
header{display:flex;align-items:center;gap:14px;flex-wrap:wrap}
h1{font-size:24px;margin:0}
h2{font-size:17px;margin:28px 0 10px;color:#111827}
h3{font-size:15px;margin:0 0 6px}
.meta{color:#6b7280;margin:6px 0 0}
.badge{display:inline-block;color:#fff;border-radius:4px;padding:1px 8px;font-weight:600;
 font-size:12px;letter-spacing:.03em;text-transform:uppercase;vertical-align:1px}
header .badge{font-size:15px;padding:4px 12px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:12px;
 margin-top:18px}
.card{background:#fff;border-radius:8px;padding:12px 16px;box-shadow:0 1px 2px #0001}
.card .k{color:#6b7280;font-size:12px;text-transform:uppercase;letter-spacing:.05em}
.card .v{font-size:22px;font-weight:650;margin-top:2px}
.card .sub{color:#6b7280;font-size:12px}
.scroll{overflow-x:auto;background:#fff;border-radius:8px;box-shadow:0 1px 2px #0001}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{padding:7px 10px;text-align:left;border-bottom:1px solid #e5e7eb;white-space:nowrap}
th{background:#f9fafb;font-weight:600;font-size:12px;color:#4b5563}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tr.total td{font-weight:650;background:#f9fafb}
.ci{color:#6b7280;font-weight:400}
.hint{color:#6b7280;font-size:12px;margin:4px 0}
.charts{display:grid;grid-template-columns:1fr 1fr;gap:12px}
figure{margin:0;background:#fff;border-radius:8px;padding:8px;box-shadow:0 1px 2px #0001}
svg.chart{width:100%;height:auto;display:block}
.ctitle{font-weight:650;font-size:13px;fill:#111827}
.tick,.unit,.note,.legend,.limitlabel{font-size:11px;fill:#6b7280}
.legend{fill:#374151}
.limitlabel{fill:#b91c1c}
.grid{stroke:#e5e7eb}
.axis{stroke:#9ca3af}
.limit{stroke:#b91c1c;stroke-dasharray:6 4;stroke-width:1.2}
.warmup{fill:#f3f4f6}
.line{fill:none;stroke-width:1.8;stroke-linejoin:round;stroke-linecap:round}
.dashed{stroke-dasharray:5 4}
.baseref{stroke:#6b7280;stroke-dasharray:2 3;stroke-width:1.2}
.basereflabel{font-size:11px;fill:#4b5563}
h3.endpoint{margin:18px 0 8px;font-size:14px;overflow-wrap:anywhere}
.files a{color:#1d4ed8;overflow-wrap:anywhere}
.empty{fill:#9ca3af;font-size:13px}
.finding{background:#fff;border-left:5px solid;border-radius:6px;padding:12px 16px;
 margin-bottom:10px;box-shadow:0 1px 2px #0001}
.finding ul{margin:6px 0 0;padding-left:20px}
.evidence{margin:0;color:#374151}
.notes{color:#6b7280}
.reasons{background:#fff;border-left:5px solid;border-radius:6px;margin:10px 0 0;
 padding:10px 16px 10px 34px;box-shadow:0 1px 2px #0001}
footer{color:#9ca3af;font-size:12px;margin-top:28px}
@media (max-width:900px){.charts{grid-template-columns:1fr}}
@media (max-width:640px){main{padding:12px}h1{font-size:20px}.card .v{font-size:18px}}
"""


def _files(result: ScenarioResult) -> str:
    """The run's files as links relative to the folder of its files (where the page is)."""
    paths = {**result.raw.files, **result.files}
    here = next(iter(result.raw.files.values())).parent if result.raw.files else None
    return "".join(
        f'<li>{_e(k)}: <a href="{_e(_href(p, here))}">{_e(p.name)}</a></li>'
        for k, p in paths.items()
    )


def _href(path: Path, here: Path | None) -> str:
    if here is None or not path.is_absolute() or not here.is_absolute():
        return path.name if here is None else path.as_posix()
    return Path(os.path.relpath(path, here)).as_posix()


def render_html(result: ScenarioResult) -> str:
    """The whole page as a string."""
    s, v, a = result.scenario, result.verdict, result.analysis
    grade = a.summary.grade
    reasons = "".join(f"<li>{_e(r)}</li>" for r in (*v.reasons, *noise_lines(result)))
    if reasons:
        colour = _OUTCOME_COLOURS[v.outcome]
        reasons = f'<ul class="reasons" style="border-left-color:{colour}">{reasons}</ul>'
    settings = (
        f"{s.users} users, spawn {s.spawn_rate:g}/s, duration {s.duration_s:g} s, wait "
        f"{s.wait_min_s:g}-{s.wait_max_s:g} s, warm-up {s.warmup_s:g} s; ran "
        f"{result.raw.duration_s:.0f} s, ended by {stop_text(result.raw.stop_reason)}"
    )
    files = _files(result)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>perfgate {_e(s.name)}: {v.outcome.value}</title>
<style>{_CSS}</style></head>
<body><main>
<header><h1>pytest-perfgate: {_e(s.name)}</h1>
{_badge(v.outcome.value, _OUTCOME_COLOURS[v.outcome])}
{_badge("grade " + grade, _GRADE_COLOURS.get(grade, "#444"))}</header>
<p class="meta">{_e(s.description + " - " if s.description else "")}started
{_e(result.started_at.strftime("%Y-%m-%d %H:%M:%S %Z").strip())}; {_e(settings)}</p>
{_cards(result)}
<h2>Verdict</h2>
{_verdict_table(result)}
{reasons}
{duet.html_section(result)}
<h2>Over time</h2>
{_charts(result)}
<h2>Endpoints</h2>
{_stats_table(result)}{stream_html_table(result.stats)}
<h2>Per endpoint</h2>
{_endpoint_charts(result)}
<h2>Findings</h2>
{_findings(result)}
{f'<h2>Files</h2><ul class="files">{files}</ul>' if files else ""}
<footer>Generated by pytest-perfgate. Percentiles are exact over the measured window
(warm-up excluded); intervals are distribution-free {format_level(result.level)} confidence
intervals.</footer>
</main></body></html>
"""
