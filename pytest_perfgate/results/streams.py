"""How the figures of streamed responses read: terminal lines, a Markdown and an HTML
table, a CSV, and the TTFT/ITL charts of the HTML report.

Pure formatting over frozen values (no file I/O: ``files`` writes the CSV text). Only rows
with streamed responses (``EndpointStats.stream``) appear; a run without any gives empty
output, so its reports read exactly as before. Labels, units and numbers come from the
registry (``core.metrics``).
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Sequence
from typing import Literal

from pytest_perfgate.core.metrics import Metric, metric
from pytest_perfgate.core.numbers import format_count
from pytest_perfgate.core.stats import EndpointStats, RunStats, Sample, percentile, series_values
from pytest_perfgate.results.cells import ci_heading, rows
from pytest_perfgate.results.charts import (
    PERCENTILE_TICKS,
    Series,
    percentile_points,
    svg_line_chart,
)

__all__ = [
    "BATCHED_NOTE",
    "STREAM_METRICS",
    "has_streams",
    "stream_charts",
    "stream_csv",
    "stream_html_table",
    "stream_lines",
    "stream_markdown",
]

#: the figures a streaming row shows, in this order (registry entries)
STREAM_METRICS: tuple[Metric, ...] = tuple(
    metric(k)
    for k in (
        "ttft_p50_ms", "ttft_p95_ms", "ttft_p99_ms", "itl_p95_ms", "itl_p99_ms",
        "tpot_p95_ms", "output_tokens_per_s", "goodput",
    )
)  # fmt: skip
_TTFT_P95 = metric("ttft_p95_ms")
BATCHED_NOTE = "chunks carried several tokens: ITL is per token"


def has_streams(stats: RunStats) -> bool:
    return any(e.stream is not None for e in rows(stats))


def _streaming(stats: RunStats) -> list[EndpointStats]:
    return [e for e in rows(stats) if e.stream is not None]


def _cell(e: EndpointStats, m: Metric) -> str:
    return m.format(e.figures.get(m.stat or ""))


def _malformed(e: EndpointStats) -> str:
    """``3 malformed (cut mid-way 2, no [DONE] 1)``; "" when every stream was well-formed."""
    s = e.stream
    if s is None or not s.malformed_total:
        return ""
    parts = ", ".join(f"{problem} {format_count(n)}" for problem, n in sorted(s.malformed.items()))
    return f"{format_count(s.malformed_total)} malformed ({parts})"


def _notes(e: EndpointStats) -> list[str]:
    s = e.stream
    notes = [_malformed(e)] if _malformed(e) else []
    if s is not None and s.batched:
        notes.append(f"{BATCHED_NOTE} ({format_count(s.batched)} responses)")
    return notes


def _shorten(text: str, width: int = 30) -> str:
    return text if len(text) <= width else text[: width - 1] + "~"


def _joined(e: EndpointStats, keys: Sequence[str]) -> str:
    """``149/194/198 ms``: figures of one unit, read by their registry entries."""
    ms = [metric(k) for k in keys]
    return "/".join(m.bare(e.figures.get(m.stat or "")) for m in ms) + f" {ms[0].unit.symbol}"


def stream_lines(stats: RunStats) -> list[str]:
    """Per streaming row two lines and its notes, for the terminal (at most 120 columns,
    no indent): ``streams NAME: 200 streamed, TTFT p50/p95/p99 149/194/198 ms (95 % CI
    190-196 ms)``, then ITL, TPOT, tokens/s and goodput."""
    out = []
    for e in _streaming(stats):
        assert e.stream is not None
        ci = e.ci.get(_TTFT_P95.stat or "")
        interval = f" ({ci_heading(e.ci_level)} {_TTFT_P95.format_interval(*ci)})" if ci else ""
        ttft = _joined(e, ("ttft_p50_ms", "ttft_p95_ms", "ttft_p99_ms"))
        out.append(
            f"streams {_shorten(e.name)}: {format_count(e.stream.requests)} streamed, "
            f"TTFT p50/p95/p99 {ttft}{interval}"
        )
        tokens, goodput = metric("output_tokens_per_s"), metric("goodput")
        rest = [
            f"ITL p95/p99 {_joined(e, ('itl_p95_ms', 'itl_p99_ms'))}",
            f"TPOT p95 {_cell(e, metric('tpot_p95_ms'))}",
            _cell(e, tokens),
        ]
        if "goodput" in e.figures:
            rest.append(f"goodput {_cell(e, goodput)}")
        out.append("  " + ", ".join(rest))
        out += [f"  note: {note}" for note in _notes(e)]
    return out


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def stream_markdown(stats: RunStats) -> list[str]:
    """A Markdown table of the streaming rows and their notes; [] without streams."""
    found = _streaming(stats)
    if not found:
        return []
    head = " | ".join(m.column for m in STREAM_METRICS)
    out = [
        "",
        f"| streamed endpoint | streams | {head} | malformed |",
        "|---|---:|" + "---:|" * len(STREAM_METRICS) + "---:|",
    ]
    for e in found:
        assert e.stream is not None
        cells = " | ".join(_cell(e, m) for m in STREAM_METRICS)
        out.append(
            f"| {_md(e.name)} | {format_count(e.stream.requests)} | {cells} | "
            f"{format_count(e.stream.malformed_total)} |"
        )
    out += [f"- {_md(e.name)}: {_md(note)}" for e in found for note in _notes(e)]
    return out


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def stream_html_table(stats: RunStats) -> str:
    """The streaming rows as an HTML table with their notes; "" without streams."""
    found = _streaming(stats)
    if not found:
        return ""
    head = "".join(f'<th class="num">{_e(m.column)}</th>' for m in STREAM_METRICS)
    body = ""
    for e in found:
        assert e.stream is not None
        cells = [format_count(e.stream.requests), *(_cell(e, m) for m in STREAM_METRICS),
                 format_count(e.stream.malformed_total)]  # fmt: skip
        body += f"<tr><td>{_e(e.name)}</td>" + "".join(
            f'<td class="num">{_e(c)}</td>' for c in cells
        ) + "</tr>"  # fmt: skip
    notes = "".join(f"<li>{_e(e.name)}: {_e(n)}</li>" for e in found for n in _notes(e))
    return (
        '<h2>Streamed responses</h2><div class="scroll"><table><thead><tr>'
        f'<th>endpoint</th><th class="num">streams</th>{head}<th class="num">malformed</th>'
        f"</tr></thead><tbody>{body}</tbody></table></div>"
        + (f'<ul class="reasons">{notes}</ul>' if notes else "")
    )


def stream_csv(stats: RunStats) -> str:
    """``<prefix>_streams.csv``: one row per streaming endpoint (and the total); "" without."""
    found = _streaming(stats)
    if not found:
        return ""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    columns = [m.key for m in STREAM_METRICS]
    writer.writerow(["Name", "Streams", *columns, "Output tokens", "Batched", "Malformed"])
    for e in found:
        assert e.stream is not None
        values = [e.figures.get(m.stat or "") for m in STREAM_METRICS]
        writer.writerow([
            e.name, e.stream.requests, *("" if v is None else f"{v:.6g}" for v in values),
            e.stream.output_tokens, e.stream.batched, e.stream.malformed_total,
        ])  # fmt: skip
    return buffer.getvalue()


# --- charts ---------------------------------------------------------------------------

_TTFT_COLOUR, _ITL_COLOUR = "#0891b2", "#9333ea"


def _windowed(
    samples: Sequence[Sample],
    series: Literal["ttft", "itl"],
    window_s: float,
    q: float = 0.95,
    min_count: int = 5,
) -> tuple[tuple[float, float | None], ...]:
    """The ``q``-quantile of a streamed series per window of request starts (a gap below
    ``min_count`` values)."""
    by_window: dict[int, list[float]] = {}
    for s in samples:
        found = series_values(s, series)
        if found:
            by_window.setdefault(int(s.t // window_s), []).extend(found)
    if not by_window:
        return ()
    points: list[tuple[float, float | None]] = []
    for i in range(max(by_window) + 1):
        values = sorted(by_window.get(i, ()))
        points.append(
            ((i + 0.5) * window_s, percentile(values, q) if len(values) >= min_count else None)
        )
    return tuple(points)


def stream_charts(
    samples: Sequence[Sample], measured: Sequence[Sample], window_s: float, warmup_s: float
) -> list[str]:
    """TTFT and ITL distributions (measured window) and their P95 over time; [] without streams."""
    if not any(s.stream is not None for s in samples):
        return []
    ttft = sorted(x for s in measured for x in series_values(s, "ttft"))
    itl = sorted(x for s in measured for x in series_values(s, "itl"))
    unit = _TTFT_P95.unit.symbol
    return [
        svg_line_chart(
            "TTFT and ITL distribution",
            [Series("TTFT", _TTFT_COLOUR, percentile_points(ttft)),
             Series("ITL (per token)", _ITL_COLOUR, percentile_points(itl))],
            y_unit=unit, x_unit="percentile", x_ticks=PERCENTILE_TICKS,
        ),
        svg_line_chart(
            f"TTFT and ITL P50/P95 over time ({window_s:g} s windows)",
            [Series("TTFT P95", _TTFT_COLOUR, _windowed(samples, "ttft", window_s)),
             Series("TTFT P50", _TTFT_COLOUR, _windowed(samples, "ttft", window_s, 0.5), True),
             Series("ITL P95", _ITL_COLOUR, _windowed(samples, "itl", window_s)),
             Series("ITL P50", _ITL_COLOUR, _windowed(samples, "itl", window_s, 0.5), True)],
            y_unit=unit, shade_until=warmup_s or None,
        ),
    ]  # fmt: skip
