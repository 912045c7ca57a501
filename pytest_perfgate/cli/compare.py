"""``perfgate compare OLD NEW``: the figures of two results side by side; exit 1 when a
budgeted figure got worse beyond the tolerance.

The figures, their direction (a ceiling gets worse going up, a floor going down), their
units and how a change reads (percentage points for a rate) come from the registry
(``core.metrics``): every metric that reads an ``EndpointStats`` field is compared.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping

from pytest_perfgate.cli.analyze import Loaded, load_result
from pytest_perfgate.core.metrics import METRICS, REGRESSIONS, Metric, Regression, metric
from pytest_perfgate.core.parsing import parse_percent, parse_share
from pytest_perfgate.core.stats import TOTAL, RunStats
from pytest_perfgate.errors import ConfigError

__all__ = ["DEFAULT_GATED", "FIGURES", "compare", "parse_tolerance"]

#: figure (the ``EndpointStats`` field a metric reads) -> its metric, in registry order
FIGURES: Mapping[str, Metric] = {m.stat: m for m in METRICS if m.stat is not None}
#: figures whose change reads in percentage points: a relative change from 0 means nothing
_IN_POINTS: Mapping[str, Regression] = {
    r.metric.stat: r for r in REGRESSIONS if r.change == "points" and r.metric.stat
}
#: the smallest change that counts, by unit: +1 ms for times, +0.1 point for rates
_NOISE = {"ms": 1.0, "%": 0.001}
DEFAULT_GATED = frozenset({(TOTAL, "p95"), (TOTAL, "error_rate")})
_TOLERANCE = "a tolerance such as 10% or 0.1"


def parse_tolerance(text: str) -> float:
    """``"10%"`` or ``"0.1"`` -> 0.1; a percent may exceed 100 %, a fraction may not."""
    raw = text.strip()
    try:
        float(raw.removesuffix("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {_TOLERANCE}, got {text!r}") from None
    try:
        share = parse_percent(raw, "--tolerance", _TOLERANCE)
        return share if share is not None else parse_share(float(raw), "--tolerance")
    except ConfigError:
        raise argparse.ArgumentTypeError(
            f"expected {_TOLERANCE} (a fraction <= 1), got {text!r}"
        ) from None


def _stat_of(budget_key: str) -> str | None:
    """The figure a budget key judges (``p95_ms`` -> ``p95``); None for run figures."""
    try:
        return metric(budget_key).stat
    except KeyError:  # a regression allowance: not a figure of its own
        return None


def _figure(stats: RunStats, endpoint: str, figure: str) -> float | None:
    e = stats.total if endpoint == TOTAL else stats.endpoints.get(endpoint)
    if e is None:
        return None
    value = e.figure(figure)  # None: a stream figure of a row without streams
    return value if value is not None and math.isfinite(value) else None


def _worse_by(figure: str, old: float, new: float, tolerance: float) -> bool:
    m = FIGURES[figure]
    change = (old - new) if m.floor else (new - old)
    return change > tolerance * abs(old) and change > _NOISE.get(m.unit.symbol, 0.0)


def _change(figure: str, old: float | None, new: float | None) -> str:
    """``+24.7 %``; a rate's change in points, ``+2.00 pp``."""
    if old is None or new is None:
        return ""
    if (points := _IN_POINTS.get(figure)) is not None:
        return points.format_change(new - old)
    return f"{(new - old) / old * 100:+.1f} %" if old else ""


def _gated(old: Loaded, new: Loaded) -> set[tuple[str, str]]:
    """(endpoint, figure) of every budget either result judged."""
    gated = set()
    for b in (*old.budgets, *new.budgets):
        if (figure := _stat_of(str(b.get("metric")))) is not None:
            gated.add((str(b["endpoint"]), figure))
    return gated


def _rows(old: Loaded, new: Loaded) -> list[tuple[str, str, float | None, float | None]]:
    names = list(old.stats.endpoints)
    names += [n for n in new.stats.endpoints if n not in old.stats.endpoints]
    found = []
    for endpoint in [*names, TOTAL]:
        for figure in FIGURES:
            a, b = _figure(old.stats, endpoint, figure), _figure(new.stats, endpoint, figure)
            if a is not None or b is not None:
                found.append((endpoint, figure, a, b))
    return found


def _verdict(flagged: list[str], tolerance: float) -> int:
    if flagged:
        print(f"{len(flagged)} budgeted figure(s) got worse beyond {tolerance * 100:g} %:")
        for line in flagged:
            print(f"  {line}")
        return 1
    print(f"no budgeted figure got worse beyond {tolerance * 100:g} %")
    return 0


def compare(args: argparse.Namespace) -> int:
    """``perfgate compare OLD NEW [--tolerance PCT]``: 1 when a budgeted figure got worse."""
    old, new = load_result(args.old), load_result(args.new)
    tolerance: float = args.tolerance
    gated = _gated(old, new)
    print(f"compare {old.source} -> {new.source} (tolerance {tolerance * 100:g} %)")
    if not gated:
        gated = set(DEFAULT_GATED)
        print("neither result has budgets: gating the total p95 and error rate")
    print(f"  {'endpoint':<30} {'figure':<10} {'old':>14} {'new':>14} {'change':>9}")
    flagged: list[str] = []
    for endpoint, figure, a, b in _rows(old, new):
        m, change, mark = FIGURES[figure], _change(figure, a, b), ""
        if (endpoint, figure) in gated:
            mark = " budgeted"
            if a is not None and b is not None and _worse_by(figure, a, b, tolerance):
                mark = " WORSE (budgeted)"
                flagged.append(f"{endpoint} {figure} {m.format(a)} -> {m.format(b)} ({change})")
        print(
            f"  {endpoint[:30]:<30} {figure:<10} {m.format(a):>14} {m.format(b):>14} "
            f"{change:>9}{mark}"
        )
    return _verdict(flagged, tolerance)
