"""The fixtures: ``perfgate`` (runs scenarios from a test) and ``perfgate_service``.

``perfgate.run(...)`` returns a ``RunResult``; a breach, of the scenario's budgets or of
``result.check(...)``, raises a ``BudgetExceeded`` (so ``--perfgate-breach-exit-code``
counts it); a mistake in the call's arguments is a ``pytest.UsageError``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from pytest_perfgate.core.parsing import parse_duration
from pytest_perfgate.errors import BudgetExceeded, MachineBusy, ServiceError
from pytest_perfgate.options import Settings
from pytest_perfgate.plugin.items import fail_unless_passed, marker_budget, record
from pytest_perfgate.plugin.session import SESSION_KEY, PerfgateSession, usage_errors

if TYPE_CHECKING:
    from pytest_perfgate.core.verdict import Verdict
    from pytest_perfgate.results.result import ScenarioResult

__all__ = ["PerfgateRunner", "RunResult", "perfgate", "perfgate_service"]


class PerfgateRunner:
    """The ``perfgate`` fixture: ``result = perfgate.run("light", users=5, duration="20s")``."""

    def __init__(self, session: PerfgateSession, item: pytest.Item) -> None:
        self._session = session
        self._item = item
        self.budget = marker_budget(item)

    def run(
        self,
        scenario: str,
        *,
        users: int | None = None,
        spawn_rate: float | None = None,
        duration: str | float | None = None,
        processes: int | None = None,
        check: bool = True,
    ) -> RunResult:
        """Run a scenario; with ``check`` (default) a breach of its budgets fails the test."""
        seconds = None
        if duration is not None:
            with usage_errors():
                seconds = parse_duration(duration, "perfgate.run(duration)")
        result = self._session.run(
            scenario, budget=self.budget, users=users, spawn_rate=spawn_rate,
            duration_s=seconds, processes=processes,
        )  # fmt: skip
        record(self._item, result)
        if check:
            fail_unless_passed(result)
        return RunResult(result, self._session.settings)


class RunResult:
    """What ``perfgate.run`` returns: the figures, the verdict, the files, and ``check``."""

    def __init__(self, result: ScenarioResult, settings: Settings) -> None:
        self.result = result
        self._settings = settings
        self.stats = result.stats
        self.total = result.stats.total
        self.endpoints = result.stats.endpoints
        self.verdict: Verdict = result.verdict

    def check(self, **budget: Any) -> Verdict:
        """Judge this run against ``budget`` (the keys of thresholds.yaml); a breach raises
        ``BudgetExceeded`` with the breach lines, one the machine's noise explains
        ``MachineBusy``."""
        # lazy: the budget schema and the statistics stay off pytest's start-up path
        from pytest_perfgate.core.model import budget_from_mapping
        from pytest_perfgate.core.noise import blame_noise, blamed_noise
        from pytest_perfgate.core.verdict import evaluate

        with usage_errors():
            parsed = budget_from_mapping(budget, "result.check()")
        if parsed.regressions:
            raise pytest.UsageError(
                f"result.check(): {', '.join(parsed.regressions)} need a baseline; give them in "
                "thresholds.yaml or @pytest.mark.perf_budget and run with --perfgate-baseline"
            )
        judged = evaluate(
            self.result.scenario.name,
            parsed,
            {},
            self.stats,
            min_samples=self.result.scenario.min_samples,
            inconclusive=self._settings.inconclusive,
        )
        if self._settings.noise_check:  # a noisy machine is blamed, not the service
            judged = blame_noise(judged, self.result.noise)
        if blamed_noise(judged, self.result.noise):
            raise MachineBusy(judged.failure_text(), self.result)
        if not judged.passed:
            raise BudgetExceeded(judged.failure_text())
        return judged

    def __repr__(self) -> str:
        return f"<RunResult {self.result.scenario.name} {self.verdict.outcome.value}>"


@pytest.fixture(scope="session")
def perfgate_service(request: pytest.FixtureRequest) -> str:
    """Base URL of the service under test, started once a session (or ``--perfgate-url``)."""
    session = request.config.stash[SESSION_KEY]
    try:
        return session.target().url
    except ServiceError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def perfgate(request: pytest.FixtureRequest) -> PerfgateRunner:
    """Runs scenarios of the thresholds file; ``perf_budget`` markers apply to every run."""
    return PerfgateRunner(request.config.stash[SESSION_KEY], request.node)
