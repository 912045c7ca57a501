"""pytest-perfgate: load tests as pytest CI gates for ML inference APIs.

The public surface is ``__all__`` (pinned by tests/unit/test_exported_members.py): the
values a thresholds file becomes, the figures and verdicts of a run, and the errors a
test may catch. ``__version__`` is the one version source (pyproject.toml reads it).

Each public name is imported on first use (PEP 562 ``__getattr__``): pytest imports this
package for the plugin in every session of every project in the environment, and most of
them never touch a statistic. Importing it imports no yaml, httpx, locust, torch or fastapi.
"""

from __future__ import annotations

import importlib
import typing

if typing.TYPE_CHECKING:
    from pytest_perfgate.core.model import Budget, Scenario
    from pytest_perfgate.core.stats import EndpointStats, RunStats, Sample
    from pytest_perfgate.core.verdict import Check, Outcome, Verdict
    from pytest_perfgate.errors import (
        BudgetExceeded,
        ConfigError,
        MachineBusy,
        PerfgateError,
        ScenarioFailed,
    )

__all__ = [
    "Budget",
    "BudgetExceeded",
    "Check",
    "ConfigError",
    "EndpointStats",
    "MachineBusy",
    "Outcome",
    "PerfgateError",
    "RunStats",
    "Sample",
    "Scenario",
    "ScenarioFailed",
    "Verdict",
]
__version__ = "0.1.0"

#: the module that defines each public name
_SOURCES = {
    "Budget": "pytest_perfgate.core.model",
    "BudgetExceeded": "pytest_perfgate.errors",
    "Check": "pytest_perfgate.core.verdict",
    "ConfigError": "pytest_perfgate.errors",
    "EndpointStats": "pytest_perfgate.core.stats",
    "MachineBusy": "pytest_perfgate.errors",
    "Outcome": "pytest_perfgate.core.verdict",
    "PerfgateError": "pytest_perfgate.errors",
    "RunStats": "pytest_perfgate.core.stats",
    "Sample": "pytest_perfgate.core.stats",
    "Scenario": "pytest_perfgate.core.model",
    "ScenarioFailed": "pytest_perfgate.errors",
    "Verdict": "pytest_perfgate.core.verdict",
}


def __getattr__(name: str) -> typing.Any:
    if name not in _SOURCES:
        raise AttributeError(f"module 'pytest_perfgate' has no attribute {name!r}")
    value = getattr(importlib.import_module(_SOURCES[name]), name)
    globals()[name] = value  # the next lookup finds it without this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
