"""What a person reads in a terminal: the end-of-session table, the live progress line,
why a run ended, and the endpoint table that ``perfgate analyze`` prints too.

Pure formatting over frozen values (lines of at most 120 columns); no pytest, no I/O.
Labels, units and numbers come from the registry through ``results.cells``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pytest_perfgate.core.numbers import format_count
from pytest_perfgate.core.stats import EndpointStats, RunStats
from pytest_perfgate.core.verdict import Check, Outcome
from pytest_perfgate.load.driver import Progress
from pytest_perfgate.results import duet
from pytest_perfgate.results.cells import (
    ERRORS,
    P50,
    P95,
    P99,
    RPS,
    budget_cell,
    ci_heading,
    clock,
    observed_cell,
    rows,
    unitless_interval,
)
from pytest_perfgate.results.result import ScenarioResult
from pytest_perfgate.results.streams import stream_lines

__all__ = [
    "attempt_text",
    "endpoint_table",
    "noise_lines",
    "progress_line",
    "stop_text",
    "terminal_table",
]

_NAME_W = 30


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


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "~"


def _header(level: float) -> str:
    ci = f"({ci_heading(level)})"
    return (
        f"{'endpoint':<{_NAME_W}} {'requests':>9} {'fails':>7} {'req/s':>7} {'p50 ms':>8} "
        f"{'p95 ms':>8} {ci:<17} {'p99 ms':>8}  grade"
    )


def _table_row(e: EndpointStats, grade: str) -> str:
    ci = unitless_interval(P95, e.ci.get("p95"))
    return (
        f"{_shorten(e.name, _NAME_W):<{_NAME_W}} {format_count(e.requests):>9} "
        f"{format_count(e.failures):>7} {RPS.bare(e.rps):>7} {P50.bare(e.p50):>8} "
        f"{P95.bare(e.p95):>8} {('(' + ci + ')') if ci else '':<17} {P99.bare(e.p99):>8}  {grade}"
    )


def endpoint_table(stats: RunStats, grades: Mapping[str, str]) -> list[str]:
    """The header and one aligned row per endpoint, then the total (no indent)."""
    header = _header(stats.total.ci_level)
    return [header, *(_table_row(e, grades.get(e.name, "-")) for e in rows(stats))]


def _budget_line(c: Check) -> str:
    warn = " (warn only)" if c.severity == "warn" and c.outcome is Outcome.FAIL else ""
    return (
        f"  budget {_shorten(c.endpoint, _NAME_W):<{_NAME_W}} {budget_cell(c):<22} "
        f"observed {observed_cell(c):<12} {c.outcome.value}{warn}"
    )


def attempt_text(r: ScenarioResult) -> str:
    """`` (attempt 2/3)`` for a run retried as noisy (``--perfgate-retry-noisy``), or one
    to be retried; "" for the one attempt of a run that was not noisy."""
    n, total = r.attempt
    return f" (attempt {n}/{total})" if n > 1 or (total > 1 and r.called_noisy) else ""


def noise_lines(r: ScenarioResult) -> list[str]:
    """The machine during the run: its figures, then a warning where the machine was noisy
    and the verdict does not already say so (a PASS), then caveats; [] if not sampled."""
    if r.noise is None:
        return []
    lines = [f"machine: {r.noise.summary()}"]
    if r.noise.noisy and not r.called_noisy:
        lines.append(f"warning: the machine was noisy: {r.noise.sentence()}")
    return lines + [f"note: {note}" for note in r.noise.notes]


def _headline(r: ScenarioResult) -> str:
    s = r.scenario
    return (
        f"{s.name}{attempt_text(r)}: {r.verdict.outcome.value}, grade {r.analysis.summary.grade} - "
        f"{s.users} users, measured {clock(r.stats.duration_s)}, "
        f"{format_count(r.stats.total.requests)} requests, "
        f"ended by {stop_text(r.raw.stop_reason)}"
    )


def _block(r: ScenarioResult) -> list[str]:
    lines = [_headline(r)]
    lines += ["  " + line for line in endpoint_table(r.stats, r.analysis.grades)]
    lines += ["  " + line for line in stream_lines(r.stats)]  # none without streams
    lines += [_budget_line(c) for c in r.verdict.checks]
    lines += ["  " + line for line in duet.terminal_lines(r)]  # none unless an A/B run
    lines += [f"  - {reason}" for reason in r.verdict.reasons]
    lines += [f"  {line}" for line in noise_lines(r)]
    for f in [f for f in r.analysis.findings if f.severity != "info"][:3]:
        lines.append(f"  finding ({f.severity}): {_shorten(f.title, 96)}")
    return lines


def terminal_table(results: Sequence[ScenarioResult]) -> list[str]:
    """Lines for the end of the pytest session: one block per scenario, <= 120 columns."""
    return [line for r in results for line in _block(r)]


def progress_line(progress: Progress, duration_s: float | None = None, scenario: str = "") -> str:
    """The live line, e.g. ``light 1:05/5:00 (3:55 left)  10 users  12.3 req/s  p95 48.2 ms
    612 requests, 0 failures (0.00 %)``."""
    when = clock(progress.elapsed_s)
    if duration_s:
        left = max(0.0, duration_s - progress.elapsed_s)
        when += f"/{clock(duration_s)} ({clock(left)} left)"
    share = progress.failures / progress.requests if progress.requests else 0.0
    head = f"{scenario} " if scenario else ""
    return (
        f"{head}{when}  {progress.users} users  {RPS.format(progress.rps)}  "
        f"p95 {P95.format(progress.p95_ms)}  {format_count(progress.requests)} requests, "
        f"{format_count(progress.failures)} failures ({ERRORS.format(share)})"
    )
