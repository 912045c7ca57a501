"""The system under test in a container: start it with podman or docker, wait, stop, remove.

``service.container`` in thresholds.yaml (``core.model.ContainerSpec``) names either an
image, which the gate runs itself (``<engine> run -d`` with ``port`` published on a free
127.0.0.1 port; built first from ``build`` when given), or a service of a Compose file,
which the gate brings up as a Compose project of its own (``podman-compose`` or ``docker
compose``; the free port in ``PERFGATE_PORT`` for the file to publish, e.g.
``"127.0.0.1:${PERFGATE_PORT:-8000}:8000"``), or a ``start`` command the gate runs in the
foreground (its output is the log; ``{port}``, ``{name}`` filled in) with the ``stop``
command that removes what it started. ``ContainerService`` is a ``Target`` as
``ManagedService`` is: ``start()`` returns the base URL once ``ready_path`` answers 200
within ``startup_timeout``, ``alive()``, ``stop()``.

Nothing outlives the run:

- every container is named after the run (``perfgate-<PERFGATE_RUN_ID>-<n>``, a Compose
  project of that name) and labelled ``perfgate.run_id``;
- ``stop()`` stops (SIGTERM, SIGKILL after ``stop_timeout``) and removes the container,
  or ``down``s the project (its containers, network and volumes);
- a failed start (the container exits, or is not ready in time) stops and removes it
  before ``ServiceError`` is raised, with the end of the container's log;
- a killed gate: ``target.container_watch`` (started in a session of its own, so Ctrl-C
  does not reach it) holds a pipe from this process and removes everything when the
  pipe closes without ``done``.

The container's output is followed (``<engine> logs -f``) into a log file in the results
folder; that follower's end is how ``alive()`` knows the container stopped.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from pytest_perfgate.core.model import ContainerSpec, ServiceSpec, Thresholds
from pytest_perfgate.core.parsing import expand_env
from pytest_perfgate.errors import ConfigError, ServiceError
from pytest_perfgate.options import Settings
from pytest_perfgate.processes import child_env, end_process_group, run_id
from pytest_perfgate.target import container_watch
from pytest_perfgate.target.machine import SERVICE_ROOTS
from pytest_perfgate.target.process import await_ready, free_port, log_tail

__all__ = [
    "ENGINES",
    "RUN_LABEL",
    "ContainerService",
    "compose_command",
    "find_engine",
    "start_container",
]

#: engines looked for on PATH, in this order, when ``service.container.engine`` is unset
ENGINES = ("podman", "docker")
#: the label every container the gate runs carries: the run's id
RUN_LABEL = "perfgate.run_id"
#: seconds an engine command (run, inspect, port, rm) may take
ENGINE_TIMEOUT_S = 120.0
#: seconds between two looks at readiness
POLL_S = 0.2
_COUNTER = itertools.count(1)


def find_engine(name: str | None = None) -> str:
    """The engine's executable: ``name`` or the first of ``ENGINES`` on PATH."""
    for candidate in (name,) if name else ENGINES:
        path = shutil.which(candidate)
        if path:
            return path
    wanted = name or " or ".join(ENGINES)
    raise ServiceError(f"cannot start the container: {wanted} is not on PATH")


def compose_command(engine: str) -> list[str]:
    """How to run Compose with ``engine``: ``docker compose``, or ``podman-compose``
    (on PATH, or beside this interpreter in its virtual environment)."""
    if Path(engine).name.startswith("docker"):
        return [engine, "compose"]
    beside = Path(sys.executable).parent / "podman-compose"
    found = shutil.which("podman-compose") or (str(beside) if beside.exists() else None)
    if found is None:
        raise ServiceError(
            "cannot start the container: podman-compose is not on PATH (pip install podman-compose)"
        )
    return [found]


class ContainerService:
    """One container of ``spec.container``; ``start()`` returns its base URL."""

    def __init__(self, spec: ServiceSpec, log_path: Path, *, cwd: Path) -> None:
        if spec.container is None:
            raise ServiceError("thresholds.yaml: service.container is not set")
        self.spec = spec
        self.container: ContainerSpec = spec.container
        self.log_path = log_path
        self.cwd = Path(spec.cwd) if spec.cwd else cwd
        commands = self.container.start is not None  # they name their own engine
        self.engine = (
            (self.container.engine or "") if commands else find_engine(self.container.engine)
        )
        #: the container's name, or the Compose project's
        self.name = f"perfgate-{run_id()[:12]}-{os.getpid()}-{next(_COUNTER)}"
        self.port = 0
        self.url = ""
        self.container_id = ""
        self._follower: subprocess.Popen[bytes] | None = None
        self._watcher: subprocess.Popen[bytes] | None = None
        self._env: dict[str, str] = {}
        self._roots: set[int] = set()  # the container's processes, in SERVICE_ROOTS

    # --- start -----------------------------------------------------------------------

    def start(self) -> str:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._env = self._environment()
        if self.container.build and self.container.image:
            self._build()
        self.port = free_port()
        self._watch()
        try:
            if self.container.start is not None:
                self._start_command()
            else:
                self.container_id = self._run() if self.container.image else self._compose_up()
                self._follow()
                self._know_processes()
            host_port = self._published_port() if self.container.compose_file else self.port
            self.url = f"http://127.0.0.1:{host_port}"
            self._wait_ready()
        except BaseException:  # a failure, Ctrl-C or SIGTERM while starting: leave nothing
            self.stop()
            raise
        return self.url

    def _environment(self) -> dict[str, str]:
        try:
            spec_env = {
                k: expand_env(v, f"service.env.{k}", os.environ) for k, v in self.spec.env.items()
            }
        except ConfigError as exc:
            raise ServiceError(f"cannot start the container: {exc}") from None
        return spec_env

    def _build(self) -> None:
        spec = self.container
        assert spec.image is not None and spec.build is not None
        argv = [self.engine, "build", "-t", spec.image]
        if Path(self.engine).name.startswith("podman"):
            argv += ["--format", "docker"]  # keeps the image's HEALTHCHECK
        if spec.dockerfile:
            argv += ["-f", str(self.cwd / spec.dockerfile)]
        for key, value in spec.build_args.items():
            argv += ["--build-arg", f"{key}={value}"]
        self._engine([*argv, str(self.cwd / spec.build)], "build the image", timeout=None)

    def _run(self) -> str:
        spec = self.container
        assert spec.image is not None
        argv = [
            self.engine, "run", "-d", "--name", self.name,
            "--label", f"{RUN_LABEL}={run_id()}", "-p", f"127.0.0.1:{self.port}:{spec.port}",
        ]  # fmt: skip
        for key, value in self._env.items():
            argv += ["-e", f"{key}={value}"]
        argv += shlex.split(spec.options or "")
        argv.append(spec.image)
        if spec.args:
            argv += shlex.split(spec.args.replace("{port}", str(spec.port)))
        return self._engine(argv, "start the container").strip().splitlines()[-1]

    def _command(self, text: str) -> list[str]:
        return shlex.split(text.replace("{port}", str(self.port)).replace("{name}", self.name))

    def _start_command(self) -> None:
        """``start`` in the foreground, its output into the log (it is the follower)."""
        assert self.container.start is not None
        argv = self._command(self.container.start)
        env = {**child_env(), **self._env, "PERFGATE_PORT": str(self.port)}
        with open(self.log_path, "ab") as log:
            log.write(f"$ {shlex.join(argv)}\n".encode())
            log.flush()
            try:
                self._follower = subprocess.Popen(
                    argv, cwd=self.cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, start_new_session=True,
                )  # fmt: skip
            except OSError as exc:
                raise ServiceError(
                    f"cannot start the container: {shlex.join(argv)}: {exc.strerror or exc}"
                ) from None

    def _compose(self) -> list[str]:
        assert self.container.compose_file is not None
        file = self.cwd / self.container.compose_file
        return [*compose_command(self.engine), "-p", self.name, "-f", str(file)]

    def _compose_up(self) -> str:
        service = self.container.service
        self._engine([*self._compose(), "up", "-d", service], "start the Compose service")
        query = [
            self.engine, "ps", "-a", "-q", "--no-trunc",
            "--filter", f"label=com.docker.compose.project={self.name}",
            "--filter", f"label=com.docker.compose.service={service}",
        ]  # fmt: skip
        found = self._engine(query, "find the Compose service's container").split()
        if not found:
            raise ServiceError(
                f"cannot start the container: {self.container.compose_file} started no "
                f"container for service {service!r}"
            )
        return found[0]

    def _published_port(self) -> int:
        answer = self._engine(
            [self.engine, "port", self.container_id, str(self.container.port)],
            f"find the published port of {self.container.port}",
        )
        for line in answer.splitlines():
            host_port = line.rsplit(":", 1)[-1].strip()
            if host_port.isdigit():
                return int(host_port)
        if not self.alive():
            raise self._exited()
        raise ServiceError(
            f"cannot start the container: its port {self.container.port} is not published "
            f'(publish it, e.g. ports: ["127.0.0.1:${{PERFGATE_PORT:-8000}}:'
            f'{self.container.port}"])'
        )

    def _follow(self) -> None:
        """The container's output into the log file, until the container stops."""
        with open(self.log_path, "ab") as log:
            self._follower = subprocess.Popen(
                [self.engine, "logs", "-f", self.container_id], stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip

    def _know_processes(self) -> None:
        """The container's monitor and processes count as the service's on the machine
        sampler (``target.machine.SERVICE_ROOTS``), not as outside load."""
        with contextlib.suppress(ServiceError):
            answer = self._engine(
                [self.engine, "inspect", "--format", "{{.State.Pid}}", self.container_id],
                "inspect the container",
            )
            pid = int(answer.strip() or 0)
            parent = _parent(pid)
            self._roots = {p for p in (pid, parent) if p > 1}
            SERVICE_ROOTS.update(self._roots)

    def _watch(self) -> None:
        """The watcher that removes the container should this process die first."""
        self._watcher = subprocess.Popen(
            [sys.executable, str(Path(container_watch.__file__).resolve()), *self._cleanup_argv()],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=child_env(), start_new_session=True,
        )  # fmt: skip

    def _cleanup_argv(self) -> list[str]:
        if self.container.stop is not None:
            return ["--", *self._command(self.container.stop)]
        if self.container.image:
            return ["--", self.engine, "rm", "-f", self.name]
        return ["--", *self._compose(), "down", "-v", "--remove-orphans", "-t", "1"]

    def _wait_ready(self) -> None:
        ready_url = self.url + self.spec.ready_path
        wait = await_ready(ready_url, self.spec.startup_timeout_s, self.alive, POLL_S)
        if wait.ready:
            return
        if wait.exited:
            raise self._exited()
        raise ServiceError(
            f"the container was not ready at {ready_url} within "
            f"{self.spec.startup_timeout_s:g}s (last: {wait.last}; {self.describe()}); end of "
            f"{self.log_path}:\n{self._log_tail()}"
        )

    def _exited(self) -> ServiceError:
        tail = self._log_tail()  # before ``inspect`` adds its line to the log
        return ServiceError(
            f"the container exited with code {self._exit_code()} before it was ready "
            f"({self.describe()}); end of {self.log_path}:\n{tail}"
        )

    def _log_tail(self) -> str:
        if self._follower is not None:  # let it write what the container wrote last
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._follower.wait(timeout=2.0)
        return log_tail(self.log_path)

    def _exit_code(self) -> str:
        if self.container.start is not None:
            code = self._follower.poll() if self._follower is not None else None
            return "unknown" if code is None else str(code)
        try:
            return self._engine(
                [self.engine, "inspect", "--format", "{{.State.ExitCode}}", self.container_id],
                "inspect the container",
            ).strip()
        except ServiceError:
            return "unknown"

    def describe(self) -> str:
        spec = self.container
        if spec.start is not None:
            return f"start: {shlex.join(self._command(spec.start))}"
        if spec.image:
            return f"{Path(self.engine).name} run {spec.image} as {self.name}"
        return f"{spec.compose_file} service {spec.service!r}, project {self.name}"

    # --- running and stopping ----------------------------------------------------------

    def alive(self) -> bool:
        return self._follower is not None and self._follower.poll() is None

    def stop(self, grace_s: float | None = None) -> None:
        """Stop (SIGTERM, SIGKILL after ``stop_timeout``) and remove the container, its
        network and volumes (Compose), then end the log follower and the watcher."""
        grace = self.container.stop_timeout_s if grace_s is None else grace_s
        watcher, self._watcher = self._watcher, None
        if watcher is None:
            return
        seconds = str(max(1, round(grace)))
        with contextlib.suppress(ServiceError):
            if self.container.stop is not None:
                self._engine(self._command(self.container.stop), "stop", check=False)
            elif self.container.image:
                if self.container_id:
                    self._engine([self.engine, "stop", "-t", seconds, self.name], "stop")
                self._engine([self.engine, "rm", "-f", self.name], "remove", check=False)
            else:
                self._engine(
                    [*self._compose(), "down", "-v", "--remove-orphans", "-t", seconds],
                    "bring the Compose project down",
                    check=False,
                )
        SERVICE_ROOTS.difference_update(self._roots)
        follower, self._follower = self._follower, None
        if follower is not None:
            end_process_group(follower, grace_s=2.0)
        assert watcher.stdin is not None
        with contextlib.suppress(OSError):
            watcher.stdin.write(container_watch.DONE.encode())
            watcher.stdin.close()  # told "done", it exits without cleaning up
        with contextlib.suppress(subprocess.TimeoutExpired):
            watcher.wait(timeout=5.0)
        end_process_group(watcher, grace_s=5.0)

    def _engine(
        self, argv: Sequence[str], what: str, *, check: bool = True,
        timeout: float | None = ENGINE_TIMEOUT_S,
    ) -> str:  # fmt: skip
        """Run an engine command, its output in the log file too; its stdout."""
        env: Mapping[str, str] = {**child_env(), **self._env, "PERFGATE_PORT": str(self.port)}
        try:
            done = subprocess.run(
                list(argv), cwd=self.cwd, env=env, stdin=subprocess.DEVNULL,
                capture_output=True, timeout=timeout, check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ServiceError(f"cannot {what}: {shlex.join(argv)}: {exc}") from None
        with open(self.log_path, "ab") as log:
            log.write(f"$ {shlex.join(argv)}\n".encode() + done.stderr)
        if check and done.returncode != 0:
            raise ServiceError(
                f"cannot {what}: {shlex.join(argv)} exited with code {done.returncode}:\n"
                + _indent(done.stderr.decode(errors="replace"))
            )
        return done.stdout.decode(errors="replace")

    def __enter__(self) -> ContainerService:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _parent(pid: int) -> int:
    """The parent of ``pid`` (the container's monitor), or 0 where it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return 0
    fields = stat.rsplit(")", 1)[-1].split()
    return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0


def _indent(text: str, lines: int = 25) -> str:
    tail = text.strip().splitlines()[-lines:]
    return "\n".join(f"    {line}" for line in tail) if tail else "    (no output)"


def start_container(thresholds: Thresholds, settings: Settings, cwd: Path) -> ContainerService:
    """``service.container`` started and ready, its log in the results folder (or ServiceError)."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    log = settings.results_dir / f"{stamp}_service_container.log"
    service = ContainerService(thresholds.service, log, cwd=cwd)
    service.start()
    return service
