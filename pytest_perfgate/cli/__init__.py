"""The ``perfgate`` command: ``analyze`` earlier results, ``compare`` two runs, ``run`` scenarios.

A user mistake (a missing file, an unreadable CSV, an unknown scenario) is one line on
stderr, ``perfgate: error: ...``, and exit status 2; never a traceback. ``compare`` exits 1
when a budgeted figure got worse beyond the tolerance. ``run`` lives in ``gate`` (imported
only when asked for, since it starts processes).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_perfgate.config import ConfigError
from pytest_perfgate.core.findings import (
    Analysis,
    analysis_from_dict,
    analyze_locust_csv,
    format_ms,
    format_percent,
)
from pytest_perfgate.core.stats import TOTAL, RunStats
from pytest_perfgate.errors import CliError
from pytest_perfgate.options import OPTIONS
from pytest_perfgate.results.report import (
    RESULT_FORMAT,
    endpoint_table,
    stats_from_dict,
    stats_to_dict,
)

__all__ = ["CliError", "build_parser", "main"]

PRESET_SCENARIOS = ("light", "medium", "heavy", "spike", "health", "models", "all")


# --- loading results -----------------------------------------------------------------


@dataclass(frozen=True)
class Loaded:
    """One analysed result, from our JSON or from a Locust CSV set."""

    source: Path
    kind: str  # "perfgate" or "locust-csv"
    scenario: str
    stats: RunStats
    analysis: Analysis
    outcome: str | None  # the verdict of a perfgate result
    budgets: tuple[Mapping[str, Any], ...]  # perfgate result's checks


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


def _results_in(folder: Path) -> list[Loaded]:
    """Our results, then Locust CSV sets that are not the raw files of one of them."""
    found: list[Loaded] = []
    for path in sorted(folder.glob("*.json")):
        try:
            found.append(_load_json_result(path))
        except CliError:
            continue  # other JSON files (baselines, configs) live here too
    ours = {item.source.stem for item in found}
    for path in sorted(folder.glob("*_stats.csv")):
        if path.name.removesuffix("_stats.csv") not in ours:
            found.append(_load_locust_csv(path))
    if not found:
        raise CliError(
            f"{folder}: no results found (expected perfgate *.json results or Locust "
            "*_stats.csv files)"
        )
    return found


# --- analyze -------------------------------------------------------------------------


def _print_analysis(item: Loaded, out: Callable[[str], None]) -> None:
    s = item.analysis.summary
    ci = f" (95 % CI {format_ms(s.p95_ci[0])}-{format_ms(s.p95_ci[1])})" if s.p95_ci else ""
    verdict = f", verdict {item.outcome}" if item.outcome else ""
    out(f"== {item.source} ({item.kind}, scenario {item.scenario}{verdict})")
    out(
        f"grade {s.grade}: p50 {format_ms(s.p50)} ms, p95 {format_ms(s.p95)} ms{ci}, "
        f"p99 {format_ms(s.p99)} ms, mean {format_ms(s.mean)} ms, {s.rps:.1f} req/s, "
        f"errors {format_percent(s.error_rate)} ({s.failures} of {s.requests})"
    )
    for line in endpoint_table(item.stats, item.analysis.grades):
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


def _analyze(args: argparse.Namespace) -> int:
    target: Path = args.target
    items = _results_in(target) if target.is_dir() else [load_result(target)]
    for item in items:
        _print_analysis(item, print)
    if args.json:
        docs = [
            {
                "source": str(i.source), "kind": i.kind, "scenario": i.scenario,
                "verdict": i.outcome, "statistics": stats_to_dict(i.stats),
                "analysis": i.analysis.to_dict(),
            }
            for i in items
        ]  # fmt: skip
        doc: dict[str, Any] = {"format": "pytest-perfgate/analysis/1", "results": docs}
        if len(docs) == 1:
            doc["analysis"] = docs[0]["analysis"]
        text = json.dumps(_no_nan(doc), indent=2, allow_nan=False)
        args.json.write_text(text + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


def _no_nan(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return value


# --- compare -------------------------------------------------------------------------

#: figure (an EndpointStats attribute) -> (a higher value is worse, smallest change that counts)
FIGURES: Mapping[str, tuple[bool, float]] = {
    "p50": (True, 1.0), "p95": (True, 1.0), "p99": (True, 1.0), "mean": (True, 1.0),
    "max": (True, 1.0), "rps": (False, 0.0), "error_rate": (True, 0.001),
}  # fmt: skip
_BUDGET_FIGURE = {
    "p50_ms": "p50", "p95_ms": "p95", "p99_ms": "p99", "avg_ms": "mean", "mean_ms": "mean",
    "max_ms": "max", "min_rps": "rps", "error_rate": "error_rate",
}  # fmt: skip
DEFAULT_GATED = frozenset({(TOTAL, "p95"), (TOTAL, "error_rate")})


def parse_tolerance(text: str) -> float:
    """``"10%"`` or ``"0.1"`` -> 0.1."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a tolerance such as 10% or 0.1, got {text!r}"
        ) from None
    if not math.isfinite(value) or value < 0 or (not raw.endswith("%") and value > 1):
        raise argparse.ArgumentTypeError(
            f"expected a tolerance such as 10% or 0.1 (a fraction <= 1), got {text!r}"
        )
    return value


def _figure(stats: RunStats, endpoint: str, figure: str) -> float | None:
    e = stats.total if endpoint == TOTAL else stats.endpoints.get(endpoint)
    if e is None:
        return None
    value = float(e.error_rate if figure == "error_rate" else getattr(e, figure))
    return value if math.isfinite(value) else None


def _worse_by(figure: str, old: float, new: float, tolerance: float) -> bool:
    higher_is_worse, floor = FIGURES[figure]
    change = (new - old) if higher_is_worse else (old - new)
    return change > tolerance * abs(old) and change > floor


def _format_figure(figure: str, value: float | None) -> str:
    if value is None:
        return "-"
    if figure == "error_rate":
        return format_percent(value)
    if figure == "rps":
        return f"{value:.2f} req/s"
    return f"{format_ms(value)} ms"


def _change(figure: str, old: float | None, new: float | None) -> str:
    """``+24.7 %``; error rates change in points (a relative change from 0 means nothing)."""
    if old is None or new is None:
        return ""
    if figure == "error_rate":
        return f"{(new - old) * 100:+.2f} pt"
    return f"{(new - old) / old * 100:+.1f} %" if old else ""


def _compare(args: argparse.Namespace) -> int:
    old, new = load_result(args.old), load_result(args.new)
    tolerance: float = args.tolerance
    gated = {
        (str(b["endpoint"]), _BUDGET_FIGURE[str(b["metric"])])
        for b in (*old.budgets, *new.budgets)
        if b.get("metric") in _BUDGET_FIGURE
    }
    print(f"compare {old.source} -> {new.source} (tolerance {tolerance * 100:g} %)")
    if not gated:
        gated = set(DEFAULT_GATED)
        print("neither result has budgets: gating the total p95 and error rate")
    names = list(old.stats.endpoints)
    names += [n for n in new.stats.endpoints if n not in old.stats.endpoints]
    print(f"  {'endpoint':<30} {'figure':<10} {'old':>14} {'new':>14} {'change':>9}")
    flagged: list[str] = []
    for endpoint in [*names, TOTAL]:
        for figure in FIGURES:
            a, b = _figure(old.stats, endpoint, figure), _figure(new.stats, endpoint, figure)
            if a is None and b is None:
                continue
            change = _change(figure, a, b)
            mark = ""
            if (endpoint, figure) in gated:
                mark = " budgeted"
                if a is not None and b is not None and _worse_by(figure, a, b, tolerance):
                    mark = " WORSE (budgeted)"
                    flagged.append(
                        f"{endpoint} {figure} {_format_figure(figure, a)} -> "
                        f"{_format_figure(figure, b)} ({change})"
                    )
            print(
                f"  {endpoint[:30]:<30} {figure:<10} {_format_figure(figure, a):>14} "
                f"{_format_figure(figure, b):>14} {change:>9}{mark}"
            )
    if flagged:
        print(f"{len(flagged)} budgeted figure(s) got worse beyond {tolerance * 100:g} %:")
        for line in flagged:
            print(f"  {line}")
        return 1
    print(f"no budgeted figure got worse beyond {tolerance * 100:g} %")
    return 0


# --- run -----------------------------------------------------------------------------


def _run(args: argparse.Namespace) -> int:
    from pytest_perfgate.gate import run_cli  # imports httpx and the runner: only for this command

    return run_cli(args)


# --- parser and main -----------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perfgate", description="Analyse, compare and run pytest-perfgate load tests."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("analyze", help="grades and findings of earlier results")
    p.add_argument(
        "target",
        type=Path,
        help="a Locust *_stats.csv, a perfgate result .json, or a folder of them",
    )
    p.add_argument("--json", type=Path, metavar="OUT", help="also write the analysis as JSON")
    p.set_defaults(func=_analyze)

    p = sub.add_parser("compare", help="changes between two results; exit 1 on a regression")
    p.add_argument("old", type=Path, help="the baseline: a result .json or *_stats.csv")
    p.add_argument("new", type=Path, help="the run to judge")
    p.add_argument(
        "--tolerance",
        type=parse_tolerance,
        default=0.10,
        metavar="PCT",
        help="how much worse a budgeted figure may get (default 10%%); error rates "
        "also need +0.1 point and times +1 ms to count",
    )
    p.set_defaults(func=_compare)

    p = sub.add_parser("run", help="run scenarios outside pytest (health check first)")
    p.add_argument("scenario", help=f"{'|'.join(PRESET_SCENARIOS)} or any name in thresholds.yaml")
    # values are checked by options.resolve, as pytest's --perfgate-* flags are
    for option in OPTIONS:
        p.add_argument(
            "--" + option.name.replace("_", "-"), metavar=option.metavar,
            help=f"{option.help}; env {option.env}",
        )  # fmt: skip
    p.set_defaults(func=_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (CliError, ConfigError) as exc:
        message = str(exc)
    except OSError as exc:
        message = f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc)
    print(f"perfgate: error: {message}", file=sys.stderr)
    return 2
