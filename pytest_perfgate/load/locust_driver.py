"""Scenario -> load: ``LocustDriver``, the ``LoadDriver`` that runs Locust in a child process.

Runs in the pytest (or CLI) process and never imports locust; the child (``load.child``)
is the only module that does, because importing locust patches the whole process with
gevent. The two speak the JSON lines of ``load.protocol``: the parent sends the spec and
``stop <reason>`` on the child's stdin and reads samples, progress, errors and ``done``
from its stdout; the child's stderr is the run log ``{prefix}.log``.

With ``processes > 1`` or ``external_workers`` the child is a Locust master: it writes a
worker locustfile ``{prefix}_locustfile.py``, starts the local workers in its own process
group and waits for the external ones (``master_address`` says where they connect). With
``arrival_rate`` the child runs the open model (requests started on a timetable) and
reports the requests it sent late or dropped; ``RawRun.problems`` says when the target
rate was not reached.

Every way out of ``LocustDriver.run`` (return, ``LoadRunError``, KeyboardInterrupt) leaves
no process behind: the child runs in its own process group, which is terminated, then
killed (``processes.end_process_group``). When this process dies without a way out
(SIGKILL), the child notices (``processes.die_with_parent``, and its stdin's end of file)
and stops its workers and itself.

About 500 lines, over the project's 450: the parent's half of one conversation (the spec,
the reading thread, the deadlines, the outcome and its problems) reads best in one place;
its types live in ``load.protocol``, the values it returns in ``load.driver``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, cast

from pytest_perfgate.core.model import Scenario, Task, scenario_settings
from pytest_perfgate.core.stats import Sample, percentile
from pytest_perfgate.errors import LoadRunError
from pytest_perfgate.load.driver import (
    Progress,
    ProgressCallback,
    RawRun,
    StopRule,
    history_rows,
)
from pytest_perfgate.load.protocol import (
    ChildMessage,
    ChildSpec,
    DistributedSpec,
    DoneMessage,
    Row,
    ScenarioSpec,
    TaskSpec,
    TwinSpec,
    decode_row,
    stop_line,
)
from pytest_perfgate.processes import child_env as tagged_env
from pytest_perfgate.processes import end_process_group

__all__ = ["LocustDriver", "child_env", "child_spec", "master_address", "run_load"]

#: seconds the child may take to import locust and the locustfile before it says "started"
STARTUP_TIMEOUT_S = 60.0
#: slack on top of duration + stop timeout before a running child counts as hung
HANG_SLACK_S = 30.0
#: seconds between SIGTERM and SIGKILL when the child group has to be ended
TERM_GRACE_S = 5.0
#: above this CPU share for most of the run, the load generator measured itself
CPU_SATURATED_PERCENT = 90.0
#: seconds a master waits for all its workers (local and external) to connect
WORKER_CONNECT_TIMEOUT_S = 60.0
#: the master's port for external workers when ``master_bind`` names none (Locust's default)
DEFAULT_MASTER_PORT = 5557
#: an open-model run that started fewer than this share of its due requests is untrustworthy
ARRIVAL_SHORTFALL = 0.95
LOG_TAIL_LINES = 20


class LocustDriver:
    """The ``LoadDriver`` that runs each scenario in a Locust child process.

    ``env`` is added to the child's environment (the parent's own is inherited). ``twin``
    makes every run an A/B run: each task also drives that baseline (``core.duet``).
    """

    def __init__(
        self, env: Mapping[str, str] | None = None, *, twin: TwinSpec | None = None
    ) -> None:
        self.env = dict(env or {})
        self.twin = twin

    def run(
        self,
        scenario: Scenario,
        host: str,
        results_dir: Path,
        prefix: str,
        *,
        on_progress: ProgressCallback | None = None,
        should_stop: StopRule | None = None,
        cwd: Path | None = None,
    ) -> RawRun:
        """Drive ``scenario`` against ``host`` in a Locust child process (see ``LoadDriver``).

        Files go to ``results_dir / f"{prefix}_stats.csv"`` etc.; ``cwd`` is where the
        child runs (default: the current directory).
        """
        results_dir.mkdir(parents=True, exist_ok=True)
        workdir = (cwd or Path.cwd()).resolve()
        files = output_files(results_dir, prefix)
        spec = child_spec(scenario, host, results_dir / prefix, workdir)
        if self.twin is not None:
            spec["twin"] = self.twin
        if spec["distributed"]:
            files["worker_locustfile"] = Path(spec["distributed"]["locustfile"])
        proc = _start_child(files["log"], workdir, child_env(self.env))
        try:
            return _Session(scenario, proc, files, on_progress, should_stop).run(spec)
        finally:  # KeyboardInterrupt too: it propagates, the child does not outlive it
            end_process_group(proc, TERM_GRACE_S)


def run_load(
    scenario: Scenario,
    host: str,
    results_dir: Path,
    prefix: str,
    *,
    on_progress: ProgressCallback | None = None,
    should_stop: StopRule | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> RawRun:
    """``LocustDriver(env).run(...)`` in one call, for tests and benchmarks."""
    return LocustDriver(env).run(
        scenario, host, results_dir, prefix,
        on_progress=on_progress, should_stop=should_stop, cwd=cwd,
    )  # fmt: skip


def _start_child(log_path: Path, workdir: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "pytest_perfgate.load.child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=workdir,
            env=env,
            start_new_session=True,  # one group to end, and no Ctrl-C from the terminal
        )


def output_files(results_dir: Path, prefix: str) -> dict[str, Path]:
    """The files of one run; the CSV names are the ones ``locust --csv`` writes.

    The CSVs and Locust's HTML report cover the measured window (the warm-up excluded):
    their request counts are the result's.
    """
    base = results_dir / prefix
    return {
        "stats_csv": Path(f"{base}_stats.csv"),
        "stats_history_csv": Path(f"{base}_stats_history.csv"),
        "failures_csv": Path(f"{base}_failures.csv"),
        "exceptions_csv": Path(f"{base}_exceptions.csv"),
        "locust_html": Path(f"{base}_locust.html"),  # Locust's own report (as ``--html``)
        "log": Path(f"{base}.log"),
    }


def child_spec(scenario: Scenario, host: str, base: Path, workdir: Path) -> ChildSpec:
    """What the child needs to know, as JSON-ready values (the first line of its stdin)."""
    locustfile = None
    if scenario.locustfile:
        locustfile = str((workdir / scenario.locustfile).resolve())
    settings = {
        "name": scenario.name,
        **scenario_settings(scenario),
        "tasks": [_task_spec(t, scenario.seed + i) for i, t in enumerate(scenario.tasks)],
        "locustfile": locustfile,
        "user_classes": list(scenario.user_classes),
        "tags": list(scenario.tags),
        "exclude_tags": list(scenario.exclude_tags),
    }
    return {
        "scenario": cast(ScenarioSpec, settings),
        "distributed": distributed_spec(scenario, base),
        "host": host.rstrip("/"),
        "base_filepath": str(base),
        "request_timeout_s": scenario.request_timeout_s,
        # requests in flight at the end finish and are recorded instead of being dropped
        "stop_timeout_s": scenario.request_timeout_s,
        "report_interval_s": 0.5,
        "sys_path": [str(workdir)],
        "twin": None,  # an A/B run: LocustDriver(twin=...) sets the baseline
    }


def distributed_spec(scenario: Scenario, base: Path) -> DistributedSpec | None:
    """The master's settings, or None for a single process (``processes`` 1, no externals)."""
    local = scenario.processes if scenario.processes > 1 else 0
    if not local and not scenario.external_workers:
        return None
    bind, port = master_address(scenario.master_bind, external=scenario.external_workers > 0)
    return {
        "local_workers": local,
        "external_workers": scenario.external_workers,
        "bind": bind,
        "port": port,
        "connect_timeout_s": WORKER_CONNECT_TIMEOUT_S,
        "locustfile": f"{base}_locustfile.py",
    }


def master_address(master_bind: str, *, external: bool) -> tuple[str, int]:
    """The master's (host, port) from ``master_bind``: ``HOST`` or ``HOST:PORT``.

    Without a port: 0 (a free one), or ``DEFAULT_MASTER_PORT`` when workers from elsewhere
    must find it. ``*`` or ``0.0.0.0`` binds every interface.
    """
    host, sep, port = master_bind.rpartition(":")
    if sep and port.isdigit() and ":" not in host:
        return host, int(port)
    return master_bind, DEFAULT_MASTER_PORT if external else 0


def _task_spec(task: Task, seed: int = 0) -> TaskSpec:
    return {
        "method": task.method,
        "path": task.path,
        "name": task.name,
        "weight": task.weight,
        "json": task.json,
        "json_factory": task.json_factory,
        "headers": dict(task.headers),
        **_stream_spec(task, seed),  # type: ignore[typeddict-item] # its NotRequired keys
    }


def _stream_spec(task: Task, seed: int) -> dict[str, Any]:
    """A streaming task's keys (``load.sse``), ``seed`` that of its draws; none for a plain one."""
    if task.kind == "http":
        return {}
    max_tokens = task.max_tokens
    if max_tokens is not None and not isinstance(max_tokens, int):
        max_tokens = dict(max_tokens)
    return {
        "kind": task.kind,
        "model": task.model,
        "prompts": list(task.prompts),
        "max_tokens": max_tokens,
        "temperature": task.temperature,
        "stream": task.stream,
        "extra_body": dict(task.extra_body),
        "tokens_field": task.tokens_field,
        "seed": seed,
    }


def child_env(extra: Mapping[str, str] | None) -> dict[str, str]:
    """The parent's environment plus ``extra``, with this package importable in the child.

    Tagged with the run's id and this pid (``processes.child_env``): the child and its
    workers end when this process dies, even by SIGKILL.
    """
    env = tagged_env({**os.environ, **(extra or {})})
    package_root = str(Path(__file__).resolve().parents[2])  # the folder holding the package
    paths = [package_root, *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONUNBUFFERED"] = "1"
    return env


# --- reading the child ---------------------------------------------------------------

_KINDS = {"started", "samples", "progress", "error", "done"}


def _read_lines(stream: IO[bytes], inbox: queue.Queue[ChildMessage | None]) -> None:
    """Thread: the child's messages into ``inbox``; None when its stdout closes."""
    try:
        for line in stream:
            message = _parse_message(line)
            if message is not None:
                inbox.put(message)
    except (OSError, ValueError):
        pass  # the stream was closed under us while ending the child
    finally:
        inbox.put(None)


def _parse_message(line: bytes) -> ChildMessage | None:
    """A line of the child's stdout as its message; None for a line that is no message."""
    try:
        message = json.loads(line)
    except ValueError:
        return None
    if not isinstance(message, dict) or message.get("type") not in _KINDS:
        return None  # a stray line: the protocol's messages are all there is to read
    return cast(ChildMessage, message)


class _Session:
    """The parent's side of one run: reads messages, asks the callbacks, keeps the deadline."""

    def __init__(
        self,
        scenario: Scenario,
        proc: subprocess.Popen[bytes],
        files: Mapping[str, Path],
        on_progress: ProgressCallback | None,
        should_stop: StopRule | None,
    ) -> None:
        self.scenario = scenario
        self.proc = proc
        self.files = files
        self.on_progress = on_progress
        self.should_stop = should_stop
        self.samples: list[Sample] = []
        self.failures = 0
        self.sorted_ms: list[float] = []  # measured samples' ms, kept sorted for progress P95
        self.users_at: dict[int, int] = {}  # second -> users reported then
        self.cpu_readings: list[float] = []
        self.errors: list[str] = []
        self.fatal: str | None = None
        self.done: DoneMessage | None = None
        self.started_at: float | None = None
        self.stop_reason: str | None = None
        self.users = 0
        self.distributed = False
        self.inbox: queue.Queue[ChildMessage | None] = queue.Queue()  # None: end of stdout

    def run(self, spec: ChildSpec) -> RawRun:
        assert self.proc.stdout is not None
        reader = threading.Thread(
            target=_read_lines, args=(self.proc.stdout, self.inbox), daemon=True
        )
        reader.start()
        self.distributed = spec["distributed"] is not None
        self._send(json.dumps(spec))
        startup = STARTUP_TIMEOUT_S + (WORKER_CONNECT_TIMEOUT_S if self.distributed else 0)
        hung = self._pump(time.monotonic() + startup)
        if not hung:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=TERM_GRACE_S)  # "done" is the child's last word
        end_process_group(self.proc, TERM_GRACE_S)
        reader.join(timeout=TERM_GRACE_S)
        self._drain()
        return self._result(hung)

    def _send(self, line: str) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(line.encode() + b"\n")
            self.proc.stdin.flush()
        except OSError:
            pass  # the child is gone; its exit is judged later

    def _pump(self, deadline: float) -> bool:
        """Handle messages until the child's stdout closes; True when it missed its deadline."""
        next_tick = time.monotonic() + 1.0
        while True:
            now = time.monotonic()
            if now >= deadline:
                return True
            try:
                message = self.inbox.get(timeout=max(0.0, min(next_tick, deadline) - now))
            except queue.Empty:
                pass
            else:
                if message is None:
                    return False
                if message["type"] == "started" and self.started_at is None:
                    self.started_at = time.monotonic()
                    deadline = self.started_at + self._run_budget_s()
                self._handle(message)
            if time.monotonic() >= next_tick and self.started_at is not None:
                next_tick = time.monotonic() + 1.0
                self._tick()

    def _run_budget_s(self) -> float:
        # a master's workers get the stop timeout plus HANG_SLACK_S to report and quit
        stop = self.scenario.request_timeout_s * (2 if self.distributed else 1)
        return self.scenario.duration_s + stop + HANG_SLACK_S

    def _drain(self) -> None:
        while True:
            try:
                message = self.inbox.get_nowait()
            except queue.Empty:
                return
            if message is not None:
                self._handle(message)

    def _handle(self, message: ChildMessage) -> None:
        if message["type"] == "samples":
            self._add_rows(message["rows"])
        elif message["type"] == "progress":
            self.users = int(message["users"])
            self.users_at[int(float(message["t"]))] = self.users
            if message["cpu_percent"] is not None:
                self.cpu_readings.append(float(message["cpu_percent"]))
        elif message["type"] == "error":
            if message["fatal"]:
                self.fatal = str(message["message"])
            else:
                self.errors.append(str(message["message"]))
        elif message["type"] == "done":
            self.done = message

    def _add_rows(self, rows: Sequence[Row]) -> None:
        new = [decode_row(row) for row in rows]
        self.samples.extend(new)
        self.failures += sum(1 for s in new if not s.ok)
        measured = [s.ms for s in new if s.t >= self.scenario.warmup_s]
        if measured:
            # appending a sorted run keeps the re-sort linear (timsort merges runs)
            self.sorted_ms.extend(sorted(measured))
            self.sorted_ms.sort()

    def _tick(self) -> None:
        assert self.started_at is not None
        elapsed = time.monotonic() - self.started_at
        if self.on_progress is not None:
            self.on_progress(self._progress(elapsed))
        if self.should_stop is not None and self.stop_reason is None:
            reason = self.should_stop(self.samples, elapsed)
            if reason:
                self.stop_reason = f"stopped: {reason}"
                self._send(stop_line(reason))

    def _progress(self, elapsed: float) -> Progress:
        return Progress(
            elapsed_s=elapsed,
            users=self.users,
            requests=len(self.samples),
            failures=self.failures,
            rps=self._recent_rps(elapsed),
            p95_ms=percentile(self.sorted_ms, 0.95) if self.sorted_ms else None,
        )

    def _recent_rps(self, elapsed: float, window: float = 5.0) -> float:
        # the last second is left out: its requests are mostly still in flight or unreported
        high = elapsed - 1.0
        low = high - window
        count = 0
        for s in reversed(self.samples):  # in arrival order, so roughly by start time
            if s.t < low - 2.0:  # a margin for requests that started early and ended late
                break
            count += low <= s.t < high
        return count / window if high > 0 else 0.0

    # --- the outcome ---------------------------------------------------------------------

    def _result(self, hung: bool) -> RawRun:
        partial = self._raw_run()
        failure = self._failure(hung)
        if failure is not None:
            raise LoadRunError(
                f"{self.scenario.name}: {failure}\n{_log_tail(self.files['log'])}",
                partial=partial if partial.samples else None,
                log=self.files["log"],
            )
        return partial

    def _failure(self, hung: bool) -> str | None:
        code = self.proc.returncode
        if hung:
            limit = "start" if self.started_at is None else "finish"
            return f"the load generator did not {limit} in time and was killed"
        if self.fatal is not None:
            return f"the load generator failed: {self.fatal}"
        if self.done is None:
            how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            return f"the load generator died ({how}) before it finished"
        if not self.samples:
            return (
                "the load generator recorded no request; is the host up and do the "
                "user classes make requests?"
            )
        return None

    def _raw_run(self) -> RawRun:
        done = self.done or self._unfinished()
        duration = float(done["duration_s"])
        cpu = done["cpu_percent"]
        if cpu is None and self.cpu_readings:
            cpu = sum(self.cpu_readings) / len(self.cpu_readings)
        late, dropped = int(done["late_requests"]), int(done["dropped_requests"])
        return RawRun(
            scenario=self.scenario,
            samples=tuple(self.samples),
            duration_s=duration,
            stop_reason=self.stop_reason or str(done["stop_reason"] or "interrupted"),
            files=dict(self.files),
            history=history_rows(self.samples, self.users_at, duration),
            loadgen_cpu_percent=None if cpu is None else float(cpu),
            problems=self._problems(duration, late, dropped),
            late_requests=late,
            dropped_requests=dropped,
            requests_per_worker=dict(done.get("requests_per_worker") or {}),
        )

    def _unfinished(self) -> DoneMessage:
        """What a child that never said "done" is taken to have said: what the samples show."""
        duration = max((s.t for s in self.samples), default=0.0)
        return {
            "type": "done", "duration_s": duration, "cpu_percent": None, "stop_reason": "",
            "late_requests": 0, "dropped_requests": 0,
        }  # fmt: skip

    def _problems(self, duration_s: float, late: int, dropped: int) -> tuple[str, ...]:
        problems = [f"load generator error: {e}" for e in self.errors]
        saturated = cpu_saturation(self.cpu_readings)
        if saturated is not None:
            problems.append(saturated)
        if self.scenario.arrival_rate is not None:
            shortfall = arrival_shortfall(self.scenario, self.samples, duration_s, late, dropped)
            if shortfall is not None:
                problems.append(shortfall)
        return tuple(problems)


def cpu_saturation(readings: Sequence[float]) -> str | None:
    """A problem line when the load generator's CPU was saturated for most of the run."""
    if not readings:
        return None
    busy = sum(1 for r in readings if r > CPU_SATURATED_PERCENT)
    if busy <= len(readings) / 2:
        return None
    mean = sum(readings) / len(readings)
    return (
        f"load generator CPU saturated: above {CPU_SATURATED_PERCENT:g} % for "
        f"{100 * busy / len(readings):.0f} % of the run (mean {mean:.0f} %); measured "
        "latencies include client-side delay; use fewer users or more processes"
    )


def arrival_shortfall(
    scenario: Scenario, samples: Sequence[Sample], duration_s: float, late: int, dropped: int
) -> str | None:
    """A problem line when an open-model run did not start the requests it was due to.

    A sample's ``t`` is its due time, so the requests due within the load's duration are
    counted exactly; a dropped request is a response time nobody measured.
    """
    rate = scenario.arrival_rate
    if rate is None or duration_s <= 0:
        return None
    achieved = sum(1 for s in samples if 0 <= s.t < duration_s) / duration_s
    # random gaps (poisson, gamma) make the count due random too: variance n / burstiness
    due = rate * duration_s
    chance = 0.0 if scenario.arrivals == "uniform" else 4 * math.sqrt(due / scenario.burstiness)
    if achieved * duration_s >= ARRIVAL_SHORTFALL * due - chance and not dropped:
        return None
    return (
        f"target {rate:g} req/s, achieved {achieved:.3g} req/s: {dropped} requests dropped "
        f"(no free user within the {scenario.request_timeout_s:g} s request timeout), "
        f"{late} sent late; raise users (the most requests in flight) or lower arrival_rate"
    )


def _log_tail(log: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        return f"(no log at {log}: {exc.strerror})"
    tail = "\n".join(text[-lines:]) or "(empty)"
    return f"last {min(lines, len(text))} lines of {log}:\n{tail}"
