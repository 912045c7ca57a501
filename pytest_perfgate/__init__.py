"""pytest-perfgate: load tests as pytest CI gates for ML inference APIs.

Importing this package imports no locust, torch or fastapi.
"""

from __future__ import annotations

from .config import Budget, ConfigError, Scenario
from .stats import EndpointStats, RunStats, Sample
from .verdict import Check, Outcome, Verdict

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
