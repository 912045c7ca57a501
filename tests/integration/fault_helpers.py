"""What the fault tests need around a pytest run: its config, its time limit, its leftovers.

The plugin starts the service with ``start_new_session=True`` and the Locust child in a
process group of its own, so once the pytest subprocess has exited they are no longer its
children (nor ours): leftovers are found by where they run. Every process a run starts
works in the pytester directory (the service's and the Locust child's ``cwd`` is the
rootdir), or names it on its command line, and that directory is unique to the test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

DELAY_SERVER = Path(__file__).resolve().with_name("delay_server.py")
DELAY_COMMAND = f"{{python}} {DELAY_SERVER} --port {{port}} --delay-ms 5"
RESULTS = Path("results", "load_tests")


def thresholds(
    *,
    command: str = DELAY_COMMAND,
    startup_timeout: str = "10s",
    duration: str = "3s",
    request_timeout: str = "2s",
    budgets: str = "{p95_ms: 500, error_rate: 0.05}",
    load: str = "tasks: [{method: GET, path: /fast}]",
    extra: str = "",
) -> str:
    """A thresholds.yaml with one short scenario ``light``; ``load`` and ``extra`` are
    lines of that scenario (``extra`` may hold a bad key)."""
    scenario_lines = "\n".join(
        f"    {line}"
        for line in (
            "users: 4",
            "spawn_rate: 4",
            f"duration: {duration}",
            "wait_time: [0.01, 0.02]",
            f"request_timeout: {request_timeout}",
            "min_samples: 10",
            *load.splitlines(),
            f"budgets: {budgets}",
            *extra.splitlines(),
        )
    )
    head = textwrap.dedent(
        f"""\
        service:
          command: '{command}'
          ready_path: /health
          startup_timeout: {startup_timeout}
        scenarios:
          light:
        """
    )
    return head + scenario_lines + "\n"


#: a conftest for inner runs whose test harms the service the plugin started
SERVICE_CONFTEST = '''
import contextlib
import os
import threading
import time
from pathlib import Path

import psutil
import pytest


def _listener(port):
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            for conn in child.net_connections("tcp"):
                if conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
                    return child
    raise LookupError(f"no child process listens on port {port}")


@pytest.fixture
def service(perfgate_service):
    """The process the plugin started, found by its port."""
    return _listener(int(perfgate_service.rsplit(":", 1)[1]))


def _load_reaches(port):
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "pytest_perfgate.load.child" in " ".join(child.cmdline()):
                for conn in child.net_connections("tcp"):
                    established = conn.status == psutil.CONN_ESTABLISHED
                    if established and conn.raddr and conn.raddr.port == port:
                        return True
    return False


def signal_under_load(proc, signum, settle_s=1.0, timeout_s=20.0):
    """Send ``signum`` to ``proc`` ``settle_s`` after the Locust child connected to it;
    write signal.sent once done (never, when no load came within ``timeout_s``)."""
    port = next(c.laddr.port for c in proc.net_connections("tcp") if c.status == psutil.CONN_LISTEN)

    def act():
        deadline = time.monotonic() + timeout_s
        while not _load_reaches(port):
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)
        time.sleep(settle_s)
        os.kill(proc.pid, signum)
        Path("signal.sent").write_text(str(signum))

    thread = threading.Thread(target=act, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def under_load():
    return signal_under_load
'''


def _describe(proc: psutil.Process) -> str:
    try:
        with proc.oneshot():
            return f"pid {proc.pid} [{proc.status()}] {' '.join(proc.cmdline())} (cwd {proc.cwd()})"
    except psutil.Error:
        return f"pid {proc.pid} (gone)"


class ProcessWatch:
    """The processes a test's pytest run starts: none may outlive it.

    Records this process's children up front; afterwards a leftover is a new child of
    ours, or any process working in (or naming) ``directory``.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = str(directory)
        self.me = psutil.Process()
        self.before = {p.pid for p in self.me.children(recursive=True)}
        self.mine = {self.me.pid, *(p.pid for p in self.me.parents())}

    def _running(self, proc: psutil.Process) -> bool:
        try:
            return proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def _names_directory(self, info: dict[str, object]) -> bool:
        cwd = str(info.get("cwd") or "")
        cmdline = " ".join(str(a) for a in info.get("cmdline") or ())  # type: ignore[attr-defined]
        inside = cwd == self.directory or cwd.startswith(self.directory + os.sep)
        return inside or self.directory in cmdline

    def found(self) -> list[psutil.Process]:
        """Running processes of this test, now."""
        procs = {p.pid: p for p in self.me.children(recursive=True) if p.pid not in self.before}
        for proc in psutil.process_iter(["cwd", "cmdline"]):
            if proc.pid not in self.mine and self._names_directory(proc.info):
                procs[proc.pid] = proc
        return [p for p in procs.values() if self._running(p)]

    def leftovers(self, wait_s: float = 3.0) -> list[psutil.Process]:
        """The processes still running after ``wait_s`` (an exit takes a moment)."""
        deadline = time.monotonic() + wait_s
        while (left := self.found()) and time.monotonic() < deadline:
            time.sleep(0.1)
        return left

    def assert_none_left(self, wait_s: float = 3.0) -> None:
        """Fail (AssertionError) naming what still runs after ``wait_s``, and kill it."""
        left = self.leftovers(wait_s)
        if left:
            described = "\n".join(f"  {_describe(p)}" for p in left)
            self.kill_all()
            raise AssertionError(
                f"{len(left)} process(es) of this test still ran {wait_s:g} s after pytest "
                f"ended (now killed):\n{described}"
            )

    def require_none_left(self, wait_s: float = 3.0) -> None:
        """``assert_none_left`` for an xfail test, where it is a precondition."""
        with require():
            self.assert_none_left(wait_s)

    def kill_all(self) -> None:
        """Safety net: kill (SIGCONT first, in case one is stopped) whatever is left."""
        for proc in self.found():
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGCONT)
                proc.kill()
        psutil.wait_procs(self.found(), timeout=5)


@contextlib.contextmanager
def require() -> Iterator[None]:
    """Turn a failed assertion into ``pytest.fail``: in a test marked
    ``xfail(raises=AssertionError)`` a broken precondition must fail, not pass as expected."""
    try:
        yield
    except AssertionError as exc:
        pytest.fail(f"precondition: {exc}", pytrace=False)


def run_pytest(pytester: pytest.Pytester, *args: str, limit_s: float) -> pytest.RunResult:
    """``pytest *args`` in a subprocess (signals and process groups need a real process),
    failing with its output so far when it runs past ``limit_s``."""
    try:
        return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=limit_s)
    except pytester.TimeoutExpired:
        out = (pytester.path / "stdout").read_text(errors="replace")[-3000:]
        pytest.fail(f"pytest {' '.join(args)} ran past its {limit_s:g} s limit; output:\n{out}")


def start_pytest(pytester: pytest.Pytester, *args: str) -> subprocess.Popen[bytes]:
    """``pytest *args`` started in the pytester directory, output to ``out.txt``."""
    out = (pytester.path / "out.txt").open("wb")
    with out:
        return pytester.popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_for(condition: Callable[[], object], what: str, timeout_s: float) -> None:
    """Poll ``condition()`` until true; fail saying ``what`` was awaited."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout_s:g} s for {what}")
        time.sleep(0.1)


def result_files(directory: Path) -> list[str]:
    folder = directory / RESULTS
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
