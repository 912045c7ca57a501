"""The seam between the gate and whatever makes the load: the ``LoadDriver`` protocol.

The gate calls ``driver.run(...)`` once per scenario and gets a ``RawRun`` back, or a
``LoadRunError`` (whose ``partial`` holds what was measured before the failure).
Implementations: ``load.locust_driver.LocustDriver`` (a Locust child process) and
``load.fake.FakeDriver`` (replays given samples in milliseconds, for tests).

The value types every driver returns and the one helper they share (``history_rows``);
no locust, no httpx, no processes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pytest_perfgate.core.model import Scenario
from pytest_perfgate.core.stats import Sample, percentile

__all__ = ["LoadDriver", "Progress", "ProgressCallback", "RawRun", "StopRule", "history_rows"]


@dataclass(frozen=True)
class Progress:
    """The live figures, handed to ``on_progress`` about once a second."""

    elapsed_s: float
    users: int
    requests: int
    failures: int
    rps: float  # over the last few seconds
    p95_ms: float | None  # over the samples so far (after warm-up)


@dataclass(frozen=True)
class RawRun:
    """What the load generator saw, before any statistics."""

    scenario: Scenario
    samples: tuple[Sample, ...]  # every request, warm-up included; t relative to load start
    duration_s: float  # seconds of load actually generated
    stop_reason: str  # "duration", "stopped: <why>", "interrupted", ...
    files: Mapping[str, Path]  # "stats_csv", "stats_history_csv", "failures_csv", "log"
    history: tuple[Mapping[str, Any], ...] = ()  # one row a second: t, users, rps, fails, p50, p95
    loadgen_cpu_percent: float | None = None  # mean CPU of the load generator process(es)
    problems: tuple[str, ...] = field(default=())  # things that make the run untrustworthy
    late_requests: int = 0  # open model: sent more than an interval after their due time
    dropped_requests: int = 0  # open model: never sent, no free user within the timeout
    requests_per_worker: Mapping[str, int] = field(default_factory=dict)  # distributed runs

    def __repr__(self) -> str:
        return f"RawRun({self.scenario.name!r}, {len(self.samples)} samples, {self.stop_reason!r})"


#: ``rule(samples so far, elapsed s)``: None to go on, or the reason to end the run now
StopRule = Callable[[Sequence[Sample], float], "str | None"]
ProgressCallback = Callable[[Progress], None]


class LoadDriver(Protocol):
    """Runs one scenario's load against a host; what the gate needs of a load generator."""

    def run(
        self,
        scenario: Scenario,
        host: str,
        results_dir: Path,
        prefix: str,
        *,
        on_progress: ProgressCallback | None = None,
        should_stop: StopRule | None = None,
        cwd: Path | None = None,
    ) -> RawRun:
        """Drive ``scenario`` against ``host``; files go to ``results_dir`` as ``{prefix}_*``.

        ``on_progress`` and ``should_stop(samples, elapsed_s)`` are called about once a
        second of load; a reason from ``should_stop`` ends the run, and ``stop_reason``
        becomes ``"stopped: <reason>"``. ``cwd`` is where relative locustfiles and
        ``json_factory`` modules resolve. Raises ``LoadRunError`` when the load generator
        fails, hangs or records no request.
        """
        ...


def history_rows(
    samples: Sequence[Sample], users_at: Mapping[int, int], duration_s: float
) -> tuple[dict[str, Any], ...]:
    """One row per second of load, from the samples that started in that second."""
    by_second: dict[int, list[Sample]] = defaultdict(list)
    for s in samples:
        by_second[int(s.t)].append(s)
    last = max([int(duration_s) - 1, *by_second], default=-1)
    rows = []
    users = 0
    for second in range(last + 1):
        users = users_at.get(second, users)
        group = by_second.get(second, [])
        ms = sorted(s.ms for s in group)
        rows.append({
            "t": second,
            "users": users,
            "rps": float(len(group)),
            "fails": float(sum(1 for s in group if not s.ok)),
            "p50": percentile(ms, 0.50) if ms else None,
            "p95": percentile(ms, 0.95) if ms else None,
        })  # fmt: skip
    return tuple(rows)
