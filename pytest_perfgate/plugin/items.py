"""Collection: the thresholds file as a collector of scenario items, and marker budgets.

``pytest_collect_file`` turns the session's thresholds file into a ``ThresholdsFile``
whose items are its scenarios, each carrying its ``load_<name>`` marker. The
``perf_budget`` marker is validated against the registry's budget schema (the one
behind YAML budgets and ``result.check``) when the items are collected, before anything
runs; a bad keyword is a ``pytest.UsageError`` naming the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_perfgate.core.metrics import BUDGET_HELP
from pytest_perfgate.errors import GateError, ScenarioFailed, ServiceError
from pytest_perfgate.plugin.session import SESSION_KEY, usage_errors

if TYPE_CHECKING:
    from pytest_perfgate.core.model import Budget
    from pytest_perfgate.results.result import ScenarioResult

__all__ = [
    "PERF_BUDGET_SIGNATURE",
    "ScenarioItem",
    "ThresholdsFile",
    "collect_file",
    "marker_budget",
    "record",
]

#: the ``perf_budget`` line of ``pytest --markers``: every budget key and its meaning
PERF_BUDGET_SIGNATURE = "perf_budget({}): budget for every perfgate run this test makes; {}".format(
    ", ".join(f"{k}=..." for k in BUDGET_HELP),
    "; ".join(f"{k}: {v}" for k, v in BUDGET_HELP.items()),
)


def collect_file(file_path: Path, parent: pytest.Collector) -> ThresholdsFile | None:
    """The session's thresholds file as a collector; ``None`` for any other file."""
    session = parent.config.stash[SESSION_KEY]
    if not session.settings.collect or session.thresholds is None:
        return None
    if file_path.resolve() != session.thresholds.path:
        return None
    return ThresholdsFile.from_parent(parent, path=file_path)


class ThresholdsFile(pytest.File):
    """The thresholds file: one item per scenario."""

    def collect(self) -> Iterator[pytest.Item]:
        thresholds = self.config.stash[SESSION_KEY].require_thresholds()
        for scenario in thresholds.scenarios.values():
            item = ScenarioItem.from_parent(self, name=scenario.name)
            item.add_marker(scenario.marker)
            yield item


class ScenarioItem(pytest.Item):
    """One scenario of the thresholds file, run as a test."""

    def runtest(self) -> None:
        session = self.config.stash[SESSION_KEY]
        result = session.run(self.name)
        record(self, result)
        if not result.verdict.passed:
            raise ScenarioFailed(result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, ScenarioFailed | GateError | ServiceError):
            return str(excinfo.value)  # the breach lines, or what went wrong: the whole story
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        thresholds = self.config.stash[SESSION_KEY].require_thresholds()
        line = thresholds.scenario(self.name).source_lines.get("", 1)
        return self.path, max(line - 1, 0), f"load scenario {self.name}"


def record(item: pytest.Item, result: ScenarioResult) -> None:
    """Figures and verdicts as JUnit XML properties of the test."""
    total = result.stats.total
    item.user_properties.extend(
        [
            (f"perfgate.{result.scenario.name}.verdict", result.verdict.outcome.value),
            (f"perfgate.{result.scenario.name}.requests", total.requests),
            (f"perfgate.{result.scenario.name}.p95_ms", round(total.p95, 3)),
            (f"perfgate.{result.scenario.name}.error_rate", round(total.error_rate, 6)),
        ]
    )


def marker_budget(item: pytest.Item) -> Budget | None:
    """The ``perf_budget`` marker of ``item``, validated against the budget schema."""
    marker = item.get_closest_marker("perf_budget")
    if marker is None:
        return None
    # lazy: the budget schema only where a test has the marker, off pytest's start-up path
    from pytest_perfgate.core.model import budget_from_mapping

    where = f"{item.nodeid}: @pytest.mark.perf_budget"
    if marker.args:
        raise pytest.UsageError(f"perfgate: {where}: takes keywords only, got {marker.args!r}")
    with usage_errors():
        return budget_from_mapping(marker.kwargs, where)
