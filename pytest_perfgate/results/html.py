"""A scenario's result -> one self-contained HTML page (inline CSS, inline SVG charts).

Renders offline: no CDN, no script, no external fetch. The charts are SVG drawn here from
the per-second history rows (``t``, ``users``, ``rps``, ``fails``, ``p50``, ``p95``).
Pure: ``render_html`` returns the page; ``results.files`` writes it. Labels, units and
numbers come from the registry through ``results.cells``.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_perfgate.core.findings import Finding
from pytest_perfgate.core.metrics import MS
from pytest_perfgate.core.numbers import format_count, format_level
from pytest_perfgate.core.stats import EndpointStats
from pytest_perfgate.core.verdict import Outcome
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
from pytest_perfgate.results.result import ScenarioResult
from pytest_perfgate.results.terminal import stop_text

__all__ = ["Series", "render_html", "svg_line_chart"]

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


@dataclass(frozen=True)
class Series:
    label: str
    colour: str
    points: tuple[tuple[float, float | None], ...]  # (t, value); None breaks the line


def _nice_step(span: float, ticks: int = 5) -> float:
    raw = span / ticks if span > 0 else 1.0
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * magnitude >= raw)


def _tick_label(value: float) -> str:
    return f"{value:g}" if abs(value) < 10_000 else format_count(value)


@dataclass(frozen=True)
class _Frame:
    """The plot area of a chart and its scales: time ``0..x_max`` s, values ``0..y_max``."""

    width: int
    height: int
    x_max: float
    y_max: float
    left: int = 58
    top: int = 34

    @property
    def pw(self) -> int:
        return self.width - self.left - 16

    @property
    def ph(self) -> int:
        return self.height - self.top - 38

    def px(self, t: float) -> float:
        return self.left + self.pw * t / self.x_max

    def py(self, v: float) -> float:
        return self.top + self.ph * (1 - v / self.y_max)


def _steps(end: float, step: float) -> Iterator[float]:
    value = 0.0
    while value <= end + 1e-9:
        yield value
        value += step


def _warmup(f: _Frame, until: float) -> str:
    w = f.px(min(until, f.x_max)) - f.left
    return (
        f'<rect class="warmup" x="{f.left}" y="{f.top}" width="{w:.1f}" height="{f.ph}"/>'
        f'<text class="note" x="{f.left + 4}" y="{f.top + 12}">warm-up</text>'
    )


def _y_grid(f: _Frame, step: float) -> str:
    return "".join(
        f'<line class="grid" x1="{f.left}" x2="{f.left + f.pw}" y1="{f.py(y):.1f}" '
        f'y2="{f.py(y):.1f}"/><text class="tick" x="{f.left - 6}" y="{f.py(y) + 4:.1f}" '
        f'text-anchor="end">{_tick_label(y)}</text>'
        for y in _steps(f.y_max, step)
    )


def _x_ticks(f: _Frame, step: float) -> str:
    bottom = f.top + f.ph
    return "".join(
        f'<line class="axis" x1="{f.px(t):.1f}" x2="{f.px(t):.1f}" y1="{bottom}" '
        f'y2="{bottom + 4}"/><text class="tick" x="{f.px(t):.1f}" y="{bottom + 17}" '
        f'text-anchor="middle">{_tick_label(t)}</text>'
        for t in _steps(f.x_max, step)
    )


def _axes(f: _Frame, y_unit: str) -> str:
    bottom, middle = f.top + f.ph, f.top + f.ph / 2
    return (
        f'<line class="axis" x1="{f.left}" x2="{f.left + f.pw}" y1="{bottom}" y2="{bottom}"/>'
        f'<text class="unit" x="{f.left + f.pw}" y="{f.height - 4}" text-anchor="end">'
        f'time (s)</text><text class="unit" x="12" y="{middle}" text-anchor="middle" '
        f'transform="rotate(-90 12 {middle})">{_e(y_unit)}</text>'
    )


def _limit(f: _Frame, label: str, value: float) -> str:
    y = f.py(value)
    return (
        f'<line class="limit" x1="{f.left}" x2="{f.left + f.pw}" y1="{y:.1f}" y2="{y:.1f}"/>'
        f'<text class="limitlabel" x="{f.left + f.pw - 4}" y="{y - 5:.1f}" text-anchor="end">'
        f"{_e(label)}</text>"
    )


def _lines(f: _Frame, series: Sequence[Series]) -> str:
    return "".join(
        f'<path class="line" d="{_path(s.points, f)}" stroke="{s.colour}">'
        f"<title>{_e(s.label)}</title></path>"
        for s in series
    )


def _legend(f: _Frame, series: Sequence[Series]) -> str:
    parts, lx = [], f.left + f.pw
    for s in reversed(series):
        lx -= 7 * len(s.label) + 22
        parts.append(
            f'<rect x="{lx}" y="9" width="12" height="4" fill="{s.colour}"/>'
            f'<text class="legend" x="{lx + 16}" y="15">{_e(s.label)}</text>'
        )
    return "".join(parts)


def svg_line_chart(
    title: str,
    series: Sequence[Series],
    *,
    y_unit: str,
    width: int = 600,
    height: int = 250,
    shade_until: float | None = None,
    limit: tuple[str, float] | None = None,
) -> str:
    """An inline SVG line chart over time (s); ``limit`` draws a dashed budget line."""
    xs = [t for s in series for t, v in s.points if v is not None]
    ys = [v for s in series for _, v in s.points if v is not None]
    head = (
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" '
        f'xmlns="http://www.w3.org/2000/svg" aria-label="{_e(title)}">'
        f'<text class="ctitle" x="{_Frame.left}" y="18">{_e(title)}</text>'
    )
    if not xs:
        return (
            head + f'<text class="empty" x="{width / 2}" y="{height / 2}" text-anchor="middle">'
            "no data recorded</text></svg>"
        )
    y_top = max([*ys, limit[1] if limit else 0.0]) or 1.0  # all zero: a 0-1 axis
    y_step = _nice_step(y_top)
    f = _Frame(width, height, max(max(xs), 1.0), y_step * math.ceil(y_top / y_step * 1.0001))
    return "".join([
        head,
        _warmup(f, shade_until) if shade_until else "",
        _y_grid(f, y_step),
        _x_ticks(f, _nice_step(f.x_max, 6)),
        _axes(f, y_unit),
        _limit(f, *limit) if limit else "",
        _lines(f, series),
        _legend(f, series),
        "</svg>",
    ])  # fmt: skip


def _path(points: Sequence[tuple[float, float | None]], f: _Frame) -> str:
    out, pen_down = [], False
    for t, v in points:
        if v is None:
            pen_down = False
            continue
        out.append(f"{'L' if pen_down else 'M'}{f.px(t):.1f},{f.py(v):.1f}")
        pen_down = True
    return " ".join(out)


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
    return '<div class="charts">' + "".join(f"<figure>{c}</figure>" for c in charts) + "</div>"


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
        '<table><thead><tr><th>endpoint</th><th>budget</th><th class="num">observed</th>'
        f'<th class="num">{ci_heading(result.level)}</th><th class="num">n</th>'
        f"<th>outcome</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
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
        f"<table><thead><tr><th>endpoint</th>{head}<th>grade</th></tr></thead>"
        f'<tbody>{body}</tbody></table><p class="hint">Times in ms.</p>'
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
.cards{display:grid;grid-template-columns:repeat(5,1fr);gap:12px;margin-top:18px}
.card{background:#fff;border-radius:8px;padding:12px 16px;box-shadow:0 1px 2px #0001}
.card .k{color:#6b7280;font-size:12px;text-transform:uppercase;letter-spacing:.05em}
.card .v{font-size:22px;font-weight:650;margin-top:2px}
.card .sub{color:#6b7280;font-size:12px}
table{border-collapse:collapse;width:100%;background:#fff;border-radius:8px;overflow:hidden;
 box-shadow:0 1px 2px #0001}
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
.empty{fill:#9ca3af;font-size:13px}
.finding{background:#fff;border-left:5px solid;border-radius:6px;padding:12px 16px;
 margin-bottom:10px;box-shadow:0 1px 2px #0001}
.finding ul{margin:6px 0 0;padding-left:20px}
.evidence{margin:0;color:#374151}
.notes{color:#6b7280}
.reasons{background:#fff;border-left:5px solid;border-radius:6px;margin:10px 0 0;
 padding:10px 16px 10px 34px;box-shadow:0 1px 2px #0001}
footer{color:#9ca3af;font-size:12px;margin-top:28px}
"""


def render_html(result: ScenarioResult) -> str:
    """The whole page as a string."""
    s, v, a = result.scenario, result.verdict, result.analysis
    grade = a.summary.grade
    reasons = "".join(f"<li>{_e(r)}</li>" for r in v.reasons)
    if reasons:
        colour = _OUTCOME_COLOURS[v.outcome]
        reasons = f'<ul class="reasons" style="border-left-color:{colour}">{reasons}</ul>'
    settings = (
        f"{s.users} users, spawn {s.spawn_rate:g}/s, duration {s.duration_s:g} s, wait "
        f"{s.wait_min_s:g}-{s.wait_max_s:g} s, warm-up {s.warmup_s:g} s; ran "
        f"{result.raw.duration_s:.0f} s, ended by {stop_text(result.raw.stop_reason)}"
    )
    files = "".join(
        f"<li>{_e(k)}: {_e(p.name)}</li>" for k, p in {**result.raw.files, **result.files}.items()
    )
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
<h2>Over time</h2>
{_charts(result)}
<h2>Endpoints</h2>
{_stats_table(result)}
<h2>Findings</h2>
{_findings(result)}
{f'<h2>Files</h2><ul class="notes">{files}</ul>' if files else ""}
<footer>Generated by pytest-perfgate. Percentiles are exact over the measured window
(warm-up excluded); intervals are distribution-free {format_level(result.level)} confidence
intervals.</footer>
</main></body></html>
"""
