"""Project-wide test configuration: the pytester fixture for the plugin tests, and the
reference service importable from wherever a test runs it."""

import os
from pathlib import Path

import httpx
import pytest

pytest_plugins = ("pytester",)

# httpx imports httpcore lazily, on its first transport. pytester's in-process runs drop
# the modules first imported during a run; if that was httpcore, the next transport gets a
# fresh httpcore whose exceptions httpx no longer maps, and a refused connection escapes
# as httpcore.ConnectError instead of httpx.ConnectError. Import it all up front.
httpx.HTTPTransport().close()

# The reference service (service/ beside this file) is not installed. Tests import it
# through the rootdir, which pytest puts on sys.path for this conftest; the processes
# they start from a pytester folder (``python -m service``, a ``json_factory`` of
# ``service.payloads``) find it through PYTHONPATH.
_ROOT = str(Path(__file__).resolve().parent)
os.environ["PYTHONPATH"] = os.pathsep.join(
    dict.fromkeys(filter(None, [_ROOT, *os.environ.get("PYTHONPATH", "").split(os.pathsep)]))
)


# The suite runs under pytest-xdist (README: ``pytest tests -n 2``). Tests that start load
# generators and servers stay serial, as one scope on one worker, so two of them never
# measure each other; the reference service's own tests form a second scope (they share
# one in-process app per worker, and the fuzz total counts only in one process).
# Everything else spreads over the workers test by test.
_SERIAL_GROUPS = {"integration": "load", "service": "service", "benchmarks": "service"}
#: the container tests drive load (the light scenario against a container) for 7 minutes,
#: serial among themselves and beside the other load tests: CI's 30 minutes allow no
#: other way. Their budgets (a 100 ms P95 against a 40-50 ms service) leave the room
#: that the neighbour needs, and their runs skip the noise check.
_SERIAL_GROUPS["containers"] = "containers"
#: service tests that drive load themselves: serial with the other load tests
_LOAD_FILES = {"test_service_spike.py", "test_service_e2e.py"}
#: integration tests that start processes but drive no load: free to run beside the others
_NO_LOAD_FILES = {"test_startup_faults.py"}
#: integration tests that drive load to check processes and files, not timings: serial
#: among themselves, beside the timing tests (they end, leave no process, keep logs)
_PROCESS_FILES = {"test_leftovers.py", "test_faults.py"}


def serial_group(nodeid: str) -> str | None:
    """The serial group of a test of tests/, by its node id; ``None``: it may run anywhere."""
    parts = nodeid.split("::", 1)[0].split("/")
    if len(parts) < 3 or parts[0] != "tests":
        return None
    if parts[-1] in _NO_LOAD_FILES:
        return None
    if parts[-1] in _PROCESS_FILES:
        return "processes"
    return "load" if parts[-1] in _LOAD_FILES else _SERIAL_GROUPS.get(parts[1])


@pytest.hookimpl(optionalhook=True)  # an xdist hook: absent without xdist
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    from xdist.scheduler import LoadScopeScheduling

    class SerialGroups(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return serial_group(nodeid) or nodeid

    return SerialGroups(config, log)


@pytest.fixture(autouse=True)
def _not_an_xdist_worker_for_child_pytest(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pytest a test starts (pytester) is not an xdist worker, whatever runs the suite:
    pytest-benchmark, for one, disables itself when it sees ``PYTEST_XDIST_WORKER``."""
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)
