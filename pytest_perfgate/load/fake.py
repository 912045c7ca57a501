"""``FakeDriver``: a ``LoadDriver`` that replays given samples in milliseconds, for tests.

No process, no network, no sleeping: the run is simulated a second at a time, and at each
simulated second ``on_progress`` and ``should_stop`` are called as ``LocustDriver`` calls
them (progress first, then the stop rule with every sample started so far). A stop reason
ends the run there, keeping only the samples started before it. The driver writes one file,
``{prefix}.log``, so a run's files exist as a real run's do.

What the gate's rules depend on can be given: samples, history rows, problems, the
duration, the load generator's CPU, and a failure, raised as ``LoadRunError`` with the
samples so far as its ``partial`` (as a load generator that crashes mid-run does).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_perfgate.core.model import Scenario
from pytest_perfgate.core.stats import Sample, percentile
from pytest_perfgate.errors import LoadRunError
from pytest_perfgate.load.driver import Progress, ProgressCallback, RawRun, StopRule, history_rows

__all__ = ["FakeDriver", "FakeRun"]


@dataclass(frozen=True)
class FakeRun:
    """One call of ``FakeDriver.run``, as the gate made it."""

    scenario: Scenario
    host: str
    results_dir: Path
    prefix: str
    cwd: Path | None
    asked: tuple[float, ...]  # the elapsed seconds ``should_stop`` was asked at


class FakeDriver:
    """Replays ``samples`` (``t`` in seconds since the load started) as one run's load.

    ``duration_s`` defaults to the scenario's; ``history`` to rows computed from the
    samples; ``failure`` (a message) makes the run raise ``LoadRunError`` at its end.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        *,
        duration_s: float | None = None,
        history: Sequence[Mapping[str, Any]] | None = None,
        problems: Sequence[str] = (),
        loadgen_cpu_percent: float | None = None,
        failure: str | None = None,
    ) -> None:
        self.samples = tuple(sorted(samples, key=lambda s: s.t))
        self.duration_s = duration_s
        self.history = None if history is None else tuple(history)
        self.problems = tuple(problems)
        self.loadgen_cpu_percent = loadgen_cpu_percent
        self.failure = failure
        self.runs: list[FakeRun] = []

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
        duration = scenario.duration_s if self.duration_s is None else self.duration_s
        asked: list[float] = []
        seen, elapsed, reason = self._replay(duration, scenario, on_progress, should_stop, asked)
        self.runs.append(FakeRun(scenario, host, results_dir, prefix, cwd, tuple(asked)))
        log = _write_log(results_dir, prefix, len(seen))
        raw = RawRun(
            scenario=scenario,
            samples=seen,
            duration_s=elapsed,
            stop_reason="duration" if reason is None else f"stopped: {reason}",
            files={"log": log},
            history=history_rows(seen, {}, elapsed) if self.history is None else self.history,
            loadgen_cpu_percent=self.loadgen_cpu_percent,
            problems=self.problems,
        )
        if self.failure is not None:
            message = f"{scenario.name}: {self.failure}"
            raise LoadRunError(message, partial=raw if raw.samples else None, log=log)
        return raw

    def _replay(
        self,
        duration_s: float,
        scenario: Scenario,
        on_progress: ProgressCallback | None,
        should_stop: StopRule | None,
        asked: list[float],
    ) -> tuple[tuple[Sample, ...], float, str | None]:
        """(samples started before the end, seconds of load, the stop reason or None)."""
        for second in range(1, math.ceil(duration_s)):
            seen = tuple(s for s in self.samples if s.t < second)
            if on_progress is not None:
                on_progress(_progress(seen, second, scenario))
            if should_stop is not None:
                asked.append(float(second))
                reason = should_stop(seen, float(second))
                if reason:
                    return seen, float(second), reason
        return self.samples, duration_s, None


def _progress(seen: Sequence[Sample], elapsed_s: float, scenario: Scenario) -> Progress:
    measured = sorted(s.ms for s in seen if s.t >= scenario.warmup_s)
    last_second = sum(1 for s in seen if elapsed_s - 1 <= s.t < elapsed_s)
    return Progress(
        elapsed_s=elapsed_s,
        users=scenario.users,
        requests=len(seen),
        failures=sum(1 for s in seen if not s.ok),
        rps=float(last_second),
        p95_ms=percentile(measured, 0.95) if measured else None,
    )


def _write_log(results_dir: Path, prefix: str, requests: int) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    log = results_dir / f"{prefix}.log"
    log.write_text(f"FakeDriver: replayed {requests} requests\n", encoding="utf-8")
    return log
