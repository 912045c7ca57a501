"""Looking at the service under test over HTTP: is it there, does it answer, its metrics.

``Target`` is the service as the gate sees it (``ManagedService`` when the gate started
it, ``ExternalService`` at ``--perfgate-url``); ``Probe`` is how the gate looks at it
besides ``alive()``: ``HttpProbe`` over httpx, or a stub in the gate's unit tests.
httpx is imported here and in ``target.process`` only: the target layer is the one that
talks HTTP to the service (the load itself comes from the Locust child).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import httpx

from pytest_perfgate.core.model import Thresholds
from pytest_perfgate.core.service_metrics import (
    DEFAULT_METRICS,
    ServiceMetrics,
    parse_prometheus_text,
)
from pytest_perfgate.errors import ServiceError
from pytest_perfgate.options import Settings
from pytest_perfgate.target.telemetry import GpuSampler, GpuTelemetry

__all__ = [
    "ExternalService",
    "HttpProbe",
    "Probe",
    "Target",
    "answers",
    "external_target",
    "health_check",
    "scrape_metrics",
]


class Target(Protocol):
    """The system under test as the gate sees it."""

    url: str

    def alive(self) -> bool: ...


@dataclass
class ExternalService:
    """A service the gate did not start (``--perfgate-url``): assumed alive while it answers."""

    url: str
    ready_path: str = "/health"

    def alive(self) -> bool:
        try:
            return httpx.get(self.url + self.ready_path, timeout=5.0).status_code < 500
        except httpx.HTTPError:
            return False


def external_target(thresholds: Thresholds, settings: Settings) -> ExternalService | None:
    """The service at ``--perfgate-url`` (or ``service.url``), which the gate must not start."""
    url = settings.url or thresholds.service.url
    return ExternalService(url.rstrip("/"), thresholds.service.ready_path) if url else None


def answers(url: str) -> bool:
    """Whether ``url`` answers at all within 2 s (a hung service is alive but mute)."""
    try:
        httpx.get(url, timeout=2.0)
    except httpx.HTTPError:
        return False
    return True


def scrape_metrics(url: str) -> dict[str, float] | None:
    """The Prometheus figures at the metrics URL ``url``, or None where nothing is there."""
    try:
        response = httpx.get(url, timeout=2.0)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    return parse_prometheus_text(response.text)


def health_check(target: Target, path: str) -> None:
    """Raise ``ServiceError`` unless ``path`` answers HTTP 200 within 10 s."""
    try:
        response = httpx.get(target.url + path, timeout=10.0)
    except httpx.HTTPError as exc:
        raise ServiceError(
            f"the service at {target.url} failed its health check: {path}: {exc!r}"
        ) from None
    if response.status_code != 200:
        raise ServiceError(
            f"the service at {target.url} failed its health check: {path} answered "
            f"HTTP {response.status_code}"
        )


#: stops the GPU sampling a ``Probe.watch_gpu`` started and returns what it saw
StopWatching = Callable[[], GpuTelemetry]


class Probe(Protocol):
    """What the gate reads from a target during a run, besides ``alive()``.

    ``metrics`` and ``watch_gpu`` take the service's metrics URL
    (``core.service_metrics.metrics_url``), not its base URL.
    """

    def answers(self, url: str) -> bool: ...

    def metrics(self, url: str) -> dict[str, float] | None: ...

    def watch_gpu(self, url: str) -> StopWatching: ...


class HttpProbe:
    """The real probe: HTTP to the service, NVML (or its metrics) for the GPU.

    ``names`` (``service.metrics``) says which of the service's metrics are the GPU's.
    """

    def __init__(self, names: ServiceMetrics = DEFAULT_METRICS) -> None:
        self.names = names

    def answers(self, url: str) -> bool:
        return answers(url)

    def metrics(self, url: str) -> dict[str, float] | None:
        return scrape_metrics(url)

    def watch_gpu(self, url: str) -> StopWatching:
        return GpuSampler(url, names=self.names).start().stop
