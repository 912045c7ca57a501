"""A scenario's result -> one self-contained HTML file (inline CSS, inline SVG charts).

Renders offline: no CDN, no script, no external fetch. The charts are SVG drawn here from
the per-second history rows (``t``, ``users``, ``rps``, ``fails``, ``p50``, ``p95``).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_perfgate.core.findings import Finding, format_count, format_ms, format_percent
from pytest_perfgate.core.stats import EndpointStats
from pytest_perfgate.core.verdict import Outcome
from pytest_perfgate.results.report import (
    ScenarioResult,
    budget_text,
    format_observed,
    format_range,
    open_new,
    stop_text,
)

__all__ = ["Series", "render_html", "svg_line_chart", "write_html"]

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
    left, right, top, bottom = 58, 16, 34, 38
    pw, ph = width - left - right, height - top - bottom
    xs = [t for s in series for t, v in s.points if v is not None]
    ys = [v for s in series for _, v in s.points if v is not None]
    head = (
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" '
        f'xmlns="http://www.w3.org/2000/svg" aria-label="{_e(title)}">'
        f'<text class="ctitle" x="{left}" y="18">{_e(title)}</text>'
    )
    if not xs:
        return (
            head + f'<text class="empty" x="{width / 2}" y="{height / 2}" text-anchor="middle">'
            "no data recorded</text></svg>"
        )
    x_max = max(max(xs), 1.0)
    y_top = max([*ys, limit[1] if limit else 0.0]) or 1.0  # all zero: a 0-1 axis
    y_step = _nice_step(y_top)
    y_max = y_step * math.ceil(y_top / y_step * 1.0001)
    x_step = _nice_step(x_max, 6)

    def px(t: float) -> float:
        return left + pw * t / x_max

    def py(v: float) -> float:
        return top + ph * (1 - v / y_max)

    parts = [head]
    if shade_until:
        w = px(min(shade_until, x_max)) - left
        parts.append(
            f'<rect class="warmup" x="{left}" y="{top}" width="{w:.1f}" height="{ph}"/>'
            f'<text class="note" x="{left + 4}" y="{top + 12}">warm-up</text>'
        )
    y = 0.0
    while y <= y_max + 1e-9:
        parts.append(
            f'<line class="grid" x1="{left}" x2="{left + pw}" y1="{py(y):.1f}" y2="{py(y):.1f}"/>'
            f'<text class="tick" x="{left - 6}" y="{py(y) + 4:.1f}" text-anchor="end">'
            f"{_tick_label(y)}</text>"
        )
        y += y_step
    t = 0.0
    while t <= x_max + 1e-9:
        parts.append(
            f'<line class="axis" x1="{px(t):.1f}" x2="{px(t):.1f}" y1="{top + ph}" '
            f'y2="{top + ph + 4}"/><text class="tick" x="{px(t):.1f}" y="{top + ph + 17}" '
            f'text-anchor="middle">{_tick_label(t)}</text>'
        )
        t += x_step
    parts.append(
        f'<line class="axis" x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}"/>'
        f'<text class="unit" x="{left + pw}" y="{height - 4}" text-anchor="end">time (s)</text>'
        f'<text class="unit" x="12" y="{top + ph / 2}" text-anchor="middle" '
        f'transform="rotate(-90 12 {top + ph / 2})">{_e(y_unit)}</text>'
    )
    if limit:
        parts.append(
            f'<line class="limit" x1="{left}" x2="{left + pw}" y1="{py(limit[1]):.1f}" '
            f'y2="{py(limit[1]):.1f}"/><text class="limitlabel" x="{left + pw - 4}" '
            f'y="{py(limit[1]) - 5:.1f}" text-anchor="end">{_e(limit[0])}</text>'
        )
    for s in series:
        parts.append(
            f'<path class="line" d="{_path(s.points, px, py)}" stroke="{s.colour}">'
            f"<title>{_e(s.label)}</title></path>"
        )
    lx = left + pw
    for s in reversed(series):
        label_w = 7 * len(s.label) + 22
        lx -= label_w
        parts.append(
            f'<rect x="{lx}" y="9" width="12" height="4" fill="{s.colour}"/>'
            f'<text class="legend" x="{lx + 16}" y="15">{_e(s.label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _path(points: Sequence[tuple[float, float | None]], px: Any, py: Any) -> str:
    out, pen_down = [], False
    for t, v in points:
        if v is None:
            pen_down = False
            continue
        out.append(f"{'L' if pen_down else 'M'}{px(t):.1f},{py(v):.1f}")
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
            y_unit="ms", shade_until=warmup, limit=limit,
        ),
        svg_line_chart("Requests per second", [Series("req/s", "#16a34a", _column(h, "rps"))],
                       y_unit="req/s", shade_until=warmup),
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
    ci = f"95 % CI {format_ms(s.p95_ci[0])}-{format_ms(s.p95_ci[1])}" if s.p95_ci else "&nbsp;"
    cards = [
        ("P50", f"{format_ms(s.p50)} ms", "&nbsp;"),
        ("P95", f"{format_ms(s.p95)} ms", ci),
        ("P99", f"{format_ms(s.p99)} ms", "&nbsp;"),
        ("Throughput", f"{s.rps:.1f} req/s", f"{format_count(s.requests)} requests"),
        ("Errors", format_percent(s.error_rate), f"{format_count(s.failures)} failed"),
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
    rows = []
    for c in v.checks:
        ci = format_range(c.metric, c.ci)
        rows.append(
            f"<tr><td>{_e(c.endpoint)}</td><td>{_e(budget_text(c))}</td>"
            f'<td class="num">{_e(format_observed(c.metric, c.observed))}</td>'
            f'<td class="num">{_e(ci)}</td><td class="num">{format_count(c.n)}</td>'
            f"<td>{_badge(c.outcome.value, _OUTCOME_COLOURS[c.outcome])}"
            f"{' (warn only)' if c.severity == 'warn' else ''}</td></tr>"
        )
    return (
        '<table><thead><tr><th>endpoint</th><th>budget</th><th class="num">observed</th>'
        '<th class="num">95 % CI</th><th class="num">n</th><th>outcome</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _stats_table(result: ScenarioResult) -> str:
    grades = result.analysis.grades

    def row(e: EndpointStats, cls: str = "") -> str:
        ci = e.ci.get("p95")
        g = grades.get(e.name, "-")
        cells = [
            format_count(e.requests), format_count(e.failures), format_percent(e.success_rate),
            f"{e.rps:.2f}", format_ms(e.mean), format_ms(e.std), format_ms(e.min),
            format_ms(e.max), format_ms(e.p50),
            format_ms(e.p95) + (f' <span class="ci">({format_ms(ci[0])}-{format_ms(ci[1])})</span>'
                                if ci else ""),
            format_ms(e.p99),
        ]  # fmt: skip
        return (
            f'<tr class="{cls}"><td>{_e(e.name)}</td>'
            + "".join(f'<td class="num">{c}</td>' for c in cells)
            + f'<td style="color:{_GRADE_COLOURS.get(g, "#444")}"><b>{_e(g)}</b></td></tr>'
        )

    head = "".join(
        f'<th class="num">{h}</th>'
        for h in ("requests", "failures", "success", "req/s", "mean", "std", "min", "max",
                  "p50", "p95 (95 % CI)", "p99")
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
(warm-up excluded); intervals are distribution-free 95 % confidence intervals.</footer>
</main></body></html>
"""


def write_html(path: Path, result: ScenarioResult) -> Path:
    """Write the report at ``path`` (or a free ``-N`` name beside it); return where."""
    fh, written = open_new(path)
    with fh:
        fh.write(render_html(result))
    return written
