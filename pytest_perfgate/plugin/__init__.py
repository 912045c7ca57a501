"""The pytest plugin (entry point ``pytest11: perfgate = pytest_perfgate.plugin``): hooks.

Wiring only; each hook hands over to the module of its role::

    plugin/__init__.py   the hooks (this module); imports the fixtures so pytest finds them
    plugin/session.py    PerfgateSession: the state of a session, in config.stash
    plugin/fixtures.py   the perfgate and perfgate_service fixtures, RunResult
    plugin/items.py      the thresholds file's scenarios as items, perf_budget markers
    plugin/lock.py       one load run at a time per project
    plugin/xdist.py      pytest-xdist hooks (registered only with xdist)
    plugin/benchmark.py  perf_budget on pytest-benchmark tests (registered only with it)

No side effect where the feature is unused: this package imports no httpx, locust,
gevent, torch or fastapi (the gate imports them when a run starts; locust runs in a
child process), installs no signal handler at import or configure time, and imports on
every platform. ``ConfigError`` (a user's mistake) reaches the user as
``pytest.UsageError``; a ``BudgetExceeded`` failure counts for
``--perfgate-breach-exit-code``.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from pytest_perfgate.errors import BudgetExceeded
from pytest_perfgate.options import OPTIONS
from pytest_perfgate.plugin import benchmark, xdist
from pytest_perfgate.plugin.fixtures import PerfgateRunner, RunResult, perfgate, perfgate_service
from pytest_perfgate.plugin.items import (
    PERF_BUDGET_SIGNATURE,
    collect_file,
    deselect_unasked,
    marker_budget,
    unasked_line,
)
from pytest_perfgate.plugin.session import SESSION_KEY, PerfgateSession

__all__ = ["PerfgateRunner", "PerfgateSession", "RunResult", "perfgate", "perfgate_service"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("perfgate", "load-test budgets (pytest-perfgate)")
    for option in OPTIONS:
        default = f" (default: {option.default})" if option.default else ""
        group.addoption(
            option.cli,
            dest=option.ini,
            metavar=option.metavar,
            default=None,
            help=f"{option.help}{default}; env {option.env}, ini {option.ini}",
        )
        parser.addini(option.ini, f"{option.help}{default}", default=None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", PERF_BUDGET_SIGNATURE)
    session = PerfgateSession.from_config(config)
    if session.thresholds is not None:
        for scenario in session.thresholds.scenarios.values():
            what = scenario.description or f"{scenario.users} users, {scenario.duration_s:g}s"
            config.addinivalue_line(
                "markers", f"{scenario.marker}: load scenario {scenario.name!r} of "
                f"{session.thresholds.path.name} ({what})"
            )  # fmt: skip
    config.stash[SESSION_KEY] = session
    config.pluginmanager.register(session, "perfgate-session")
    xdist.register(config, session)
    benchmark.register(config, session)


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is not None:
        session.close()


def pytest_report_header(config: pytest.Config) -> list[str]:
    return config.stash[SESSION_KEY].header()


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    return collect_file(file_path, parent)


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> Generator[None, None, None]:
    for item in items:
        marker_budget(item)  # a bad keyword is a usage error before anything runs
    yield  # -m and -k deselect first; what they leave of the scenarios runs only if asked
    deselect_unasked(config, items)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        # an attribute, not a user property: xdist ships it to the controller, JUnit ignores it
        excinfo = call.excinfo
        breach = excinfo is not None and isinstance(excinfo.value, BudgetExceeded)
        setattr(report, "perfgate_breach", breach)  # noqa: B010 - not a TestReport field
    return report


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    session = config.stash.get(SESSION_KEY, None)
    unasked = unasked_line(config) if session is not None else None
    if unasked is not None:
        terminalreporter.write_line(unasked)
    if session is None or not session.rendered:
        return
    terminalreporter.section("perfgate")
    for line in session.summary(os.environ):
        terminalreporter.write_line(line)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The Markdown verdict file; with --perfgate-breach-exit-code, budget breaches alone
    exit with that code."""
    state = session.config.stash.get(SESSION_KEY, None)
    if state is not None and not hasattr(session.config, "workerinput"):
        state.write_markdown()  # the controller holds every worker's results too
    code = state.settings.breach_exit_code if state is not None else None
    if code is None or state is None or exitstatus != pytest.ExitCode.TESTS_FAILED:
        return
    if state.breaches_only():
        session.exitstatus = code
