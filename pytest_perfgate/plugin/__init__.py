"""pytest wiring: options, markers, scenario items, fixtures, the terminal summary.

Wiring only: the work happens in ``gate`` and the modules it calls. Light imports: this
module imports no locust, torch or fastapi (the load runs in a child process).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import signal
import tempfile
import threading
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_perfgate.config import (
    BUDGET_HELP,
    Budget,
    ConfigError,
    Scenario,
    Thresholds,
    budget_from_mapping,
    load_thresholds,
    parse_duration,
)
from pytest_perfgate.core.regression import REGRESSION_HELP
from pytest_perfgate.errors import BenchmarkBudgetExceeded, BudgetExceeded, ScenarioFailed
from pytest_perfgate.options import OPTIONS, Settings, resolve
from pytest_perfgate.target.process import ManagedService, ServiceError

if TYPE_CHECKING:
    from pytest_perfgate.core.verdict import Verdict
    from pytest_perfgate.gate import Gate, Target
    from pytest_perfgate.load.locust_driver import Progress
    from pytest_perfgate.results import report

__all__ = ["PerfgateRunner", "PerfgateSession", "ScenarioFailed"]

SESSION_KEY = pytest.StashKey["PerfgateSession"]()
PERF_BUDGET_SIGNATURE = "perf_budget({}): budget for every perfgate run this test makes; {}".format(
    ", ".join(f"{k}=..." for k in {**BUDGET_HELP, **REGRESSION_HELP}),
    "; ".join(f"{k}: {v}" for k, v in {**BUDGET_HELP, **REGRESSION_HELP}.items()),
)


@contextlib.contextmanager
def load_lock(rootdir: Path) -> Iterator[None]:
    """One load run at a time per project: xdist workers (and concurrent sessions) would
    otherwise measure each other."""
    key = hashlib.sha256(str(rootdir).encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"pytest-perfgate-{key}.lock"
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class PerfgateSession:
    """State of one pytest session (in ``config.stash``): settings, thresholds, service, results."""

    def __init__(self, config: pytest.Config, settings: Settings, thresholds: Thresholds | None):
        self.config = config
        self.settings = settings
        self.thresholds = thresholds
        self.results: list[report.ScenarioResult] = []
        #: each result rendered for the summary: local ones and those of xdist workers
        self.rendered: list[dict[str, Any]] = []
        #: failed test node ids -> whether every failure of that test was a budget breach
        self.failures: dict[str, bool] = {}
        self._service: ManagedService | None = None
        self._service_error: ServiceError | None = None
        self.previous_sigterm: Any = None

    def require_thresholds(self) -> Thresholds:
        if self.thresholds is None:
            raise pytest.UsageError(
                f"perfgate: no thresholds file at {self.settings.thresholds}; "
                "set --perfgate-thresholds, ini perfgate_thresholds or PERFGATE_THRESHOLDS"
            )
        return self.thresholds

    def target(self) -> Target:
        """The service under test, started on first use and restarted if it died."""
        from pytest_perfgate.gate import external_target, start_service

        thresholds = self.require_thresholds()
        external = external_target(thresholds, self.settings)
        if external is not None:
            return external
        if self._service_error is not None:
            raise self._service_error
        if self._service is None or not self._service.alive():
            if self._service is not None:  # it died: its process group may live on
                self._service.stop()
            try:
                self._service = start_service(thresholds, self.settings, self.config.rootpath)
            except ServiceError as exc:
                self._service_error = exc
                raise
        return self._service

    def gate(self) -> Gate:
        from pytest_perfgate.gate import Gate

        return Gate(
            self.require_thresholds(), self.settings, self.target, cwd=self.config.rootpath
        )

    def run(
        self, name: str, *, budget: Budget | None = None, **overrides: Any
    ) -> report.ScenarioResult:
        gate = self.gate()
        scenario = gate.scenario(name, budget=budget, **overrides)
        with load_lock(self.config.rootpath):  # covers starting the service too
            result = gate.run(scenario, on_progress=self._progress_writer(scenario))
        self.results.append(result)
        self.rendered.append(self._render(result))
        return result

    def _render(self, result: report.ScenarioResult) -> dict[str, Any]:
        """What the summary shows of ``result``; plain data, so xdist can ship it."""
        from pytest_perfgate.results import github, report

        return {
            "table": report.terminal_table([result]),
            "markdown": report.github_summary_markdown([result], header=False),
            "annotations": github.workflow_commands([result], self.config.rootpath),
        }

    def _progress_writer(self, scenario: Scenario) -> Any:
        from pytest_perfgate.results import report

        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None or not getattr(reporter, "isatty", False):
            return None

        def write(progress: Progress) -> None:
            line = report.progress_line(progress, scenario.duration_s, scenario.name)
            reporter.rewrite(line, erase=True)

        return write

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Remember which failures were budget breaches (on the xdist controller too)."""
        if report.failed:
            breach = bool(getattr(report, "perfgate_breach", False))
            self.failures[report.nodeid] = self.failures.get(report.nodeid, True) and breach

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        workeroutput = getattr(session.config, "workeroutput", None)
        if workeroutput is not None:  # an xdist worker: the controller prints the summary
            workeroutput["perfgate"] = self.rendered

    def close(self) -> None:
        if self._service is not None:
            self._service.stop()
            self._service = None


# --- options and configuration ----------------------------------------------------------


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


def _settings(config: pytest.Config) -> Settings:
    cli = {o.name: config.getoption(o.ini) for o in OPTIONS}
    ini = {o.name: config.getini(o.ini) for o in OPTIONS}
    try:
        return resolve(cli, ini, os.environ, config.rootpath)
    except ConfigError as exc:
        raise pytest.UsageError(f"perfgate: {exc}") from None


def _load(settings: Settings) -> Thresholds | None:
    if not settings.thresholds.exists() and not settings.thresholds_explicit:
        return None  # a project without load scenarios can still use perf_budget
    try:
        return load_thresholds(settings.thresholds)
    except ConfigError as exc:
        raise pytest.UsageError(f"perfgate: {exc}") from None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", PERF_BUDGET_SIGNATURE)
    settings = _settings(config)
    thresholds = _load(settings)
    if thresholds is not None:
        for scenario in thresholds.scenarios.values():
            what = scenario.description or f"{scenario.users} users, {scenario.duration_s:g}s"
            config.addinivalue_line(
                "markers", f"{scenario.marker}: load scenario {scenario.name!r} of "
                f"{thresholds.path.name} ({what})"
            )  # fmt: skip
    session = PerfgateSession(config, settings, thresholds)
    config.stash[SESSION_KEY] = session
    if threading.current_thread() is threading.main_thread():
        # CI cancels a job with SIGTERM: unwind as on Ctrl-C, so the service (in its own
        # session) and the Locust child are stopped instead of orphaned
        session.previous_sigterm = signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    config.pluginmanager.register(session, "perfgate-session")
    if config.pluginmanager.hasplugin("xdist") and not hasattr(config, "workerinput"):
        config.pluginmanager.register(XdistController(session), "perfgate-xdist")
    if config.pluginmanager.hasplugin("benchmark"):
        config.pluginmanager.register(BenchmarkBudgets(session), "perfgate-benchmark")


def _interrupt_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is not None:
        session.close()
        if session.previous_sigterm is not None:
            signal.signal(signal.SIGTERM, session.previous_sigterm)


def pytest_report_header(config: pytest.Config) -> list[str]:
    session = config.stash[SESSION_KEY]
    s = session.settings
    if session.thresholds is None:
        return [f"perfgate: no thresholds file at {s.thresholds}"]
    target = s.url or session.thresholds.service.url or "started from service.command"
    overrides = ", ".join(
        f"{k}={v}" for k, v in (("duration", s.duration), ("users", s.users),
                                ("spawn_rate", s.spawn_rate)) if v is not None
    )  # fmt: skip
    return [
        f"perfgate: {s.thresholds} ({len(session.thresholds.scenarios)} scenarios), "
        f"target: {target}, results: {s.results_dir}"
        + (f", overrides: {overrides}" if overrides else "")
    ]


# --- scenario items ---------------------------------------------------------------------


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    session = parent.config.stash[SESSION_KEY]
    if not session.settings.collect or session.thresholds is None:
        return None
    if file_path.resolve() != session.thresholds.path:
        return None
    return ThresholdsFile.from_parent(parent, path=file_path)


class ThresholdsFile(pytest.File):
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
        _record(self, result)
        if not result.verdict.passed:
            raise ScenarioFailed(result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        from pytest_perfgate.gate import GateError

        if isinstance(excinfo.value, ScenarioFailed | GateError | ServiceError):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        thresholds = self.config.stash[SESSION_KEY].require_thresholds()
        line = thresholds.scenario(self.name).source_lines.get("", 1)
        return self.path, max(line - 1, 0), f"load scenario {self.name}"


def _record(item: pytest.Item, result: report.ScenarioResult) -> None:
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


# --- markers ----------------------------------------------------------------------------


def marker_budget(item: pytest.Item) -> Budget | None:
    """The ``perf_budget`` marker of ``item``, validated against the budget schema."""
    marker = item.get_closest_marker("perf_budget")
    if marker is None:
        return None
    where = f"{item.nodeid}: @pytest.mark.perf_budget"
    if marker.args:
        raise pytest.UsageError(f"{where}: takes keywords only, got {marker.args!r}")
    try:
        return budget_from_mapping(marker.kwargs, where)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        marker_budget(item)  # a bad keyword is a usage error before anything runs


# --- fixtures ---------------------------------------------------------------------------


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
        seconds = None if duration is None else parse_duration(duration, "perfgate.run(duration)")
        result = self._session.run(
            scenario, budget=self.budget, users=users, spawn_rate=spawn_rate,
            duration_s=seconds, processes=processes,
        )  # fmt: skip
        _record(self._item, result)
        if check and not result.verdict.passed:
            raise ScenarioFailed(result)
        return RunResult(result, self._session.settings)


class RunResult:
    """What ``perfgate.run`` returns: the figures, the verdict, the files, and ``check``."""

    def __init__(self, result: report.ScenarioResult, settings: Settings) -> None:
        self.result = result
        self._settings = settings
        self.stats = result.stats
        self.total = result.stats.total
        self.endpoints = result.stats.endpoints
        self.verdict: Verdict = result.verdict

    def check(self, **budget: Any) -> Verdict:
        """Judge this run against ``budget`` (the same keys as thresholds.yaml); fail on breach."""
        from pytest_perfgate.core.verdict import evaluate

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
        if not judged.passed:
            raise AssertionError(judged.failure_text())
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


# --- reporting --------------------------------------------------------------------------


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is None or not session.rendered:
        return
    from pytest_perfgate.results import github

    terminalreporter.section("perfgate")
    for rendered in session.rendered:
        for line in rendered["table"]:
            terminalreporter.write_line(line)
    sections = [r["markdown"] for r in session.rendered]
    commands = [c for r in session.rendered for c in r["annotations"]]
    for line in github.publish(sections, commands, os.environ):
        terminalreporter.write_line(line)


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



@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With --perfgate-breach-exit-code, budget breaches alone exit with that code."""
    state = session.config.stash.get(SESSION_KEY, None)
    code = state.settings.breach_exit_code if state else None
    if code is None or state is None or exitstatus != pytest.ExitCode.TESTS_FAILED:
        return
    if state.failures and all(state.failures.values()):
        session.exitstatus = code


# --- optional plugins -------------------------------------------------------------------


class XdistController:
    """On the xdist controller: collects what each worker rendered (registered with xdist)."""

    def __init__(self, session: PerfgateSession) -> None:
        self.session = session

    def pytest_testnodedown(self, node: Any, error: object) -> None:
        output = getattr(node, "workeroutput", None) or {}
        self.session.rendered.extend(output.get("perfgate", []))


class BenchmarkBudgets:
    """``perf_budget`` on tests using pytest-benchmark's ``benchmark`` fixture: judged on its
    raw timings with the load tests' statistics (registered only with pytest-benchmark)."""

    def __init__(self, session: PerfgateSession) -> None:
        self.session = session

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        __tracebackhide__ = True  # the breach lines are the whole story
        yield
        budget = marker_budget(item)
        fixture = getattr(item, "funcargs", {}).get("benchmark")
        stats = getattr(fixture, "stats", None)
        if budget is None or stats is None:  # no budget, or the benchmark did not run
            return
        from pytest_perfgate.core.bench import judge

        settings = self.session.settings
        verdict = judge(
            item.name, stats.stats.data, budget,
            level=settings.confidence, inconclusive=settings.inconclusive,
        )  # fmt: skip
        item.user_properties.append((f"perfgate.{item.name}.verdict", verdict.outcome.value))
        if not verdict.passed:
            raise BenchmarkBudgetExceeded(verdict.failure_text())
