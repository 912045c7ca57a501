"""Was the machine busy during a run? Machine samples in, a ``NoiseFinding`` out.

``target.machine`` samples the machine during every load run (``MachineSample``: CPU
used by processes outside the run, steal time, the load generator's busiest process,
memory pressure); ``assess`` turns the samples into a finding that says whether outside
load, steal, a saturated load generator or memory pressure can explain a slow run, and
says it in one sentence each (``the machine was busy: other processes used 1.4 of 2 cores
for 63 % of the run``). ``blame_noise`` turns the verdict of a noisy run that would fail
(FAIL, or a failing INCONCLUSIVE) into INVALID, with that sentence as its reason, unless
the requests made while the machine was quiet (``quiet_requests``) breach the budgets
by themselves (``quiet_breaches``): then the service is slow whatever the noise, and the
FAIL stands.

Pure: no I/O, no clock, no processes; the thresholds are ``NoiseLimits`` (settings).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from pytest_perfgate.core.metrics import Metric
from pytest_perfgate.core.numbers import format_number, format_percent
from pytest_perfgate.core.stats import Sample
from pytest_perfgate.core.verdict import Check, Outcome, Verdict, entry

__all__ = [
    "MachineSample",
    "NoiseFinding",
    "NoiseLimits",
    "assess",
    "blame_noise",
    "blamed_noise",
    "quiet_breaches",
    "quiet_requests",
]


@dataclass(frozen=True)
class MachineSample:
    """The machine over one sampling interval (about half a second), in cores of CPU time."""

    t: float  # seconds since sampling started, at the end of the interval
    interval_s: float
    busy_cores: float  # CPU time of the whole machine over the interval, in cores
    known_cores: float  # of the processes the gate knows: pytest, the load generator, service
    steal: float = 0.0  # share of the machine's CPU time the hypervisor took (0-1)
    loadgen_peak: float | None = None  # the load generator's busiest process, in cores
    memory_stall: float | None = None  # share of the interval tasks stalled on memory (PSI)
    memory_available: float | None = None  # MemAvailable / MemTotal, where PSI is absent

    @property
    def outside_cores(self) -> float:
        """CPU used by processes outside the run, in cores (never below zero)."""
        return max(0.0, self.busy_cores - self.known_cores)


@dataclass(frozen=True)
class NoiseLimits:
    """When a run counts as noisy; defaults measured on a 2-core CI machine (README)."""

    cores: float = 0.5  # outside CPU above this many cores makes a sample busy
    #: ... and busy samples over this share of the run make it noisy: the slowest 5 % of
    #: the requests decide a p95, so outside load for 5 % of a run can breach its budget
    share: float = 0.05
    steal: float = 0.10  # mean steal above this share of the CPU time
    loadgen: float = 0.90  # the load generator's busiest process above this many cores
    #: ... for over this share of the run (its start-up, importing Locust, takes a second)
    loadgen_share: float = 0.25
    memory_stall: float = 0.10  # tasks stalled on memory above this share of a sample
    memory_available: float = 0.05  # less memory available than this share of the total
    min_samples: int = 3  # fewer samples (a run of a second or so) call nothing noisy


@dataclass(frozen=True)
class NoiseFinding:
    """What the samples of one run say about the machine; ``reasons`` empty: quiet."""

    samples: int
    cores: int
    busy_share: float  # share of the samples with outside CPU above ``limits.cores``
    outside_mean: float  # mean outside CPU over the run, in cores
    outside_busy_mean: float  # mean outside CPU over the busy samples, in cores
    outside_peak: float
    steal: float  # mean share of CPU time stolen
    loadgen_peak: float | None  # the load generator's busiest process, at most, in cores
    loadgen_saturated_share: float  # share of the samples with it above ``limits.loadgen``
    memory_share: float  # share of the samples under memory pressure
    reasons: tuple[str, ...]  # one sentence per cause, e.g. "the machine was busy: ..."
    limits: NoiseLimits = NoiseLimits()
    service_known: bool = True  # False: the service's CPU is not separated (external)
    notes: tuple[str, ...] = ()  # caveats that do not make the run noisy

    @property
    def noisy(self) -> bool:
        """Whether outside load can explain a slow run (and the service cannot be blamed)."""
        return bool(self.reasons)

    def sentence(self) -> str:
        """All reasons in one sentence; "" when the machine was quiet."""
        return "; ".join(self.reasons)

    def summary(self) -> str:
        """The figures in one short line, noisy or not: ``outside CPU 0.1 of 2 cores ...``."""
        parts = [
            f"outside CPU {format_number(self.outside_mean)} of {self.cores} cores on average "
            f"(over {self.limits.cores:g} in {format_percent(self.busy_share, 0)} "
            f"% of the run)",
        ]
        if self.steal > 0:
            parts.append(f"steal {format_percent(self.steal, 1)} %")
        if self.loadgen_peak is not None:
            parts.append(f"load generator up to {format_percent(self.loadgen_peak, 0)} % of a core")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "noisy": self.noisy,
            "samples": self.samples,
            "cores": self.cores,
            "busy_share": self.busy_share,
            "outside_cores_mean": self.outside_mean,
            "outside_cores_busy_mean": self.outside_busy_mean,
            "outside_cores_peak": self.outside_peak,
            "steal": self.steal,
            "loadgen_peak_cores": self.loadgen_peak,
            "loadgen_saturated_share": self.loadgen_saturated_share,
            "memory_pressure_share": self.memory_share,
            "service_known": self.service_known,
            "limits": vars(self.limits).copy(),
            "reasons": list(self.reasons),
            "notes": list(self.notes),
        }


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _weights(samples: Sequence[MachineSample]) -> list[float]:
    """Each sample's share of the sampled time (samples may differ in length)."""
    total = sum(s.interval_s for s in samples)
    return [s.interval_s / total if total > 0 else 1 / len(samples) for s in samples]


def _share(samples: Sequence[MachineSample], weights: Sequence[float], hit: Any) -> float:
    return sum(w for s, w in zip(samples, weights, strict=True) if hit(s))


def _memory_pressed(s: MachineSample, limits: NoiseLimits) -> bool:
    if s.memory_stall is not None:
        return s.memory_stall > limits.memory_stall
    return s.memory_available is not None and s.memory_available < limits.memory_available


def _busy_sentence(outside: float, cores: int, share: float) -> str:
    return (
        f"the machine was busy: other processes used {format_number(outside)} of {cores} "
        f"cores for {format_percent(share, 0)} % of the run"
    )


def assess(
    samples: Sequence[MachineSample],
    cores: int,
    limits: NoiseLimits = NoiseLimits(),
    *,
    service_known: bool = True,
) -> NoiseFinding | None:
    """The finding of one run's samples; None without samples (nothing was measured).

    Noisy when outside CPU stayed above ``limits.cores`` for over ``limits.share`` of the
    run, when steal averaged over ``limits.steal``, when the load generator's busiest
    process sat above ``limits.loadgen`` of a core for over ``limits.loadgen_share``,
    or when memory pressure did. Where the service's CPU is not known (``service_known``
    False: an external service on this machine would count as outside), outside CPU is
    reported as a note and never makes the run noisy.
    """
    if not samples:
        return None
    weights = _weights(samples)
    busy = [s for s in samples if s.outside_cores > limits.cores]
    busy_share = _share(samples, weights, lambda s: s.outside_cores > limits.cores)
    outside_busy = _mean([s.outside_cores for s in busy])
    steal = sum(s.steal * w for s, w in zip(samples, weights, strict=True))
    peaks = [s.loadgen_peak for s in samples if s.loadgen_peak is not None]
    saturated = _share(samples, weights, lambda s: (s.loadgen_peak or 0.0) > limits.loadgen)
    memory = _share(samples, weights, lambda s: _memory_pressed(s, limits))
    reasons: list[str] = []
    notes: list[str] = []
    if busy_share > limits.share:
        sentence = _busy_sentence(outside_busy, cores, busy_share)
        if service_known:
            reasons.append(sentence)
        else:
            notes.append(f"{sentence} (the service's own CPU is not known: it counts as outside)")
    if steal > limits.steal:
        reasons.append(f"the hypervisor took {format_percent(steal, 0)} % of the CPU time (steal)")
    if saturated > limits.loadgen_share:
        reasons.append(
            f"the load generator was saturated: its busiest process used over "
            f"{format_percent(limits.loadgen, 0)} % of a core for {format_percent(saturated, 0)} "
            "% of the run, so requests left late"
        )
    if memory > limits.share:
        reasons.append(f"memory was under pressure for {format_percent(memory, 0)} % of the run")
    if len(samples) < limits.min_samples:
        notes += [f"{reason} (only {len(samples)} samples: too few to call the run noisy)"
                  for reason in reasons]  # fmt: skip
        reasons = []
    return NoiseFinding(
        samples=len(samples),
        cores=cores,
        busy_share=busy_share,
        outside_mean=sum(s.outside_cores * w for s, w in zip(samples, weights, strict=True)),
        outside_busy_mean=outside_busy,
        outside_peak=max(s.outside_cores for s in samples),
        steal=steal,
        loadgen_peak=max(peaks) if peaks else None,
        loadgen_saturated_share=saturated,
        memory_share=memory,
        reasons=tuple(reasons),
        service_known=service_known,
        notes=tuple(notes),
        limits=limits,
    )


#: how a noisy run's verdict ends: the service is neither blamed nor cleared
NOISE_VERDICT = "that can explain the result, so it does not judge the service"


def _noisy_check(check: Check) -> Check:
    """A blocking check that failed or is undecided: INVALID, measured on a busy machine."""
    if not check.blocking or check.outcome not in (Outcome.FAIL, Outcome.INCONCLUSIVE):
        return check
    found = entry(check.metric)
    observed = (
        f"{found.format(check.observed)} "
        if isinstance(found, Metric) and check.observed is not None
        else ""
    )
    return replace(check, outcome=Outcome.INVALID, reason=f"{observed}measured on a noisy machine")


def blame_noise(
    judged: Verdict, noise: NoiseFinding | None, quiet: Sequence[Check] = ()
) -> Verdict:
    """INVALID instead of FAIL (or an INCONCLUSIVE that fails the test) when the machine
    was noisy: the verdict then says that the machine was busy instead of blaming the
    service. ``quiet``: the breaches of the requests made while the machine was quiet
    (``quiet_breaches``); with any, a FAIL stands. A PASS stays a PASS (the report warns
    of the noise); a run INVALID already keeps its own reasons."""
    if noise is None or not noise.noisy or not judged.failed:
        return judged
    if quiet and judged.outcome is Outcome.FAIL:
        return judged
    if judged.outcome not in (Outcome.FAIL, Outcome.INCONCLUSIVE):
        return judged
    return replace(
        judged,
        outcome=Outcome.INVALID,
        checks=tuple(_noisy_check(c) for c in judged.checks),
        reasons=(f"{noise.sentence()}: {NOISE_VERDICT}",),
    )


def blamed_noise(judged: Verdict, noise: NoiseFinding | None) -> bool:
    """Whether ``judged`` is INVALID because ``blame_noise`` found the machine busy."""
    return (
        noise is not None
        and noise.noisy
        and judged.outcome is Outcome.INVALID
        and any(r.startswith(noise.sentence()) for r in judged.reasons)
    )


#: seconds around a busy sample whose requests count as busy too (queues drain late)
QUIET_MARGIN_S = 1.0


def _busy_windows(
    machine: Sequence[MachineSample], limits: NoiseLimits, offset_s: float
) -> list[tuple[float, float]]:
    """The busy samples as windows of load time, widened by ``QUIET_MARGIN_S``, merged."""
    windows: list[tuple[float, float]] = []
    for s in sorted(machine, key=lambda s: s.t):
        if s.outside_cores <= limits.cores:
            continue
        low = s.t - s.interval_s - offset_s - QUIET_MARGIN_S
        high = s.t - offset_s + QUIET_MARGIN_S
        if windows and low <= windows[-1][1]:
            windows[-1] = (windows[-1][0], max(windows[-1][1], high))
        else:
            windows.append((low, high))
    return windows


def quiet_requests(
    requests: Sequence[Sample],
    machine: Sequence[MachineSample],
    limits: NoiseLimits,
    offset_s: float,
) -> list[Sample]:
    """The requests that neither started nor ended while the machine was busy.

    ``offset_s``: the sampler's clock at the load's start (sample ``t`` minus ``offset_s``
    is load time, the clock of ``Sample.t``).
    """
    windows = _busy_windows(machine, limits, offset_s)
    starts = [low for low, _ in windows]
    quiet = []
    for r in requests:
        end = r.t + max(r.ms, 0.0) / 1000
        i = bisect.bisect_left(starts, end) - 1  # the last window starting before the end
        if i < 0 or windows[i][1] <= r.t:
            quiet.append(r)
    return quiet


#: metrics judged on the requests themselves: what the quiet requests alone can breach
_PER_REQUEST = ("quantile", "mean", "proportion")


def quiet_breaches(quiet: Verdict) -> tuple[Check, ...]:
    """The blocking per-request checks (latency, error rate) that the requests made while
    the machine was quiet breach by themselves; throughput and run figures do not count."""
    found = []
    for check in quiet.breaches:
        judged = entry(check.metric)
        if isinstance(judged, Metric) and judged.scope != "run" and judged.judge in _PER_REQUEST:
            found.append(check)
    return tuple(found)


def quiet_note(breaches: Sequence[Check], quiet_n: int) -> str:
    """Why a noisy run's FAIL stands: ``... the 1 204 requests made while it was quiet ...``."""
    return (
        f"the machine was noisy, but the {format_number(quiet_n, 0)} requests made while it "
        f"was quiet breach the budget by themselves ({breaches[0].message()}): the FAIL is "
        "the service's"
    )
