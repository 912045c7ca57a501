"""Fixtures for the service's tests; the machinery lives in ``service_harness``."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from service_harness import FAST, AsgiService, ServiceProcess, asgi_service, service_process

MakeService = Callable[..., AsgiService]
_HYPOTHESIS_HOME = pytest.StashKey[str]()

# hypothesis and schemathesis come with the dev extra only; the load gate
# (.github/workflows/perf-gate.yml: the service extra, `pytest -m load_light`) collects
# this folder too, so without them the modules that import them are not collected.
_DEV_EXTRA = all(importlib.util.find_spec(name) for name in ("hypothesis", "schemathesis"))
collect_ignore = [] if _DEV_EXTRA else ["test_service_fuzz.py", "test_service_security.py"]


def pytest_configure(config: pytest.Config) -> None:
    # Hypothesis's pytest plugin caches the constants of local modules in ./.hypothesis as
    # soon as it collects a @given test (test_service_fuzz): keep the checkout clean.
    if _DEV_EXTRA and "HYPOTHESIS_STORAGE_DIRECTORY" not in os.environ:
        # imported here: hypothesis is a dev extra (see _DEV_EXTRA), not to dodge a cycle
        from hypothesis.configuration import set_hypothesis_home_dir

        config.stash[_HYPOTHESIS_HOME] = tempfile.mkdtemp(prefix="perfgate-hypothesis-")
        set_hypothesis_home_dir(config.stash[_HYPOTHESIS_HOME])


def pytest_unconfigure(config: pytest.Config) -> None:
    if home := config.stash.get(_HYPOTHESIS_HOME, None):
        from hypothesis.configuration import set_hypothesis_home_dir  # as in pytest_configure

        set_hypothesis_home_dir(None)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def service() -> Iterator[AsgiService]:
    """Both models, default batching, in-process. Shared: tests must leave it as they found it."""
    with asgi_service(FAST) as running:
        yield running


@pytest.fixture
def make_service() -> Iterator[MakeService]:
    """``make_service(max_queue=2, wait=False)``: an app of its own (mlp only by default)."""
    with contextlib.ExitStack() as stack:

        def make(*, wait: bool = True, **overrides: Any) -> AsgiService:
            settings = replace(FAST, **{"models": ("mlp",), **overrides})
            return stack.enter_context(asgi_service(settings, wait=wait))

        yield make


@pytest.fixture(scope="session")
def live_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """``python -m service`` with its defaults (both models, warm-up), over real HTTP."""
    log = tmp_path_factory.mktemp("service") / "service.log"
    with service_process(log) as running:
        yield running
