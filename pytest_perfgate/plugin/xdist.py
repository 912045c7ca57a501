"""pytest-xdist: each worker ships what it rendered; the controller prints it once.

The same way, each worker ships how many scenarios it deselected (load not asked for):
the controller prints the one "deselected" line a run without xdist prints.

Registered only when xdist is present (``register``): ``XdistController`` on the
controller, ``XdistWorker`` on each worker. The load lock (``plugin.lock``), not xdist,
keeps the workers' load runs from overlapping. A worker stops the service it started
before it reports its end; the controller sets the run's ``PERFGATE_RUN_ID`` before the
workers start, so every process of the run carries the same one.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_perfgate.plugin.items import DESELECTED_KEY
from pytest_perfgate.plugin.session import PerfgateSession
from pytest_perfgate.processes import run_id

__all__ = ["XdistController", "XdistWorker", "register"]

#: the key of ``workeroutput`` that carries a worker's rendered results
OUTPUT_KEY = "perfgate"
#: the key of ``workeroutput`` that carries how many scenarios a worker deselected
DESELECTED_OUTPUT_KEY = "perfgate_deselected"


class XdistController:
    """On the controller: collects what each worker rendered into the session's summary."""

    def __init__(self, session: PerfgateSession, config: pytest.Config) -> None:
        self.session = session
        self.config = config

    def pytest_testnodedown(self, node: Any, error: object) -> None:
        output = getattr(node, "workeroutput", None) or {}
        self.session.rendered.extend(output.get(OUTPUT_KEY, []))
        # every worker collects the same items: the count is each one's, not a sum
        deselected = int(output.get(DESELECTED_OUTPUT_KEY, 0))
        stash = self.config.stash
        stash[DESELECTED_KEY] = max(stash.get(DESELECTED_KEY, 0), deselected)


class XdistWorker:
    """On a worker: hands the results it rendered to the controller, which prints them,
    and stops the service it started before it says it has finished.

    A worker is torn down soon after its "finished" (execnet ends the process), so
    stopping the service later, at ``pytest_unconfigure``, may never complete: the
    service would outlive pytest. Here it runs inside xdist's own ``sessionfinish``
    wrapper, before the controller hears of the end.
    """

    def __init__(self, session: PerfgateSession) -> None:
        self.session = session

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        workeroutput: dict[str, Any] = getattr(session.config, "workeroutput")  # noqa: B009
        workeroutput[OUTPUT_KEY] = self.session.rendered
        workeroutput[DESELECTED_OUTPUT_KEY] = session.config.stash.get(DESELECTED_KEY, 0)
        self.session.close()


def register(config: pytest.Config, session: PerfgateSession) -> None:
    """Register the side of ``config`` (controller or worker) when xdist is present."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    if hasattr(config, "workerinput"):
        config.pluginmanager.register(XdistWorker(session), "perfgate-xdist-worker")
    else:
        if config.getoption("dist", "no") != "no":
            run_id()  # set before the workers start: they inherit it, one tag for the run
        config.pluginmanager.register(XdistController(session, config), "perfgate-xdist")
