"""Every exception pytest-perfgate raises, in one tree::

    PerfgateError
     ├── ConfigError (ValueError)        a bad value in thresholds.yaml, a marker, an option
     │    └── BaselineError               a baseline that is missing or unreadable
     ├── ServiceError (RuntimeError)     the service under test did not start or answer
     ├── LoadRunError (RuntimeError)     the load generator could not run or crashed
     │    └── FatalError                  (in the child) the run cannot start at all
     ├── GateError (RuntimeError)        a run that could not be judged
     ├── SampleError (ValueError)        a response time that is NaN, infinite or negative
     ├── StreamError                     (in the child) a streamed response cut or malformed
     ├── CliError                        a ``perfgate`` command-line mistake
     ├── BudgetExceeded (AssertionError) a verdict fails a test
     │    ├── ScenarioFailed              a load scenario's verdict
     │    └── BenchmarkBudgetExceeded     a ``perf_budget`` on a pytest-benchmark test
     └── MachineBusy (AssertionError)    a verdict the machine's noise explains (INVALID)

Pure: imports nothing of the package at run time, so every layer (the child process
included) can raise these. The pytest surface turns ``ConfigError`` into
``pytest.UsageError``; the CLI prints any ``PerfgateError`` as one line and exits 2;
``BudgetExceeded`` is what ``--perfgate-breach-exit-code`` counts as a breach; a
``MachineBusy`` fails its test too, but blames the machine, not the service, so it is no
breach.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_perfgate.load.driver import RawRun
    from pytest_perfgate.results.result import ScenarioResult

__all__ = [
    "BaselineError",
    "BenchmarkBudgetExceeded",
    "BudgetExceeded",
    "CliError",
    "ConfigError",
    "FatalError",
    "GateError",
    "LoadRunError",
    "MachineBusy",
    "PerfgateError",
    "SampleError",
    "ScenarioFailed",
    "ServiceError",
    "StreamError",
]


class PerfgateError(Exception):
    """The base of every error pytest-perfgate raises."""


class ConfigError(PerfgateError, ValueError):
    """A bad value in thresholds.yaml, a marker or an option; the message says where."""

    def __init__(self, where: str, message: str) -> None:
        self.where = where
        super().__init__(f"{where}: {message}")


class BaselineError(ConfigError):
    """A baseline that is missing or unreadable; the message names it, its path and what exists."""


class ServiceError(PerfgateError, RuntimeError):
    """The service under test could not be started or never became ready; says why."""


class LoadRunError(PerfgateError, RuntimeError):
    """The load generator could not run or crashed; the message says why and shows its log.

    ``partial`` holds what was measured before the failure (``None`` when nothing was),
    ``log`` the path of the run log.
    """

    def __init__(
        self, message: str, *, partial: RawRun | None = None, log: Path | None = None
    ) -> None:
        super().__init__(message)
        self.partial = partial
        self.log = log


class FatalError(LoadRunError):
    """In the child process: the run cannot start; the message is sent to the parent as it is."""


class GateError(PerfgateError, RuntimeError):
    """A run that could not be judged (the load generator failed); results so far are on disk."""


class SampleError(PerfgateError, ValueError):
    """A response time that is NaN, infinite or negative; ``where`` names its source."""

    def __init__(self, where: str, value: float) -> None:
        self.where = where
        self.value = value
        super().__init__(
            f"{where}: response time {value!r} ms is not a finite, non-negative number "
            "(a clock or a load generator is broken)"
        )


class StreamError(PerfgateError):
    """A streamed response that broke off or was malformed: a failed request, not a crash.

    The child fails the request with it, so its text is the failure's class in the reports
    (``StreamError: stream ended without [DONE] after 12 content chunks``).
    """


class CliError(PerfgateError):
    """A ``perfgate`` command-line mistake; ``main`` prints it as one line and exits 2."""


class BudgetExceeded(PerfgateError, AssertionError):
    """A verdict fails the test; the message is the verdict's failure text."""


class ScenarioFailed(BudgetExceeded):
    """A load scenario's verdict fails the test."""

    def __init__(self, result: ScenarioResult) -> None:
        self.result = result
        super().__init__(result.verdict.failure_text())


class MachineBusy(PerfgateError, AssertionError):
    """A verdict INVALID because the machine's noise explains a breach: the test fails,
    but the service is not blamed (``--perfgate-breach-exit-code`` does not count it)."""

    def __init__(self, text: str, result: ScenarioResult | None = None) -> None:
        self.result = result
        super().__init__(text)


class BenchmarkBudgetExceeded(BudgetExceeded):
    """A ``perf_budget`` on a pytest-benchmark test was exceeded."""
