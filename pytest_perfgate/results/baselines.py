"""Baseline files: store one run's response times, read them back as a ``Baseline``.

Reads and writes files; the comparison itself is pure and lives in ``core.regression``.

``<store_dir>/<name>/<scenario>.json`` (``store_dir`` is ``.perfgate/baselines`` under the
rootdir by default) holds one measured window of one run: per endpoint the request and
failure counts, the throughput, the correlation factor of its intervals, and *every*
response time, rounded to 1 µs (``quantize_ms``), sorted and delta-encoded as integer
microseconds (``us_deltas``: ``[x_1, x_2 - x_1, ...]``); requests never sent have no
response time and are not among them (``requests`` counts them, ``failures`` too).
Exact order statistics need every sample; in this form 1e5 samples take about 0.3 MB, a
third of plain floats. The file
A row with streamed responses also keeps, under ``"series"``, every TTFT and TPOT (the
same encoding) with its variance inflation (``"ess_factor"``), for ``ttft_p95_regression``
and ``tpot_p95_regression``; the total keeps the inflations only (``"series_ess"``). The
file also records the caller's ``meta`` (``"settings"``: the load that produced it, see
``core.model.scenario_settings``), and p50/p95/p99 for a human reading it.

Saving a name again *replaces* that scenario's file: that is how a baseline is updated.
It is never silent: the write is atomic, the new file records when the one it replaced
was saved (``"replaces"``), and the caller reports the update.

A baseline never includes the run under test: ``load_baseline`` returns a frozen
in-memory ``Baseline`` that ``core.regression.compare`` judges against, so the
orchestrator loads before the run and saves after it, and comparing with ``NAME`` while
saving ``NAME`` compares with the *previous* ``NAME``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from itertools import accumulate, pairwise
from pathlib import Path
from typing import Any

from pytest_perfgate.core.parsing import check_name, is_baseline_name
from pytest_perfgate.core.regression import Baseline, BaselineRow
from pytest_perfgate.core.stats import TOTAL, EndpointStats, RunStats
from pytest_perfgate.errors import BaselineError
from pytest_perfgate.results.jsonsafe import dumps

__all__ = [
    "BASELINE_FORMAT",
    "DEFAULT_STORE",
    "baseline_path",
    "load_baseline",
    "quantize_ms",
    "save_baseline",
]

#: ``format`` key of a baseline file
BASELINE_FORMAT = "pytest-perfgate/baseline/1"
#: where baselines live, relative to the rootdir
DEFAULT_STORE = Path(".perfgate/baselines")


def quantize_ms(ms: float) -> float:
    """The stored value of a response time: rounded to 1 µs (0.001 ms)."""
    return round(ms * 1000) / 1000


def baseline_path(store_dir: Path, name: str, scenario: str) -> Path:
    """Where ``save_baseline`` writes: ``store_dir / name / f"{scenario}.json"``."""
    return Path(store_dir) / check_name(name, "baseline name") / f"{scenario}.json"


# --- writing -------------------------------------------------------------------------


def save_baseline(
    store_dir: Path,
    name: str,
    scenario: str,
    samples_ms_by_endpoint: Mapping[str, Sequence[float]],
    stats: RunStats,
    meta: Mapping[str, Any],
    series: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
) -> Path:
    """Store a run's measured window as baseline ``name``; replace an earlier one, atomically.

    ``samples_ms_by_endpoint`` must hold exactly the samples ``stats`` was computed from
    (``ValueError`` otherwise). ``meta`` must be JSON (``str()`` is applied to others).
    ``series`` (``core.regression.series_by_endpoint``): the streamed series to keep.
    """
    path = baseline_path(store_dir, name, scenario)
    data: dict[str, Any] = {
        "format": BASELINE_FORMAT,
        "name": name,
        "scenario": scenario,
        "saved_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "replaces": _saved_at(path),
        "duration_s": stats.duration_s,
        "meta": dict(meta),
        "total": {**_row_head(stats.total), **_series_ess(stats.total, series or {})},
        "endpoints": _endpoints_dict(samples_ms_by_endpoint, stats, series or {}),
    }
    _write_atomic(path, dumps(data, default=str, separators=(",", ":")) + "\n")
    return path


def _series_ess(
    row: EndpointStats, series: Mapping[str, Mapping[str, Sequence[float]]]
) -> dict[str, Any]:
    kinds = sorted({k for found in series.values() for k, v in found.items() if v})
    return {"series_ess": {k: row.factor(f"{k}_p95") for k in kinds}} if kinds else {}


def _series_dict(row: EndpointStats, found: Mapping[str, Sequence[float]]) -> dict[str, Any]:
    """A row's streamed series (none without streams: the row reads as before)."""
    kept = {
        kind: {"us_deltas": _encode(values), "ess_factor": row.factor(f"{kind}_p95")}
        for kind, values in sorted(found.items())
        if values
    }
    return {"series": kept} if kept else {}


def _endpoints_dict(
    samples: Mapping[str, Sequence[float]], stats: RunStats,
    series: Mapping[str, Mapping[str, Sequence[float]]],
) -> dict[str, dict[str, Any]]:  # fmt: skip
    if set(samples) != set(stats.endpoints):
        raise ValueError(
            f"samples of {sorted(samples)} but statistics of {sorted(stats.endpoints)}"
        )
    rows = {}
    for name, row in sorted(stats.endpoints.items()):
        # never-sent requests are failures without a response time: they are not stored
        if not row.requests - row.failures <= len(samples[name]) <= row.requests:
            raise ValueError(
                f"{name}: {len(samples[name])} response times but {row.requests} requests "
                f"of which {row.failures} failed"
            )
        rows[name] = {
            **_row_head(row), "us_deltas": _encode(samples[name]),
            **_series_dict(row, series.get(name, {})),
        }  # fmt: skip
    return rows


def _row_head(row: EndpointStats) -> dict[str, Any]:
    """The counts and, for a human reading the file, p50/p95/p99 (``null`` when unknown)."""
    return {
        "requests": row.requests, "failures": row.failures, "rps": row.rps,
        "ess_factor": row.ess_factor, "p50": round(row.p50, 3), "p95": round(row.p95, 3),
        "p99": round(row.p99, 3),
    }  # fmt: skip


def _encode(ms: Sequence[float]) -> list[int]:
    if not all(math.isfinite(x) and x >= 0 for x in ms):
        raise ValueError("response times must be finite and >= 0")
    us = sorted(round(x * 1000) for x in ms)
    return us[:1] + [b - a for a, b in pairwise(us)]


def _saved_at(path: Path) -> str | None:
    try:
        return str(json.loads(path.read_text(encoding="utf-8"))["saved_at"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- reading -------------------------------------------------------------------------


def load_baseline(
    store_dir: Path, name_or_path: str | Path, scenario: str, *, cwd: Path | None = None
) -> Baseline:
    """Read baseline ``name`` of ``scenario`` from ``store_dir``, or a baseline file or folder.

    A value that is not a plain name (it has a ``/`` or ends in ``.json``) is a path,
    relative to ``cwd`` when given. Errors are ``BaselineError``s naming the baseline,
    the path looked at and what exists there.
    """
    label = f"baseline {str(name_or_path)!r}"
    path = _locate(Path(store_dir), str(name_or_path), scenario, cwd, label)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BaselineError(label, f"cannot read {path}: {exc}") from None
    try:
        baseline = _from_dict(data, path)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BaselineError(label, f"{path} is not a perfgate baseline file ({exc})") from None
    if baseline.scenario != scenario:
        raise BaselineError(label, f"{path} holds scenario {baseline.scenario!r}, not {scenario!r}")
    return baseline


def _locate(store_dir: Path, value: str, scenario: str, cwd: Path | None, label: str) -> Path:
    if is_baseline_name(value):
        folder = store_dir / value
        if not folder.is_dir():
            raise BaselineError(
                label, f"no such baseline: {folder} does not exist; baselines in "
                f"{store_dir}: {_listing(store_dir, '*/*.json')}"
            )  # fmt: skip
        path = folder / f"{scenario}.json"
    else:
        path = Path(value) if cwd is None or Path(value).is_absolute() else cwd / value
        if path.is_dir():
            path = path / f"{scenario}.json"
    if not path.is_file():
        raise BaselineError(
            label, f"no scenario {scenario!r} in it: {path} does not exist; "
            f"scenarios in {path.parent}: {_listing(path.parent, '*.json')}"
        )  # fmt: skip
    return path


def _listing(folder: Path, pattern: str) -> str:
    """Names in ``folder``: of baselines (``*/*.json``) or of scenarios (``*.json``)."""
    if not folder.is_dir():
        return "none"
    names = {p.parent.name if pattern.startswith("*/") else p.stem for p in folder.glob(pattern)}
    return ", ".join(sorted(names)) or "none"


def _decode(deltas: Sequence[int]) -> tuple[float, ...]:
    if not all(isinstance(d, int) and d >= 0 for d in deltas):
        raise ValueError("us_deltas must be integers >= 0")
    return tuple(us / 1000 for us in accumulate(deltas))


def _row_from_dict(
    name: str, row: Mapping[str, Any], sorted_ms: tuple[float, ...],
    series: Mapping[str, tuple[float, ...]] | None = None,
) -> BaselineRow:  # fmt: skip
    stored = row.get("series") or {}
    if series is None:
        series = {str(k): _decode(v["us_deltas"]) for k, v in stored.items()}
    ess = {str(k): float(v["ess_factor"]) for k, v in stored.items()}
    ess.update({str(k): float(v) for k, v in (row.get("series_ess") or {}).items()})
    return BaselineRow(
        name, sorted_ms, int(row["failures"]), float(row["rps"]), float(row.get("ess_factor", 1)),
        series=series, series_ess=ess, not_sent=max(int(row["requests"]) - len(sorted_ms), 0),
    )  # fmt: skip


def _meta(data: Mapping[str, Any]) -> dict[str, Any]:
    """The stored ``meta``; settings saved before ``stages`` had its own key get it.

    Those files kept a shape's stages under ``shape``, where settings now keep its kind.
    """
    meta = dict(data.get("meta") or {})
    settings = meta.get("settings")
    if isinstance(settings, Mapping) and "stages" not in settings and "shape" in settings:
        shape = settings["shape"]
        meta["settings"] = {**settings, "stages": shape if isinstance(shape, list) else None}
    return meta


def _from_dict(data: Mapping[str, Any], path: Path) -> Baseline:
    if data.get("format") != BASELINE_FORMAT:
        raise ValueError(f"format {data.get('format')!r}, expected {BASELINE_FORMAT!r}")
    endpoints = {
        str(name): _row_from_dict(str(name), row, _decode(row["us_deltas"]))
        for name, row in data["endpoints"].items()
    }
    merged = tuple(sorted(x for row in endpoints.values() for x in row.sorted_ms))
    kinds = {k for row in endpoints.values() for k in row.series}
    merged_series = {
        k: tuple(sorted(x for row in endpoints.values() for x in row.series.get(k, ())))
        for k in sorted(kinds)
    }
    return Baseline(
        name=str(data["name"]), scenario=str(data["scenario"]), path=path,
        saved_at=str(data["saved_at"]), duration_s=float(data["duration_s"]),
        endpoints=endpoints, total=_row_from_dict(TOTAL, data["total"], merged, merged_series),
        meta=_meta(data),
    )  # fmt: skip
