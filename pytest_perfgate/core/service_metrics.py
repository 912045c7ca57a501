"""Reading the service's own Prometheus figures: which metric holds what, in which unit.

Pure: no I/O, no httpx (``target.probe`` fetches the text, this module reads it). The gate
reads five figures from a scrape; ``ServiceMetrics`` says, for each, which metric names to
try in order (the first present in the scrape wins), with defaults for the bundled service,
the prometheus-client process collector, NVIDIA Triton and vLLM:

=================  ================================================================
``rss``            resident memory, bytes (a gauge)
``queue_time``     time requests waited before computing: a cumulative time and a
``compute_time``   count (a histogram's ``_sum``/``_count``, or two counters)
``gpu_memory``     GPU memory in use, bytes (summed over GPUs)
``gpu_utilisation``  GPU busy share, percent (averaged over GPUs; 0-1 gauges scaled)
=================  ================================================================

Triton's names are from its user guide (``docs/user_guide/metrics.md``): cumulative
microsecond counters per model, ``nv_inference_request_success`` as their count,
``nv_gpu_utilization`` from 0.0 to 1.0. vLLM's (``vllm/v1/metrics/loggers.py``) are
second histograms; vLLM exports no GPU memory or utilisation gauge
(``vllm:gpu_cache_usage_perc`` is the KV-cache's share, not the GPU's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "DEFAULT_METRICS",
    "FIGURES",
    "SECONDS_PER",
    "Gauge",
    "ServiceMetrics",
    "TimeUnit",
    "Timing",
    "gauge_value",
    "mean_time_ms",
    "metric_total",
    "metrics_url",
    "parse_prometheus_text",
]

TimeUnit = Literal["seconds", "milliseconds", "microseconds"]
#: seconds in one of each time unit a metric may count in
SECONDS_PER: Mapping[str, float] = {"seconds": 1.0, "milliseconds": 1e-3, "microseconds": 1e-6}
#: the figures a ``service.metrics`` mapping may name, in the order the README lists them
FIGURES = ("rss", "queue_time", "compute_time", "gpu_memory", "gpu_utilisation")


@dataclass(frozen=True)
class Gauge:
    """A metric read as it is, times ``scale`` (100 for a 0-1 utilisation)."""

    name: str
    scale: float = 1.0

    def __repr__(self) -> str:
        return self.name if self.scale == 1.0 else f"{self.name}x{self.scale:g}"


@dataclass(frozen=True)
class Timing:
    """A cumulative time (``total``, in ``unit``) and the number of requests it covers."""

    total: str
    count: str
    unit: TimeUnit = "seconds"

    @classmethod
    def histogram(cls, name: str, unit: TimeUnit = "seconds") -> Timing:
        """A Prometheus histogram or summary: its ``_sum`` over its ``_count``."""
        return cls(f"{name}_sum", f"{name}_count", unit)

    def __repr__(self) -> str:
        return f"{self.total}/{self.count} ({self.unit})"


_TRITON_COUNT = "nv_inference_request_success"


@dataclass(frozen=True)
class ServiceMetrics:
    """For each figure, the metrics to try in order; the first one in a scrape is read."""

    rss: tuple[Gauge, ...] = (
        Gauge("service_process_resident_memory_bytes"),
        Gauge("process_resident_memory_bytes"),
    )
    queue_time: tuple[Timing, ...] = (
        Timing.histogram("service_queue_time_seconds"),
        Timing("nv_inference_queue_duration_us", _TRITON_COUNT, "microseconds"),
        Timing.histogram("vllm:request_queue_time_seconds"),
    )
    compute_time: tuple[Timing, ...] = (
        Timing.histogram("service_compute_time_seconds"),
        Timing("nv_inference_compute_infer_duration_us", _TRITON_COUNT, "microseconds"),
        Timing.histogram("vllm:request_inference_time_seconds"),
    )
    gpu_memory: tuple[Gauge, ...] = (
        Gauge("service_gpu_memory_used_bytes"),
        Gauge("nv_gpu_memory_used_bytes"),
    )
    gpu_utilisation: tuple[Gauge, ...] = (Gauge("nv_gpu_utilization", 100.0),)


DEFAULT_METRICS = ServiceMetrics()


# --- the Prometheus text format ------------------------------------------------------


def parse_prometheus_text(text: str) -> dict[str, float]:
    """Sample lines of the Prometheus text format -> ``{'name{labels}': value}``.

    Comments and malformed lines are skipped; timestamps are dropped. The key keeps the
    label set as written, so ``metric_total`` can add up all series of one metric.
    """
    samples: dict[str, float] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        end = _series_end(line)
        if end is None:
            continue
        key, rest = line[:end], line[end:].split()
        if not rest:
            continue
        try:
            samples[key] = float(rest[0])  # float() reads NaN, +Inf and -Inf too
        except ValueError:
            continue
    return samples


def _series_end(line: str) -> int | None:
    """Index just past ``name`` or ``name{...}``; quoted label values may hold '}' or spaces."""
    brace = line.find("{")
    space = line.find(" ")
    if brace == -1 or (space != -1 and space < brace):
        return space if space > 0 else None
    quoted = escaped = False
    for i in range(brace + 1, len(line)):
        ch = line[i]
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == "}" and not quoted:
            return i + 1
    return None


def _series(metrics: Mapping[str, float], name: str) -> list[float]:
    return [v for k, v in metrics.items() if k == name or k.startswith(name + "{")]


def metric_total(metrics: Mapping[str, float], name: str) -> float | None:
    """The sum of all series of ``name`` (any labels); ``None`` when there is none."""
    values = _series(metrics, name)
    return sum(values) if values else None


# --- the figures ---------------------------------------------------------------------


def gauge_value(
    metrics: Mapping[str, float] | None, candidates: Sequence[Gauge], *, mean: bool = False
) -> float | None:
    """The first candidate present, scaled: summed over its series (averaged if ``mean``)."""
    for gauge in candidates:
        values = _series(metrics or {}, gauge.name)
        if values:
            value = sum(values) / len(values) if mean else sum(values)
            return value * gauge.scale
    return None


def mean_time_ms(
    before: Mapping[str, float] | None,
    after: Mapping[str, float] | None,
    candidates: Sequence[Timing],
) -> tuple[float, float] | None:
    """(mean ms, count) of the requests the first timing present in ``after`` saw in between."""
    for timing in candidates:
        t1, c1 = metric_total(after or {}, timing.total), metric_total(after or {}, timing.count)
        if t1 is None or c1 is None:
            continue
        t0 = metric_total(before or {}, timing.total) or 0.0
        c0 = metric_total(before or {}, timing.count) or 0.0
        count = c1 - c0
        if count <= 0:
            return None
        return (t1 - t0) / count * SECONDS_PER[timing.unit] * 1000.0, count
    return None


def metrics_url(service_url: str, configured: str | None) -> str:
    """Where the service's metrics are: ``<url>/metrics`` unless ``service.metrics_url`` says.

    ``configured`` is a whole URL (``http://host:8002/metrics``), a path on the service
    (``/internal/metrics``) or a port and path on the service's host (``:8002/metrics``).
    """
    base = service_url.rstrip("/")
    if not configured:
        return base + "/metrics"
    if "://" in configured:
        return configured
    scheme, _, rest = base.partition("://")
    authority, _, _ = rest.partition("/")
    if configured.startswith(":"):
        host = authority.rsplit(":", 1)[0] if not authority.endswith("]") else authority
        return f"{scheme}://{host}{configured}"
    return f"{scheme}://{authority}{configured}"
