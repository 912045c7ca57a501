"""The system under test as a child process: start on a free port, wait until ready, stop.

Used by the ``perfgate_service`` fixture, the scenario items and ``perfgate run``. The
service runs in its own process group so that stopping it also stops whatever it spawned
(uvicorn workers; ``processes.end_process_group``); its output goes to a log file in the
results folder.

The command runs under ``target.supervise``, which leads that group and ends it when
this process dies (even by SIGKILL), so no service outlives the run that started it.
Every process of the group carries the run's ``PERFGATE_RUN_ID`` (``processes.child_env``).
"""

from __future__ import annotations

import datetime as dt
import os
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from pytest_perfgate.core.model import ServiceSpec, Thresholds
from pytest_perfgate.core.parsing import expand_env
from pytest_perfgate.errors import ConfigError, ServiceError
from pytest_perfgate.options import Settings
from pytest_perfgate.processes import PARENT_PID_ENV, child_env, end_process_group
from pytest_perfgate.target import supervise

__all__ = ["ManagedService", "ServiceError", "free_port", "log_tail", "start_service"]


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 25) -> str:
    """The last ``lines`` lines of a log file, indented, or a note that it is empty."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "    (no log)"
    tail = text.splitlines()[-lines:]
    return "\n".join(f"    {line}" for line in tail) if tail else "    (the log is empty)"


@dataclass(frozen=True)
class Readiness:
    """How ``await_ready`` ended: ready, the target exited, or time ran out (``last``
    saying what the ready path answered last)."""

    ready: bool
    exited: bool = False
    last: str = "no answer yet"


def await_ready(
    url: str, timeout_s: float, alive: Callable[[], bool], poll_s: float = 0.1
) -> Readiness:
    """Poll ``url`` until it answers 200, ``alive()`` turns false, or ``timeout_s`` passes:
    the one readiness loop of a process and of a container."""
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if not alive():
                return Readiness(ready=False, exited=True, last=last)
            try:
                response = client.get(url)
                if response.status_code == 200:
                    return Readiness(ready=True, last="HTTP 200")
                last = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(poll_s)
    return Readiness(ready=False, last=last)


class ManagedService:
    """One started instance of ``spec.command``; ``start()`` returns its base URL."""

    def __init__(
        self,
        spec: ServiceSpec,
        log_path: Path,
        *,
        cwd: Path,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        if spec.command is None:
            raise ServiceError("thresholds.yaml: service.command is not set and no URL was given")
        self.spec = spec
        self.log_path = log_path
        self.cwd = Path(spec.cwd) if spec.cwd else cwd
        self.extra_env = dict(extra_env or {})
        self.port = 0
        self.url = ""
        self.proc: subprocess.Popen[bytes] | None = None

    def argv(self, port: int) -> list[str]:
        assert self.spec.command is not None
        command = self.spec.command.replace("{python}", shlex.quote(sys.executable))
        return shlex.split(command.replace("{port}", str(port)))

    def start(self) -> str:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = self.argv(self.port)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            spec_env = {
                k: expand_env(v, f"service.env.{k}", os.environ) for k, v in self.spec.env.items()
            }
        except ConfigError as exc:
            raise ServiceError(f"cannot start the service: {exc}") from None
        env = child_env({**os.environ, **spec_env, **self.extra_env})
        if threading.current_thread() is not threading.main_thread():
            # Linux's parent-death signal follows the starting thread, which may end first:
            # the supervisor then watches no parent, and ``stop`` alone ends the service
            del env[PARENT_PID_ENV]
        unusable = _unusable(argv[0], self.cwd, env)
        if unusable:
            raise ServiceError(f"cannot start the service: {shlex.join(argv)}: {unusable}")
        with open(self.log_path, "ab") as log:
            try:
                self.proc = subprocess.Popen(
                    supervised(argv), cwd=self.cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, start_new_session=True,
                )  # fmt: skip
            except OSError as exc:
                raise ServiceError(
                    f"cannot start the service: {shlex.join(argv)}: {exc.strerror or exc}"
                ) from None
        try:
            self._wait_ready()
        except BaseException:  # Ctrl-C or a surprise while waiting must not orphan it
            self.stop()
            raise
        return self.url

    def _wait_ready(self) -> None:
        ready_url = self.url + self.spec.ready_path
        wait = await_ready(ready_url, self.spec.startup_timeout_s, self.alive)
        if wait.ready:
            return
        code = self.proc.returncode if self.proc else None  # stop() forgets the process
        self.stop()
        if wait.exited:
            raise ServiceError(
                f"the service exited with code {code} before it was ready "
                f"({self.spec.command}); end of {self.log_path}:\n{log_tail(self.log_path)}"
            )
        raise ServiceError(
            f"the service was not ready at {ready_url} within "
            f"{self.spec.startup_timeout_s:g}s (last: {wait.last}); end of {self.log_path}:\n"
            f"{log_tail(self.log_path)}"
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM the whole process group, SIGKILL what is left after ``grace_s``."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        end_process_group(proc, grace_s)
        self.last_returncode = proc.returncode

    def __enter__(self) -> ManagedService:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _unusable(program: str, cwd: Path, env: Mapping[str, str]) -> str | None:
    """Why ``program`` cannot be run (as ``Popen`` would say it), or None.

    Checked here because under the supervisor the failure would otherwise be an exit code.
    """
    if os.sep in program:
        path = cwd / program
        if not path.is_file():
            return "No such file or directory"
        return None if os.access(path, os.X_OK) else "Permission denied"
    found = shutil.which(program, path=env.get("PATH", os.defpath))
    return None if found else "No such file or directory"


def supervised(argv: list[str]) -> list[str]:
    """``argv`` run under ``target.supervise``, by its path (see that module)."""
    return [sys.executable, str(Path(supervise.__file__).resolve()), "--", *argv]


def start_service(thresholds: Thresholds, settings: Settings, cwd: Path) -> ManagedService:
    """``service.command`` started and ready, its log in the results folder (or ServiceError)."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    log = settings.results_dir / f"{stamp}_service.log"
    service = ManagedService(thresholds.service, log, cwd=cwd)
    service.start()
    return service
