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


# The suite runs under pytest-xdist (README: ``pytest tests -n 2``, ``--dist loadgroup``
# in addopts). Tests that start load generators and servers stay serial, as one group on
# one worker, so two of them never measure each other; the reference service's own tests
# form a second group (they share one in-process app per worker). Everything else spreads.
_TESTS = Path(_ROOT) / "tests"
_SERIAL_GROUPS = {"integration": "load", "service": "service", "benchmarks": "service"}
#: service tests that drive load themselves: serial with the other load tests
_LOAD_FILES = {"test_service_spike.py", "test_service_e2e.py"}


@pytest.fixture(autouse=True)
def _not_an_xdist_worker_for_child_pytest(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pytest a test starts (pytester) is not an xdist worker, whatever runs the suite:
    pytest-benchmark, for one, disables itself when it sees ``PYTEST_XDIST_WORKER``."""
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)


@pytest.hookimpl(tryfirst=True)  # before xdist's, which reads the groups into node ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(item.path)
        if _TESTS not in path.parents:
            continue
        group = _SERIAL_GROUPS.get(path.relative_to(_TESTS).parts[0])
        group = "load" if path.name in _LOAD_FILES else group
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
