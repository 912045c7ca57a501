"""Collection: the thresholds file as a collector of scenario items, and marker budgets.

``pytest_collect_file`` turns the session's thresholds file into a ``ThresholdsFile``
whose items are its scenarios, each carrying its ``load_<name>`` marker. Load runs only
when asked (as ``pytest --help`` says under ``--perfgate-collect``): the scenarios are
always collected, so ``-m load_light`` finds them through ``testpaths``, and
``deselect_unasked`` deselects them unless the ``-m`` expression names a ``load_``
marker or an argument names the thresholds file (or one of its scenarios): a bare
``pytest`` starts no load. The ``perf_budget`` marker is validated against the
registry's budget schema (the one behind YAML budgets and ``result.check``) when the
items are collected, before anything runs; a bad keyword is a ``pytest.UsageError``
naming the test.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_perfgate.core.metrics import BUDGET_HELP
from pytest_perfgate.errors import GateError, MachineBusy, ScenarioFailed, ServiceError
from pytest_perfgate.plugin.session import SESSION_KEY, usage_errors

if TYPE_CHECKING:
    from pytest_perfgate.core.model import Budget
    from pytest_perfgate.results.result import ScenarioResult

__all__ = [
    "PERF_BUDGET_SIGNATURE",
    "ScenarioItem",
    "ThresholdsFile",
    "asked_for_load",
    "collect_file",
    "deselect_unasked",
    "marker_budget",
    "record",
    "unasked_line",
]

#: an identifier of a ``load_<scenario>`` marker in a ``-m`` expression
_LOAD_MARKER = re.compile(r"(?<![\w.])load_\w")
#: how many scenarios this session deselected: load not asked for
DESELECTED_KEY = pytest.StashKey[int]()

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


def _names_thresholds(arg: str, config: pytest.Config, thresholds: Path) -> bool:
    """Whether the argument ``arg`` is the thresholds file or one of its node ids."""
    path = Path(arg.split("::", 1)[0])
    path = path if path.is_absolute() else config.invocation_params.dir / path
    return path.resolve() == thresholds


def asked_for_load(config: pytest.Config, thresholds: Path) -> bool:
    """Load is asked for: ``-m`` names a ``load_`` marker, or an argument names ``thresholds``."""
    if _LOAD_MARKER.search(str(config.option.markexpr or "")):
        return True
    if config.args_source is not pytest.Config.ArgsSource.ARGS:
        return False  # testpaths or the current directory: not asked by name
    return any(_names_thresholds(arg, config, thresholds) for arg in config.args)


def deselect_unasked(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the scenario items unless this session asked for load."""
    scenarios = [item for item in items if isinstance(item, ScenarioItem)]
    if not scenarios or asked_for_load(config, scenarios[0].path.resolve()):
        return
    items[:] = [item for item in items if not isinstance(item, ScenarioItem)]
    config.hook.pytest_deselected(items=scenarios)
    config.stash[DESELECTED_KEY] = len(scenarios)


def unasked_line(config: pytest.Config) -> str | None:
    """The summary line of the scenarios ``deselect_unasked`` left out; None if none."""
    count = config.stash.get(DESELECTED_KEY, 0)
    if not count:
        return None
    name = config.stash[SESSION_KEY].require_thresholds().path.name
    return (
        f"perfgate: {count} load scenario(s) of {name} deselected (load runs only when "
        f"asked): run them with pytest -m load_<scenario> or pytest {name}[::<scenario>]"
    )


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
        fail_unless_passed(result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, ScenarioFailed | MachineBusy | GateError | ServiceError):
            return str(excinfo.value)  # the breach lines, or what went wrong: the whole story
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        thresholds = self.config.stash[SESSION_KEY].require_thresholds()
        line = thresholds.scenario(self.name).source_lines.get("", 1)
        return self.path, max(line - 1, 0), f"load scenario {self.name}"


def fail_unless_passed(result: ScenarioResult) -> None:
    """Fail the test on a verdict that did not pass: ``ScenarioFailed`` (a breach), or
    ``MachineBusy`` when the machine's noise explains it (no breach: the service is not
    blamed, and ``--perfgate-breach-exit-code`` does not count it)."""
    if result.called_noisy:
        raise MachineBusy(result.verdict.failure_text(), result)
    if not result.verdict.passed:
        raise ScenarioFailed(result)


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
