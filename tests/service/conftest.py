"""Fixtures for the service's tests; the machinery lives in ``service_harness``."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from hypothesis.configuration import set_hypothesis_home_dir
from service_harness import FAST, AsgiService, ServiceProcess, asgi_service, service_process

MakeService = Callable[..., AsgiService]
_HYPOTHESIS_HOME = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    # Hypothesis's pytest plugin caches the constants of local modules in ./.hypothesis as
    # soon as it collects a @given test (test_service_fuzz): keep the checkout clean.
    if "HYPOTHESIS_STORAGE_DIRECTORY" not in os.environ:
        config.stash[_HYPOTHESIS_HOME] = tempfile.mkdtemp(prefix="perfgate-hypothesis-")
        set_hypothesis_home_dir(config.stash[_HYPOTHESIS_HOME])


def pytest_unconfigure(config: pytest.Config) -> None:
    if home := config.stash.get(_HYPOTHESIS_HOME, None):
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
