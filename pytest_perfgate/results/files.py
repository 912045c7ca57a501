"""A scenario's result -> files: the result JSON and the HTML report, never overwritten.

``write_all`` is what the gate calls once per scenario. A taken name gets a ``-1``,
``-2``... suffix instead of being overwritten. The only module of ``results`` that writes
files (the Locust child writes its CSVs and log itself); JSON goes through ``jsonsafe``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import IO

from pytest_perfgate.results.html import render_html
from pytest_perfgate.results.jsonsafe import dumps
from pytest_perfgate.results.result import ScenarioResult, result_to_dict
from pytest_perfgate.results.streams import stream_csv

__all__ = ["open_new", "write_all", "write_html", "write_json", "write_new"]


def open_new(path: Path) -> tuple[IO[str], Path]:
    """Open ``path`` for writing without ever overwriting: ``x.json``, ``x-1.json``, ..."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for n in range(10_000):
        candidate = path if n == 0 else path.with_name(f"{path.stem}-{n}{path.suffix}")
        try:
            return candidate.open("x", encoding="utf-8"), candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"{path}: 10 000 files of this name exist already")


def write_new(path: Path, text: str) -> Path:
    """Write ``text`` at ``path`` (or a free ``-N`` name beside it); return where."""
    fh, written = open_new(path)
    with fh:
        fh.write(text)
    return written


def write_json(path: Path, result: ScenarioResult, files: Mapping[str, Path] | None = None) -> Path:
    """Write the result JSON at ``path`` (or a free ``-N`` name beside it); return where."""
    return write_new(path, dumps(result_to_dict(result, files), indent=2) + "\n")


def write_html(path: Path, result: ScenarioResult) -> Path:
    """Write the HTML report at ``path`` (or a free ``-N`` name beside it); return where."""
    return write_new(path, render_html(result))


def write_all(result: ScenarioResult, results_dir: Path, prefix: str) -> dict[str, Path]:
    """Write ``<prefix>.html`` and ``<prefix>.json`` in ``results_dir``; return their paths.

    Keys ``"html"`` and ``"json"``. The JSON lists every file of the run, the HTML included.
    """
    written = {"html": write_html(results_dir / f"{prefix}.html", result)}
    if streams := stream_csv(result.stats):  # per streaming endpoint; none without streams
        written["streams_csv"] = write_new(results_dir / f"{prefix}_streams.csv", streams)
    written["json"] = write_json(results_dir / f"{prefix}.json", result, files=written)
    return written
