"""The load generator: runs Locust for one scenario and streams every request to the parent.

RUNS IN A CHILD PROCESS ONLY (``python -m pytest_perfgate._locust_child``). Importing this
module imports locust, which monkey-patches the whole process with gevent: the pytest
process and everything it imports must never import it; ``runner.py`` starts it instead.

Protocol (one JSON object a line):

- stdin, first line: the spec ``runner._child_spec`` writes (scenario, host, CSV base path).
- stdin, later lines: ``stop <reason>`` ends the run early; end of file (the parent died or
  closed the pipe) ends it too, as do SIGTERM and SIGINT. Every end is graceful: users stop,
  requests in flight finish (up to ``stop_timeout_s``) and are recorded, CSVs are written.
- stdout: ``{"type": "started"}``; then about every ``report_interval_s``
  ``{"type": "samples", "rows": [[t, name, ms, ok, status, error], ...]}`` and
  ``{"type": "progress", "t": s, "users": n, "cpu_percent": p}``; ``{"type": "error",
  "message": m, "fatal": b}`` when something goes wrong; last ``{"type": "done",
  "duration_s": s, "cpu_percent": p, "stop_reason": r}``. Exit code 2 after a fatal error.

The child judges nothing: it measures and reports; the parent decides.
"""

from __future__ import annotations

# ruff: noqa: E402 - gevent must patch the process before the rest is imported
from gevent import monkey

monkey.patch_all()  # what `import locust` does anyway; explicit, and first

import importlib
import json
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from typing import IO, Any

import gevent
import gevent.event
import psutil
from gevent.fileobject import FileObjectPosix
from locust import FastHttpUser, LoadTestShape, between, constant
from locust.env import Environment
from locust.log import setup_logging
from locust.runners import STATE_STOPPED
from locust.stats import PERCENTILES_TO_REPORT, StatsCSVFileWriter
from locust.util.load_locustfile import load_locustfile

logger = logging.getLogger("pytest_perfgate.loadgen")

Row = list[Any]  # [t, name, ms, ok, status, error]


class FatalError(Exception):
    """The run cannot start; the message is sent to the parent as it is."""


# --- output ----------------------------------------------------------------------------


class Channel:
    """JSON lines to the parent on a private copy of stdout.

    fd 1 itself is pointed at stderr (the run log), so a stray ``print`` in a locustfile
    lands in the log instead of corrupting the protocol.
    """

    def __init__(self) -> None:
        self._out: IO[str] = os.fdopen(os.dup(1), "w", encoding="utf-8")
        os.dup2(2, 1)
        self.broken = False

    def send(self, message: dict[str, Any]) -> None:
        if self.broken:
            return
        try:
            self._out.write(json.dumps(message, separators=(",", ":")) + "\n")
            self._out.flush()
        except OSError:
            self.broken = True  # the parent is gone; finish quietly


# --- sample collection -----------------------------------------------------------------


def _short_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first}"[:200] if first else type(exc).__name__


class Collector:
    """Every request from Locust's ``request`` event, at full precision.

    The listeners only append (Locust swallows exceptions in listeners, so they must not
    be able to fail); ``drain`` hands the rows gathered since its last call to the sender.
    Kept apart from the runner so a distributed master can feed it from its workers.
    """

    def __init__(self) -> None:
        self.load_start = time.time()
        self._rows: list[Row] = []
        self.errors: dict[str, int] = {}  # user code errors by text, for the parent's problems

    def on_request(
        self, request_type: str, name: str, response_time: float | None,
        response: Any = None, exception: BaseException | None = None,
        start_time: float | None = None, **_: Any,
    ) -> None:  # fmt: skip
        ms = float(response_time or 0.0)
        started = start_time if start_time is not None else time.time() - ms / 1000.0
        status = int(getattr(response, "status_code", 0) or 0)
        error = "" if exception is None else _short_error(exception)
        key = f"{request_type} {name}"  # "POST /predict mlp": method + Locust's row name
        self._rows.append([started - self.load_start, key, ms, exception is None, status, error])

    def on_user_error(self, user_instance: Any, exception: BaseException, **_: Any) -> None:
        # a task that raised made no request event: record it as a failure so it is counted
        user = getattr(user_instance, "user", user_instance)  # Locust passes the TaskSet
        name = f"ERROR {type(user).__name__}"
        error = _short_error(exception)
        self._rows.append([time.time() - self.load_start, name, 0.0, False, 0, error])
        self.errors[error] = self.errors.get(error, 0) + 1

    def drain(self) -> list[Row]:
        rows, self._rows = self._rows, []
        return rows


# --- user classes and shapes -----------------------------------------------------------


def _import_factory(spec: str) -> Callable[[], Any]:
    module_name, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except Exception as exc:
        raise FatalError(f"json_factory {spec!r} cannot be imported: {_short_error(exc)}") from exc
    if not callable(factory):
        raise FatalError(f"json_factory {spec!r} is not callable")
    return factory  # type: ignore[no-any-return]


def _make_task(task: dict[str, Any]) -> Callable[[Any], None]:
    """A Locust task making ``task``'s request; its stats row is the task name minus the method."""
    method, path, headers = task["method"], task["path"], task.get("headers") or None
    stat_name = task["name"].split(" ", 1)[1] if " " in task["name"] else task["name"]
    factory = _import_factory(task["json_factory"]) if task.get("json_factory") else None
    static_body = task.get("json")

    def run(user: Any) -> None:
        try:
            body = factory() if factory is not None else static_body
        except Exception as exc:
            # a broken payload factory is a failed request of this endpoint, not a crash
            user.environment.events.request.fire(
                request_type=method, name=stat_name, response_time=0.0, response_length=0,
                response=None, exception=exc, context={},
            )  # fmt: skip
            return
        user.client.request(method, path, name=stat_name, json=body, headers=headers)

    run.__name__ = f"task_{stat_name}"
    return run


def task_user(spec: dict[str, Any]) -> type:
    """A FastHttpUser subclass with one weighted task per scenario task."""
    scenario = spec["scenario"]
    timeout = float(spec["request_timeout_s"])
    low, high = float(scenario["wait_min_s"]), float(scenario["wait_max_s"])
    attrs = {
        "tasks": {_make_task(t): int(t.get("weight", 1)) for t in scenario["tasks"]},
        "wait_time": between(low, high) if high > 0 else constant(0),
        "network_timeout": timeout,
        "connection_timeout": timeout,
        "host": spec["host"],
    }
    return type("ScenarioUser", (FastHttpUser,), attrs)


def locustfile_users(spec: dict[str, Any]) -> list[type]:
    """The user classes a scenario names in its locustfile (all of them when it names none)."""
    path = spec["scenario"]["locustfile"]
    if not os.path.isfile(path):
        raise FatalError(f"locustfile {path} not found")
    try:
        available, _shapes = load_locustfile(path)
    except BaseException as exc:  # SystemExit too: a locustfile may call sys.exit
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        raise FatalError(f"locustfile {path} failed to import: {detail}") from exc
    wanted = spec["scenario"].get("user_classes") or sorted(available)
    missing = [name for name in wanted if name not in available]
    if missing or not wanted:
        known = ", ".join(sorted(available)) or "none"
        raise FatalError(
            f"locustfile {path} has no user class {', '.join(missing) or '(any)'}; "
            f"user classes there: {known}"
        )
    return [available[name] for name in wanted]


def stage_shape(stages: list[list[float]]) -> LoadTestShape:
    """A LoadTestShape following (end time s, users, spawn rate) stages.

    It holds the last stage instead of returning None: the run loop ends the run at the
    last stage's end, so a shape ends the way a timed run does (one stop path, one
    ``duration_s``), not through Locust's own stop in the shape greenlet.
    """

    class StageShape(LoadTestShape):
        def tick(self) -> tuple[int, float]:
            run_time = self.get_run_time()  # type: ignore[no-untyped-call]
            for end, users, rate in stages:
                if run_time < end:
                    return int(users), float(rate)
            _, users, rate = stages[-1]
            return int(users), float(rate)

    return StageShape()  # type: ignore[no-untyped-call]


# --- CSV files -------------------------------------------------------------------------


def write_final_csvs(writer: Any) -> None:
    """Rewrite the CSV files from the final stats, after the runner has quit.

    Locust's own writer refreshes them once a second, so on its own they miss the last
    second and every request that finished during the stop.
    """
    for handle, csv_writer, columns, rows in (
        (writer.requests_csv_filehandle, writer.requests_csv_writer,
         writer.requests_csv_columns, writer._requests_data_rows),
        (writer.failures_csv_filehandle, writer.failures_csv_writer,
         writer.failures_columns, writer._failures_data_rows),
        (writer.exceptions_csv_filehandle, writer.exceptions_csv_writer,
         writer.exceptions_columns, writer._exceptions_data_rows),
    ):  # fmt: skip
        handle.seek(0)
        handle.truncate()
        csv_writer.writerow(columns)
        rows(csv_writer)
    if writer.stats_history_csv_filehandle.tell() == 0:
        writer.stats_history_csv_writer.writerow(writer.stats_history_csv_columns)
    writer._stats_history_data_rows(writer.stats_history_csv_writer, time.time())
    writer.close_files()


# --- the run ---------------------------------------------------------------------------


class Run:
    """One scenario's load: start, report, stop on time or on request, write files."""

    def __init__(self, spec: dict[str, Any], channel: Channel) -> None:
        self.spec = spec
        self.channel = channel
        self.collector = Collector()
        self.stop_reason = ""
        self.stop_requested = gevent.event.Event()
        self.process = psutil.Process()
        self.reported_errors: set[str] = set()

    def request_stop(self, reason: str) -> None:
        if not self.stop_reason:
            self.stop_reason = reason
        self.stop_requested.set()

    def build_environment(self) -> Environment:
        scenario = self.spec["scenario"]
        if scenario.get("locustfile"):
            users = locustfile_users(self.spec)
        else:
            users = [task_user(self.spec)]
        shape = stage_shape(scenario["shape"]["stages"]) if scenario.get("shape") else None
        env = Environment(
            user_classes=users,
            shape_class=shape,
            host=self.spec["host"],
            # stop waits this long for requests in flight, so they are recorded, not dropped
            stop_timeout=float(self.spec["stop_timeout_s"]),
        )
        env.events.request.add_listener(self.collector.on_request)  # type: ignore[no-untyped-call]
        env.events.user_error.add_listener(self.collector.on_user_error)  # type: ignore[no-untyped-call]
        return env

    def execute(self) -> None:
        env = self.build_environment()
        runner = env.create_local_runner()
        writer = StatsCSVFileWriter(
            env, PERCENTILES_TO_REPORT, self.spec["base_filepath"], full_history=False
        )
        writer_greenlet = gevent.spawn(writer.stats_writer)
        self.process.cpu_percent(None)  # starts psutil's interval
        cpu_start = self.process.cpu_times()
        self.collector.load_start = time.time()
        self.channel.send({"type": "started"})
        scenario = self.spec["scenario"]
        duration_s = float(scenario["duration_s"])
        if env.shape_class is not None:
            runner.start_shape()
            duration_s = min(duration_s, float(scenario["shape"]["stages"][-1][0]))
        else:
            runner.start(int(scenario["users"]), float(scenario["spawn_rate"]))
        self.wait_for_end(runner, duration_s)
        duration = time.time() - self.collector.load_start
        logger.info("stopping after %.1f s: %s", duration, self.stop_reason)
        runner.quit()  # waits up to stop_timeout for users to finish their requests
        writer_greenlet.kill(block=True)
        self.report(runner)
        write_final_csvs(writer)
        logger.info("CSV files written to %s_*.csv", self.spec["base_filepath"])
        self.channel.send({
            "type": "done", "duration_s": duration, "cpu_percent": self.mean_cpu(cpu_start),
            "stop_reason": self.stop_reason,
        })  # fmt: skip

    def mean_cpu(self, start: Any) -> float:
        """Percent of one core used since ``start`` (psutil cpu_times), stop wait included."""
        end = self.process.cpu_times()
        busy = float(end.user + end.system - start.user - start.system)
        return 100.0 * busy / max(time.time() - self.collector.load_start, 1e-9)

    def wait_for_end(self, runner: Any, duration_s: float) -> None:
        interval = float(self.spec.get("report_interval_s", 0.5))
        deadline = self.collector.load_start + duration_s
        while True:
            remaining = deadline - time.time()
            if self.stop_requested.wait(timeout=max(0.0, min(interval, remaining))):
                return
            self.report(runner)
            if time.time() >= deadline:
                self.request_stop("duration")
                return
            if runner.state == STATE_STOPPED:  # a user called runner.quit() or raised StopTest
                self.request_stop("the locustfile stopped the test")
                return

    def report(self, runner: Any) -> None:
        rows = self.collector.drain()
        if rows:
            self.channel.send({"type": "samples", "rows": rows})
        self.channel.send({
            "type": "progress", "t": time.time() - self.collector.load_start,
            "users": runner.user_count, "cpu_percent": self.process.cpu_percent(None),
        })  # fmt: skip
        for error in self.collector.errors.keys() - self.reported_errors:
            # each distinct error once; the failure samples carry the count
            self.channel.send({"type": "error", "message": error, "fatal": False})
            self.reported_errors.add(error)


def listen_for_stop(run: Run, stdin: Any) -> None:
    """Stop the run on ``stop <reason>`` or when the parent closes stdin."""
    while True:
        line = stdin.readline()
        if not line:
            run.request_stop("interrupted: the parent closed stdin")
            return
        text = line.decode("utf-8", "replace").strip()
        if text == "stop" or text.startswith("stop "):
            run.request_stop(text[5:].strip() or "stop requested")


def main() -> int:
    channel = Channel()
    setup_logging("INFO")  # type: ignore[no-untyped-call] # to stderr, which the parent points at the run log
    stdin = FileObjectPosix(0, "rb", close=False)  # cooperative: other greenlets keep running
    try:
        spec = json.loads(stdin.readline())
    except ValueError as exc:
        channel.send({"type": "error", "message": f"bad spec line: {exc}", "fatal": True})
        return 2
    sys.path[:0] = [p for p in spec.get("sys_path", []) if p not in sys.path]
    run = Run(spec, channel)
    for signum in (signal.SIGTERM, signal.SIGINT):
        reason = f"interrupted: {signal.Signals(signum).name}"
        gevent.signal_handler(signum, run.request_stop, reason)
    gevent.spawn(listen_for_stop, run, stdin)
    try:
        run.execute()
    except FatalError as exc:
        logger.error("%s", exc)
        channel.send({"type": "error", "message": str(exc), "fatal": True})
        return 2
    except Exception as exc:
        logger.exception("load generator crashed")
        channel.send({"type": "error", "message": f"crashed: {_short_error(exc)}", "fatal": True})
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
