"""Inline SVG charts for the HTML report: lines over time, and the percentile spectrum.

Pure: strings in, SVG markup out; no script, no external reference (the one URL is the
SVG namespace). ``svg_line_chart`` draws series over a linear x axis (time by default, or
any axis given by its ticks); ``percentile_points`` and ``PERCENTILE_TICKS`` put a latency
distribution on the log axis of ``1/(1-q)`` that HdrHistogram plots (0, 90, 99, 99.9 %...);
``windowed_p95`` is a per-window P95 over time from the raw samples.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from pytest_perfgate.core.numbers import format_count
from pytest_perfgate.core.stats import Sample, percentile

__all__ = [
    "PERCENTILE_TICKS",
    "Reference",
    "Series",
    "percentile_points",
    "svg_line_chart",
    "windowed_p95",
]


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


@dataclass(frozen=True)
class Series:
    """One line: ``points`` are (x, value); ``None`` breaks the line; ``dashed`` for a baseline."""

    label: str
    colour: str
    points: tuple[tuple[float, float | None], ...]
    dashed: bool = False


@dataclass(frozen=True)
class Reference:
    """A horizontal line across the plot: a budget (red, dashed) or a baseline figure."""

    label: str
    value: float
    kind: str = "limit"  # the CSS class: "limit" or "baseref"


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


def _x_ticks(f: _Frame, ticks: Sequence[tuple[float, str]]) -> str:
    bottom = f.top + f.ph
    return "".join(
        f'<line class="axis" x1="{f.px(x):.1f}" x2="{f.px(x):.1f}" y1="{bottom}" '
        f'y2="{bottom + 4}"/><text class="tick" x="{f.px(x):.1f}" y="{bottom + 17}" '
        f'text-anchor="middle">{_e(label)}</text>'
        for x, label in ticks
        if x <= f.x_max + 1e-9
    )


def _axes(f: _Frame, x_unit: str, y_unit: str) -> str:
    bottom, middle = f.top + f.ph, f.top + f.ph / 2
    return (
        f'<line class="axis" x1="{f.left}" x2="{f.left + f.pw}" y1="{bottom}" y2="{bottom}"/>'
        f'<text class="unit" x="{f.left + f.pw}" y="{f.height - 4}" text-anchor="end">'
        f'{_e(x_unit)}</text><text class="unit" x="12" y="{middle}" text-anchor="middle" '
        f'transform="rotate(-90 12 {middle})">{_e(y_unit)}</text>'
    )


def _reference(f: _Frame, ref: Reference) -> str:
    y = f.py(ref.value)
    return (
        f'<line class="{ref.kind}" x1="{f.left}" x2="{f.left + f.pw}" y1="{y:.1f}" '
        f'y2="{y:.1f}"/><text class="{ref.kind}label" x="{f.left + f.pw - 4}" y="{y - 5:.1f}" '
        f'text-anchor="end">{_e(ref.label)}</text>'
    )


def _lines(f: _Frame, series: Sequence[Series]) -> str:
    return "".join(
        f'<path class="line{" dashed" if s.dashed else ""}" d="{_path(s.points, f)}" '
        f'stroke="{s.colour}"><title>{_e(s.label)}</title></path>'
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
    references: Sequence[Reference] = (),
    x_unit: str = "time (s)",
    x_ticks: Sequence[tuple[float, str]] | None = None,
) -> str:
    """An inline SVG line chart; ``limit`` draws a dashed budget line, ``references`` more.

    The x axis is time in seconds unless ``x_ticks`` (position, label) and ``x_unit`` say.
    """
    refs = [*([Reference(*limit)] if limit else []), *references]
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
    y_top = max([*ys, *(r.value for r in refs)]) or 1.0  # all zero: a 0-1 axis
    y_step = _nice_step(y_top)
    f = _Frame(width, height, max(max(xs), 1.0), y_step * math.ceil(y_top / y_step * 1.0001))
    ticks = x_ticks or [(t, _tick_label(t)) for t in _steps(f.x_max, _nice_step(f.x_max, 6))]
    return "".join([
        head,
        _warmup(f, shade_until) if shade_until else "",
        _y_grid(f, y_step),
        _x_ticks(f, ticks),
        _axes(f, x_unit, y_unit),
        *(_reference(f, r) for r in refs),
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


# --- latency distribution and P95 over time, from the samples -------------------------

#: x positions (``log10(1/(1-q))``) and labels of the percentile axis, as HdrHistogram draws it
PERCENTILE_TICKS = ((0.0, "0 %"), (1.0, "90 %"), (2.0, "99 %"), (3.0, "99.9 %"),
                    (4.0, "99.99 %"), (5.0, "99.999 %"))  # fmt: skip
_SPECTRUM_STEP = 0.05  # in log10(1/(1-q)): 20 points a decade


def percentile_points(sorted_ms: Sequence[float]) -> tuple[tuple[float, float | None], ...]:
    """The percentile spectrum of sorted times on the ``log10(1/(1-q))`` axis.

    It stops where the data stops: past ``q = 1 - 1/n`` every percentile is the maximum,
    so a run of ``n`` requests is drawn up to ``log10(n)`` (and the maximum there).
    """
    n = len(sorted_ms)
    if n == 0:
        return ()
    end = min(math.log10(n), PERCENTILE_TICKS[-1][0])
    steps = int(end / _SPECTRUM_STEP)
    xs = [i * _SPECTRUM_STEP for i in range(steps + 1)]
    if not xs or xs[-1] < end:
        xs.append(end)
    points = [(x, percentile(sorted_ms, 1 - 10.0**-x)) for x in xs[:-1]]
    last = sorted_ms[-1] if end == math.log10(n) else percentile(sorted_ms, 1 - 10.0**-end)
    return (*points, (xs[-1], last))


def windowed_p95(
    samples: Sequence[Sample], window_s: float, *, min_count: int = 5
) -> tuple[tuple[float, float | None], ...]:
    """The P95 of each ``window_s`` window (at its middle); fewer than ``min_count``: a gap."""
    by_window: dict[int, list[float]] = {}
    for s in samples:
        by_window.setdefault(int(s.t // window_s), []).append(s.ms)
    if not by_window:
        return ()
    points: list[tuple[float, float | None]] = []
    for i in range(max(by_window) + 1):
        times = sorted(by_window.get(i, ()))
        value = percentile(times, 0.95) if len(times) >= min_count else None
        points.append(((i + 0.5) * window_s, value))
    return tuple(points)
