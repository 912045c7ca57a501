"""The service's Prometheus metrics (all named ``service_*``) and the ASGI middleware that
records every request.

Several uvicorn workers are several processes: the launcher then sets
``PROMETHEUS_MULTIPROC_DIR`` before any worker imports prometheus-client, each worker
writes its samples there, and ``/metrics`` merges them whichever worker answers
(prometheus-client's multiprocess mode). Each gauge says how workers' values merge.

Load-test analysis reads ``service_queue_time_seconds`` and ``service_compute_time_seconds``
(``_sum``/``_count``) before and after a run to split server time into queueing and
inference: both are observed once per request (a forward pass shared by n requests is
observed n times), so their means are comparable. Keep those names.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

import psutil
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

__all__ = [
    "CONTENT_TYPE",
    "MULTIPROC_ENV",
    "LlmMetrics",
    "ModelMetrics",
    "RequestMetricsMiddleware",
    "mark_process_dead",
    "record_gpu_memory",
    "record_model_loaded",
    "record_process",
    "record_timeout",
    "render",
]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
# prometheus-client picks its storage when first imported; decide with it, once.
_MULTIPROCESS = MULTIPROC_ENV in os.environ
_REGISTRY = CollectorRegistry()

_SECONDS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    10.0,
)
_EXAMPLES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_HTTP = ("endpoint", "method", "status")

_REQUESTS = Counter(
    "service_requests",
    "HTTP requests by endpoint (route template), method and status",
    _HTTP,
    registry=_REGISTRY,
)
_REQUEST_SECONDS = Histogram(
    "service_request_duration_seconds",
    "HTTP request latency in the server",
    _HTTP,
    buckets=_SECONDS,
    registry=_REGISTRY,
)
_QUEUE_SECONDS = Histogram(
    "service_queue_time_seconds",
    "Time a request's examples waited for their forward pass (one observation per request)",
    ["model"],
    buckets=_SECONDS,
    registry=_REGISTRY,
)
_COMPUTE_SECONDS = Histogram(
    "service_compute_time_seconds",
    "Duration of the forward pass that served a request (one observation per request)",
    ["model"],
    buckets=_SECONDS,
    registry=_REGISTRY,
)
_BATCH_SIZE = Histogram(
    "service_batch_size",
    "Examples per forward pass (one observation per batch)",
    ["model"],
    buckets=_EXAMPLES,
    registry=_REGISTRY,
)
_QUEUE_DEPTH = Gauge(
    "service_queue_depth",
    "Examples waiting for a batch, summed over workers",
    ["model"],
    multiprocess_mode="livesum",
    registry=_REGISTRY,
)
_REJECTED = Counter(
    "service_rejected_requests",
    "Requests turned away at once (503 with Retry-After): queue_full (max_queue examples "
    "waiting) or queue_wait (the queue would outlast the request timeout)",
    ["model", "reason"],
    registry=_REGISTRY,
)
_TIMEOUTS = Counter(
    "service_request_timeouts",
    "Requests that ran past the request timeout (504)",
    ["model"],
    registry=_REGISTRY,
)
_MODELS_LOADED = Gauge(
    "service_models_loaded",
    "Workers that hold the model loaded (1 with one worker)",
    ["model"],
    multiprocess_mode="livesum",
    registry=_REGISTRY,
)
_CPU_SECONDS = Gauge(
    "service_process_cpu_seconds",
    "CPU time used by the serving processes",
    multiprocess_mode="livesum",
    registry=_REGISTRY,
)
_RSS_BYTES = Gauge(
    "service_process_resident_memory_bytes",
    "Resident memory of the serving processes",
    multiprocess_mode="livesum",
    registry=_REGISTRY,
)
_GPU_USED = Gauge(
    "service_gpu_memory_used_bytes",
    "GPU memory in use on the device, by all processes",
    ["device"],
    multiprocess_mode="livemax",
    registry=_REGISTRY,
)
_GPU_TOTAL = Gauge(
    "service_gpu_memory_total_bytes",
    "GPU memory of the device",
    ["device"],
    multiprocess_mode="livemax",
    registry=_REGISTRY,
)
_PROCESS = psutil.Process()


class ModelMetrics:
    """A batcher's observer: the per-model series, with their label children bound once."""

    def __init__(self, model: str) -> None:
        self._queue_seconds = _QUEUE_SECONDS.labels(model)
        self._compute_seconds = _COMPUTE_SECONDS.labels(model)
        self._batch_size = _BATCH_SIZE.labels(model)
        self._depth = _QUEUE_DEPTH.labels(model)
        self._model = model

    def on_depth(self, depth: int) -> None:
        self._depth.set(depth)

    def on_rejected(self, reason: str) -> None:
        _REJECTED.labels(self._model, reason).inc()

    def on_batch_start(self, waits: Sequence[float]) -> None:
        for wait in waits:
            self._queue_seconds.observe(wait)

    def on_batch_done(self, size: int, items: int, compute_s: float) -> None:
        self._batch_size.observe(size)
        for _ in range(items):
            self._compute_seconds.observe(compute_s)


def record_timeout(model: str) -> None:
    _TIMEOUTS.labels(model).inc()


def record_model_loaded(model: str, loaded: bool) -> None:
    # inc/dec, not set: every holder of the model counts (workers, or apps in one process).
    _MODELS_LOADED.labels(model).inc(1 if loaded else -1)


def record_process() -> None:
    cpu = _PROCESS.cpu_times()
    _CPU_SECONDS.set(cpu.user + cpu.system)
    _RSS_BYTES.set(_PROCESS.memory_info().rss)


def record_gpu_memory(device: str, used: int, total: int) -> None:
    _GPU_USED.labels(device).set(used)
    _GPU_TOTAL.labels(device).set(total)


def render() -> bytes:
    """The exposition text: this process's metrics, or all workers' in multiprocess mode."""
    if not _MULTIPROCESS:
        return generate_latest(_REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


def mark_process_dead() -> None:
    """Drop this worker's live gauges from the merged view (call when it shuts down)."""
    if _MULTIPROCESS:
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


_Scope = MutableMapping[str, Any]
_Message = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[_Message]]
_Send = Callable[[_Message], Awaitable[None]]


class RequestMetricsMiddleware:
    """Counts and times every HTTP request by route template, method and status.

    Pure ASGI rather than BaseHTTPMiddleware: it adds no task per request. The route
    template (``/v2/models/{name}/infer``) keeps label values bounded whatever paths
    clients send; a path no route matches is recorded as ``unmatched``.
    """

    def __init__(self, app: Callable[[_Scope, _Receive, _Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_and_note_status(message: _Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            labels = (endpoint, scope["method"], str(status))
            _REQUESTS.labels(*labels).inc()
            _REQUEST_SECONDS.labels(*labels).observe(time.perf_counter() - started)


# --- the generative model (service.llm) ------------------------------------------------------
# Names follow vLLM's where they map (time to first token, inter-token latency, end to end).

_LLM_SECONDS = (*_SECONDS, 20.0, 30.0, 60.0)
_SEQUENCES = (1, 2, 4, 8, 16, 32, 64)

_LLM_TTFT = Histogram(
    "service_llm_time_to_first_token_seconds",
    "Time from a generation request's arrival to its first token, queueing included",
    ["model"],
    buckets=_LLM_SECONDS,
    registry=_REGISTRY,
)
_LLM_ITL = Histogram(
    "service_llm_inter_token_latency_seconds",
    "Time between two consecutive tokens of one generation",
    ["model"],
    buckets=_SECONDS,
    registry=_REGISTRY,
)
_LLM_E2E = Histogram(
    "service_llm_e2e_request_latency_seconds",
    "Time from a generation request's arrival to its last token (or its cancellation)",
    ["model", "finish_reason"],
    buckets=_LLM_SECONDS,
    registry=_REGISTRY,
)
_LLM_QUEUE = Histogram(
    "service_llm_queue_time_seconds",
    "Time a generation request waited for a running slot",
    ["model"],
    buckets=_LLM_SECONDS,
    registry=_REGISTRY,
)
_LLM_BATCH = Histogram(
    "service_llm_decode_batch_size",
    "Sequences in one decode step (one observation per step): above 1, continuous batching",
    ["model"],
    buckets=_SEQUENCES,
    registry=_REGISTRY,
)
_LLM_PROMPT_TOKENS = Counter(
    "service_llm_prompt_tokens", "Prompt tokens prefilled", ["model"], registry=_REGISTRY
)
_LLM_GENERATION_TOKENS = Counter(
    "service_llm_generation_tokens", "Tokens generated", ["model"], registry=_REGISTRY
)
_LLM_FINISHED = Counter(
    "service_llm_requests_finished",
    "Generations ended, by finish reason: stop, length, or abort (the client went away)",
    ["model", "finish_reason"],
    registry=_REGISTRY,
)
_LLM_REJECTED = Counter(
    "service_llm_rejected_requests",
    "Generation requests turned away at once (429 with Retry-After): running and waiting full",
    ["model"],
    registry=_REGISTRY,
)
_LLM_RUNNING = Gauge(
    "service_llm_requests_running",
    "Sequences in the running batch, summed over workers",
    ["model"],
    multiprocess_mode="livesum",
    registry=_REGISTRY,
)
_LLM_WAITING = Gauge(
    "service_llm_requests_waiting",
    "Generation requests waiting for a running slot, summed over workers",
    ["model"],
    multiprocess_mode="livesum",
    registry=_REGISTRY,
)
_LLM_KV_TOKENS = Gauge(
    "service_llm_kv_cache_tokens",
    "Tokens held in the KV cache, summed over workers",
    ["model"],
    multiprocess_mode="livesum",
    registry=_REGISTRY,
)
_LLM_KV_CAPACITY = Gauge(
    "service_llm_kv_cache_capacity_tokens",
    "Tokens the KV cache can hold (running slots x context), summed over workers",
    ["model"],
    multiprocess_mode="livesum",
    registry=_REGISTRY,
)
_LLM_KV_USAGE = Gauge(
    "service_llm_kv_cache_usage_ratio",
    "Share of the KV cache in use (tokens held / capacity), the highest over workers",
    ["model"],
    multiprocess_mode="livemax",
    registry=_REGISTRY,
)


class LlmMetrics:
    """A generation engine's observer (``service.llm.engine.EngineObserver``)."""

    def __init__(self, model: str) -> None:
        self._model = model
        self._ttft = _LLM_TTFT.labels(model)
        self._itl = _LLM_ITL.labels(model)
        self._queue = _LLM_QUEUE.labels(model)
        self._batch = _LLM_BATCH.labels(model)
        self._prompt_tokens = _LLM_PROMPT_TOKENS.labels(model)
        self._generation_tokens = _LLM_GENERATION_TOKENS.labels(model)
        self._running = _LLM_RUNNING.labels(model)
        self._waiting = _LLM_WAITING.labels(model)
        self._kv_tokens = _LLM_KV_TOKENS.labels(model)
        self._kv_capacity = _LLM_KV_CAPACITY.labels(model)
        self._kv_usage = _LLM_KV_USAGE.labels(model)

    def on_rejected(self) -> None:
        _LLM_REJECTED.labels(self._model).inc()

    def on_admitted(self, prompt_tokens: int, waited_s: float) -> None:
        self._prompt_tokens.inc(prompt_tokens)
        self._queue.observe(waited_s)

    def on_token(self, first: bool, seconds: float) -> None:
        self._generation_tokens.inc()
        (self._ttft if first else self._itl).observe(seconds)

    def on_finished(self, reason: str, seconds: float, completion_tokens: int) -> None:
        _LLM_FINISHED.labels(self._model, reason).inc()
        _LLM_E2E.labels(self._model, reason).observe(seconds)

    def on_step(self, batch_size: int) -> None:
        self._batch.observe(batch_size)

    def on_occupancy(self, running: int, waiting: int, kv_tokens: int, kv_capacity: int) -> None:
        self._running.set(running)
        self._waiting.set(waiting)
        self._kv_tokens.set(kv_tokens)
        self._kv_capacity.set(kv_capacity)
        self._kv_usage.set(kv_tokens / kv_capacity if kv_capacity else 0.0)
