"""The pipeline's result type, ``ScenarioResult``, and its JSON form both ways.

The gate builds one ``ScenarioResult`` per scenario; every presenter (``terminal``,
``markdown``, ``html``, ``github``) and every file (``files``) reads it. ``result_to_dict``
is the machine-readable result (``RESULT_FORMAT``); ``stats_from_dict`` reads its
statistics back for ``perfgate analyze`` and ``compare``.

Pure: no file I/O, no pytest, no locust. Unknown figures become ``null`` only through
``results.jsonsafe``; load values come from ``load.driver``, never from a driver.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from pytest_perfgate.core.duet import Comparison
from pytest_perfgate.core.findings import Analysis
from pytest_perfgate.core.model import Scenario, scenario_settings
from pytest_perfgate.core.noise import NoiseFinding, blamed_noise
from pytest_perfgate.core.regression import Baseline
from pytest_perfgate.core.stats import TOTAL, EndpointStats, RunStats, StreamStats
from pytest_perfgate.core.verdict import Check, Verdict
from pytest_perfgate.load.driver import RawRun
from pytest_perfgate.results.duet import comparison_to_dict
from pytest_perfgate.results.jsonsafe import json_safe

__all__ = [
    "RESULT_FORMAT",
    "GpuFigures",
    "ScenarioResult",
    "check_to_dict",
    "result_to_dict",
    "stats_from_dict",
    "stats_to_dict",
]

#: ``format`` key of our result JSON; ``perfgate analyze`` recognises results by it.
RESULT_FORMAT = "pytest-perfgate/result/1"


class GpuFigures(Protocol):
    """What a result needs of the GPU telemetry (``target.telemetry.GpuTelemetry``)."""

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ScenarioResult:
    """Everything known about one scenario's run; the one input of every report."""

    scenario: Scenario
    raw: RawRun
    stats: RunStats
    verdict: Verdict
    analysis: Analysis
    started_at: datetime
    files: Mapping[str, Path] = field(default_factory=dict)  # extra files beside raw.files
    thresholds: Path | None = None  # the thresholds file the scenario came from
    gpu: GpuFigures | None = None  # None: not sampled; .source None: no GPU figures
    baseline: Baseline | None = None  # the baseline the run was compared with, if any
    noise: NoiseFinding | None = None  # the machine during the run; None: not sampled
    attempt: tuple[int, int] = (1, 1)  # this run is attempt 1 of 1 (--perfgate-retry-noisy)
    comparison: Comparison | None = None  # an A/B run: the baseline's side and the pair

    def __repr__(self) -> str:
        return f"ScenarioResult({self.scenario.name!r}, {self.verdict.outcome.value})"

    @property
    def called_noisy(self) -> bool:
        """Whether the verdict is INVALID because the machine's noise can explain a breach."""
        return blamed_noise(self.verdict, self.noise)

    @property
    def level(self) -> float:
        """The confidence level of the result's intervals (``--perfgate-confidence``)."""
        return self.stats.total.ci_level


# --- statistics ----------------------------------------------------------------------


def _endpoint_dict(e: EndpointStats) -> dict[str, Any]:
    return {
        "requests": e.requests, "failures": e.failures, "success_rate": e.success_rate,
        "error_rate": e.error_rate, "rps": e.rps, "mean": e.mean, "std": e.std, "min": e.min,
        "max": e.max, "p50": e.p50, "p95": e.p95, "p99": e.p99,
        "ci": {k: [lo, hi] for k, (lo, hi) in e.ci.items()}, "ci_level": e.ci_level,
        **({} if e.stream is None else {"streams": _streams_dict(e, e.stream)}),
    }  # fmt: skip


def _streams_dict(e: EndpointStats, s: StreamStats) -> dict[str, Any]:
    """A row's streamed responses: its figures (``ttft_p95``... in ms, ``output_tokens_per_s``,
    ``goodput``; their intervals are in the row's ``ci``) and their counts."""
    return {
        "figures": dict(e.figures), "requests": s.requests, "output_tokens": s.output_tokens,
        "batched": s.batched, "malformed": dict(s.malformed), "counts": dict(s.counts),
        "good": s.good,
    }  # fmt: skip


def _streams_from_dict(d: Any) -> tuple[dict[str, float], StreamStats | None]:
    if not isinstance(d, Mapping):
        return {}, None
    figures = {str(k): _number(v) for k, v in (d.get("figures") or {}).items()}
    stream = StreamStats(
        int(d["requests"]), int(d["output_tokens"]), int(d.get("batched", 0)),
        {str(k): int(v) for k, v in (d.get("malformed") or {}).items()},
        {str(k): int(v) for k, v in (d.get("counts") or {}).items()}, int(d.get("good", 0)),
    )  # fmt: skip
    return figures, stream


def stats_to_dict(stats: RunStats) -> dict[str, Any]:
    """The statistics as strict JSON data: unknown figures (NaN, unbounded sides) are null."""
    data = {
        "duration_s": stats.duration_s,
        "endpoints": {name: _endpoint_dict(e) for name, e in stats.endpoints.items()},
        "total": _endpoint_dict(stats.total),
    }
    return dict(json_safe(data))


def _number(value: Any, unknown: float = math.nan) -> float:
    return unknown if value is None else float(value)


def _interval(side: Any) -> tuple[float, float]:
    """A ``[low, high]`` pair; a null side is one the samples could not bound."""
    return (_number(side[0], -math.inf), _number(side[1], math.inf))


def _endpoint_from_dict(name: str, d: Mapping[str, Any]) -> EndpointStats:
    def num(key: str) -> float:
        return _number(d.get(key))

    figures, stream = _streams_from_dict(d.get("streams"))
    return EndpointStats(
        name=name, requests=int(d["requests"]), failures=int(d["failures"]), rps=num("rps"),
        mean=num("mean"), std=num("std"), min=num("min"), max=num("max"), p50=num("p50"),
        p95=num("p95"), p99=num("p99"),
        ci={k: _interval(v) for k, v in (d.get("ci") or {}).items()},
        ci_level=float(d.get("ci_level", 0.95)), figures=figures, stream=stream,
    )  # fmt: skip


def stats_from_dict(data: Mapping[str, Any]) -> RunStats:
    """The inverse of ``stats_to_dict``: unknown figures come back as NaN, unbounded
    interval sides as infinities."""
    return RunStats(
        endpoints={n: _endpoint_from_dict(n, e) for n, e in data["endpoints"].items()},
        total=_endpoint_from_dict(TOTAL, data["total"]),
        duration_s=float(data.get("duration_s", 0.0)),
    )


# --- the whole result ----------------------------------------------------------------


def check_to_dict(c: Check) -> dict[str, Any]:
    """One budget check, its verdict and its sentence (``budgets`` of the result)."""
    return {
        "endpoint": c.endpoint,
        "metric": c.metric,
        "limit": c.limit,
        "observed": c.observed,
        "n": c.n,
        "outcome": c.outcome.value,
        "severity": c.severity,
        "ci": list(c.ci) if c.ci else None,
        "message": c.message(),
    }


def _run_dict(raw: RawRun) -> dict[str, Any]:
    return {
        "duration_s": raw.duration_s,
        "stop_reason": raw.stop_reason,
        "loadgen_cpu_percent": raw.loadgen_cpu_percent,
    }


def result_to_dict(
    result: ScenarioResult, files: Mapping[str, Path] | None = None
) -> dict[str, Any]:
    """The machine-readable result; ``["analysis"]["summary"]["p95"]`` is the total P95 in ms."""
    s, raw, v = result.scenario, result.raw, result.verdict
    all_files = {**raw.files, **result.files, **(files or {})}
    data = {
        "format": RESULT_FORMAT,
        "scenario": s.name,
        "description": s.description,
        "thresholds": str(result.thresholds) if result.thresholds else None,
        "settings": scenario_settings(s),
        "started_at": result.started_at.isoformat(),
        **_run_dict(raw),
        "arrival_rate": s.arrival_rate,  # None: closed model (users with wait times)
        "late_requests": raw.late_requests,
        "dropped_requests": raw.dropped_requests,
        "requests_per_worker": dict(raw.requests_per_worker),
        "problems": list(raw.problems),
        # the machine during the run (core.noise); null where it was not sampled
        "noise": result.noise.to_dict() if result.noise else None,
        "attempt": list(result.attempt),
        # absent, not zero, where no GPU figures could be read
        "gpu": result.gpu.to_dict() if result.gpu else {"source": None},
        "statistics": stats_to_dict(result.stats),
        # an A/B run (core.duet): the baseline's statistics and each allowance's change
        "ab": None
        if result.comparison is None
        else comparison_to_dict(result.comparison, stats_to_dict(result.comparison.baseline_stats)),
        "budgets": [check_to_dict(c) for c in v.checks],
        "verdict": {"outcome": v.outcome.value, "passed": v.passed, "reasons": list(v.reasons)},
        "grades": dict(result.analysis.grades),
        "analysis": result.analysis.to_dict(),
        "history": [dict(row) for row in raw.history],
        "files": {k: str(p) for k, p in all_files.items()},
    }
    return dict(json_safe(data))
