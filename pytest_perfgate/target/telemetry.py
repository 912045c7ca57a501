"""GPU memory and utilisation sampled during a run: NVML where present, ``/metrics`` otherwise.

Runs a daemon thread in the pytest process (no locust, no torch). Without a GPU the
figures are *absent* (``None``), never zero: a budget on them is then INVALID, not met.
NVML comes from the optional ``nvidia-ml-py`` package (``import pynvml``); the fallback
reads the service's metrics (``service.metrics_url``) through ``service.metrics``: GPU
memory and utilisation where its gauges are there (the bundled service, Triton).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from pytest_perfgate.core.service_metrics import (
    DEFAULT_METRICS,
    ServiceMetrics,
    gauge_value,
    parse_prometheus_text,
)

__all__ = ["GpuSampler", "GpuTelemetry"]


@dataclass(frozen=True)
class GpuTelemetry:
    source: str | None  # "nvml", "metrics", or None when nothing could be read
    samples: tuple[tuple[float, float | None, float | None], ...]  # (t, memory MB, util %)

    @property
    def peak_mem_mb(self) -> float | None:
        values = [m for _, m, _ in self.samples if m is not None]
        return max(values) if values else None

    @property
    def mean_util_percent(self) -> float | None:
        values = [u for _, _, u in self.samples if u is not None]
        return sum(values) / len(values) if values else None

    def figures(self) -> dict[str, float | None]:
        """Observed values by budget key: ``gpu_mem_mb`` (peak), ``gpu_util_min`` (mean)."""
        return {"gpu_mem_mb": self.peak_mem_mb, "gpu_util_min": self.mean_util_percent}

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "peak_mem_mb": self.peak_mem_mb,
            "mean_util_percent": self.mean_util_percent,
            "samples": [list(s) for s in self.samples],
        }


Reading = tuple[float | None, float | None]


def _nvml_reader() -> Callable[[], Reading] | None:
    try:
        import pynvml  # type: ignore[import-not-found, unused-ignore]

        pynvml.nvmlInit()
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
    except Exception:  # no package, no driver, no device: all mean "no NVML here"
        return None
    if not handles:
        return None

    def read() -> Reading:
        used = sum(pynvml.nvmlDeviceGetMemoryInfo(h).used for h in handles)
        util = sum(pynvml.nvmlDeviceGetUtilizationRates(h).gpu for h in handles) / len(handles)
        return used / 2**20, float(util)

    return read


def _metrics_reader(url: str, names: ServiceMetrics) -> Callable[[], Reading] | None:
    """Reads the GPU gauges at the metrics URL ``url``; None when it has neither."""

    def read() -> Reading:
        try:
            response = httpx.get(url, timeout=2.0)
        except httpx.HTTPError:
            return None, None
        if response.status_code != 200:
            return None, None
        scrape = parse_prometheus_text(response.text)
        used = gauge_value(scrape, names.gpu_memory)
        util = gauge_value(scrape, names.gpu_utilisation, mean=True)
        return (None if used is None else used / 2**20), util

    return read if read() != (None, None) else None


class GpuSampler:
    """Samples once every ``interval_s`` between ``start()`` and ``stop()``.

    ``metrics_url`` is the service's metrics address (read where NVML is absent), and
    ``names`` which of its metrics are the GPU's.
    """

    def __init__(
        self, metrics_url: str, interval_s: float = 1.0, names: ServiceMetrics = DEFAULT_METRICS
    ) -> None:
        self.url = metrics_url
        self.names = names
        self.interval_s = interval_s
        self._samples: list[tuple[float, float | None, float | None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._source: str | None = None

    def start(self) -> GpuSampler:
        reader = _nvml_reader()
        self._source = "nvml" if reader else None
        if reader is None:
            reader = _metrics_reader(self.url, self.names)
            self._source = "metrics" if reader else None
        if reader is not None:
            self._thread = threading.Thread(
                target=self._loop, args=(reader,), name="perfgate-gpu", daemon=True
            )
            self._thread.start()
        return self

    def _loop(self, read: Callable[[], Reading]) -> None:
        t0 = time.monotonic()
        while not self._stop.is_set():
            try:
                memory, util = read()
            except Exception:  # a GPU that vanished mid-run: keep what was sampled
                return
            self._samples.append((round(time.monotonic() - t0, 3), memory, util))
            self._stop.wait(self.interval_s)

    def stop(self) -> GpuTelemetry:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        return GpuTelemetry(self._source, tuple(self._samples))
