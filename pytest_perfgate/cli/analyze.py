"""``perfgate analyze``: grades and findings of earlier results; and reading results back.

Reads our result JSON (``results.result``) and Locust's ``*_stats.csv`` sets; a file that
is neither, or is broken, is a ``CliError`` naming it (``cli.main`` prints it as one line).
On a folder, each file is read or skipped with a line saying why: a run's own JSON is
preferred to Locust's CSV of the same run, and files that are no result are skipped.
``compare`` loads its two results through ``load_result`` too.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_perfgate.core.findings import Analysis, analysis_from_dict
from pytest_perfgate.core.stats import RunStats
from pytest_perfgate.errors import CliError
from pytest_perfgate.results.cells import ERRORS, MEAN, P50, P95, P99, RPS, ci_heading
from pytest_perfgate.results.jsonsafe import dumps
from pytest_perfgate.results.locust_csv import analyze_locust_csv
from pytest_perfgate.results.result import RESULT_FORMAT, stats_from_dict, stats_to_dict
from pytest_perfgate.results.streams import stream_lines
from pytest_perfgate.results.terminal import endpoint_table

__all__ = ["FolderReading", "Loaded", "analyze", "load_result", "read_folder"]

#: ``format`` of the JSON that ``perfgate analyze --json`` writes
ANALYSIS_FORMAT = "pytest-perfgate/analysis/1"


@dataclass(frozen=True)
class Loaded:
    """One analysed result, from our JSON or from a Locust CSV set."""

    source: Path
    kind: str  # "perfgate" or "locust-csv"
    scenario: str
    stats: RunStats
    analysis: Analysis
    outcome: str | None  # the verdict of a perfgate result
    budgets: tuple[Mapping[str, Any], ...]  # perfgate result's checks (``check_to_dict``)


# --- loading results -----------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CliError(f"{path}: not valid JSON: {exc.msg} (line {exc.lineno})") from None
    if not isinstance(data, dict) or data.get("format") != RESULT_FORMAT:
        raise CliError(f"{path}: not a pytest-perfgate result (no format {RESULT_FORMAT!r})")
    return data


def _load_json_result(path: Path) -> Loaded:
    data = _read_json(path)
    try:
        return Loaded(
            source=path,
            kind="perfgate",
            scenario=str(data.get("scenario", path.stem)),
            stats=stats_from_dict(data["statistics"]),
            analysis=analysis_from_dict(data["analysis"]),
            outcome=data.get("verdict", {}).get("outcome"),
            budgets=tuple(data.get("budgets", ())),
        )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise CliError(f"{path}: incomplete pytest-perfgate result ({exc!r})") from None


def _sibling(stats_csv: Path, suffix: str) -> Path | None:
    base = stats_csv.name.removesuffix("_stats.csv")
    path = stats_csv.with_name(base + suffix)
    return path if base != stats_csv.name and path.is_file() else None


def _load_locust_csv(path: Path) -> Loaded:
    try:
        run = analyze_locust_csv(
            path, _sibling(path, "_stats_history.csv"), _sibling(path, "_failures.csv")
        )
    except ValueError as exc:  # names the file already
        raise CliError(str(exc)) from None
    except (KeyError, csv.Error, UnicodeDecodeError) as exc:
        raise CliError(f"{path}: unreadable Locust CSV: {exc}") from None
    return Loaded(path, "locust-csv", path.name.removesuffix("_stats.csv"), run.stats,
                  run.analysis, None, ())  # fmt: skip


def load_result(path: Path) -> Loaded:
    """A perfgate ``.json`` result or a Locust ``*_stats.csv`` file."""
    if not path.exists():
        raise CliError(f"{path}: no such file or directory")
    if path.suffix == ".json":
        return _load_json_result(path)
    if path.suffix == ".csv":
        return _load_locust_csv(path)
    raise CliError(f"{path}: expected a perfgate .json result or a Locust *_stats.csv file")


#: Locust's files beside its ``*_stats.csv``: one set with it
_SIBLINGS = ("_stats_history.csv", "_failures.csv", "_exceptions.csv")


def _base(path: Path) -> str:
    """``x`` of Locust's ``x_stats.csv`` and its siblings; ``""`` for any other file."""
    for suffix in ("_stats.csv", *_SIBLINGS):
        if path.name.endswith(suffix):
            return path.name.removesuffix(suffix)
    return ""


@dataclass(frozen=True)
class FolderReading:
    """What ``analyze`` made of a folder: the results it read, a line per file."""

    found: list[Loaded]
    lines: list[str]


def _read_json_files(folder: Path, lines: list[str]) -> list[Loaded]:
    found = []
    for path in sorted(folder.glob("*.json")):
        try:
            found.append(_load_json_result(path))
            lines.append(f"read {path.name} (perfgate result)")
        except CliError as exc:  # other JSON files (baselines, configs) live here too
            lines.append(f"skipped {path.name}: {str(exc).removeprefix(f'{path}: ')}")
    return found


def _read_csv_sets(folder: Path, ours: set[str], lines: list[str]) -> list[Loaded]:
    found = []
    for path in sorted(folder.glob("*_stats.csv")):
        base = _base(path)
        siblings = [path.name, *(p.name for s in _SIBLINGS if (p := _sibling(path, s)))]
        if base in ours:
            lines.append(
                f"skipped {', '.join(siblings)}: Locust's files of the run in {base}.json, "
                "whose figures (the measured window, exact percentiles) are read instead"
            )
            continue
        try:
            found.append(_load_locust_csv(path))
            lines.append(f"read {', '.join(siblings)} (Locust CSV set)")
        except CliError as exc:
            lines.append(f"skipped {path.name}: {str(exc).removeprefix(f'{path}: ')}")
    return found


def _others(folder: Path) -> str | None:
    """One line for the files that are no results (reports, logs), by kind."""
    kinds: dict[str, int] = {}
    for path in folder.iterdir():
        result_like = path.suffix == ".json" or bool(_base(path))
        if path.is_file() and not result_like:
            kinds[path.suffix or path.name] = kinds.get(path.suffix or path.name, 0) + 1
    if not kinds:
        return None
    listed = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
    return f"skipped {listed}: not results (reports, logs, summaries)"


def read_folder(folder: Path) -> FolderReading:
    """Our results, then Locust CSV sets that are not the raw files of one of them; a
    line for each file read or skipped, saying why."""
    lines: list[str] = []
    found = _read_json_files(folder, lines)
    found += _read_csv_sets(folder, {item.source.stem for item in found}, lines)
    if (others := _others(folder)) is not None:
        lines.append(others)
    if not found:
        raise CliError(
            f"{folder}: no results found (expected perfgate *.json results or Locust "
            "*_stats.csv files)" + "".join(f"; {line}" for line in lines)
        )
    return FolderReading(found, lines)


# --- analyze -------------------------------------------------------------------------


def _headline(item: Loaded) -> str:
    s = item.analysis.summary
    ci = ""
    if s.p95_ci:
        ci = f" ({ci_heading(item.stats.total.ci_level)} {P95.format_interval(*s.p95_ci)})"
    return (
        f"grade {s.grade}: p50 {P50.format(s.p50)}, p95 {P95.format(s.p95)}{ci}, "
        f"p99 {P99.format(s.p99)}, mean {MEAN.format(s.mean)}, {RPS.format(s.rps)}, "
        f"errors {ERRORS.format(s.error_rate)} ({s.failures} of {s.requests})"
    )


def _print_analysis(item: Loaded, out: Callable[[str], None]) -> None:
    verdict = f", verdict {item.outcome}" if item.outcome else ""
    out(f"== {item.source} ({item.kind}, scenario {item.scenario}{verdict})")
    out(_headline(item))
    for line in endpoint_table(item.stats, item.analysis.grades):
        out("  " + line)
    for line in stream_lines(item.stats):  # none without streamed responses
        out("  " + line)
    if item.analysis.findings:
        out("findings:")
    for f in item.analysis.findings:
        out(f"  [{f.severity}] {f.title}")
        out(f"      {f.evidence}")
        for rec in f.recommendations:
            out(f"      - {rec}")
    for note in item.analysis.notes:
        out(f"note: {note}")
    out("")


def _analysis_doc(items: list[Loaded]) -> dict[str, Any]:
    docs = [
        {
            "source": str(i.source), "kind": i.kind, "scenario": i.scenario,
            "verdict": i.outcome, "statistics": stats_to_dict(i.stats),
            "analysis": i.analysis.to_dict(),
        }
        for i in items
    ]  # fmt: skip
    doc: dict[str, Any] = {"format": ANALYSIS_FORMAT, "results": docs}
    if len(docs) == 1:
        doc["analysis"] = docs[0]["analysis"]
    return doc


def _read_target(target: Path) -> FolderReading:
    """The results of ``target``; for a folder, first a line per file read or skipped."""
    if not target.is_dir():
        return FolderReading([load_result(target)], [])
    reading = read_folder(target)
    print(f"{target}:")
    for line in reading.lines:
        print(f"  {line}")
    print("")
    return reading


def analyze(args: argparse.Namespace) -> int:
    """``perfgate analyze TARGET [--json OUT]``: a result, a Locust CSV or a folder of them."""
    reading = _read_target(args.target)
    for item in reading.found:
        _print_analysis(item, print)
    if args.json:
        doc = _analysis_doc(reading.found)
        if reading.lines:
            doc["files"] = reading.lines  # what a folder's analysis read and skipped
        args.json.write_text(dumps(doc, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0
