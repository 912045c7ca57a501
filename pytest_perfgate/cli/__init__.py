"""The ``perfgate`` command: ``analyze`` earlier results, ``compare`` two runs, ``run`` scenarios.

This module holds the parser and ``main``; each command lives in its own module
(``cli.analyze``, ``cli.compare``, and ``run``, which starts processes and is imported
only when asked for). A user mistake (a missing file, an unreadable CSV, an unknown
scenario: any ``PerfgateError``, or an ``OSError``) is one line on stderr,
``perfgate: error: ...``, and exit status 2; never a traceback. ``compare`` exits 1 when
a budgeted figure got worse beyond the tolerance.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pytest_perfgate.cli.analyze import analyze
from pytest_perfgate.cli.compare import compare, parse_tolerance
from pytest_perfgate.errors import CliError, PerfgateError
from pytest_perfgate.options import OPTIONS

__all__ = ["CliError", "build_parser", "main"]

PRESET_SCENARIOS = ("light", "medium", "heavy", "spike", "health", "models", "all")


def _run(args: argparse.Namespace) -> int:
    # imported here, not at the top: ``run`` pulls in httpx, the gate and the load driver,
    # which ``perfgate analyze`` and ``compare`` never need (not an import cycle dodged)
    from pytest_perfgate.cli.run import run_cli

    return run_cli(args)


def _add_analyze(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("analyze", help="grades and findings of earlier results")
    p.add_argument(
        "target",
        type=Path,
        help="a Locust *_stats.csv, a perfgate result .json, or a folder of them (it "
        "lists each file it read or skipped, and why)",
    )
    p.add_argument("--json", type=Path, metavar="OUT", help="also write the analysis as JSON")
    p.set_defaults(func=analyze)


def _add_compare(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    p.set_defaults(func=compare)


def _add_run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run scenarios outside pytest (health check first)")
    p.add_argument("scenario", help=f"{'|'.join(PRESET_SCENARIOS)} or any name in thresholds.yaml")
    # values are checked by options.resolve, as pytest's --perfgate-* flags are
    for option in OPTIONS:
        p.add_argument(
            "--" + option.name.replace("_", "-"), metavar=option.metavar,
            help=f"{option.help}; env {option.env}",
        )  # fmt: skip
    p.set_defaults(func=_run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perfgate", description="Analyse, compare and run pytest-perfgate load tests."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_analyze(sub)
    _add_compare(sub)
    _add_run(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except PerfgateError as exc:
        message = str(exc)
    except OSError as exc:
        message = f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc)
    print(f"perfgate: error: {message}", file=sys.stderr)
    return 2
