"""The load generator: runs Locust for one scenario and streams every request to the parent.

RUNS IN A CHILD PROCESS ONLY (``python -m pytest_perfgate.load.child``), or inside a
``locust --worker`` process through a generated locustfile. Importing this module imports
locust, which monkey-patches the whole process with gevent: the pytest process and
everything it imports must never import it; ``load.locust_driver`` starts it instead.

Protocol with the parent: the messages of ``load.protocol``, one JSON object a line.

- stdin, first line: the ``ChildSpec`` that ``locust_driver.child_spec`` writes.
- stdin, later lines: ``stop <reason>`` ends the run early; end of file (the parent died or
  closed the pipe) ends it too, as do SIGTERM and SIGINT, and the parent's death
  (``processes.die_with_parent``; local workers watch the child the same way). Every
  end is graceful: users stop, requests in flight finish (up to ``stop_timeout_s``) and
  are recorded, CSVs are written.
- stdout: ``StartedMessage``; then about every ``report_interval_s`` a ``SamplesMessage``
  and a ``ProgressMessage``; an ``ErrorMessage`` when something goes wrong; a
  ``DoneMessage`` last. Exit code 2 after a fatal error.

Two ways to make load:

- closed model (Locust's own): ``users`` users, each waiting ``wait_time`` between requests.
- open model (``arrival_rate`` set): request k is due at ``start + k / rate``. Each of the
  ``users`` Locust users is one slot of the pool: its ``wait_time`` takes the next due time
  and sleeps until it, so at most ``users`` requests are in flight and a stop cancels the
  waits. A request's time runs from its due time, not from its send, so a stalled server
  cannot hide behind coordinated omission. One started more than an interval late counts as
  late; one that found no free slot within the request timeout is dropped (not sent).

Distributed (``distributed`` in the spec): the child is Locust's MasterRunner; it writes a
worker locustfile (``worker_user_classes`` builds the same user classes from the spec),
starts the local workers (``locust --worker``, in its own process group, so they end with
it) and waits for the external ones, then sends them its start time (``perfgate_start``)
and starts the load. Each worker sends its requests, at full precision and timed from that
start, to the master in ``perfgate_samples`` custom messages (with its open-model counts,
CPU and pid); the master forwards them as above and counts them by worker.

The child judges nothing: it measures and reports; the parent decides.

About 900 lines, over the project's 450: this module runs as ``python -m`` and generated
worker locustfiles import it by name, so everything the child and its workers run on
gevent stays here, apart from the rest of the package; what it shares with the parent
(the spec, the messages, the row layout) lives in ``load.protocol``.
"""

from __future__ import annotations

# ruff: noqa: E402 - gevent must patch the process before the rest is imported
from gevent import monkey

from pytest_perfgate.errors import ConfigError, FatalError, StreamError

monkey.patch_all()  # what `import locust` does anyway; explicit, and first

import contextlib
import copy
import importlib
import itertools
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import time
import traceback
from argparse import Namespace
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import gevent
import gevent.event
import psutil
from gevent.fileobject import FileObjectPosix
from locust import FastHttpUser, LoadTestShape, between, constant, events, task
from locust import log as locust_log
from locust.argument_parser import get_parser
from locust.env import Environment
from locust.html import get_html_report
from locust.log import setup_logging
from locust.runners import (
    STATE_MISSING,
    STATE_STOPPED,
    STATE_STOPPING,
    MasterRunner,
    WorkerRunner,
)
from locust.stats import PERCENTILES_TO_REPORT, RequestStats, StatsCSVFileWriter, stats_history
from locust.util.load_locustfile import load_locustfile

from pytest_perfgate.core.duet import baseline_name
from pytest_perfgate.core.parsing import expand_env
from pytest_perfgate.core.stats import NOT_SENT
from pytest_perfgate.load.protocol import (
    SAMPLES_MESSAGE,
    START_MESSAGE,
    ChildMessage,
    ChildSpec,
    DistributedSpec,
    DoneMessage,
    LoadStartMessage,
    Row,
    StreamRow,
    TaskSpec,
    WorkerSamplesMessage,
    encode_row,
    parse_stop,
)
from pytest_perfgate.load.sse import (
    OPENAI_KINDS,
    STREAM_KINDS,
    SseDecoder,
    StreamTally,
    request_body,
)
from pytest_perfgate.processes import child_env, die_with_parent, end_processes

logger = logging.getLogger("pytest_perfgate.loadgen")

#: an open-model request this late (or one interval, if longer) counts as late
LATE_FLOOR_S = 0.010
#: seconds workers get, beyond the stop timeout, to send their last requests and quit
WORKER_QUIT_GRACE_S = 10.0
#: the key of a streamed response's ``StreamRow`` in the request event's ``context``
STREAM_CONTEXT = "perfgate_stream"
#: the key of an A/B duet request's pair (``core.stats.Sample.pair``) in the ``context``
PAIR_CONTEXT = "perfgate_pair"


# --- output ----------------------------------------------------------------------------


class Channel:
    """JSON lines to the parent on a private copy of stdout.

    fd 1 itself is pointed at stderr (the run log), so a stray ``print`` in a locustfile
    (or a worker process, which inherits fd 1) lands in the log instead of corrupting the
    protocol.
    """

    def __init__(self) -> None:
        self._out: IO[str] = os.fdopen(os.dup(1), "w", encoding="utf-8")
        os.dup2(2, 1)
        self.broken = False

    def send(self, message: ChildMessage) -> None:
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
    A row's time is seconds since ``load_start`` (on a worker: the master's, which it sends
    before the load starts, so the master forwards the rows as they come).
    """

    def __init__(self) -> None:
        self.load_start = time.time()
        self._rows: list[Row] = []
        self.errors: dict[str, int] = {}  # user code errors by text, for the parent's problems

    def on_request(
        self, request_type: str, name: str, response_time: float | None,
        response: Any = None, exception: BaseException | None = None,
        start_time: float | None = None, context: dict[str, Any] | None = None, **_: Any,
    ) -> None:  # fmt: skip
        ms = float(response_time or 0.0)
        started = _started(response_time, start_time)
        status = int(getattr(response, "status_code", 0) or 0)
        error = "" if exception is None else _short_error(exception)
        key = f"{request_type} {name}"  # "POST /predict mlp": method + Locust's row name
        ok = exception is None
        stream: StreamRow | None = (context or {}).get(STREAM_CONTEXT)
        pair = int((context or {}).get(PAIR_CONTEXT, 0))
        t = started - self.load_start
        self._rows.append(encode_row(t, key, ms, ok, status, error, stream, pair))

    def on_user_error(self, user_instance: Any, exception: BaseException, **_: Any) -> None:
        # a task that raised made no request event: record it as a failure so it is counted
        user = getattr(user_instance, "user", user_instance)  # Locust passes the TaskSet
        name = f"ERROR {type(user).__name__}"
        error = _short_error(exception)
        # status NOT_SENT: a failure without a response time (kept out of the percentiles)
        t = time.time() - self.load_start
        self._rows.append(encode_row(t, name, 0.0, False, NOT_SENT, error))
        self.errors[error] = self.errors.get(error, 0) + 1

    def add(self, rows: list[Row]) -> None:
        """Rows of another process, already timed from this one's ``load_start``."""
        self._rows.extend(rows)

    def drain(self) -> list[Row]:
        rows, self._rows = self._rows, []
        return rows


def _started(response_time: float | None, start_time: float | None) -> float:
    """A request's start (epoch s): the event's ``start_time``, else its end less its time."""
    if start_time is not None:
        return float(start_time)
    return time.time() - float(response_time or 0.0) / 1000.0


class WarmupCut:
    """Keeps Locust's own statistics (its CSVs, its HTML report) to the measured window.

    The parent measures the requests that *started* after the warm-up (a sample's ``t``),
    so Locust's figures must count the same ones: a request that started during the
    warm-up is kept out of Locust's statistics even when it ends after it, and the
    statistics are reset just before the first measured request is counted. Then the CSV
    "Aggregated" count equals the result's request total.

    Locust's runner counts a request in its own ``request`` listener; ``on_request`` must
    be added before the runner is created (listeners fire in order), so it decides, for
    the request being fired, whether the wrapped ``log_request``/``log_error`` count it.
    A master counts what its workers report (each worker cuts its own): it resets on the
    first report carrying a request (``on_worker_report``, added before the runner too).
    """

    def __init__(self, warmup_s: float) -> None:
        self.warmup_s = warmup_s
        self.boundary: float | None = None  # epoch s: the load's start plus the warm-up
        self.measured = False  # whether the request being fired counts
        self.reset_done = False
        self.stats: RequestStats | None = None

    def start(self, load_start: float) -> None:
        self.boundary = load_start + self.warmup_s

    def on_request(
        self, response_time: float | None = None, start_time: float | None = None, **_: Any
    ) -> None:
        started = _started(response_time, start_time)
        self.measured = self.boundary is not None and started >= self.boundary

    def attach(self, stats: RequestStats) -> None:
        """Count in ``stats`` only the requests ``on_request`` found measured."""
        self.stats = stats
        log_request, log_error = stats.log_request, stats.log_error

        def cut_request(*args: Any, **kwargs: Any) -> None:
            if self.measured:
                self.reset_once()
                log_request(*args, **kwargs)

        def cut_error(*args: Any, **kwargs: Any) -> None:
            if self.measured:
                log_error(*args, **kwargs)

        stats.log_request = cut_request  # type: ignore[method-assign]
        stats.log_error = cut_error  # type: ignore[method-assign]

    def on_worker_report(self, data: dict[str, Any], **_: Any) -> None:
        if self.stats is not None and any(s.get("num_requests") for s in data.get("stats", ())):
            self.reset_once()

    def reset_once(self) -> None:
        if not self.reset_done and self.stats is not None:
            self.reset_done = True
            self.stats.reset_all()

    def window(self, stats: RequestStats) -> None:
        """Let every entry's time span start at the warm-up's end (Locust's rates divide by it)."""
        if self.boundary is None:
            return
        for entry in (stats.total, *stats.entries.values()):
            entry.start_time = self.boundary  # every request counted started after it


# --- the open model --------------------------------------------------------------------


class Schedule:
    """The open model's timetable in one process: request 0 is due at ``start``, then gaps.

    ``uniform``: request k is due at ``start + k / rate``. ``poisson``: exponential gaps of
    mean ``1 / rate``; ``gamma``: gamma gaps of shape ``burstiness`` and the same mean (as
    vLLM's ``--burstiness``: below 1 burstier than Poisson, above 1 more regular). The
    gaps come from ``random.Random(seed)``, so a run's timetable is reproducible.

    Shared by the process's users, which ``take`` due times in turn; ``late`` and
    ``dropped`` count the requests that could not start on time.
    """

    def __init__(
        self, rate: float, drop_after_s: float, arrivals: str = "uniform",
        burstiness: float = 1.0, seed: int = 0,
    ) -> None:  # fmt: skip
        self.rate = rate
        self.late_after_s = max(1.0 / rate, LATE_FLOOR_S)
        self.drop_after_s = drop_after_s
        self.arrivals = arrivals
        self.burstiness = burstiness
        self.seed = seed
        self.restart()

    def restart(self, **_: Any) -> None:
        self.start = time.perf_counter()
        self.epoch = time.time()
        self.taken = self.late = self.dropped = 0
        self.closed = False
        self.reseed(self.seed)

    def reseed(self, seed: int) -> None:
        """Draw the gaps from ``seed`` again, from request 0 (a worker adds its index)."""
        self.rng = random.Random(seed)
        self.offset = 0.0  # of the next request from ``start``, in seconds

    def _advance(self) -> float:
        """The next request's offset from ``start``; moves on to the one after."""
        offset = self.offset
        if self.arrivals == "uniform":
            self.offset = (self.taken + 1) / self.rate  # not summed: no drift over a long run
        elif self.arrivals == "poisson":
            self.offset += self.rng.expovariate(self.rate)
        else:
            shape = self.burstiness
            self.offset += self.rng.gammavariate(shape, 1.0 / (shape * self.rate))
        return offset

    def align(self, epoch: float) -> None:
        """Let request 0 be due at ``epoch`` (seconds since 1970), on the clock of all workers.

        Due times already past are late, as they would be for one process that started then.
        """
        self.start = time.perf_counter() - (time.time() - epoch)
        self.epoch = epoch

    def take(self) -> float | None:
        """The next due time (``perf_counter`` seconds), None once the run is stopping."""
        if self.closed:
            return None
        due = self.start + self._advance()
        self.taken += 1
        return due

    def close(self, **_: Any) -> None:
        """Hand out no more due times; those due by now that nobody took count as dropped."""
        if self.closed:
            return
        self.closed = True
        elapsed = time.perf_counter() - self.start
        while self.offset <= elapsed:
            self._advance()
            self.taken += 1
            self.dropped += 1

    def admit(self, due: float) -> bool:
        """Whether a request due at ``due`` is still sent now; counts it late or dropped."""
        lag = time.perf_counter() - due
        if lag > self.drop_after_s:
            self.dropped += 1
            return False
        if lag > self.late_after_s:
            self.late += 1
        return True


def schedule_of(user_classes: list[type]) -> Schedule | None:
    for user_class in user_classes:
        found = getattr(user_class, "schedule", None)
        if isinstance(found, Schedule):
            return found
    return None


def attach_schedule(env: Environment, user_classes: list[type]) -> Schedule | None:
    """Restart the open model's timetable when the test starts, close it when it stops."""
    schedule = schedule_of(user_classes)
    if schedule is not None:
        env.events.test_start.add_listener(schedule.restart)  # type: ignore[no-untyped-call]
        env.events.test_stopping.add_listener(schedule.close)  # type: ignore[no-untyped-call]
    return schedule


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


Due = tuple[float, float]  # an open-model request's due time: (perf_counter s, epoch s)


def _headers(task: TaskSpec) -> dict[str, str]:
    """The task's headers with ``${NAME}`` read from this process's environment."""
    try:
        return {
            key: expand_env(value, f"{task['name']}: header {key}", os.environ)
            for key, value in (task.get("headers") or {}).items()
        }
    except ConfigError as exc:
        raise FatalError(str(exc)) from None


def _make_task(task: TaskSpec) -> Callable[..., None]:
    """A Locust task making ``task``'s request; its stats row is the task name minus the method.

    Given a due time (the open model), the request is timed from it: Locust's stats and
    the samples both get the time from the due time to the response.
    """
    if task.get("kind", "http") in STREAM_KINDS:
        return _make_stream_task(task)
    method, path = task["method"], task["path"]
    headers = _headers(task) or None
    stat_name = task["name"].split(" ", 1)[1] if " " in task["name"] else task["name"]
    factory_spec = task.get("json_factory")
    factory = _import_factory(factory_spec) if factory_spec else None
    static_body = task.get("json")

    def run(user: Any, due: Due | None = None, pair: int = 0) -> None:
        context = _pair_context(pair)
        try:
            body = factory() if factory is not None else static_body
        except Exception as exc:
            # a broken payload factory is a failed request of this endpoint, not a crash
            _fire_failed(user, method, stat_name, due, exc, context)
            return
        if due is None:
            user.client.request(
                method, path, name=stat_name, json=body, headers=headers, context=context
            )
            return
        waited_ms = _since_due_ms(due)
        with user.client.request(
            method, path, name=stat_name, json=body, headers=headers, catch_response=True,
            context=context,
        ) as response:  # fmt: skip
            response.request_meta["response_time"] += waited_ms
            response.request_meta["start_time"] = due[1]

    run.__name__ = f"task_{stat_name}"
    return run


def _since_due_ms(due: Due | None) -> float:
    return 0.0 if due is None else max(0.0, (time.perf_counter() - due[0]) * 1000.0)


#: the load's start (epoch seconds), which interleaved rounds are timed from (a worker:
#: the master's); set when the load starts
TWIN_CLOCK = [time.time()]
#: this process's Locust worker index (0 where Locust runs in one process): an openai
#: task's draws start from its seed plus this, so that workers send different prompts
WORKER_INDEX = [0]


def _pair_context(pair: int) -> dict[str, Any]:
    """A request's Locust ``context``: its duet pair, which ``Collector`` puts in its row."""
    return {PAIR_CONTEXT: pair} if pair else {}


#: the duet pairs this process sent; a pair's id is ``WORKER_INDEX * PAIR_SPAN + count``
PAIRS = itertools.count(1)
PAIR_SPAN = 1 << 40


def _baseline_first(seed: int, pair: int) -> bool:
    """Whether the baseline goes first in pair ``pair`` of an A/B run: a fair coin."""
    return random.Random(seed * 1_000_003 + pair).random() < 0.5


def _twin_task(spec: ChildSpec, task: TaskSpec) -> Callable[..., None]:
    """``task``, or in an A/B run (``spec["twin"]``) the task driving both sides.

    The baseline's copy sends the same request to the baseline's absolute URL (Locust's
    client takes one) under the name ``core.duet.baseline_name`` gives. Duet: both
    requests back to back in random order, their samples carrying one pair id (so the
    judge can compare each request with its twin); interleaved: the side of the current round
    (rounds of ``round_s`` from the load's start, each pair in random order).
    """
    own = _make_task(task)
    twin = spec.get("twin")
    if not twin:
        return own
    copy_spec = {**task, "path": twin["url"] + task["path"], "name": baseline_name(task["name"])}
    other = _make_task(TaskSpec(**copy_spec))  # type: ignore[typeddict-item]
    seed, round_s = int(twin["seed"]), float(twin["round_s"])

    def duet(user: Any, due: Due | None = None) -> None:
        pair = WORKER_INDEX[0] * PAIR_SPAN + next(PAIRS)
        first, second = (other, own) if random.random() < 0.5 else (own, other)
        first(user, due, pair)
        second(user, None, pair)

    def interleaved(user: Any, due: Due | None = None) -> None:
        index = int(max(0.0, time.time() - TWIN_CLOCK[0]) / round_s)
        on_baseline = (index % 2 == 0) == _baseline_first(seed, index // 2)
        (other if on_baseline else own)(user, due)

    run = interleaved if twin["mode"] == "interleaved" else duet
    run.__name__ = own.__name__
    return run


# --- streamed responses (``load.sse`` holds the pure half) ------------------------------


def _make_stream_task(task: TaskSpec) -> Callable[..., None]:
    """A Locust task sending a streaming request and timing its chunks as they arrive.

    The request runs from its start (its due time in the open model) to the stream's end:
    that is the sample's and Locust's response time. The ``StreamRow`` (TTFT, ITL, tokens)
    rides in the request event's ``context``; a malformed or cut stream fails the request
    with a ``StreamError`` saying why. An openai task with ``stream: false`` sends the
    same body and is timed as a plain request.
    """
    method, path, kind = task["method"], task["path"], str(task["kind"])
    streamed = bool(task.get("stream", True))
    # identity: a compressed stream would arrive in the compressor's blocks, not as sent
    wanted = {"Accept": "text/event-stream", "Accept-Encoding": "identity"} if streamed else {}
    headers = {**wanted, **_headers(task)}
    stat_name = task["name"].split(" ", 1)[1] if " " in task["name"] else task["name"]
    body_of = _stream_body(task)
    tokens_field = task.get("tokens_field")

    def run(user: Any, due: Due | None = None, pair: int = 0) -> None:
        start = due[0] if due is not None else time.perf_counter()
        context = _pair_context(pair)
        try:
            body = body_of()
        except Exception as exc:  # a broken payload factory is a failed request
            _fire_failed(user, method, stat_name, due, exc, context)
            return
        with user.client.request(
            method, path, name=stat_name, json=body, headers=headers,
            stream=streamed, catch_response=True, context=context,
        ) as response:  # fmt: skip
            tally = StreamTally(kind, start, tokens_field)
            row = _read_stream(response, tally) if streamed else None
            meta = response.request_meta
            meta["response_time"] = (time.perf_counter() - start) * 1000.0
            if due is not None:
                meta["start_time"] = due[1]
            if row is not None:
                meta["context"] = {**meta["context"], STREAM_CONTEXT: row}
                if row["problem"]:
                    response.failure(StreamError(row["problem"]))

    run.__name__ = f"stream_{stat_name}"
    return run


def _stream_body(task: TaskSpec) -> Callable[[], Any]:
    """What makes a request's body: an openai task's draws, else its json or json_factory."""
    if task["kind"] in OPENAI_KINDS:
        seed = int(task.get("seed", 0))
        drawn: list[random.Random] = []  # seeded at the first request: the worker is known

        def body() -> dict[str, Any]:
            if not drawn:  # one task's draws, reproducible, and each worker's its own
                drawn.append(random.Random(seed + WORKER_INDEX[0]))
            return request_body(task, drawn[0])

        return body
    factory_spec = task.get("json_factory")
    if factory_spec:
        return _import_factory(factory_spec)
    static = task.get("json")
    return lambda: static


def _fire_failed(
    user: Any, method: str, name: str, due: Due | None, exc: Exception, context: dict[str, Any]
) -> None:
    user.environment.events.request.fire(
        request_type=method, name=name, response_time=_since_due_ms(due),
        response_length=0, response=None, exception=exc, context=context,
        start_time=None if due is None else due[1],
    )  # fmt: skip


def _read_stream(response: Any, tally: StreamTally) -> StreamRow | None:
    """Read a streamed response line by line, timing each event; None for an HTTP error.

    geventhttpclient's ``readline`` returns each line as soon as it arrived (its ``read(n)``
    would wait for ``n`` bytes, and time the first token after the buffer filled).
    """
    raw = getattr(response, "_response", None)
    if getattr(response, "error", None) is not None or raw is None:
        with contextlib.suppress(Exception):
            _ = response.content  # drain it, so the connection can serve the next request
        return None
    kept_alive = raw.should_close
    # a stream cut mid-way leaves unread bytes: never hand that connection to the pool
    raw.should_close = lambda: not raw.message_complete or kept_alive()
    content_type = str((response.headers or {}).get("content-type", ""))
    if "event-stream" not in content_type and tally.kind != "sse":
        _ = response.content
        tally.problems.append(f"not a stream: the response is {content_type or 'untyped'}")
        return tally.row()
    return tally.row(_read_events(raw, tally))


def _read_events(raw: Any, tally: StreamTally) -> str:
    """Feed every event to ``tally``; why reading stopped early ("" at the body's end)."""
    decoder = SseDecoder()
    last = time.perf_counter()
    try:
        while line := raw.readline(b"\n"):
            now = time.perf_counter()
            event = decoder.feed(line)
            if event is not None:
                tally.add(event, last)  # timed by its last data line, not the blank after it
            elif line.strip() and not line.startswith(b":"):
                last = now
        rest = bytes(raw._body_buffer)  # a last line with no end of line
    except Exception as exc:
        return _short_error(exc)
    for event in (decoder.feed(rest) if rest else None, decoder.finish()):
        if event is not None:
            tally.add(event, time.perf_counter())
    return ""


def _user_attrs(spec: ChildSpec) -> dict[str, Any]:
    timeout = float(spec["request_timeout_s"])
    return {"network_timeout": timeout, "connection_timeout": timeout, "host": spec["host"]}


def task_user(spec: ChildSpec) -> type:
    """A FastHttpUser subclass with one weighted task per scenario task (the closed model)."""
    scenario = spec["scenario"]
    low, high = (float(w) for w in scenario["wait_s"])
    attrs = {
        "tasks": {_twin_task(spec, t): int(t.get("weight", 1)) for t in scenario["tasks"]},
        "wait_time": between(low, high) if high > 0 else constant(0),
        **_user_attrs(spec),
    }
    return type("ScenarioUser", (FastHttpUser,), attrs)


def open_user(spec: ChildSpec) -> type:
    """A FastHttpUser subclass serving the open model's timetable: one user, one slot.

    ``wait_time`` takes the next due time and returns the sleep until it: Locust sleeps in
    its waiting state, which a stop cancels, so no request is sent after the end. The task
    draws a scenario task by weight, as the closed model does.
    """
    scenario = spec["scenario"]
    requests = [_twin_task(spec, t) for t in scenario["tasks"]]
    weights = [int(t.get("weight", 1)) for t in scenario["tasks"]]
    rate = float(scenario["arrival_rate"] or 0.0)  # set: user_classes chose the open model
    if not rate > 0:
        raise FatalError(f"arrival_rate must be a positive number of requests/s, got {rate:g}")
    schedule = Schedule(
        rate, float(spec["request_timeout_s"]), str(scenario.get("arrivals", "uniform")),
        float(scenario.get("burstiness", 1.0)), int(scenario.get("seed", 0)),
    )  # fmt: skip

    def wait_time(user: Any) -> float:
        user.due = schedule.take()
        return 3600.0 if user.due is None else max(0.0, user.due - time.perf_counter())

    def serve(user: Any) -> None:
        if user.due is None:
            user.wait()  # the first task comes before any wait: take a due time here
        due, user.due = user.due, None
        if due is not None and schedule.admit(due):
            random.choices(requests, weights)[0](user, (due, schedule.epoch + due - schedule.start))

    attrs = {
        "tasks": [task(serve)], "wait_time": wait_time, "due": None, "schedule": schedule,
        **_user_attrs(spec),
    }  # fmt: skip
    return type("ScenarioUser", (FastHttpUser,), attrs)


@dataclass(frozen=True)
class Users:
    """What a scenario runs: its user classes, and its locustfile's ``LoadTestShape``, if any."""

    classes: list[type]
    shape: LoadTestShape | None = None


def locustfile_users(spec: ChildSpec) -> Users:
    """The user classes a scenario names in its locustfile (all of them when it names none).

    As ``locust -f`` does: the file is imported once (its listeners attach to Locust's
    global events) and its first ``LoadTestShape`` class, if any, drives the users.
    """
    path = spec["scenario"]["locustfile"] or ""
    if not os.path.isfile(path):
        raise FatalError(f"locustfile {path} not found")
    try:
        available, shapes = load_locustfile(path)
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
    return Users([available[name] for name in wanted], shapes[0] if shapes else None)


def scenario_users(spec: ChildSpec) -> Users:
    """The scenario's user classes: its locustfile's, or one generated from its tasks."""
    scenario = spec["scenario"]
    if scenario.get("arrival_rate") is not None:
        if scenario.get("locustfile") or scenario.get("stages"):
            raise FatalError(
                "arrival_rate (the open model) drives the scenario's tasks at a fixed rate; "
                "it cannot drive a locustfile's user classes or follow a shape"
            )
        return Users([open_user(spec)])
    if scenario.get("locustfile"):
        return locustfile_users(spec)
    return Users([task_user(spec)])


def user_classes(spec: ChildSpec) -> list[type]:
    return scenario_users(spec).classes


def choose_shape(spec: ChildSpec, users: Users) -> LoadTestShape | None:
    """The scenario's ``shape`` (stages), or else its locustfile's LoadTestShape class."""
    stages = spec["scenario"]["stages"]
    if stages and users.shape is not None:
        raise FatalError(
            f"the scenario's shape and the locustfile's {type(users.shape).__name__} both "
            "drive the user count; remove one"
        )
    return stage_shape(stages) if stages else users.shape


def locust_options(spec: ChildSpec) -> Namespace:
    """Locust's parsed options, as ``locust --headless`` would hold them for this scenario.

    Parsed by Locust's own parser (after the locustfile is imported, so the options it adds
    with ``init_command_line_parser`` are there, with their defaults), with no config file
    read. A master sends them to its workers, ``tags`` and ``exclude_tags`` included.
    """
    scenario, base = spec["scenario"], spec["base_filepath"]
    args = [
        "--headless", "--host", spec["host"], "--users", str(scenario["users"]),
        "--spawn-rate", f"{scenario['spawn_rate']:g}",
        "--csv", base, "--html", f"{base}_locust.html",
    ]  # fmt: skip
    if scenario["locustfile"]:
        args += ["--locustfile", scenario["locustfile"]]
    if scenario["tags"]:
        args += ["--tags", *scenario["tags"]]
    if scenario["exclude_tags"]:
        args += ["--exclude-tags", *scenario["exclude_tags"]]
    distributed = spec["distributed"]
    if distributed:
        workers = int(distributed["local_workers"]) + int(distributed["external_workers"])
        args += ["--master", "--expect-workers", str(workers)]
    parser = get_parser(default_config_files=[])
    try:  # the user classes first: ``--tags`` and ``--exclude-tags`` take every value after
        options: Namespace = parser.parse_args([*scenario["user_classes"], *args])
    except SystemExit:  # argparse has said why on stderr, the run log
        raise FatalError("Locust's options could not be parsed; see the log") from None
    # seconds, as Locust's main makes them (its parser takes whole seconds only)
    options.run_time = float(scenario["duration_s"])
    options.stop_timeout = float(spec["stop_timeout_s"])
    # not headless to Locust's runners: on a shape's end, a StopTest or the last worker's
    # exit they then stop instead of quitting, and the run ends by the one path that
    # gathers the workers' last requests (``Run.drive``)
    options.headless = False
    return options


def fire_init(env: Environment, runner: Any) -> None:
    """Locust's ``init`` event, as ``locust`` fires it once the runner exists (no web UI)."""
    env.events.init.fire(environment=env, runner=runner, web_ui=None)  # type: ignore[no-untyped-call]
    if locust_log.unhandled_greenlet_exception:  # how Locust's main sees a failed listener
        raise FatalError("an init listener of the locustfile failed; see the log")


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


def write_html_report(env: Environment, path: str) -> None:
    """Locust's own HTML report of the run (as ``locust --html``), beside ours."""
    try:
        html = get_html_report(env, show_download_link=False)  # type: ignore[no-untyped-call]
    except Exception as exc:  # Locust's report is a convenience: never fail the run on it
        logger.warning("Locust's HTML report could not be written: %s", _short_error(exc))
        return
    Path(path).write_text(html, encoding="utf-8")


# --- workers ---------------------------------------------------------------------------

WORKER_LOCUSTFILE = '''\
"""Worker locustfile of the pytest-perfgate scenario {name!r}, generated for one run.

Start a worker that fetches this file from the master (pytest-perfgate must be installed
where it runs: the worker sends every request to the master through it):

    {command}

or one that reads this file: the same command with ``-f {filename}``
instead of ``-f -``.
"""

import json

from pytest_perfgate.load.child import worker_user_classes

globals().update(worker_user_classes(json.loads({spec!r})))
'''


def worker_command(host: str, port: int, locustfile: str = "-") -> list[str]:
    """``locust --worker`` for this master; ``-f -`` fetches the locustfile from it."""
    where = ["--master-host", host, "--master-port", str(port)]
    return ["locust", "--worker", *where, "-f", locustfile]


def worker_user_classes(spec: ChildSpec) -> dict[str, type]:
    """The generated worker locustfile's body: the user classes, and the hook that reports.

    The hook (on Locust's ``init`` event) gives a ``WorkerRunner`` a ``WorkerReporter``.
    """
    sys.path[:0] = [p for p in spec.get("sys_path", []) if p not in sys.path]
    die_with_parent(signal.SIGTERM)  # a local worker: Locust's SIGTERM handler quits it
    classes = user_classes(spec)
    cut = WarmupCut(float(spec["scenario"]["warmup_s"]))
    events.request.add_listener(cut.on_request)  # type: ignore[no-untyped-call] # before the runner's

    def on_init(environment: Environment, runner: Any = None, **_: Any) -> None:
        if isinstance(runner, WorkerRunner):
            cut.attach(environment.stats)
            WorkerReporter(environment, runner, classes, spec, cut)

    events.init.add_listener(on_init)  # type: ignore[no-untyped-call]
    return {cls.__name__: cls for cls in classes}


class WorkerReporter:
    """On a worker: sends its requests to the master as ``perfgate_samples`` messages.

    Every ``interval`` and once more when the test stops (after the requests in flight
    ended), with the worker's cumulative error counts, open-model counts and CPU.
    """

    def __init__(
        self,
        env: Environment,
        runner: WorkerRunner,
        classes: list[type],
        spec: ChildSpec,
        cut: WarmupCut,
    ) -> None:
        self.runner = runner
        self.cut = cut
        WORKER_INDEX[0] = int(runner.worker_index)
        self.workers = int(spec["scenario"].get("arrival_workers", 1))
        self.collector = Collector()
        runner.register_message(START_MESSAGE, self.on_start_message)
        self.schedule = attach_schedule(env, classes)
        self.process = psutil.Process()
        self.on_test_start()
        env.events.request.add_listener(self.collector.on_request)  # type: ignore[no-untyped-call]
        env.events.user_error.add_listener(self.collector.on_user_error)  # type: ignore[no-untyped-call]
        env.events.test_start.add_listener(self.on_test_start)  # type: ignore[no-untyped-call]
        env.events.test_stop.add_listener(self.send)  # type: ignore[no-untyped-call]
        runner.greenlet.spawn(self.loop, float(spec["report_interval_s"]))

    def on_start_message(self, msg: Any, **_: Any) -> None:
        # the same clock on one machine; a remote worker's samples are off by its clock's skew
        data: LoadStartMessage = msg.data
        self.collector.load_start = float(data["load_start"])
        TWIN_CLOCK[0] = self.collector.load_start
        self.cut.start(self.collector.load_start)

    def on_test_start(self, **_: Any) -> None:
        self.cpu_start = (time.time(), self.process.cpu_times())
        self.process.cpu_percent(None)
        if self.schedule is not None:
            # worker i of n runs 1/n of the rate from the master's start, i/n of its interval
            # late: one timetable in all, whenever the spawn message arrived
            index = self.runner.worker_index % self.workers
            share = index / self.workers
            self.schedule.align(self.collector.load_start + share / self.schedule.rate)
            self.schedule.reseed(self.schedule.seed + index)  # independent gaps per worker

    def loop(self, interval: float) -> None:
        while True:
            gevent.sleep(interval)
            self.send()

    def send(self, **_: Any) -> None:
        started, cpu = self.cpu_start
        now = self.process.cpu_times()
        busy = now.user + now.system - cpu.user - cpu.system
        message: WorkerSamplesMessage = {
            "rows": self.collector.drain(), "errors": self.collector.errors,
            "late": self.schedule.late if self.schedule else 0,
            "dropped": self.schedule.dropped if self.schedule else 0,
            "cpu_percent": self.process.cpu_percent(None),  # since the last message
            "mean_cpu_percent": 100.0 * busy / max(time.time() - started, 1e-9),
            "pid": os.getpid(),
        }  # fmt: skip
        self.runner.send_message(SAMPLES_MESSAGE, dict(message))


def free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class Master:
    """The child as Locust's master: binds, starts and awaits workers, gathers their samples."""

    def __init__(self, run: Run, env: Environment) -> None:
        self.run = run
        self.env = env
        assert run.spec["distributed"] is not None  # a Master exists only then
        self.settings: DistributedSpec = run.spec["distributed"]
        self.expected = int(self.settings["local_workers"]) + int(self.settings["external_workers"])
        self.bind = str(self.settings["bind"])
        wildcard = self.bind in ("*", "0.0.0.0", "")
        self.local_host = "127.0.0.1" if wildcard else self.bind  # what local workers dial
        self.public_host = socket.gethostname() if wildcard else self.bind  # and others
        self.port = int(self.settings["port"]) or free_port("0.0.0.0" if wildcard else self.bind)
        self.command = " ".join(worker_command(self.public_host, self.port))
        self.runner: MasterRunner | None = None
        self.processes: list[subprocess.Popen[bytes]] = []
        self.per_worker: dict[str, WorkerSamplesMessage] = {}  # each worker's latest message
        self.requests: dict[str, int] = {}  # requests by worker id
        self.reported: set[str] = set()
        self.stopping = False

    def start_runner(self) -> MasterRunner:
        """Bind the master, write the worker locustfile, start local workers, await all."""
        locustfile = self.write_locustfile()
        self.env.parsed_locustfiles = [locustfile]  # served to workers started with -f -
        try:
            runner = self.env.create_master_runner(self.bind, self.port)
        except SystemExit:  # Locust exits when the port is taken
            raise FatalError(
                f"the Locust master cannot bind {self.bind}:{self.port} (is the port in use?)"
            ) from None
        self.runner = runner
        runner.register_message(SAMPLES_MESSAGE, self.on_samples)
        fire_init(self.env, runner)
        if self.settings["external_workers"]:
            logger.info("waiting for %d external worker(s); start each with: %s",
                        self.settings["external_workers"], self.command)  # fmt: skip
        for _ in range(int(self.settings["local_workers"])):
            command = worker_command(self.local_host, self.port, locustfile)
            # same process group as the child: ending the child's group ends them too; and
            # each dies with the child (``die_with_parent`` in ``worker_user_classes``)
            self.processes.append(subprocess.Popen(
                [sys.executable, "-m", *command], stdin=subprocess.DEVNULL, env=child_env(),
            ))  # fmt: skip
        self.await_workers()
        return runner

    def write_locustfile(self) -> str:
        path = Path(self.settings["locustfile"])
        path.write_text(WORKER_LOCUSTFILE.format(
            name=self.run.spec["scenario"]["name"], command=self.command, filename=path,
            spec=json.dumps(self.worker_spec()),
        ), encoding="utf-8")  # fmt: skip
        return str(path)

    def worker_spec(self) -> ChildSpec:
        """The spec for workers: each serves an equal share of an open model's rate."""
        spec = copy.deepcopy(self.run.spec)
        rate = spec["scenario"].get("arrival_rate")
        if rate is not None:
            if int(spec["scenario"]["users"]) < self.expected:
                raise FatalError(
                    f"arrival_rate with {self.expected} workers needs at least {self.expected} "
                    f"users (each worker serves its share of the rate with its own), got "
                    f"{spec['scenario']['users']}"
                )
            spec["scenario"]["arrival_rate"] = float(rate) / self.expected
            spec["scenario"]["arrival_workers"] = self.expected
        return spec

    def await_workers(self) -> None:
        assert self.runner is not None
        timeout = float(self.settings["connect_timeout_s"])
        deadline = time.monotonic() + timeout
        while self.runner.worker_count < self.expected:
            if self.run.stop_requested.is_set():
                raise FatalError(f"{self.run.stop_reason} while waiting for workers")
            exited = self.exited_workers()
            if exited:
                raise FatalError(f"{exited[0]} before it connected to the master; see the log")
            if time.monotonic() > deadline:
                raise FatalError(
                    f"{self.runner.worker_count} of {self.expected} workers connected to the "
                    f"master at {self.bind}:{self.port} within {timeout:g} s; "
                    f"start the missing ones with: {self.command}"
                )
            gevent.sleep(0.05)
        logger.info("%d workers connected", self.runner.worker_count)

    def exited_workers(self) -> list[str]:
        return [
            f"local worker process {i} (pid {p.pid}) exited with code {p.returncode}"
            for i, p in enumerate(self.processes)
            if p.poll() is not None
        ]

    def on_samples(self, environment: Environment, msg: Any, **_: Any) -> None:
        data: WorkerSamplesMessage = msg.data
        self.run.collector.add(data["rows"])
        self.requests[msg.node_id] = self.requests.get(msg.node_id, 0) + len(data["rows"])
        self.per_worker[msg.node_id] = data
        errors: dict[str, int] = {}
        for worker in self.per_worker.values():
            for text, count in worker["errors"].items():
                errors[text] = errors.get(text, 0) + count
        self.run.collector.errors = errors

    def total(self, key: Literal["late", "dropped"]) -> int:
        return sum(int(w[key]) for w in self.per_worker.values())

    def cpu_percent(
        self, key: Literal["cpu_percent", "mean_cpu_percent"] = "cpu_percent"
    ) -> float | None:
        """The busiest worker's CPU (``mean_cpu_percent``: since the start): it errs first."""
        readings = [float(w[key]) for w in self.per_worker.values()]
        return max(readings) if readings else None

    def problems(self, elapsed: float) -> list[str]:
        """New trouble with the workers, each said once: a lost worker is load not made."""
        assert self.runner is not None
        if self.stopping:
            return []  # workers quit when told to: that is no loss
        found = self.exited_workers()
        connected = self.runner.worker_count
        if connected < self.expected:
            found.append(f"only {connected} of {self.expected} workers connected")
        new = [f"{p} {elapsed:.1f} s into the run" for p in found if p not in self.reported]
        self.reported.update(found)
        return new

    def stop(self) -> None:
        """Stop the workers and wait until each has sent its last requests and quit."""
        runner = self.runner
        assert runner is not None
        self.stopping = True
        runner.stop(send_stop_to_client=False)  # no rebalancing onto workers while they quit
        runner.send_message("quit")
        deadline = time.monotonic() + self.env.stop_timeout + WORKER_QUIT_GRACE_S
        while time.monotonic() < deadline:
            if not self.still_quitting():
                break
            gevent.sleep(0.05)
        else:
            self.run.error("a worker did not send its last requests in time; some are missing")
        runner.quit()

    def still_quitting(self) -> list[str]:
        """The workers yet to quit, less the dead: lost ones, and local processes that died."""
        assert self.runner is not None
        dead = {p.pid for p in self.processes if p.poll() is not None}
        return [
            c.id
            for c in self.runner.clients.all
            if c.state != STATE_MISSING and _pid(self.per_worker.get(c.id)) not in dead
        ]

    def close(self) -> None:
        """End the workers (normally gone already: they quit when told to)."""
        if self.runner is not None and not self.stopping:
            self.runner.quit()  # the run failed: tell the workers, external ones too
        end_processes(self.processes)  # in this process's group: each alone


def _pid(worker: WorkerSamplesMessage | None) -> int | None:
    return None if worker is None else worker["pid"]


# --- the run ---------------------------------------------------------------------------


class Run:
    """One scenario's load: start, report, stop on time or on request, write files."""

    def __init__(self, spec: ChildSpec, channel: Channel) -> None:
        self.spec = spec
        self.channel = channel
        self.collector = Collector()
        self.stop_reason = ""
        self.stop_requested = gevent.event.Event()
        self.process = psutil.Process()
        self.reported_errors: set[str] = set()
        self.master: Master | None = None
        self.schedule: Schedule | None = None
        self.cut = WarmupCut(float(spec["scenario"]["warmup_s"]))

    def request_stop(self, reason: str) -> None:
        if not self.stop_reason:
            self.stop_reason = reason
        self.stop_requested.set()

    def error(self, message: str) -> None:
        logger.warning("%s", message)
        self.channel.send({"type": "error", "message": message, "fatal": False})

    def build_environment(self) -> Environment:
        """The Environment as Locust's ``main`` builds it: global events, parsed options."""
        found = scenario_users(self.spec)
        users = found.classes
        locustfile = self.spec["scenario"]["locustfile"]
        env = Environment(
            user_classes=users,
            shape_class=choose_shape(self.spec, found),
            # Locust's global events: a locustfile's listeners (request, init, test_start,
            # test_stop...) attached to them at import, as under ``locust``
            events=events,
            host=self.spec["host"],
            # stop waits this long for requests in flight, so they are recorded, not dropped
            stop_timeout=float(self.spec["stop_timeout_s"]),
            parsed_options=locust_options(self.spec),
            locustfile=os.path.basename(locustfile) if locustfile else None,
            parsed_locustfiles=[locustfile] if locustfile else [],
        )
        env.events.request.add_listener(self.collector.on_request)  # type: ignore[no-untyped-call]
        env.events.user_error.add_listener(self.collector.on_user_error)  # type: ignore[no-untyped-call]
        # before the runner is created, so before its own listeners (see WarmupCut)
        env.events.request.add_listener(self.cut.on_request)  # type: ignore[no-untyped-call]
        env.events.worker_report.add_listener(self.cut.on_worker_report)  # type: ignore[no-untyped-call]
        self.cut.attach(env.stats)
        if not self.spec.get("distributed"):
            self.schedule = attach_schedule(env, users)
        return env

    def create_runner(self, env: Environment) -> Any:
        if self.spec.get("distributed"):
            self.master = Master(self, env)
            return self.master.start_runner()  # fires init before it awaits the workers
        runner = env.create_local_runner()
        fire_init(env, runner)
        return runner

    def execute(self) -> None:
        env = self.build_environment()
        try:
            runner = self.create_runner(env)
            self.drive(env, runner)
        finally:
            if self.master is not None:
                self.master.close()

    def drive(self, env: Environment, runner: Any) -> None:
        writer = StatsCSVFileWriter(
            env, PERCENTILES_TO_REPORT, self.spec["base_filepath"], full_history=False
        )
        writer_greenlet = gevent.spawn(writer.stats_writer)
        history_greenlet = gevent.spawn(stats_history, runner)  # for Locust's HTML report
        self.process.cpu_percent(None)  # starts psutil's interval
        cpu_start = self.process.cpu_times()
        self.collector.load_start = time.time()
        TWIN_CLOCK[0] = self.collector.load_start
        self.cut.start(self.collector.load_start)
        if self.master is not None:  # before the spawn messages, so before any request
            runner.send_message(START_MESSAGE, {"load_start": self.collector.load_start})
        self.channel.send({"type": "started"})
        duration_s = self.start_load(env, runner)
        self.wait_for_end(runner, duration_s)
        duration = time.time() - self.collector.load_start
        logger.info("stopping after %.1f s: %s", duration, self.stop_reason)
        if self.master is not None:
            self.master.stop()
        else:
            runner.quit()  # waits up to stop_timeout for users to finish their requests
        writer_greenlet.kill(block=True)
        history_greenlet.kill(block=True)
        self.cut.window(env.stats)
        write_final_csvs(writer)
        write_html_report(env, f"{self.spec['base_filepath']}_locust.html")
        logger.info("CSV files written to %s_*.csv", self.spec["base_filepath"])
        self.report(runner)  # after the files: the parent's last progress is the run's
        self.channel.send(self.done(duration, cpu_start))

    def start_load(self, env: Environment, runner: Any) -> float:
        """Start users (or the shape); the seconds the load is to last."""
        scenario = self.spec["scenario"]
        duration_s = float(scenario["duration_s"])
        stages = scenario["stages"]
        if env.shape_class is not None:  # the scenario's stages, or the locustfile's class
            runner.start_shape()
            return min(duration_s, float(stages[-1][0])) if stages else duration_s
        users = int(scenario["users"])
        # the open model's users are its pool of slots: all there from the first due time
        rate = float(users) if scenario.get("arrival_rate") is not None else scenario["spawn_rate"]
        if self.master is None:
            runner.start(users, float(rate))
            return duration_s
        # a master's start blocks until the workers report their users: keep reporting
        starting = gevent.spawn(runner.start, users, float(rate))
        starting.link_exception(lambda g: self.error(f"the master failed to start: {g.exception}"))
        return duration_s

    def done(self, duration_s: float, cpu_start: Any) -> DoneMessage:
        if self.master is not None:
            return {
                "type": "done", "duration_s": duration_s,
                "cpu_percent": self.master.cpu_percent("mean_cpu_percent"),
                "stop_reason": self.stop_reason,
                "late_requests": self.master.total("late"),
                "dropped_requests": self.master.total("dropped"),
                "requests_per_worker": self.master.requests,
            }  # fmt: skip
        return {
            "type": "done", "duration_s": duration_s,
            "cpu_percent": self.mean_cpu(cpu_start), "stop_reason": self.stop_reason,
            "late_requests": self.schedule.late if self.schedule else 0,
            "dropped_requests": self.schedule.dropped if self.schedule else 0,
        }  # fmt: skip

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
            if runner.state in (STATE_STOPPING, STATE_STOPPED):  # StopTest, a shape's end...
                self.let_locust_stop(runner)
                who = "the workers" if self.master is not None else "the locustfile"
                self.request_stop(f"{who} stopped the test")
                return

    def let_locust_stop(self, runner: Any) -> None:
        """Let a stop Locust began in the shape's greenlet end (``test_stop`` fired) first:
        a master's waits for its workers, and ending the runner would cut it short."""
        shape = getattr(runner, "shape_greenlet", None)
        if shape is not None:
            shape.join(timeout=float(self.spec["stop_timeout_s"]) + WORKER_QUIT_GRACE_S)

    def report(self, runner: Any) -> None:
        rows = self.collector.drain()
        if rows:
            self.channel.send({"type": "samples", "rows": rows})
        elapsed = time.time() - self.collector.load_start
        cpu = self.master.cpu_percent() if self.master else self.process.cpu_percent(None)
        self.channel.send(
            {"type": "progress", "t": elapsed, "users": runner.user_count, "cpu_percent": cpu}
        )
        for error in self.collector.errors.keys() - self.reported_errors:
            # each distinct error once; the failure samples carry the count
            self.error(error)
            self.reported_errors.add(error)
        if self.master is not None:
            for problem in self.master.problems(elapsed):
                self.error(problem)


def listen_for_stop(run: Run, stdin: Any) -> None:
    """Stop the run on ``stop <reason>`` or when the parent closes stdin."""
    while True:
        line = stdin.readline()
        if not line:
            run.request_stop("interrupted: the parent closed stdin")
            return
        reason = parse_stop(line.decode("utf-8", "replace"))
        if reason is not None:
            run.request_stop(reason)


def main() -> int:
    channel = Channel()
    setup_logging("INFO")  # type: ignore[no-untyped-call] # to stderr, which the parent points at the run log
    stdin = FileObjectPosix(0, "rb", close=False)  # cooperative: other greenlets keep running
    try:
        spec: ChildSpec = json.loads(stdin.readline())
    except ValueError as exc:
        channel.send({"type": "error", "message": f"bad spec line: {exc}", "fatal": True})
        return 2
    sys.path[:0] = [p for p in spec.get("sys_path", []) if p not in sys.path]
    run = Run(spec, channel)
    for signum in (signal.SIGTERM, signal.SIGINT):
        reason = f"interrupted: {signal.Signals(signum).name}"
        gevent.signal_handler(signum, run.request_stop, reason)
    die_with_parent(signal.SIGTERM)  # the parent died: a graceful stop, workers included
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
