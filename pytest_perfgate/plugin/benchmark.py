"""pytest-benchmark: a ``perf_budget`` on a test using its ``benchmark`` fixture.

Judged on the benchmark's raw timings with the load tests' statistics; a breach raises
``BenchmarkBudgetExceeded``, which fails that test (not the session). Registered only
with pytest-benchmark (``register``); nothing of it is imported here.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

from pytest_perfgate.errors import BenchmarkBudgetExceeded
from pytest_perfgate.plugin.items import marker_budget
from pytest_perfgate.plugin.session import PerfgateSession

__all__ = ["BenchmarkBudgets", "register"]


class BenchmarkBudgets:
    """Judges ``perf_budget`` on the timings of pytest-benchmark's ``benchmark`` fixture."""

    def __init__(self, session: PerfgateSession) -> None:
        self.session = session

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        __tracebackhide__ = True  # the breach lines are the whole story
        yield
        budget = marker_budget(item)
        fixture = getattr(item, "funcargs", {}).get("benchmark")
        stats = getattr(fixture, "stats", None)
        if budget is not None and getattr(fixture, "disabled", False):
            # pytest-benchmark measures nothing under xdist or --benchmark-disable: a budget
            # judged on no timings would be a check that cannot fail
            pytest.skip(
                "perf_budget not judged: pytest-benchmark disabled its measurements "
                "(it does under pytest-xdist and with --benchmark-disable); run without -n"
            )
        if budget is None or stats is None:  # no budget, or the benchmark did not run
            return
        # lazy: the statistics only for a test with a budget, off pytest's start-up path
        from pytest_perfgate.core.bench import judge

        settings = self.session.settings
        verdict = judge(
            item.name, stats.stats.data, budget,
            level=settings.confidence, inconclusive=settings.inconclusive,
        )  # fmt: skip
        item.user_properties.append((f"perfgate.{item.name}.verdict", verdict.outcome.value))
        if not verdict.passed:
            raise BenchmarkBudgetExceeded(verdict.failure_text())


def register(config: pytest.Config, session: PerfgateSession) -> None:
    """Register ``BenchmarkBudgets`` when pytest-benchmark is present."""
    if config.pluginmanager.hasplugin("benchmark"):
        config.pluginmanager.register(BenchmarkBudgets(session), "perfgate-benchmark")
