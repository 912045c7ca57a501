"""Statistics -> grades and findings: where the time goes and what to do about it.

Pure: no pytest, no locust, no file I/O. Every ``Finding`` is triggered by measured
data (statistics, the per-second history, failures, the service's Prometheus ``/metrics``
scraped before and after the run, the load generator's CPU) and its ``evidence`` quotes
those numbers; without the data there is no finding (``results.locust_csv`` reads the
same figures from plain Locust ``--csv`` output, so ``perfgate analyze`` works on runs
made without us). Figures are written by the registry's units and ``core.numbers``.

Over 450 lines on purpose: each finding is a trigger, its thresholds and its wording,
kept beside the figures it reads; split by kind they would repeat the same plumbing.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pytest_perfgate.core.metrics import MS, RPS, SHARE
from pytest_perfgate.core.numbers import format_count, format_level, format_ms
from pytest_perfgate.core.service_metrics import (
    DEFAULT_METRICS,
    ServiceMetrics,
    mean_time_ms,
    metric_total,
    parse_prometheus_text,
)
from pytest_perfgate.core.stats import NOT_SENT, TOTAL, EndpointStats, RunStats, Sample

__all__ = [
    "GRADES",
    "Analysis",
    "FailureGroup",
    "Finding",
    "Summary",
    "analysis_from_dict",
    "analyze",
    "classify_failure",
    "endpoint_grade",
    "error_grade",
    "grade",
    "latency_grade",
    "metric_total",  # re-exported from core.service_metrics, where it lives
    "parse_prometheus_text",
    "streamed",
    "tpot_grade",
    "ttft_grade",
]

Severity = Literal["critical", "warning", "info"]
_SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}

# --- grades --------------------------------------------------------------------------

GRADES = ("Excellent", "Good", "Acceptable", "Poor", "Critical")
_LATENCY_STEPS = ((50.0, "Excellent"), (100.0, "Good"), (200.0, "Acceptable"), (500.0, "Poor"))
_ERROR_STEPS = ((0.001, "Excellent"), (0.01, "Good"), (0.05, "Acceptable"))


def latency_grade(p95_ms: float) -> str:
    """Excellent < 50 ms <= Good < 100 <= Acceptable < 200 <= Poor < 500 <= Critical."""
    return next((g for limit, g in _LATENCY_STEPS if p95_ms < limit), "Critical")


def error_grade(error_rate: float) -> str:
    """Excellent < 0.1 % <= Good < 1 % <= Acceptable < 5 % <= Poor (never Critical)."""
    return next((g for limit, g in _ERROR_STEPS if error_rate < limit), "Poor")


def grade(p95_ms: float, error_rate: float) -> str:
    """The overall grade: the worse of the P95 grade and the error-rate grade."""
    return max(latency_grade(p95_ms), error_grade(error_rate), key=GRADES.index)


# A streamed response's whole time is mostly its length (tokens x time per token), so an
# endpoint that streams is graded and judged by what users feel: the time to the first
# token and the time per output token after it. The steps follow MLPerf's LLM limits
# (TTFT P99 2 s / TPOT 200 ms for llama2-70b server, 450 ms / 40 ms interactive) and
# reading speed (about 5-10 tokens/s: TPOT beyond 100-200 ms lags behind the reader).
_TTFT_STEPS = ((200.0, "Excellent"), (500.0, "Good"), (1000.0, "Acceptable"), (2000.0, "Poor"))
_TPOT_STEPS = ((20.0, "Excellent"), (40.0, "Good"), (100.0, "Acceptable"), (200.0, "Poor"))


def ttft_grade(ttft_p95_ms: float) -> str:
    """Excellent < 200 ms <= Good < 500 <= Acceptable < 1 000 <= Poor < 2 000 <= Critical."""
    return next((g for limit, g in _TTFT_STEPS if ttft_p95_ms < limit), "Critical")


def tpot_grade(tpot_p95_ms: float) -> str:
    """Excellent < 20 ms <= Good < 40 <= Acceptable < 100 <= Poor < 200 <= Critical."""
    return next((g for limit, g in _TPOT_STEPS if tpot_p95_ms < limit), "Critical")


def streamed(e: EndpointStats) -> bool:
    """Whether ``e`` is judged by its streams (TTFT, TPOT), not its whole response time."""
    return e.stream is not None and "ttft_p95" in e.figures


def endpoint_grade(e: EndpointStats) -> str:
    """``grade`` of a row; a streamed row: the worst of its TTFT P95, TPOT P95 (when
    measured) and error-rate grades."""
    if not streamed(e):
        return grade(e.p95, e.error_rate)
    parts = [ttft_grade(e.figures["ttft_p95"]), error_grade(e.error_rate)]
    if "tpot_p95" in e.figures:
        parts.append(tpot_grade(e.figures["tpot_p95"]))
    return max(parts, key=GRADES.index)


# --- values --------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One observation from the measurements, with the numbers behind it and what to do."""

    kind: str  # "errors", "high_latency", "long_tail", "saturation", "time_breakdown", ...
    severity: Severity
    title: str
    evidence: str  # a sentence quoting the measured numbers
    recommendations: tuple[str, ...]
    endpoint: str | None = None
    figures: Mapping[str, float] = field(default_factory=dict, compare=False)

    def __repr__(self) -> str:
        return f"Finding({self.kind!r}, {self.severity}, {self.title!r})"


@dataclass(frozen=True)
class Summary:
    """The run's headline figures (all endpoints together)."""

    p50: float
    p95: float
    p99: float
    mean: float
    rps: float
    error_rate: float
    requests: int
    failures: int
    grade: str
    p95_ci: tuple[float, float] | None = None


@dataclass(frozen=True)
class Analysis:
    summary: Summary
    grades: Mapping[str, str]  # by endpoint key, TOTAL included
    findings: tuple[Finding, ...]
    notes: tuple[str, ...] = ()  # what could not be analysed, and caveats about the figures

    def to_dict(self) -> dict[str, Any]:
        s = self.summary
        return {
            "summary": {
                "p50": s.p50, "p95": s.p95, "p99": s.p99, "mean": s.mean, "rps": s.rps,
                "error_rate": s.error_rate, "requests": s.requests, "failures": s.failures,
                "grade": s.grade, "p95_ci": list(s.p95_ci) if s.p95_ci else None,
            },
            "grades": dict(self.grades),
            "findings": [
                {
                    "kind": f.kind, "severity": f.severity, "title": f.title,
                    "evidence": f.evidence, "recommendations": list(f.recommendations),
                    "endpoint": f.endpoint, "figures": dict(f.figures),
                }
                for f in self.findings
            ],
            "notes": list(self.notes),
        }  # fmt: skip


def _read(value: Any, unknown: float = math.nan) -> float:
    """A figure read back from JSON, where ``null`` is unknown (or an unbounded side)."""
    return unknown if value is None else float(value)


def analysis_from_dict(data: Mapping[str, Any]) -> Analysis:
    """The inverse of ``Analysis.to_dict`` (for results read back from JSON, where the
    writer turned NaN and infinities into ``null``)."""
    s = data["summary"]
    ci = s.get("p95_ci")
    summary = Summary(
        p50=_read(s["p50"]), p95=_read(s["p95"]), p99=_read(s["p99"]), mean=_read(s["mean"]),
        rps=_read(s["rps"]), error_rate=_read(s["error_rate"]), requests=int(s["requests"]),
        failures=int(s.get("failures", 0)), grade=str(s["grade"]),
        p95_ci=(_read(ci[0], -math.inf), _read(ci[1], math.inf)) if ci else None,
    )  # fmt: skip
    findings = tuple(
        Finding(
            kind=str(f["kind"]),
            severity=f["severity"],
            title=str(f["title"]),
            evidence=str(f["evidence"]),
            recommendations=tuple(str(r) for r in f.get("recommendations", ())),
            endpoint=f.get("endpoint"),
            figures={str(k): _read(v) for k, v in (f.get("figures") or {}).items()},
        )
        for f in data.get("findings", ())
    )
    grades = {str(k): str(v) for k, v in data.get("grades", {}).items()}
    return Analysis(summary, grades, findings, tuple(str(n) for n in data.get("notes", ())))


@dataclass(frozen=True)
class FailureGroup:
    """Failures of one endpoint with the same error (a row of Locust's failures.csv)."""

    endpoint: str
    error: str
    occurrences: int
    status: int | None = None  # HTTP status when known; None: read it from ``error``


# --- failures ------------------------------------------------------------------------

_STATUS_IN_TEXT = (
    re.compile(r"\b([45]\d\d)\s+[A-Za-z]"),  # "503 Service Unavailable", "500 Server Error"
    re.compile(r"status(?:[ _]code)?\D{0,3}([45]\d\d)\b", re.IGNORECASE),
)
_TIMEOUT_TEXT = re.compile(r"timed?[ _-]?out", re.IGNORECASE)
_CONNECTION_TEXT = re.compile(r"connect|refused|reset|disconnect|broken pipe", re.IGNORECASE)

_BACKOFF = "Retry idempotent requests with exponential backoff and jitter (honour Retry-After)."
_BREAKER = "Protect callers with a circuit breaker so a failing service is not hammered."
_VALIDATE = "Validate inputs against the request schema so bad inputs fail fast with a 4xx."

#: error class -> (label, recommendations); shared advice is one string so it is listed once
_ERROR_CLASSES: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "timeout": (
        "timeouts",
        (
            "Give every client call an explicit timeout; find what the slow requests have in "
            "common (payload size, model) in the service log.",
            _BACKOFF,
        ),
    ),
    "connection": (
        "connection errors",
        (
            "Check the service log for crashes or restarts during the run; raise its "
            "connection limits (uvicorn --limit-concurrency, --backlog).",
            _BREAKER,
        ),
    ),
    "backpressure": (
        "429/503 backpressure",
        (
            "The service shed load: add capacity (uvicorn workers, replicas) or raise the "
            "queue bound if the latency budget allows.",
            _BACKOFF,
            _BREAKER,
        ),
    ),
    "server_error": (
        "5xx server errors",
        ("Read the error patterns in the service log for these requests.", _VALIDATE, _BREAKER),
    ),
    "client_error": (
        "4xx client errors",
        (
            "Check the request bodies the scenario sends against the service's input schema.",
            "Check credentials (API key, JWT) and the rate limit the scenario runs into.",
        ),
    ),
    "task_error": (
        "errors in the load test's own code",
        (
            "A user task raised before sending its request: fix the locustfile or the "
            "json_factory (the traceback is in the run log); the service never saw these.",
        ),
    ),
    "other": (
        "other failures",
        ("Read the failure messages in the failures CSV and the run log.",),
    ),
}


def classify_failure(status: int | None, error: str) -> str:
    """The class of a failure: ``timeout``, ``connection``, ``backpressure``,
    ``server_error``, ``client_error``, ``task_error`` or ``other``."""
    if status == NOT_SENT:
        return "task_error"
    if status is None:
        status = next((int(m.group(1)) for rx in _STATUS_IN_TEXT if (m := rx.search(error))), None)
    if status in (429, 503):
        return "backpressure"
    if status is not None and 500 <= status < 600:
        return "server_error"
    if status is not None and 400 <= status < 500:
        return "client_error"
    if _TIMEOUT_TEXT.search(error):
        return "timeout"
    if status == 0 or (status is None and _CONNECTION_TEXT.search(error)):
        return "connection"
    return "other"


def _failure_counts(
    failures: Iterable[Sample | FailureGroup],
) -> dict[str, dict[str, int]]:
    """endpoint -> error class -> count."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for f in failures:
        if isinstance(f, Sample):
            if not f.ok:
                counts[f.name][classify_failure(f.status, f.error)] += 1
        else:
            counts[f.endpoint][classify_failure(f.status, f.error)] += f.occurrences
    return counts


def _error_finding(stats: RunStats, failures: Iterable[Sample | FailureGroup]) -> Finding | None:
    total = stats.total
    if total.failures == 0:
        return None
    counts = _failure_counts(failures)
    rate = total.error_rate
    severity: Severity = "critical" if rate >= 0.05 else "warning" if rate >= 0.01 else "info"
    by_class: dict[str, int] = defaultdict(int)
    parts = []
    for endpoint, classes in sorted(counts.items(), key=lambda kv: -sum(kv[1].values())):
        listed = sorted(classes.items(), key=lambda kv: -kv[1])
        for cls, n in listed:
            by_class[cls] += n
        parts.append(
            f"{endpoint}: "
            + ", ".join(f"{format_count(n)} x {_ERROR_CLASSES[c][0]}" for c, n in listed)
        )
    evidence = (
        f"{SHARE.format(rate)} of requests failed ({format_count(total.failures)} of "
        f"{format_count(total.requests)})"
    )
    if parts:
        evidence += "; " + "; ".join(parts) + "."
    else:
        failing = [e for e in stats.endpoints.values() if e.failures]
        evidence += (
            "; "
            + ", ".join(f"{e.name}: {format_count(e.failures)}" for e in failing)
            + ". No failure details were recorded, so the error classes are unknown."
        )
    ranked = sorted(by_class, key=lambda c: -by_class[c]) or ["other"]
    recommendations: list[str] = []
    for cls in ranked:
        recommendations += [r for r in _ERROR_CLASSES[cls][1] if r not in recommendations]
    title = f"{SHARE.format(rate)} of requests failed"
    if by_class:
        title += f", mostly {_ERROR_CLASSES[ranked[0]][0]}"
    return Finding(
        kind="errors",
        severity=severity,
        title=title,
        evidence=evidence,
        recommendations=tuple(recommendations),
        figures={"error_rate": rate, "failures": total.failures,
                 **{f"class_{c}": n for c, n in by_class.items()}},
    )  # fmt: skip


# --- latency -------------------------------------------------------------------------

HIGH_P95_MS = 200.0
TAIL_RATIO = 2.0
TAIL_MIN_REQUESTS = 100  # below this the P99 is one of the few slowest requests: no tail claim


def _high_latency_findings(stats: RunStats) -> list[Finding]:
    found = []
    for e in _endpoints_or_total(stats):
        if streamed(e):
            found += _stream_latency_findings(e)
            continue
        if e.requests == 0 or e.p95 <= HIGH_P95_MS:
            continue
        found.append(
            Finding(
                kind="high_latency",
                severity="critical" if e.p95 >= 500 else "warning",
                title=f"{e.name}: P95 {MS.format(e.p95)} is above {MS.format(HIGH_P95_MS)}",
                evidence=(
                    f"{e.name} answered {format_count(e.requests)} requests with P50 "
                    f"{MS.format(e.p50)}, P95 {MS.format(e.p95)}{_ci_text(e, 'p95')} and "
                    f"mean {MS.format(e.mean)}."
                ),
                recommendations=(
                    "Profile one inference end to end (torch.profiler) to see where the time goes.",
                    "Cache results of repeated inputs.",
                    "Tune the GPU batch size and the batching window.",
                    "Pre-allocate GPU memory instead of allocating per request.",
                    "Process requests asynchronously so the event loop never waits on the model.",
                ),
                endpoint=e.name,
                figures={"p95": e.p95, "p50": e.p50, "mean": e.mean, "requests": e.requests},
            )
        )
    return found


def _tail_findings(stats: RunStats) -> list[Finding]:
    found = []
    for e in _endpoints_or_total(stats):
        if streamed(e):  # its response times are its lengths: a tail there is long answers
            continue
        if e.requests < TAIL_MIN_REQUESTS or e.p95 <= 0 or e.p99 <= TAIL_RATIO * e.p95:
            continue
        ratio = e.p99 / e.p95
        found.append(
            Finding(
                kind="long_tail",
                severity="warning",
                title=f"{e.name}: P99 is {ratio:.1f}x the P95",
                evidence=(
                    f"{e.name}: P99 {MS.format(e.p99)}{_ci_text(e, 'p99')} against P95 "
                    f"{MS.format(e.p95)} and P50 {MS.format(e.p50)} over "
                    f"{format_count(e.requests)} requests (max {MS.format(e.max)}): "
                    f"about 1 request in 100 is far slower than the rest."
                ),
                recommendations=(
                    "Look for cold starts: lazy model loading or first-call compilation.",
                    "Check for GC pauses (gc.freeze() after start-up, fewer allocations).",
                    "Add a warm-up phase before serving traffic.",
                    "Set request timeouts so stuck requests do not hold workers.",
                    "Monitor the long tail (P99, P99.9) in production, not only the mean.",
                ),
                endpoint=e.name,
                figures={"p99": e.p99, "p95": e.p95, "ratio": ratio, "requests": e.requests},
            )
        )
    return found


#: (figure, label, warning above, critical from): TTFT as MLPerf's server limit (2 s at
#: P99) and TPOT as reading speed (100 ms: 10 tokens/s) and MLPerf's limit (200 ms)
_STREAM_LIMITS = (
    ("ttft_p95", "TTFT", 1000.0, 2000.0),
    ("tpot_p95", "TPOT", 100.0, 200.0),
)


def _stream_latency_findings(e: EndpointStats) -> list[Finding]:
    """A streamed endpoint's slow first token or slow tokens (not its whole responses)."""
    found = []
    for key, label, limit, critical in _STREAM_LIMITS:
        value = e.figures.get(key)
        if value is None or value <= limit:
            continue
        found.append(
            Finding(
                kind=f"high_{label.lower()}",
                severity="critical" if value >= critical else "warning",
                title=f"{e.name}: {label} P95 {MS.format(value)} is above {MS.format(limit)}",
                evidence=(
                    f"{e.name} streamed {format_count(e.requests)} responses with {label} "
                    f"P95 {MS.format(value)}{_ci_text(e, key)}; TTFT P50 "
                    f"{_figure_text(e, 'ttft_p50')}, TPOT P95 {_figure_text(e, 'tpot_p95')} "
                    f"(whole responses P95 {MS.format(e.p95)}, which grows with their length)."
                ),
                recommendations=_STREAM_ADVICE[label],
                endpoint=e.name,
                figures={key: value, "requests": e.requests, "p95": e.p95},
            )
        )
    return found


def _figure_text(e: EndpointStats, key: str) -> str:
    value = e.figures.get(key)
    return "unmeasured" if value is None else MS.format(value)


_STREAM_ADVICE: Mapping[str, tuple[str, ...]] = {
    "TTFT": (
        "Requests wait for a running slot or a long prefill: raise the running batch "
        "(max running sequences) or add replicas.",
        "Bound the waiting queue so excess load is shed (429 + Retry-After) rather than "
        "queued behind long generations.",
        "Shorten prompts or cache their prefixes (prefix caching).",
    ),
    "TPOT": (
        "Each decode step is slow: profile one step (torch.profiler); use a GPU or half precision.",
        "A larger running batch raises throughput but slows every token: lower it if the "
        "TPOT objective matters more than tokens/s.",
    ),
}


def _dominant_endpoint(stats: RunStats) -> Finding | None:
    eps = [e for e in stats.endpoints.values() if e.requests]
    if len(eps) < 2:
        return None
    time = {e.name: e.requests * e.mean for e in eps}
    spent = sum(time.values())
    top = max(eps, key=lambda e: time[e.name])
    if spent <= 0 or time[top.name] / spent < 0.5:
        return None
    share = time[top.name] / spent
    req_share = top.requests / sum(e.requests for e in eps)
    rest = [e for e in eps if e is not top]
    rest_mean = sum(time[e.name] for e in rest) / max(1, sum(e.requests for e in rest))
    slower = share > 1.25 * req_share
    recs = (
        (f"Optimise {top.name} first: its requests are slower than the others.",
         "Profile this endpoint's handler and model separately from the rest.")
        if slower else
        (f"{top.name} dominates by volume: cache or batch its repeated requests first.",)
    )  # fmt: skip
    return Finding(
        kind="dominant_endpoint",
        severity="info",
        title=f"{top.name} takes {SHARE.format(share)} of the total response time",
        evidence=(
            f"{top.name} accounts for {SHARE.format(share)} of the time spent waiting for "
            f"responses with {SHARE.format(req_share)} of the requests (mean "
            f"{MS.format(top.mean)} against {MS.format(rest_mean)} for the other endpoints)."
        ),
        recommendations=recs,
        endpoint=top.name,
        figures={"time_share": share, "request_share": req_share, "mean": top.mean},
    )


def _endpoints_or_total(stats: RunStats) -> list[EndpointStats]:
    """The endpoints; the total only stands for them when there is a single one or none."""
    eps = list(stats.endpoints.values())
    return eps if eps else [stats.total]


def _ci_text(e: EndpointStats, key: str) -> str:
    ci = e.ci.get(key)
    if not ci:
        return ""
    return f" ({format_level(e.ci_level)} CI {MS.format_interval(*ci)})"


# --- throughput saturation from the per-second history -------------------------------


def _number(row: Mapping[str, Any], *keys: str) -> float | None:
    for key in keys:
        value = row.get(key)
        if value is None or value == "":
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            return number
    return None


SATURATION_MIN_ROWS = 3  # seconds per user level: single seconds of a ramp-up are too noisy
SATURATION_SCALING = 0.5  # flag when throughput grew by less than half as much as the users


@dataclass(frozen=True)
class _Level:
    users: float
    rps: float
    p50: float | None


def _level(rows: Sequence[Mapping[str, Any]]) -> _Level:
    users = [_number(r, "users") or 0.0 for r in rows]
    rps = [_number(r, "rps") or 0.0 for r in rows]
    p50 = [v for r in rows if (v := _number(r, "p50")) is not None]
    return _Level(
        sum(users) / len(rows), sum(rps) / len(rows), sum(p50) / len(p50) if p50 else None
    )


def _user_levels(history: Sequence[Mapping[str, Any]]) -> list[_Level]:
    """Mean throughput per user count, adjacent counts merged until each has enough rows."""
    by_users: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for row in history:
        users, rps = _number(row, "users"), _number(row, "rps")
        if users is not None and rps is not None and users > 0:
            by_users[round(users)].append(row)
    groups: list[list[Mapping[str, Any]]] = []
    pending: list[Mapping[str, Any]] = []
    for users in sorted(by_users):
        pending += by_users[users]
        if len(pending) >= SATURATION_MIN_ROWS:
            groups.append(pending)
            pending = []
    if pending and groups:
        groups[-1] += pending
    return [_level(g) for g in groups]


def _saturation_finding(history: Sequence[Mapping[str, Any]]) -> Finding | None:
    """Throughput that stops growing while users grow (rps per user-count level)."""
    levels = _user_levels(history)
    if len(levels) < 2:
        return None
    low, top = levels[0], levels[-1]
    if top.users < 2 * low.users or low.rps <= 0:
        return None
    user_growth, rps_growth = top.users / low.users, top.rps / low.rps
    if rps_growth / user_growth >= SATURATION_SCALING:
        return None
    peak = max(level.rps for level in levels)
    knee = next(level for level in levels if level.rps >= 0.9 * peak)
    evidence = (
        f"Users grew {user_growth:.1f}x (from {low.users:.0f} to {top.users:.0f}) but "
        f"throughput only {rps_growth:.1f}x (from {RPS.number(low.rps)} to {RPS.format(top.rps)})"
    )
    if knee is not top:
        evidence += (
            f"; it levelled off at about {RPS.format(knee.rps)} "
            f"from about {knee.users:.0f} users on"
        )
        title = (
            f"Throughput saturates at about {RPS.format(knee.rps)} (about {knee.users:.0f} users)"
        )
    else:
        title = f"Throughput grew only {rps_growth:.1f}x while users grew {user_growth:.1f}x"
    if low.p50 is not None and top.p50 is not None:
        evidence += (
            f", while the median response time went from {format_ms(low.p50)} to "
            f"{MS.format(top.p50)}"
        )
    return Finding(
        kind="saturation",
        severity="warning",
        title=title,
        evidence=evidence + ".",
        recommendations=(
            "Run more uvicorn workers (or processes) per instance.",
            "Make request handling async so I/O does not block the event loop.",
            "Scale horizontally: more replicas behind a load balancer.",
        ),
        figures={"saturation_users": knee.users, "saturation_rps": knee.rps,
                 "max_users": top.users, "rps_at_max_users": top.rps,
                 "scaling": rps_growth / user_growth},
    )  # fmt: skip


# --- server-side time breakdown from Prometheus /metrics -----------------------------


def _time_breakdown(
    stats: RunStats, before: Mapping[str, float] | None, after: Mapping[str, float] | None,
    names: ServiceMetrics,
) -> Finding | None:  # fmt: skip
    if after is None or stats.total.requests == 0:
        return None
    queue = mean_time_ms(before, after, names.queue_time)
    compute = mean_time_ms(before, after, names.compute_time)
    if queue is None or compute is None:
        return None
    (queue_ms, n), (compute_ms, _) = queue, compute
    client_ms = stats.total.mean
    overhead_ms = max(0.0, client_ms - queue_ms - compute_ms)
    parts = {"queue": queue_ms, "compute": compute_ms, "network/HTTP overhead": overhead_ms}
    whole = sum(parts.values()) or 1.0
    main = max(parts, key=lambda k: parts[k])
    evidence = (
        f"Server side, a request waited {MS.format(queue_ms)} in the queue and computed "
        f"{MS.format(compute_ms)} on average (n={format_count(n)}); the client saw "
        f"{MS.format(client_ms)} on average over {format_count(stats.total.requests)} "
        f"requests, which leaves {MS.format(overhead_ms)} "
        f"({SHARE.format(overhead_ms / client_ms if client_ms else 0)}) for network, HTTP "
        f"and serialisation"
    )
    if client_ms < queue_ms + compute_ms:
        evidence += (
            " (the server-side time exceeds the client's mean, so the server counted other "
            "requests too and the shares are approximate)"
        )
    elif abs(n - stats.total.requests) > 0.2 * stats.total.requests:
        evidence += (
            f" (the server counted {format_count(n)} model requests against "
            f"{format_count(stats.total.requests)} client requests, so the shares are approximate)"
        )
    recs = {
        "queue": (
            "Requests wait longer than they compute: add uvicorn workers or replicas.",
            "Raise the maximum batch size or shorten the batching window.",
            "Scale horizontally behind a load balancer.",
        ),
        "compute": (
            "Profile the model's forward pass (torch.profiler).",
            "Tune the GPU batch size; pre-allocate GPU memory; consider half precision.",
            "Cache results of repeated inputs.",
        ),
        "network/HTTP overhead": (
            "Keep connections alive and shrink payloads (binary or compressed tensors).",
            "Use a faster JSON library (orjson) or more uvicorn workers for parsing.",
            "Check the network path between the load generator and the service.",
        ),
    }[main]
    return Finding(
        kind="time_breakdown",
        severity="warning" if main == "queue" else "info",
        title=f"Most of the response time is {main} ({SHARE.format(parts[main] / whole)})",
        evidence=evidence + ".",
        recommendations=recs,
        figures={"queue_ms": queue_ms, "compute_ms": compute_ms, "overhead_ms": overhead_ms,
                 "client_mean_ms": client_ms, "server_requests": n},
    )  # fmt: skip


LOADGEN_CPU_LIMIT = 90.0


def _loadgen_finding(cpu_percent: float | None) -> Finding | None:
    if cpu_percent is None or cpu_percent < LOADGEN_CPU_LIMIT:
        return None
    return Finding(
        kind="loadgen_saturated",
        severity="critical",
        title=f"The load generator ran at {cpu_percent:.0f} % CPU: figures are not trustworthy",
        evidence=(
            f"The Locust process used {cpu_percent:.0f} % of a CPU on average (limit "
            f"{LOADGEN_CPU_LIMIT:g} %); a saturated generator delays requests and inflates "
            "response times."
        ),
        recommendations=(
            "Run more load generator processes (the scenario's `processes` key).",
            "Lower the users or the request rate, or use a bigger machine for the load.",
        ),
        figures={"loadgen_cpu_percent": cpu_percent},
    )


# --- analyze -------------------------------------------------------------------------


def _total_grade(stats: RunStats, grades: Mapping[str, str]) -> str:
    """``grade`` of the total; where an endpoint streams, whole response times of streams
    and requests do not mix: the worst endpoint's grade and the total's error grade."""
    total = stats.total
    if not any(streamed(e) for e in stats.endpoints.values()):
        return endpoint_grade(total)
    return max([*grades.values(), error_grade(total.error_rate)], key=GRADES.index)


def analyze(
    stats: RunStats,
    history: Sequence[Mapping[str, Any]] = (),
    *,
    failures: Iterable[Sample | FailureGroup] = (),
    server_metrics_before: Mapping[str, float] | None = None,
    server_metrics_after: Mapping[str, float] | None = None,
    loadgen_cpu_percent: float | None = None,
    notes: Sequence[str] = (),
    service_metrics: ServiceMetrics = DEFAULT_METRICS,
) -> Analysis:
    """Grades and findings of one run.

    ``history`` rows carry ``t``, ``users``, ``rps`` (and optionally ``p50``, ``p95``,
    ``fails``); ``failures`` are failed samples or failure groups; the metrics are
    ``parse_prometheus_text`` of ``/metrics`` before and after the load, read through
    ``service_metrics`` (``service.metrics`` of the thresholds file).
    """
    total = stats.total
    candidates = [
        _loadgen_finding(loadgen_cpu_percent),
        _error_finding(stats, failures),
        *_high_latency_findings(stats),
        *_tail_findings(stats),
        _saturation_finding(history),
        _time_breakdown(stats, server_metrics_before, server_metrics_after, service_metrics),
        _dominant_endpoint(stats),
    ]
    findings = sorted((f for f in candidates if f), key=lambda f: _SEVERITY_ORDER[f.severity])
    grades = {e.name: endpoint_grade(e) for e in stats.endpoints.values() if e.requests}
    grades[TOTAL] = _total_grade(stats, grades)
    p95_ci = total.ci.get("p95")
    summary = Summary(
        p50=total.p50, p95=total.p95, p99=total.p99, mean=total.mean, rps=total.rps,
        error_rate=total.error_rate, requests=total.requests, failures=total.failures,
        grade=grades[TOTAL], p95_ci=(p95_ci[0], p95_ci[1]) if p95_ci else None,
    )  # fmt: skip
    all_notes = list(notes)
    if not history:
        all_notes.append("No per-second history: throughput saturation was not analysed.")
    if server_metrics_after is None:
        all_notes.append("No server /metrics: queue and compute time were not analysed.")
    return Analysis(summary, grades, tuple(findings), tuple(all_notes))
