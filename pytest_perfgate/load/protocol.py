"""What crosses the process boundary between the Locust driver and its child, typed once.

Imported by both sides: ``load.locust_driver`` (the parent, in the pytest or CLI process)
and ``load.child`` (the Locust child, and its ``locust --worker`` processes). So it is
dependency-free: the standard library and the pure core only; no locust, no gevent, no
httpx. Every line is one JSON object, except the parent's stop command::

    parent -> child stdin    ChildSpec (first line), then "stop <reason>" (STOP)
    child stdout -> parent   StartedMessage, then SamplesMessage / ProgressMessage /
                             ErrorMessage about every report_interval_s, DoneMessage last
    worker -> master         WorkerSamplesMessage (Locust custom message SAMPLES_MESSAGE)
    master -> worker         LoadStartMessage (Locust custom message START_MESSAGE)

A request travels as a ``Row``: the fields of ``core.stats.Sample`` in its order
(``encode_row`` / ``decode_row``), compact on the wire and cheap to build in the child.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, NotRequired, TypedDict

from pytest_perfgate.core.stats import Sample, Stream

__all__ = [
    "ROW_FIELDS",
    "SAMPLES_MESSAGE",
    "START_MESSAGE",
    "STOP",
    "ChildMessage",
    "ChildSpec",
    "DistributedSpec",
    "DoneMessage",
    "ErrorMessage",
    "LoadStartMessage",
    "ProgressMessage",
    "Row",
    "SamplesMessage",
    "ScenarioSpec",
    "StartedMessage",
    "StreamRow",
    "TaskSpec",
    "TwinSpec",
    "WorkerSamplesMessage",
    "decode_row",
    "encode_row",
    "parse_stop",
    "stop_line",
]

# --- the spec: the first line of the child's stdin --------------------------------------


class _PlainTaskSpec(TypedDict):
    method: str
    path: str
    name: str  # "POST /predict"
    weight: int
    json: Any  # a static request body, or None
    json_factory: str | None  # "module:callable", imported in the child
    headers: dict[str, str]  # values may hold ${NAME}, expanded in the child


class TaskSpec(_PlainTaskSpec, total=False):
    """A task; a streaming one (``load.sse``) has the keys below, a plain one none of them.

    ``total=False`` rather than ``NotRequired``: under ``from __future__ import
    annotations`` Python 3.11 counts ``NotRequired`` keys in ``__required_keys__``.
    """

    kind: str  # "http", "openai_chat", "openai_completions" or "sse"
    model: str | None
    prompts: list[Any]  # chat: message lists; completions: strings
    max_tokens: Any  # an int, {"min", "max"} or {"mean", "sd"}; None: unset
    temperature: float | None
    stream: bool
    extra_body: dict[str, Any]  # merged into the request body
    tokens_field: str | None  # sse: the event's field counting its tokens
    seed: int  # of the draws of prompts and max_tokens


class ScenarioSpec(TypedDict):
    """``core.model.scenario_settings`` (the one Scenario -> dict) and what the child adds."""

    name: str
    users: int
    spawn_rate: float
    duration_s: float
    wait_s: list[float]  # [min, max]
    warmup_s: float
    processes: int
    request_timeout_s: float
    min_samples: int
    arrival_rate: float | None  # the open model; None: Locust's closed model
    arrivals: str  # the open model's gaps: "uniform", "poisson" or "gamma"
    burstiness: float  # gamma gaps' shape (1: Poisson)
    seed: int  # of the arrival gaps (a worker adds its index) and of the tasks' draws
    shape: str | None  # the shape's kind
    stages: list[list[float]] | None  # the shape's [end time s, users, spawn rate]
    tasks: list[TaskSpec]
    locustfile: str | None  # an absolute path
    user_classes: list[str]
    tags: list[str]  # the locustfile's tasks to run (``locust --tags``); empty: all
    exclude_tags: list[str]  # and to leave out (``--exclude-tags``)
    arrival_workers: NotRequired[int]  # a worker's spec: the workers sharing the rate


class DistributedSpec(TypedDict):
    local_workers: int
    external_workers: int
    bind: str
    port: int  # 0: a free one
    connect_timeout_s: float
    locustfile: str  # where the master writes the worker locustfile


class TwinSpec(TypedDict):
    """An A/B run: every task also drives the baseline at ``url`` (``core.duet``)."""

    url: str  # the baseline's base URL; its requests' names end in core.duet.BASELINE_SUFFIX
    mode: Literal["duet", "interleaved"]  # both back to back, or alternating rounds
    round_s: float  # interleaved: seconds per round, timed from the load's start
    seed: int  # of the random orders


class ChildSpec(TypedDict):
    scenario: ScenarioSpec
    distributed: DistributedSpec | None  # None: one process
    host: str
    base_filepath: str  # Locust's --csv base: "{results_dir}/{prefix}"
    request_timeout_s: float
    stop_timeout_s: float
    report_interval_s: float
    sys_path: list[str]  # prepended in the child: json_factory modules, locustfiles
    twin: TwinSpec | None  # an A/B run's baseline (core.duet); None: no A/B run


# --- the parent's stop command ----------------------------------------------------------

STOP = "stop"


def stop_line(reason: str) -> str:
    """The line that ends the run early, ``reason`` being what the parent decided."""
    return f"{STOP} {reason}"


def parse_stop(line: str) -> str | None:
    """The reason of a stop line (``"stop requested"`` when it gives none), else None."""
    text = line.strip()
    if text != STOP and not text.startswith(STOP + " "):
        return None
    return text[len(STOP) :].strip() or "stop requested"


# --- one request on the wire -------------------------------------------------------------

#: the fields of a Row, which are ``core.stats.Sample``'s in its order
ROW_FIELDS = ("t", "name", "ms", "ok", "status", "error", "stream", "pair")

#: [t, name, ms, ok, status, error] and, for a streamed response, a 7th item: the
#: ``StreamRow`` of ``core.stats.Stream``; for a request of an A/B duet's pair, an 8th:
#: the pair (the 7th then null for a plain response). JSON has no tuples.
Row = list[Any]


class StreamRow(TypedDict):
    """``core.stats.Stream`` on the wire."""

    ttft_ms: float | None
    itl_ms: list[float]
    output_tokens: int
    chunks: int
    batched: bool
    wellformed: bool
    problem: str


def encode_row(
    t: float, name: str, ms: float, ok: bool, status: int, error: str,
    stream: StreamRow | None = None, pair: int = 0,
) -> Row:  # fmt: skip
    """One request as the child sends it; ``t`` in seconds since the load started."""
    row: Row = [t, name, ms, ok, status, error]
    if stream is not None or pair:
        row.append(stream)
    if pair:
        row.append(pair)
    return row


def _decode_stream(data: Any) -> Stream:
    ttft = data["ttft_ms"]
    return Stream(
        ttft_ms=None if ttft is None else float(ttft),
        itl_ms=tuple(float(g) for g in data["itl_ms"]),
        output_tokens=int(data["output_tokens"]),
        chunks=int(data["chunks"]),
        batched=bool(data["batched"]),
        wellformed=bool(data["wellformed"]),
        problem=str(data.get("problem", "")),
    )


def decode_row(row: Sequence[Any]) -> Sample:
    """A received row as a Sample, each field checked for its type."""
    t, name, ms, ok, status, error = row[:6]
    stream = _decode_stream(row[6]) if len(row) > 6 and row[6] is not None else None
    pair = int(row[7]) if len(row) > 7 else 0
    return Sample(float(t), str(name), float(ms), bool(ok), int(status), str(error), stream, pair)


# --- the child's messages: one JSON object a line on its stdout ---------------------------


class StartedMessage(TypedDict):
    type: Literal["started"]  # the load starts now: sample times count from here


class SamplesMessage(TypedDict):
    type: Literal["samples"]
    rows: list[Row]  # every request reported since the last one


class ProgressMessage(TypedDict):
    type: Literal["progress"]
    t: float  # seconds since the load started
    users: int
    cpu_percent: float | None  # since the last report; a master: its busiest worker


class ErrorMessage(TypedDict):
    type: Literal["error"]
    message: str
    fatal: bool  # True: the run cannot go on; the child exits with code 2


class DoneMessage(TypedDict):
    type: Literal["done"]  # the child's last word
    duration_s: float  # seconds of load, the stop wait excluded
    cpu_percent: float | None  # mean over the run
    stop_reason: str
    late_requests: int  # open model: sent more than an interval after their due time
    dropped_requests: int  # open model: never sent
    requests_per_worker: NotRequired[dict[str, int]]  # a master only


ChildMessage = StartedMessage | SamplesMessage | ProgressMessage | ErrorMessage | DoneMessage


# --- between a master and its workers (Locust custom messages) ---------------------------

#: the custom message a worker sends its requests in
SAMPLES_MESSAGE = "perfgate_samples"
#: the custom message the master sends its load start in, before the load
START_MESSAGE = "perfgate_start"


class WorkerSamplesMessage(TypedDict):
    rows: list[Row]  # timed from the master's load start
    errors: dict[str, int]  # cumulative user-code errors by text
    late: int
    dropped: int
    cpu_percent: float  # since the last message
    mean_cpu_percent: float  # since the test started
    pid: int


class LoadStartMessage(TypedDict):
    load_start: float  # epoch seconds
