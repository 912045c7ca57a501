"""The one number formatter: counts, milliseconds, shares, rates, with thin spaces as
thousands separators (``5 812``), the same in every table, breach line and report.

Pure: no pytest, no I/O. Units are added by ``core.metrics``; these return the number only.
"""

from __future__ import annotations

import math

__all__ = [
    "format_count",
    "format_level",
    "format_ms",
    "format_number",
    "format_percent",
    "format_signed_percent",
]


def _grouped(text: str) -> str:
    return text.replace(",", " ")


def _trim(text: str) -> str:
    return text[:-2] if text.endswith(".0") else text


def _infinite(value: float) -> str | None:
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return None


def format_count(n: float) -> str:
    """``5812`` -> ``"5 812"``."""
    if (inf := _infinite(n)) is not None:
        return inf
    return _grouped(f"{round(n):,d}")


def format_ms(ms: float) -> str:
    """Milliseconds with sensible precision, no unit: ``412``, ``9.8``, ``0.42``, ``1 234``."""
    if (inf := _infinite(ms)) is not None:
        return inf
    size = abs(ms)
    if size >= 99.5:
        return _grouped(f"{ms:,.0f}")
    if size >= 0.995 or size == 0:
        return _trim(f"{ms:.1f}")
    return f"{ms:.2g}"


def format_number(value: float, decimals: int = 1) -> str:
    """A grouped number with at most ``decimals`` decimals: ``1 234.5``, ``12``, ``0.5``."""
    if (inf := _infinite(value)) is not None:
        return inf
    return _trim(_grouped(f"{value:,.{decimals}f}"))


def format_percent(share: float, decimals: int = 2) -> str:
    """A share as a percentage, no unit: ``0.0123`` -> ``"1.23"``."""
    if (inf := _infinite(share)) is not None:
        return inf
    return f"{100 * share:.{decimals}f}"


def format_signed_percent(change: float) -> str:
    """A relative change in whole percent with its sign, no unit: ``0.37`` -> ``"+37"``."""
    return f"{round(100 * change):+d}"


def format_level(level: float) -> str:
    """A confidence level: ``0.95`` -> ``"95 %"``, ``0.999`` -> ``"99.9 %"``."""
    return f"{100 * level:.10g} %"
