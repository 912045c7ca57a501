"""No side effects where the feature is unused: imports, signal handlers, platforms.

The import checks run in a subprocess: this pytest process may already hold the modules.
"""

from __future__ import annotations

import ast
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_perfgate.options import resolve
from pytest_perfgate.plugin import session as session_module
from pytest_perfgate.plugin.session import PerfgateSession, interrupt_on_sigterm

PLUGIN = Path(session_module.__file__).parent


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # in-process: pytest warns that it cannot rewrite the already imported plugin's asserts
    return pytester.runpytest("-W", "ignore::pytest.PytestAssertRewriteWarning", *args)


def test_importing_the_plugin_imports_no_httpx_locust_torch_gevent_fastapi_nor_yaml() -> None:
    code = (
        "import pytest_perfgate.plugin; import sys; print([m for m in "
        "('httpx', 'locust', 'torch', 'gevent', 'fastapi', 'yaml') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_no_module_of_the_plugin_imports_fcntl() -> None:
    found = [
        f"{path.name}:{node.lineno}"
        for path in sorted(PLUGIN.glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Import | ast.ImportFrom)
        and "fcntl" in {getattr(node, "module", None), *(a.name for a in node.names)}
    ]
    assert found == []


def test_the_plugin_imports_where_there_is_no_fcntl() -> None:
    # as on Windows; filelock then warns that it falls back to a soft lock (on Windows
    # it uses msvcrt and does not)
    code = (
        "import sys, warnings; sys.modules['fcntl'] = None; "
        "warnings.simplefilter('ignore'); import pytest_perfgate.plugin"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_sigterm_handler_is_installed_only_within_the_block_and_restored() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with interrupt_on_sigterm():
        assert signal.getsignal(signal.SIGTERM) is session_module._interrupt
        with pytest.raises(KeyboardInterrupt, match="signal"):
            signal.raise_signal(signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_session_that_runs_no_load_installs_no_sigterm_handler(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_plain="""
        import signal
        from pytest_perfgate.plugin import session

        def test_plain():
            assert signal.getsignal(signal.SIGTERM) is not session._interrupt
        """
    )
    before = signal.getsignal(signal.SIGTERM)
    run(pytester).assert_outcomes(passed=1)
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_session_holding_the_handler_for_its_service_gives_it_back_when_it_closes(
    pytestconfig: pytest.Config, tmp_path: Path
) -> None:
    session = PerfgateSession(pytestconfig, resolve({}, {}, {}, tmp_path), None)
    before = signal.getsignal(signal.SIGTERM)
    session._hold_sigterm()  # as when it starts the service
    session._hold_sigterm()  # a restart: still one handler to give back
    assert signal.getsignal(signal.SIGTERM) is session_module._interrupt
    session.close()
    assert signal.getsignal(signal.SIGTERM) is before
