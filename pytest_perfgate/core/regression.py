"""Baselines: store one run's response times, then judge later runs relative to it.

Pure: no pytest, no locust, no numpy. Baselines are read and written only here.

Storage
-------
``<store_dir>/<name>/<scenario>.json`` (``store_dir`` is ``.perfgate/baselines`` under the
rootdir by default) holds one measured window of one run: per endpoint the request and
failure counts, the throughput, the correlation factor of its intervals, and *every*
response time, rounded to 1 µs (``quantize_ms``), sorted and delta-encoded as integer
microseconds (``us_deltas``: ``[x_1, x_2 - x_1, ...]``). Exact order statistics need every
sample; in this form 1e5 samples take about 0.3 MB, a third of plain floats. The file
also records the caller's ``meta`` (``"settings"``: the load that produced it, see
``scenario_settings``), and p50/p95/p99 for a human reading it.

Saving a name again *replaces* that scenario's file: that is how a baseline is updated.
It is never silent: the write is atomic, the new file records when the one it replaced
was saved (``"replaces"``), and the caller reports the update.

A baseline never includes the run under test: ``load_baseline`` returns a frozen
in-memory ``Baseline`` that ``compare`` judges against, so the orchestrator loads before
the run and saves after it, and comparing with ``NAME`` while saving ``NAME`` compares
with the *previous* ``NAME``.

Method
------
Each ``*_regression`` budget is an allowance on a change, judged by a confidence
interval on that change at ``level``: PASS when the whole interval is at or below the
allowance, FAIL when it is wholly above, INCONCLUSIVE otherwise (the rule of ``verdict``).
Both runs' samples count as independent draws (within a run, ``ess_factor`` widens for
correlation in time, as in ``stats``).

- ``p50/p95/p99_regression``: the relative change ``new_q / base_q - 1``. Each run's
  order-statistic interval (``stats.quantile_ci``) is taken at ``sqrt(level)``; the runs
  are independent, so both cover at once with probability ``>= level``, and then
  ``[new_low / base_high, new_high / base_low] - 1`` covers the true change. Distribution
  free, exact for any sample size, and one-sided: a false FAIL (or PASS) needs
  ``new_low > new_q`` or ``base_high < base_q``, probability ``<= 1 - sqrt(level)``
  (2.5 % at 95 %). A bootstrap was not chosen: it is approximate exactly where it
  matters (tail quantiles, small ``n``), random, and slow in pure Python.
- ``avg_regression``: the same combination of two normal-approximation mean intervals
  (``stats.mean_ci``); approximate for heavy tails and small ``n``.
- ``error_rate_regression``: the *absolute* change of the failure share, in percentage
  points (0.005 = +0.5 pp), by Newcombe's hybrid score interval (method 10, from two
  Wilson intervals); coverage close to ``level``, not guaranteed.
- ``rps_regression``: the relative *drop* ``1 - new_rps / base_rps``. Given the total
  count, the new run's count is binomial under Poisson arrivals; its Clopper-Pearson
  interval (``stats.proportion_ci``) maps to the rate ratio. Closed-loop users arrive
  more regularly than Poisson, which makes it conservative.

``observed`` is always "how much worse", so ``Check.over_budget`` (``observed > limit``)
holds for every metric. What no interval covers: drift between the two runs' machines
or neighbours. Give allowances above the run-to-run noise of the environment.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, pairwise
from pathlib import Path
from statistics import NormalDist
from typing import Any

from pytest_perfgate.config import ConfigError, Scenario
from pytest_perfgate.core.stats import (
    QUANTILES,
    TOTAL,
    EndpointStats,
    RunStats,
    Sample,
    mean_ci,
    percentile,
    proportion_ci,
    quantile_ci,
    samples_needed,
)
from pytest_perfgate.core.verdict import Check, Outcome, format_count, format_ms
from pytest_perfgate.errors import BaselineError

__all__ = [
    "BASELINE_FORMAT",
    "DEFAULT_STORE",
    "REGRESSION_HELP",
    "REGRESSION_KEYS",
    "Baseline",
    "BaselineError",
    "BaselineRow",
    "RegressionCheck",
    "baseline_path",
    "check_name",
    "compare",
    "load_baseline",
    "parse_regressions",
    "quantize_ms",
    "regression_message",
    "samples_by_endpoint",
    "save_baseline",
    "scenario_settings",
]

#: ``format`` key of a baseline file
BASELINE_FORMAT = "pytest-perfgate/baseline/1"
#: where baselines live, relative to the rootdir
DEFAULT_STORE = Path(".perfgate/baselines")

#: Regression keys and their help text, beside ``config.BUDGET_HELP`` in budgets.
REGRESSION_HELP: Mapping[str, str] = {
    "p50_regression": "median may grow by at most this share over the baseline ('10%')",
    "p95_regression": "95th percentile may grow by at most this share over the baseline ('10%')",
    "p99_regression": "99th percentile may grow by at most this share over the baseline ('10%')",
    "avg_regression": "mean response time may grow by at most this share over the baseline",
    "error_rate_regression": "error rate may rise by at most this many percentage points "
    "over the baseline ('0.5%' = 0.005)",
    "rps_regression": "throughput may drop by at most this share below the baseline ('10%')",
}
REGRESSION_KEYS = tuple(REGRESSION_HELP)
_LABELS = {
    "p50_regression": "p50",
    "p95_regression": "p95",
    "p99_regression": "p99",
    "avg_regression": "mean",
    "error_rate_regression": "error rate",
    "rps_regression": "throughput",
}
#: settings whose change makes latencies incomparable (duration only changes ``n``)
_LOAD_KEYS = ("users", "wait_s", "arrival_rate", "shape")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


# --- regression budgets ----------------------------------------------------------------


def parse_regressions(mapping: object, where: str) -> dict[str, float]:
    """Validate ``{"p95_regression": "10%", ...}`` into fractions; errors name ``where.key``.

    Every key must be a regression key. A value is a percent string (``"10%"``, any
    size for latencies) or a fraction ``0 <= x <= 1``; a bare ``10`` is refused rather
    than read as 1000 %.
    """
    if not isinstance(mapping, Mapping):
        raise ConfigError(where, f"expected a mapping of regression budgets, got {mapping!r}")
    return {str(key): _allowance(key, value, f"{where}.{key}") for key, value in mapping.items()}


def _allowance(key: object, value: object, where: str) -> float:
    if key not in REGRESSION_HELP:
        known = ", ".join(REGRESSION_KEYS)
        raise ConfigError(where, f"unknown regression key {key!r}; known keys: {known}")
    share = _share(value, where)
    if key in ("error_rate_regression", "rps_regression") and share > 1:
        raise ConfigError(where, f"expected at most 100 %, got {value!r}")
    return share


def _share(value: object, where: str) -> float:
    what = "a share such as '10%' or 0.10"
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            share = float(value.strip()[:-1]) / 100.0
        except ValueError:
            raise ConfigError(where, f"expected {what}, got {value!r}") from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        share = float(value)
        if share > 1:
            raise ConfigError(
                where, f"expected a fraction between 0 and 1 or a percent such as "
                f"'{value:g}%', got {value!r}"
            )  # fmt: skip
    else:
        raise ConfigError(where, f"expected {what}, got {value!r}")
    if not math.isfinite(share) or share < 0:
        raise ConfigError(where, f"expected {what} (finite, >= 0), got {value!r}")
    return share


# --- values --------------------------------------------------------------------------


@dataclass(frozen=True)
class BaselineRow:
    """One endpoint (or ``TOTAL``) of a stored run."""

    name: str
    sorted_ms: tuple[float, ...]  # every response time of the measured window, on the µs grid
    failures: int
    rps: float
    ess_factor: float = 1.0

    @property
    def requests(self) -> int:
        return len(self.sorted_ms)

    def __repr__(self) -> str:
        return f"BaselineRow({self.name!r}, n={self.requests}, failures={self.failures})"


@dataclass(frozen=True)
class Baseline:
    """A stored run of one scenario, read into memory (so never the run under test)."""

    name: str
    scenario: str
    path: Path
    saved_at: str  # ISO 8601, UTC
    duration_s: float  # measured window of the stored run
    endpoints: Mapping[str, BaselineRow]  # without TOTAL
    total: BaselineRow
    meta: Mapping[str, Any] = field(default_factory=dict)

    def row(self, endpoint: str) -> BaselineRow | None:
        return self.total if endpoint == TOTAL else self.endpoints.get(endpoint)

    def __repr__(self) -> str:
        return (
            f"Baseline({self.name!r}, {self.scenario!r}, n={self.total.requests}, "
            f"saved_at={self.saved_at!r})"
        )


def quantize_ms(ms: float) -> float:
    """The stored value of a response time: rounded to 1 µs (0.001 ms)."""
    return round(ms * 1000) / 1000


def samples_by_endpoint(samples: Iterable[Sample]) -> dict[str, list[float]]:
    """Response times per endpoint key, in arrival order (failures included, as in ``stats``)."""
    found: dict[str, list[float]] = {}
    for s in samples:
        found.setdefault(s.name, []).append(s.ms)
    return found


def scenario_settings(scenario: Scenario) -> dict[str, Any]:
    """The load a scenario applies, for ``meta["settings"]``; ``compare`` checks it matches."""
    return {
        "users": scenario.users,
        "spawn_rate": scenario.spawn_rate,
        "wait_s": [scenario.wait_min_s, scenario.wait_max_s],
        "arrival_rate": scenario.arrival_rate,
        "shape": [list(stage) for stage in scenario.shape.stages] if scenario.shape else None,
        "duration_s": scenario.duration_s,
        "warmup_s": scenario.warmup_s,
    }


# --- storage -------------------------------------------------------------------------


def check_name(name: str, where: str) -> str:
    """A baseline name is one safe folder name (``main``, ``v1.2``, ``pr-481``)."""
    if not _NAME.match(name) or name.endswith(".json"):
        raise ConfigError(
            where, f"expected a baseline name of letters, digits, '.', '_' or '-', got {name!r}"
        )
    return name


def baseline_path(store_dir: Path, name: str, scenario: str) -> Path:
    """Where ``save_baseline`` writes: ``store_dir / name / f"{scenario}.json"``."""
    return Path(store_dir) / check_name(name, "baseline name") / f"{scenario}.json"


def save_baseline(
    store_dir: Path,
    name: str,
    scenario: str,
    samples_ms_by_endpoint: Mapping[str, Sequence[float]],
    stats: RunStats,
    meta: Mapping[str, Any],
) -> Path:
    """Store a run's measured window as baseline ``name``; replace an earlier one, atomically.

    ``samples_ms_by_endpoint`` must hold exactly the samples ``stats`` was computed from
    (``ValueError`` otherwise). ``meta`` must be JSON (``str()`` is applied to others).
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
        "total": _row_head(stats.total),
        "endpoints": _endpoints_dict(samples_ms_by_endpoint, stats),
    }
    text = json.dumps(data, allow_nan=False, default=str, separators=(",", ":"))
    _write_atomic(path, text + "\n")
    return path


def _endpoints_dict(
    samples: Mapping[str, Sequence[float]], stats: RunStats
) -> dict[str, dict[str, Any]]:
    if set(samples) != set(stats.endpoints):
        raise ValueError(
            f"samples of {sorted(samples)} but statistics of {sorted(stats.endpoints)}"
        )
    rows = {}
    for name, row in sorted(stats.endpoints.items()):
        if len(samples[name]) != row.requests:
            raise ValueError(
                f"{name}: {len(samples[name])} response times but {row.requests} requests"
            )
        rows[name] = {**_row_head(row), "us_deltas": _encode(samples[name])}
    return rows


def _row_head(row: EndpointStats) -> dict[str, Any]:
    def finite(x: float) -> float | None:
        return round(x, 3) if math.isfinite(x) else None

    return {
        "requests": row.requests, "failures": row.failures, "rps": row.rps,
        "ess_factor": row.ess_factor, "p50": finite(row.p50), "p95": finite(row.p95),
        "p99": finite(row.p99),
    }  # fmt: skip


def _encode(ms: Sequence[float]) -> list[int]:
    if not all(math.isfinite(x) and x >= 0 for x in ms):
        raise ValueError("response times must be finite and >= 0")
    us = sorted(round(x * 1000) for x in ms)
    return us[:1] + [b - a for a, b in pairwise(us)]


def _decode(deltas: Sequence[int]) -> tuple[float, ...]:
    if not all(isinstance(d, int) and d >= 0 for d in deltas):
        raise ValueError("us_deltas must be integers >= 0")
    return tuple(us / 1000 for us in accumulate(deltas))


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
    if _NAME.match(value) and not value.endswith(".json"):
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


def _row_from_dict(name: str, row: Mapping[str, Any], sorted_ms: tuple[float, ...]) -> BaselineRow:
    return BaselineRow(
        name, sorted_ms, int(row["failures"]), float(row["rps"]), float(row.get("ess_factor", 1))
    )


def _from_dict(data: Mapping[str, Any], path: Path) -> Baseline:
    if data.get("format") != BASELINE_FORMAT:
        raise ValueError(f"format {data.get('format')!r}, expected {BASELINE_FORMAT!r}")
    endpoints = {
        str(name): _row_from_dict(str(name), row, _decode(row["us_deltas"]))
        for name, row in data["endpoints"].items()
    }
    merged = tuple(sorted(x for row in endpoints.values() for x in row.sorted_ms))
    return Baseline(
        name=str(data["name"]), scenario=str(data["scenario"]), path=path,
        saved_at=str(data["saved_at"]), duration_s=float(data["duration_s"]),
        endpoints=endpoints, total=_row_from_dict(TOTAL, data["total"], merged),
        meta=dict(data.get("meta") or {}),
    )  # fmt: skip


# --- comparison ----------------------------------------------------------------------


@dataclass(frozen=True)
class RegressionCheck(Check):
    """A ``*_regression`` check: ``limit`` is the allowance, ``observed`` the change.

    Changes are fractions: relative for latencies and throughput (drop), percentage
    points for the error rate. ``base_value`` / ``new_value`` are the figures compared.
    """

    baseline: str = ""
    base_value: float | None = None
    new_value: float | None = None
    base_n: int = 0

    def message(self) -> str:
        return regression_message(self)


@dataclass(frozen=True)
class _Side:
    """One run's data for one endpoint, as the comparisons need it."""

    sorted_ms: Sequence[float]
    failures: int
    duration_s: float
    ess_factor: float

    @property
    def n(self) -> int:
        return len(self.sorted_ms)

    @property
    def n_eff(self) -> int:
        return max(1, math.floor(self.n / max(self.ess_factor, 1.0)))


@dataclass(frozen=True)
class _Change:
    observed: float
    ci: tuple[float, float]
    base_value: float
    new_value: float


def compare(
    baseline: Baseline,
    samples_ms_by_endpoint: Mapping[str, Sequence[float]],
    stats: RunStats,
    regressions: Mapping[str, float],
    level: float = 0.95,
    *,
    endpoint: str = TOTAL,
    severity: str = "block",
    settings: Mapping[str, Any] | None = None,
) -> tuple[Check, ...]:
    """Judge this run's ``endpoint`` (``TOTAL`` by default) against ``baseline``.

    ``regressions`` maps regression keys to allowances (``parse_regressions``). With
    ``settings`` (``scenario_settings`` of this run), a baseline that ran another load
    makes every check INVALID. The checks join the scenario's verdict.
    """
    if not regressions:
        return ()
    base = _base_side(baseline, endpoint)
    new = _new_side(samples_ms_by_endpoint, stats, endpoint)
    reason = _invalid_reason(baseline, endpoint, base, new, settings)
    checks = []
    for metric, allowance in regressions.items():
        if metric not in REGRESSION_HELP:
            raise ValueError(f"unknown regression metric {metric!r}")
        head = (baseline.scenario, endpoint, metric, allowance)
        if reason or base is None or new is None:
            checks.append(RegressionCheck(
                *head, None, 0 if new is None else new.n, Outcome.INVALID, severity,
                reason=reason, baseline=baseline.name,
            ))  # fmt: skip
            continue
        checks.append(_judge(head, _CHANGES[metric](base, new, level), base, new, level, severity,
                             baseline.name))  # fmt: skip
    return tuple(checks)


def _judge(
    head: tuple[str, str, str, float], change: _Change, base: _Side, new: _Side, level: float,
    severity: str, name: str,
) -> RegressionCheck:  # fmt: skip
    low, high = change.ci
    allowance = head[3]
    if high <= allowance:
        outcome = Outcome.PASS
    elif low > allowance:
        outcome = Outcome.FAIL
    else:
        outcome = Outcome.INCONCLUSIVE
    more = None
    if outcome is Outcome.INCONCLUSIVE:
        q = QUANTILES.get(head[2][:3])  # each run's quantile interval is at sqrt(level)
        total = samples_needed(
            new.n, change.observed, change.ci, allowance, q=q, level=math.sqrt(level)
        )
        more = None if total is None else total - new.n
    return RegressionCheck(
        *head, change.observed, new.n, outcome, severity, change.ci, level, more,
        baseline=name, base_value=change.base_value, new_value=change.new_value,
        base_n=base.n,
    )  # fmt: skip


def _base_side(baseline: Baseline, endpoint: str) -> _Side | None:
    row = baseline.row(endpoint)
    if row is None or row.requests == 0:
        return None
    return _Side(row.sorted_ms, row.failures, baseline.duration_s, row.ess_factor)


def _new_side(
    samples: Mapping[str, Sequence[float]], stats: RunStats, endpoint: str
) -> _Side | None:
    row = stats.total if endpoint == TOTAL else stats.endpoints.get(endpoint)
    if row is None or row.requests == 0:
        return None
    values = [x for ms in samples.values() for x in ms] if endpoint == TOTAL else samples[endpoint]
    return _Side(sorted(values), row.failures, stats.duration_s, row.ess_factor)


def _invalid_reason(
    baseline: Baseline, endpoint: str, base: _Side | None, new: _Side | None,
    settings: Mapping[str, Any] | None,
) -> str:  # fmt: skip
    if base is None:
        return (
            f"baseline {baseline.name!r} ({baseline.path}) has no request of {endpoint}; "
            "save a new baseline"
        )
    if new is None:
        return "no request was made" if endpoint == TOTAL else f"{endpoint} got no request"
    stored = baseline.meta.get("settings")
    if settings is None or not isinstance(stored, Mapping):
        return ""
    current = json.loads(json.dumps(dict(settings), default=str))  # lists, as stored
    differ = [k for k in _LOAD_KEYS if k in stored and k in current and stored[k] != current[k]]
    if not differ:
        return ""
    then = ", ".join(f"{k}={stored[k]}" for k in differ)
    now = ", ".join(f"{k}={current[k]}" for k in differ)
    return (
        f"baseline {baseline.name!r} ran another load ({then}; this run {now}), so its "
        "latencies are not comparable; save a baseline with the same settings"
    )


# --- the changes and their intervals -------------------------------------------------


def _ratio(a: float, b: float) -> float:
    """``a / b`` for non-negative bounds, where an unbounded or zero side stays honest."""
    if math.isinf(a):
        return math.inf
    if math.isinf(b):
        return 0.0
    if b <= 0:
        return math.inf if a > 0 else 1.0
    return a / b


def _relative(
    base_value: float, new_value: float, base_ci: tuple[float, float],
    new_ci: tuple[float, float],
) -> _Change:  # fmt: skip
    """``new / base - 1`` and its interval from two intervals that cover jointly."""
    low = _ratio(max(new_ci[0], 0.0), base_ci[1]) - 1.0
    high = _ratio(new_ci[1], max(base_ci[0], 0.0)) - 1.0
    return _Change(_ratio(new_value, base_value) - 1.0, (low, high), base_value, new_value)


def _quantile_change(q: float) -> Callable[[_Side, _Side, float], _Change]:
    def change(base: _Side, new: _Side, level: float) -> _Change:
        inner = math.sqrt(level)  # independent runs: both cover with probability >= level
        return _relative(
            percentile(base.sorted_ms, q), percentile(new.sorted_ms, q),
            quantile_ci(base.sorted_ms, q, inner, ess_factor=base.ess_factor),
            quantile_ci(new.sorted_ms, q, inner, ess_factor=new.ess_factor),
        )  # fmt: skip

    return change


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    mean = math.fsum(values) / n
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def _mean_change(base: _Side, new: _Side, level: float) -> _Change:
    inner = math.sqrt(level)
    (b_mean, b_std), (n_mean, n_std) = _mean_std(base.sorted_ms), _mean_std(new.sorted_ms)
    return _relative(
        b_mean, n_mean, mean_ci(b_mean, b_std, base.n_eff, inner),
        mean_ci(n_mean, n_std, new.n_eff, inner),
    )  # fmt: skip


def _wilson(k: int, n: int, z: float) -> tuple[float, float]:
    p, z2 = k / n, z * z
    center = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, center - half), min(1.0, center + half)


def _error_change(base: _Side, new: _Side, level: float) -> _Change:
    """Newcombe's hybrid score interval of ``p_new - p_base`` (method 10, 1998)."""
    z = NormalDist().inv_cdf((1.0 + level) / 2.0)
    p1, p2 = new.failures / new.n, base.failures / base.n
    (l1, u1), (l2, u2) = _wilson(new.failures, new.n, z), _wilson(base.failures, base.n, z)
    d = p1 - p2
    ci = (d - math.hypot(p1 - l1, u2 - p2), d + math.hypot(u1 - p1, p2 - l2))
    return _Change(d, ci, p2, p1)


def _rps_change(base: _Side, new: _Side, level: float) -> _Change:
    """Drop ``1 - new_rate / base_rate``; new count | total ~ Binomial under Poisson arrivals."""
    t_base, t_new = base.duration_s, new.duration_s
    low, high = proportion_ci(new.n, new.n + base.n, level)

    def rate_ratio(share: float) -> float:
        return math.inf if share >= 1.0 else share / (1.0 - share) * t_base / t_new

    base_rps, new_rps = base.n / t_base, new.n / t_new
    return _Change(1.0 - new_rps / base_rps, (1.0 - rate_ratio(high), 1.0 - rate_ratio(low)),
                   base_rps, new_rps)  # fmt: skip


_CHANGES: Mapping[str, Callable[[_Side, _Side, float], _Change]] = {
    "p50_regression": _quantile_change(QUANTILES["p50"]),
    "p95_regression": _quantile_change(QUANTILES["p95"]),
    "p99_regression": _quantile_change(QUANTILES["p99"]),
    "avg_regression": _mean_change,
    "error_rate_regression": _error_change,
    "rps_regression": _rps_change,
}


# --- messages ------------------------------------------------------------------------


def regression_message(check: Check) -> str:
    """The sentence for a ``*_regression`` check, e.g.

    ``light: POST /predict p95 +31 % vs baseline 'main', beyond the allowed +10 %
    (100 -> 131 ms, n=2 000 -> 2 000, 95 % CI +18 % to +45 %)``
    """
    name = check.baseline if isinstance(check, RegressionCheck) else ""
    against = f"vs baseline {name!r}" if name else "vs the baseline"
    what = f"{check.scenario}: {check.endpoint} {_LABELS.get(check.metric, check.metric)}"
    allowed = _change_text(check.metric, check.limit)
    if check.outcome is Outcome.INVALID or check.observed is None:
        text = f"{what} {against} (allowed {allowed}): invalid, {check.reason or 'no data'}"
    else:
        change = _change_text(check.metric, check.observed)
        details = _details(check)
        if check.outcome is Outcome.INCONCLUSIVE:
            text = (
                f"{what} {change} {against} ~ allowed {allowed} ({details}): inconclusive, "
                f"the allowance lies inside the CI; {_more_text(check.more_samples)}"
            )
        else:
            side = "beyond" if check.outcome is Outcome.FAIL else "within"
            text = f"{what} {change} {against}, {side} the allowed {allowed} ({details})"
    return text if check.blocking else f"{text} [warn]"


def _change_text(metric: str, change: float) -> str:
    """``+31 %``, ``+4.2 %``, ``+0.50 pp``; throughput's drop reads as a negative change."""
    if metric == "error_rate_regression":
        return f"{100 * change:+.2f} pp"
    if metric == "rps_regression":
        change = -change
    if math.isinf(change):
        return "+inf %" if change > 0 else "-inf %"
    percent = 100 * change
    return f"{percent:+.1f} %" if abs(percent) < 9.95 else f"{percent:+.0f} %"


def _details(check: Check) -> str:
    parts = []
    if isinstance(check, RegressionCheck) and None not in (check.base_value, check.new_value):
        parts.append(_figures(check.metric, check.base_value or 0.0, check.new_value or 0.0))
        parts.append(f"n={format_count(check.base_n)} -> {format_count(check.n)}")
    else:
        parts.append(f"n={format_count(check.n)}")
    if check.ci is not None:
        low, high = check.ci
        if check.metric == "rps_regression":
            low, high = high, low  # a drop's interval, read as a change
        interval = f"{_change_text(check.metric, low)} to {_change_text(check.metric, high)}"
        parts.append(f"{100 * check.level:.10g} % CI {interval}")
    return ", ".join(parts)


def _figures(metric: str, base: float, new: float) -> str:
    if metric == "error_rate_regression":
        return f"{100 * base:.2f} -> {100 * new:.2f} %"
    if metric == "rps_regression":
        return f"{base:.1f} -> {new:.1f} req/s"
    return f"{format_ms(base)} -> {format_ms(new)} ms"


def _more_text(more: int | None) -> str:
    if more is None:
        return "the change sits on the allowance, so no sample count would decide it"
    return f"about {format_count(more)} more samples would decide it"
