"""The state of one pytest session, kept in ``config.stash[SESSION_KEY]``.

``PerfgateSession`` holds the settings, the thresholds file, the service under test, the
results and what the summary shows of them; it is registered as a plugin (it remembers
which failures were budget breaches). Light at import: the gate, the load layer, the
target and httpx are imported when a run starts, and the SIGTERM handler is installed
only while perfgate has processes running: during a load run, and while a service it
started lives (until the session ends); never in a session that runs no load.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import pytest

from pytest_perfgate.errors import ConfigError, ServiceError
from pytest_perfgate.options import OPTIONS, Settings, resolve

if TYPE_CHECKING:
    from pytest_perfgate.core.model import Budget, Scenario, Thresholds
    from pytest_perfgate.gate import Gate
    from pytest_perfgate.load.driver import LoadDriver, Progress
    from pytest_perfgate.results.result import ScenarioResult
    from pytest_perfgate.target.container import ContainerService
    from pytest_perfgate.target.machine import Sampler
    from pytest_perfgate.target.probe import Probe, Target
    from pytest_perfgate.target.process import ManagedService

__all__ = [
    "MARKDOWN_FILE",
    "SESSION_KEY",
    "PerfgateSession",
    "interrupt_on_sigterm",
    "usage_errors",
]

SESSION_KEY = pytest.StashKey["PerfgateSession"]()
#: the session's verdict tables in Markdown, in the results folder (``write_markdown``)
MARKDOWN_FILE = "summary.md"


@contextlib.contextmanager
def usage_errors() -> Iterator[None]:
    """A ``ConfigError`` (the user's mistake, the message says where) -> ``pytest.UsageError``."""
    try:
        yield
    except ConfigError as exc:
        raise pytest.UsageError(f"perfgate: {exc}") from None


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    """While perfgate has processes running: SIGTERM (how CI cancels a job) unwinds as
    Ctrl-C does, so the service (in its own session) and the Locust child are stopped
    instead of orphaned. The previous handler is back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set a handler (and receives the signal)
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _load_thresholds(settings: Settings) -> Thresholds | None:
    if not settings.thresholds.exists() and not settings.thresholds_explicit:
        return None  # a project without load scenarios can still use perf_budget
    # lazy: the YAML reader (and yaml) only where there is a thresholds file to read
    from pytest_perfgate.config import load_thresholds

    return load_thresholds(settings.thresholds)


def _command_line(config: pytest.Config) -> dict[str, Any]:
    """The ``--perfgate-*`` flags; Locust's ``--host`` (its pytest plugin adds the flag to
    every session) names the target as ``--perfgate-url`` does, never a second one."""
    cli = {o.name: config.getoption(o.ini) for o in OPTIONS}
    host = config.getoption("host", None)
    if host:
        if cli["url"] not in (None, "", host):
            raise pytest.UsageError(
                f"perfgate: --host {host} and --perfgate-url {cli['url']} name two targets; "
                "give the target once, with --perfgate-url"
            )
        cli["url"] = host
    return cli


class PerfgateSession:
    """State of one pytest session: settings, thresholds, service, results."""

    def __init__(self, config: pytest.Config, settings: Settings, thresholds: Thresholds | None):
        self.config = config
        self.settings = settings
        self.thresholds = thresholds
        self.results: list[ScenarioResult] = []
        #: each result rendered for the summary: local ones and those of xdist workers
        self.rendered: list[dict[str, Any]] = []
        #: failed test node ids -> whether every failure of that test was a budget breach
        self.failures: dict[str, bool] = {}
        #: the load driver and probe of every run; ``None``: the gate's own (Locust, HTTP).
        #: A seam for tests: ``load.fake.FakeDriver`` replays samples in milliseconds.
        self.driver: LoadDriver | None = None
        self.probe: Probe | None = None
        self.sampler: Sampler | None = None  # the machine sampler; None: ``/proc``'s
        self._service: ManagedService | ContainerService | None = None
        self._service_error: ServiceError | None = None
        self._sigterm: contextlib.ExitStack | None = None  # the handler, while installed

    @classmethod
    def from_config(cls, config: pytest.Config) -> PerfgateSession:
        """The session of ``config``: its settings resolved, its thresholds file read."""
        cli = _command_line(config)
        ini = {o.name: config.getini(o.ini) for o in OPTIONS}
        with usage_errors():
            settings = resolve(cli, ini, os.environ, config.rootpath)
            return cls(config, settings, _load_thresholds(settings))

    def require_thresholds(self) -> Thresholds:
        if self.thresholds is None:
            raise pytest.UsageError(
                f"perfgate: no thresholds file at {self.settings.thresholds}; "
                "set --perfgate-thresholds, ini perfgate_thresholds or PERFGATE_THRESHOLDS"
            )
        return self.thresholds

    def target(self) -> Target:
        """The service under test, started on first use and restarted if it died."""
        # lazy: the gate and the target import httpx; they stay off pytest's start-up path
        from pytest_perfgate.target.probe import external_target

        thresholds = self.require_thresholds()
        external = external_target(thresholds, self.settings)
        if external is not None:
            return external
        if self._service_error is not None:
            raise self._service_error
        if self._service is None or not self._service.alive():
            self._service = self._start_service(thresholds)
        return self._service

    def _start_service(self, thresholds: Thresholds) -> ManagedService | ContainerService:
        from pytest_perfgate.target.container import start_container  # lazy, as in ``target``
        from pytest_perfgate.target.process import start_service

        if self._service is not None:  # it died: its process group may live on
            self._service.stop()
        self._hold_sigterm()  # until ``close`` stops the service
        try:
            start = start_container if thresholds.service.container else start_service
            return start(thresholds, self.settings, self.config.rootpath)
        except ServiceError as exc:
            self._service_error = exc
            raise

    def gate(self) -> Gate:
        from pytest_perfgate.duet_gate import make_gate  # lazy, as in ``target``

        return make_gate(
            self.require_thresholds(), self.settings, self.target, driver=self.driver,
            probe=self.probe, sampler=self.sampler, cwd=self.config.rootpath,
        )  # fmt: skip

    def run(self, name: str, *, budget: Budget | None = None, **overrides: Any) -> ScenarioResult:
        """Run scenario ``name`` (one load run at a time per project) and keep its result."""
        # lazy: filelock imports asyncio; it stays off pytest's start-up path
        from pytest_perfgate.plugin.lock import load_lock

        gate = self.gate()
        with usage_errors():
            scenario = gate.scenario(name, budget=budget, **overrides)
        self._hold_sigterm()
        try:  # the lock covers starting the service too
            with load_lock(self.config.rootpath, name, notify=self.notify):
                result = self._attempts(gate, scenario)
        finally:
            if self._service is None:  # no service of ours lives on after the run
                self._release_sigterm()
        return result

    def _attempts(self, gate: Gate, scenario: Scenario) -> ScenarioResult:
        """``gate.run`` again while the machine's noise explains the verdict, at most
        ``--perfgate-retry-noisy`` more times; each attempt is kept and shown (its files
        too), the last one's verdict counts."""
        total = 1 + self.settings.retry_noisy
        for n in range(1, total + 1):
            progress = self._progress_writer(scenario)
            result = gate.run(scenario, on_progress=progress, attempt=(n, total))
            self.results.append(result)
            self.rendered.append(self._render(result))
            if result.noise is not None and result.called_noisy and total > 1:
                then = "running it again" if n < total else "no attempt left"
                self.notify(
                    f"perfgate: {scenario.name} attempt {n}/{total}: {result.noise.sentence()}; "
                    f"{then}"
                )
            if not result.called_noisy:
                break
        return result

    def notify(self, line: str) -> None:
        """Show ``line`` now, past pytest's output capturing."""
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(line)

    def _render(self, result: ScenarioResult) -> dict[str, Any]:
        """What the summary shows of ``result``; plain data, so xdist can ship it."""
        # lazy, like every module a run needs: off pytest's start-up path
        from pytest_perfgate.results import github, markdown, terminal

        return {
            "table": terminal.terminal_table([result]),
            "markdown": markdown.github_summary_markdown([result], header=False),
            "annotations": github.workflow_commands([result], self.config.rootpath),
        }

    def _progress_writer(self, scenario: Scenario) -> Callable[[Progress], None] | None:
        from pytest_perfgate.results import terminal  # lazy, as in ``_render``

        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None or not getattr(reporter, "isatty", False):
            return None

        def write(progress: Progress) -> None:
            line = terminal.progress_line(progress, scenario.duration_s, scenario.name)
            reporter.rewrite(line, erase=True)

        return write

    def header(self) -> list[str]:
        """The line under pytest's header: the thresholds file, the target, the overrides."""
        s = self.settings
        if self.thresholds is None:
            return [f"perfgate: no thresholds file at {s.thresholds}"]
        target = s.url or self.thresholds.service.url or "started from service.command"
        compare = self.thresholds.compare_to
        against = s.against or (compare.label if compare else None)
        if against:  # an A/B run (duet_gate): the baseline beside the target
            target += f", A/B against {against}"
        overrides = ", ".join(
            f"{k}={v}" for k, v in (("duration", s.duration), ("users", s.users),
                                    ("spawn_rate", s.spawn_rate)) if v is not None
        )  # fmt: skip
        return [
            f"perfgate: {s.thresholds} ({len(self.thresholds.scenarios)} scenarios), "
            f"target: {target}, results: {s.results_dir}"
            + (f", overrides: {overrides}" if overrides else "")
        ]

    def summary(self, env: Mapping[str, str]) -> list[str]:
        """The ``perfgate`` section of the terminal summary (and what GitHub Actions gets)."""
        from pytest_perfgate.results import github  # lazy, as in ``_render``

        lines = [line for rendered in self.rendered for line in rendered["table"]]
        sections = [r["markdown"] for r in self.rendered]
        commands = [c for r in self.rendered for c in r["annotations"]]
        return lines + list(github.publish(sections, commands, env))

    def write_markdown(self) -> Path | None:
        """The verdict tables of the session as Markdown in ``<results dir>/summary.md``, for
        a pull-request comment; replaced each session that ran load, None when none ran."""
        if not self.rendered:
            return None
        path = self.settings.results_dir / MARKDOWN_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        sections = "\n".join(rendered["markdown"] for rendered in self.rendered)
        path.write_text(f"## pytest-perfgate\n\n{sections}\n", encoding="utf-8")
        return path

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Remember which failures were budget breaches (on the xdist controller too)."""
        if report.failed:
            breach = bool(getattr(report, "perfgate_breach", False))
            self.failures[report.nodeid] = self.failures.get(report.nodeid, True) and breach

    def breaches_only(self) -> bool:
        """Whether every failed test failed by budget breaches alone."""
        return bool(self.failures) and all(self.failures.values())

    def _hold_sigterm(self) -> None:
        """Install the SIGTERM handler, if it is not: a run or a service of ours is starting."""
        if self._sigterm is None:
            self._sigterm = contextlib.ExitStack()
            self._sigterm.enter_context(interrupt_on_sigterm())

    def _release_sigterm(self) -> None:
        """Give SIGTERM its previous handler back: no process of ours is left."""
        if self._sigterm is not None:
            self._sigterm.close()
            self._sigterm = None

    def close(self) -> None:
        """Stop the service this session started; give SIGTERM its previous handler back."""
        try:
            if self._service is not None:
                self._service.stop()
                self._service = None
        finally:
            self._release_sigterm()
