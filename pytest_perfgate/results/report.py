"""A scenario's result -> files (JSON, HTML), the terminal table, the GitHub step summary.

Pure formatting over frozen values; no pytest, no locust. ``write_all`` is what the
orchestrator calls once per scenario; files are never overwritten (a taken name gets a
``-1``, ``-2``... suffix). The Locust child writes the CSVs and the log itself.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from pytest_perfgate.config import Scenario
from pytest_perfgate.core.findings import Analysis, format_count, format_ms, format_percent
from pytest_perfgate.core.stats import TOTAL, EndpointStats, RunStats
from pytest_perfgate.core.verdict import Check, Outcome, Verdict, format_value
from pytest_perfgate.load.locust_driver import Progress, RawRun
from pytest_perfgate.target.telemetry import GpuTelemetry

__all__ = [
    "RESULT_FORMAT",
    "ScenarioResult",
    "budget_text",
    "endpoint_table",
    "format_observed",
    "format_range",
    "github_summary_markdown",
    "metric_label",
    "open_new",
    "progress_line",
    "result_to_dict",
    "stats_from_dict",
    "stats_to_dict",
    "terminal_table",
    "write_all",
    "write_json",
]

#: ``format`` key of our result JSON; ``perfgate analyze`` recognises results by it.
RESULT_FORMAT = "pytest-perfgate/result/1"


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
    gpu: GpuTelemetry | None = None  # None: not sampled; .source None: no GPU figures

    def __repr__(self) -> str:
        return f"ScenarioResult({self.scenario.name!r}, {self.verdict.outcome.value})"


# --- files ---------------------------------------------------------------------------


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


def _finite(value: float | None) -> float | None:
    """JSON has no NaN or infinity; unknown figures (e.g. std from Locust CSV) become null."""
    return value if value is not None and math.isfinite(value) else None


def _endpoint_dict(e: EndpointStats) -> dict[str, Any]:
    return {
        "requests": e.requests,
        "failures": e.failures,
        "success_rate": e.success_rate,
        "error_rate": e.error_rate,
        "rps": _finite(e.rps),
        "mean": _finite(e.mean),
        "std": _finite(e.std),
        "min": _finite(e.min),
        "max": _finite(e.max),
        "p50": _finite(e.p50),
        "p95": _finite(e.p95),
        "p99": _finite(e.p99),
        "ci": {k: [lo, hi] for k, (lo, hi) in e.ci.items()},
        "ci_level": e.ci_level,
    }


def stats_to_dict(stats: RunStats) -> dict[str, Any]:
    return {
        "duration_s": stats.duration_s,
        "endpoints": {name: _endpoint_dict(e) for name, e in stats.endpoints.items()},
        "total": _endpoint_dict(stats.total),
    }


def _endpoint_from_dict(name: str, d: Mapping[str, Any]) -> EndpointStats:
    def num(key: str) -> float:
        value = d.get(key)
        return math.nan if value is None else float(value)

    return EndpointStats(
        name=name, requests=int(d["requests"]), failures=int(d["failures"]), rps=num("rps"),
        mean=num("mean"), std=num("std"), min=num("min"), max=num("max"), p50=num("p50"),
        p95=num("p95"), p99=num("p99"),
        ci={k: (float(v[0]), float(v[1])) for k, v in (d.get("ci") or {}).items()},
        ci_level=float(d.get("ci_level", 0.95)),
    )  # fmt: skip


def stats_from_dict(data: Mapping[str, Any]) -> RunStats:
    """The inverse of ``stats_to_dict`` (unknown figures come back as NaN)."""
    return RunStats(
        endpoints={n: _endpoint_from_dict(n, e) for n, e in data["endpoints"].items()},
        total=_endpoint_from_dict(TOTAL, data["total"]),
        duration_s=float(data.get("duration_s", 0.0)),
    )


def _check_dict(c: Check) -> dict[str, Any]:
    return {
        "endpoint": c.endpoint,
        "metric": c.metric,
        "limit": c.limit,
        "observed": _finite(c.observed),
        "n": c.n,
        "outcome": c.outcome.value,
        "severity": c.severity,
        "ci": list(c.ci) if c.ci else None,
        "message": c.message(),
    }


def _clean(value: Any) -> Any:
    """Make history rows and findings' figures strict JSON (no NaN)."""
    if isinstance(value, float):
        return _finite(value)
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def result_to_dict(
    result: ScenarioResult, files: Mapping[str, Path] | None = None
) -> dict[str, Any]:
    """The machine-readable result; ``["analysis"]["summary"]["p95"]`` is the total P95 in ms."""
    s, raw, v = result.scenario, result.raw, result.verdict
    all_files = {**raw.files, **result.files, **(files or {})}
    data: dict[str, Any] = _clean({
        "format": RESULT_FORMAT,
        "scenario": s.name,
        "description": s.description,
        "thresholds": str(result.thresholds) if result.thresholds else None,
        "settings": {
            "users": s.users,
            "spawn_rate": s.spawn_rate,
            "duration_s": s.duration_s,
            "wait_s": [s.wait_min_s, s.wait_max_s],
            "warmup_s": s.warmup_s,
            "processes": s.processes,
            "request_timeout_s": s.request_timeout_s,
            "min_samples": s.min_samples,
            "shape": s.shape.kind if s.shape else None,
        },
        "started_at": result.started_at.isoformat(),
        "duration_s": raw.duration_s,
        "stop_reason": raw.stop_reason,
        "loadgen_cpu_percent": raw.loadgen_cpu_percent,
        "arrival_rate": s.arrival_rate,  # None: closed model (users with wait times)
        "late_requests": raw.late_requests,
        "dropped_requests": raw.dropped_requests,
        "requests_per_worker": dict(raw.requests_per_worker),
        "problems": list(raw.problems),
        # absent, not zero, where no GPU figures could be read
        "gpu": result.gpu.to_dict() if result.gpu else {"source": None},
        "statistics": stats_to_dict(result.stats),
        "budgets": [_check_dict(c) for c in v.checks],
        "verdict": {"outcome": v.outcome.value, "passed": v.passed, "reasons": list(v.reasons)},
        "grades": dict(result.analysis.grades),
        "analysis": result.analysis.to_dict(),
        "history": [dict(row) for row in raw.history],
        "files": {k: str(p) for k, p in all_files.items()},
    })  # fmt: skip
    return data


def write_json(path: Path, result: ScenarioResult, files: Mapping[str, Path] | None = None) -> Path:
    """Write the result JSON at ``path`` (or a free ``-N`` name beside it); return where."""
    data = result_to_dict(result, files)
    fh, written = open_new(path)
    with fh:
        json.dump(data, fh, indent=2, allow_nan=False)
        fh.write("\n")
    return written


def write_all(result: ScenarioResult, results_dir: Path, prefix: str) -> dict[str, Path]:
    """Write ``<prefix>.html`` and ``<prefix>.json`` in ``results_dir``; return their paths.

    Keys ``"html"`` and ``"json"``; a taken name gets a ``-N`` suffix instead of being
    overwritten. The JSON lists every file of the run, the HTML included.
    """
    from pytest_perfgate.results.html import write_html  # html_report imports this module

    html = write_html(results_dir / f"{prefix}.html", result)
    written = {"html": html}
    written["json"] = write_json(results_dir / f"{prefix}.json", result, files=written)
    return written


# --- shared cell formatting ----------------------------------------------------------

_METRIC_LABELS = {
    "p50_ms": "p50", "p95_ms": "p95", "p99_ms": "p99", "avg_ms": "mean", "mean_ms": "mean",
    "max_ms": "max", "error_rate": "errors", "min_rps": "req/s",
}  # fmt: skip


def metric_label(metric: str) -> str:
    """A budget key as a short column label: ``p95_ms`` -> ``p95``, ``min_rps`` -> ``req/s``."""
    return _METRIC_LABELS.get(metric, metric)


def format_observed(metric: str, value: float | None) -> str:
    """A budgeted metric's value with its unit: ``48.2 ms``, ``0.12 %``, ``9.8 req/s``;
    ``inf`` for an interval side the samples cannot bound, ``-`` when unknown."""
    if value is None or math.isnan(value):
        return "-"
    if metric == "error_rate":
        return format_percent(value)
    if metric == "min_rps":
        return f"{value:.1f} req/s"
    return format_value(metric, value)  # the breach lines' units (ms, MB, s, %)


def stop_text(reason: str) -> str:
    """Why a run ended, as a phrase: ``early stop: every blocking budget decided ...``."""
    for prefix, phrase in (
        ("stopped: stop: ", "early stop: "),
        ("stopped: abort: ", "early abort: "),
        ("stopped: ", "a stop: "),
    ):
        if reason.startswith(prefix):
            return phrase + reason.removeprefix(prefix)
    return "its configured duration" if reason == "duration" else reason


def format_range(metric: str, ci: tuple[float, float] | None) -> str:
    """A confidence interval with one unit: ``238-265 ms``, ``0.04-0.90 %``; "" when unknown."""
    if ci is None:
        return ""
    # response times are never negative: an unbounded lower side reads as 0
    bounds = (max(ci[0], 0.0), ci[1]) if metric.endswith("_ms") else ci
    low, high = (format_observed(metric, v) for v in bounds)
    unit = high.rsplit(" ", 1)[-1]
    return f"{low.removesuffix(' ' + unit)}-{high}"


def budget_text(check: Check) -> str:
    """``p95 < 100 ms``, ``errors < 1.00 %``, ``req/s >= 10.0 req/s``."""
    op = ">=" if check.metric == "min_rps" else "<"
    return f"{metric_label(check.metric)} {op} " + format_observed(check.metric, check.limit)


def _ci_cell(e: EndpointStats, key: str = "p95") -> str:
    return format_range(f"{key}_ms", e.ci.get(key)).removesuffix(" ms")


def _rows(stats: RunStats) -> Iterator[EndpointStats]:
    yield from stats.endpoints.values()
    yield stats.total


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    minutes, secs = divmod(seconds, 60)
    return f"{minutes}:{secs:02d}"


# --- terminal ------------------------------------------------------------------------

_NAME_W = 30
_HEADER = (
    f"{'endpoint':<{_NAME_W}} {'requests':>9} {'fails':>7} {'req/s':>7} {'p50 ms':>8} "
    f"{'p95 ms':>8} {'(95 % CI)':<17} {'p99 ms':>8}  grade"
)


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "~"


def _table_row(e: EndpointStats, grade: str) -> str:
    ci = _ci_cell(e)
    return (
        f"{_shorten(e.name, _NAME_W):<{_NAME_W}} {format_count(e.requests):>9} "
        f"{format_count(e.failures):>7} {e.rps:>7.1f} {format_ms(e.p50):>8} "
        f"{format_ms(e.p95):>8} {('(' + ci + ')') if ci else '':<17} {format_ms(e.p99):>8}  {grade}"
    )


def endpoint_table(stats: RunStats, grades: Mapping[str, str]) -> list[str]:
    """The header and one aligned row per endpoint, then the total (no indent)."""
    return [_HEADER, *(_table_row(e, grades.get(e.name, "-")) for e in _rows(stats))]


def terminal_table(results: Sequence[ScenarioResult]) -> list[str]:
    """Lines for the end of the pytest session: one block per scenario, <= 120 columns."""
    lines: list[str] = []
    for r in results:
        s, total = r.scenario, r.stats.total
        lines.append(
            f"{s.name}: {r.verdict.outcome.value}, grade {r.analysis.summary.grade} - "
            f"{s.users} users, measured {_duration(r.stats.duration_s)}, "
            f"{format_count(total.requests)} requests, ended by {stop_text(r.raw.stop_reason)}"
        )
        lines += ["  " + line for line in endpoint_table(r.stats, r.analysis.grades)]
        for c in r.verdict.checks:
            warn = " (warn only)" if c.severity == "warn" and c.outcome is Outcome.FAIL else ""
            lines.append(
                f"  budget {_shorten(c.endpoint, _NAME_W):<{_NAME_W}} {budget_text(c):<22} "
                f"observed {format_observed(c.metric, c.observed):<12} {c.outcome.value}{warn}"
            )
        lines += [f"  - {reason}" for reason in r.verdict.reasons]
        for f in [f for f in r.analysis.findings if f.severity != "info"][:3]:
            lines.append(f"  finding ({f.severity}): {_shorten(f.title, 96)}")
    return lines


def progress_line(progress: Progress, duration_s: float | None = None, scenario: str = "") -> str:
    """The live line, e.g. ``light 1:05/5:00 (3:55 left)  10 users  12.3 req/s  p95 48.2 ms
    612 requests, 0 failures (0.00 %)``."""
    when = _duration(progress.elapsed_s)
    if duration_s:
        left = max(0.0, duration_s - progress.elapsed_s)
        when += f"/{_duration(duration_s)} ({_duration(left)} left)"
    share = progress.failures / progress.requests if progress.requests else 0.0
    p95 = f"{format_ms(progress.p95_ms)} ms" if progress.p95_ms is not None else "-"
    head = f"{scenario} " if scenario else ""
    return (
        f"{head}{when}  {progress.users} users  {progress.rps:.1f} req/s  p95 {p95}  "
        f"{format_count(progress.requests)} requests, {format_count(progress.failures)} failures "
        f"({format_percent(share)})"
    )


# --- GitHub step summary -------------------------------------------------------------

_OUTCOME_MARK = {
    Outcome.PASS: "✅ PASS",
    Outcome.FAIL: "❌ FAIL",
    Outcome.INCONCLUSIVE: "⚠️ INCONCLUSIVE",
    Outcome.INVALID: "⛔ INVALID",
}


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def _md_check_row(endpoint: str, c: Check, grade: str) -> str:
    return (
        f"| {_md(endpoint)} | {metric_label(c.metric)} | "
        f"{format_observed(c.metric, c.observed)} | {budget_text(c)} | "
        f"{format_range(c.metric, c.ci)} | "
        f"{_OUTCOME_MARK[c.outcome]} | {grade} |"
    )


def github_summary_markdown(
    results: Sequence[ScenarioResult], top_findings: int = 3, *, header: bool = True
) -> str:
    """Markdown for ``$GITHUB_STEP_SUMMARY``: per scenario a budget table and top findings.

    ``header=False`` gives the scenario sections alone, to be joined under one header.
    """
    out: list[str] = ["## pytest-perfgate", ""] if header else []
    for r in results:
        summary = r.analysis.summary
        out += [
            f"### {_md(r.scenario.name)}: {_OUTCOME_MARK[r.verdict.outcome]} - grade "
            f"{summary.grade}",
            "",
            f"{r.scenario.users} users, {format_count(summary.requests)} requests in "
            f"{_duration(r.stats.duration_s)} (ended by {_md(stop_text(r.raw.stop_reason))}), "
            f"{summary.rps:.1f} req/s, errors {format_percent(summary.error_rate)}",
            "",
            "| endpoint | metric | observed | budget | 95 % CI | verdict | grade |",
            "|---|---|---:|---|---|---|---|",
        ]
        by_endpoint: dict[str, list[Check]] = {}
        for c in r.verdict.checks:
            by_endpoint.setdefault(c.endpoint, []).append(c)
        for e in _rows(r.stats):
            grade = r.analysis.grades.get(e.name, "-")
            checks = by_endpoint.pop(e.name, [])
            out += [_md_check_row(e.name, c, grade) for c in checks]
            if not checks:
                out.append(
                    f"| {_md(e.name)} | p95 | {format_ms(e.p95)} ms | - | "
                    f"{format_range('p95_ms', e.ci.get('p95'))} | - | "
                    f"{grade} |"
                )
        for endpoint, checks in by_endpoint.items():  # budgeted endpoints that got no request
            out += [_md_check_row(endpoint, c, "-") for c in checks]
        out.append("")
        out += [f"- {_md(reason)}" for reason in r.verdict.reasons]
        for f in r.analysis.findings[:top_findings]:
            out.append(f"- **{f.severity}** {_md(f.title)}: {_md(f.evidence)}")
            if f.recommendations:
                out.append(f"  - {_md(f.recommendations[0])}")
        out.append("")
    return "\n".join(out)
