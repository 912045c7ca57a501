"""Plain Locust ``--csv`` output -> ``RunStats``, history and failures, and their analysis.

Reads files (``<prefix>_stats.csv``, ``_stats_history.csv``, ``_failures.csv``); the
grades and findings are ``core.findings``'. Errors are ``OSError`` or ``ValueError``
naming the file.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_perfgate.core.findings import Analysis, FailureGroup, analyze
from pytest_perfgate.core.stats import TOTAL, EndpointStats, RunStats

__all__ = [
    "LOCUST_CSV_NOTE",
    "LocustCsvRun",
    "analyze_locust_csv",
    "read_locust_failures",
    "read_locust_history",
    "read_locust_stats",
]

LOCUST_CSV_NOTE = (
    "Figures come from Locust's CSV: its percentiles are rounded (bucketed) response "
    "times, and no confidence interval is known."
)


@dataclass(frozen=True)
class LocustCsvRun:
    """Figures and analysis of one ``locust --csv PREFIX`` output set."""

    stats: RunStats
    history: tuple[Mapping[str, Any], ...]
    failures: tuple[FailureGroup, ...]
    analysis: Analysis
    source: Path


def _read_csv(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    """Rows of a CSV file; ``ValueError`` naming the file when columns are missing."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in required if c not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(
                f"{path}: not a Locust CSV file: missing column(s) {', '.join(missing)}"
            )
        return list(reader)


def _endpoint_key(method: str, name: str) -> str:
    method = method.strip()
    if not method or name.startswith(method + " "):
        return name
    return f"{method} {name}"


def _float(row: Mapping[str, str], column: str, path: Path) -> float:
    value = row.get(column, "")
    if value in ("", "N/A"):
        return math.nan
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{path}: column {column!r}: expected a number, got {value!r}") from None


def read_locust_stats(path: Path) -> RunStats:
    """``<prefix>_stats.csv`` -> ``RunStats`` (std unknown: NaN; no confidence intervals)."""
    rows = _read_csv(
        path, ("Type", "Name", "Request Count", "Failure Count", "Average Response Time",
               "Requests/s", "50%", "95%", "99%")
    )  # fmt: skip
    entries: dict[str, EndpointStats] = {}
    total: EndpointStats | None = None
    for row in rows:
        is_total = row["Name"] == "Aggregated"
        name = TOTAL if is_total else _endpoint_key(row["Type"], row["Name"])
        requests = int(_float(row, "Request Count", path))
        entry = EndpointStats(
            name=name,
            requests=requests,
            failures=int(_float(row, "Failure Count", path)),
            rps=_float(row, "Requests/s", path),
            mean=_float(row, "Average Response Time", path),
            std=math.nan,
            min=_float(row, "Min Response Time", path),
            max=_float(row, "Max Response Time", path),
            p50=_float(row, "50%", path),
            p95=_float(row, "95%", path),
            p99=_float(row, "99%", path),
            ci={},
        )
        if is_total:
            total = entry
        else:
            entries[name] = entry
    if total is None:
        raise ValueError(f"{path}: no 'Aggregated' row; is this a Locust *_stats.csv file?")
    duration = total.requests / total.rps if total.rps > 0 else 0.0
    return RunStats(endpoints=entries, total=total, duration_s=duration)


def read_locust_history(path: Path) -> tuple[dict[str, Any], ...]:
    """``<prefix>_stats_history.csv`` (the Aggregated rows) -> our history rows.

    Keys: ``t`` (s since the first row), ``users``, ``rps``, ``fails`` (failures/s), ``p50``,
    ``p95`` (ms; Locust's cumulative percentiles unless run with ``--csv-full-history``).
    """
    rows = _read_csv(path, ("Timestamp", "User Count", "Name", "Requests/s", "Failures/s"))
    out: list[dict[str, Any]] = []
    start: float | None = None
    for row in rows:
        if row["Name"] != "Aggregated":
            continue
        ts = _float(row, "Timestamp", path)
        start = ts if start is None else start
        out.append({
            "t": ts - start,
            "users": _float(row, "User Count", path),
            "rps": _float(row, "Requests/s", path),
            "fails": _float(row, "Failures/s", path),
            "p50": _float(row, "50%", path),
            "p95": _float(row, "95%", path),
        })  # fmt: skip
    return tuple(out)


def read_locust_failures(path: Path) -> tuple[FailureGroup, ...]:
    """``<prefix>_failures.csv`` -> failure groups (the status is read from the error text)."""
    rows = _read_csv(path, ("Method", "Name", "Error", "Occurrences"))
    return tuple(
        FailureGroup(
            endpoint=_endpoint_key(r["Method"], r["Name"]),
            error=r["Error"],
            occurrences=int(_float(r, "Occurrences", path)),
        )
        for r in rows
    )


def analyze_locust_csv(
    stats_csv_path: Path,
    history_csv_path: Path | None = None,
    failures_csv_path: Path | None = None,
) -> LocustCsvRun:
    """Analyse plain Locust ``--csv`` output; raises ``OSError`` or ``ValueError`` (file named)."""
    stats = read_locust_stats(stats_csv_path)
    history = read_locust_history(history_csv_path) if history_csv_path else ()
    failures = read_locust_failures(failures_csv_path) if failures_csv_path else ()
    analysis = analyze(stats, history, failures=failures, notes=(LOCUST_CSV_NOTE,))
    return LocustCsvRun(stats, history, failures, analysis, stats_csv_path)
