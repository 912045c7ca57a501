"""Fixtures of the integration tests: a delay server per test, always stopped, and a check
that no Locust process of a test outlives it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from delay_server import StartServer, running  # this directory is on sys.path (prepend mode)
from leftovers import load_generators


@pytest.fixture(autouse=True)
def noise_verdicts_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """These runs judge known services on a shared machine, whose neighbours would turn
    their breaches INVALID ("Noisy machines"; tests/plugin/test_noisy_runs.py tests that):
    the machine's figures are still reported, the verdicts stay the service's."""
    monkeypatch.setenv("PERFGATE_NOISE_CHECK", "false")


@pytest.fixture
def delay_server() -> Iterator[StartServer]:
    """Start a delay server: ``url = delay_server("--delay-ms", "50")``; stopped after the test.

    Arguments are ``delay_server.py``'s command line (``--lognormal 20,0.5``,
    ``--error-rate 0.1``, ``--slow-ms 1000``, ``--seed 3``); each call starts one more.
    """
    with contextlib.ExitStack() as stack:

        def start(*cli_args: str) -> str:
            return stack.enter_context(running(*cli_args))

        yield start


@pytest.fixture
def no_load_generator_left() -> Iterator[None]:
    """Fails the test if a Locust process of it is still running afterwards (and kills it)."""
    yield
    left = load_generators()
    for process in left:
        process.kill()
    assert left == []
