"""pytest-perfgate: load tests as pytest CI gates for ML inference APIs.

Importing this package imports no locust, torch or fastapi.
"""

from __future__ import annotations

from pytest_perfgate.config import Budget, ConfigError, Scenario
from pytest_perfgate.core.stats import EndpointStats, RunStats, Sample
from pytest_perfgate.core.verdict import Check, Outcome, Verdict

__all__ = [
    "Budget",
    "Check",
    "ConfigError",
    "EndpointStats",
    "Outcome",
    "RunStats",
    "Sample",
    "Scenario",
    "Verdict",
]
__version__ = "0.1.0"
