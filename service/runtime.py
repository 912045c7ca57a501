"""The models a worker holds: loading (build, warm up), unloading, and predicting through
each model's batcher, with the request timeout. HTTP lives in ``app``; this module raises
domain errors that ``app`` maps to status codes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from service import metrics
from service.batching import BatchPolicy, DynamicBatcher
from service.models import REGISTRY, ModelSpec, Placement, build_model, get_spec, run_batch
from service.settings import Settings

__all__ = [
    "ModelNotLoadedError",
    "ModelRuntime",
    "RequestTimeoutError",
    "default_torch_threads",
    "resolve_device",
    "warmup_batch_sizes",
]

log = logging.getLogger("uvicorn.error")  # uvicorn configures it: our lines join its log


class ModelNotLoadedError(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(
            f'model {name!r} is not loaded; load it with POST /models/load {{"name": "{name}"}}'
        )


class RequestTimeoutError(Exception):
    pass


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def warmup_batch_sizes(max_batch_size: int) -> list[int]:
    """Powers of two below the largest batch, and the largest: the shapes batches take."""
    powers = (1 << power for power in range(max_batch_size.bit_length()))
    return [*(size for size in powers if size < max_batch_size), max_batch_size]


def default_torch_threads(workers: int) -> int:
    """A worker's share of the CPUs, less one for its event loop where the share allows.

    Workers share the cores: more threads than cores only adds contention. And while a
    batch computes, the event loop parses HTTP and JSON for the next one; measured on
    2 cores under load, one compute thread served 20-30 % more requests than two.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    share = max(1, (cores or 1) // workers)
    return share - 1 if share > 1 else 1


def _configure_threads(settings: Settings, device: torch.device) -> None:
    if device.type == "cpu":
        torch.set_num_threads(settings.torch_threads or default_torch_threads(settings.workers))


@dataclass(frozen=True)
class _Loaded:
    spec: ModelSpec
    module: nn.Module
    batcher: DynamicBatcher[list[Any], list[float]]


class ModelRuntime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.device = resolve_device(settings.device)
        self.placement = Placement(self.device, getattr(torch, settings.dtype))
        _configure_threads(settings, self.device)
        self._policy = BatchPolicy(
            settings.max_batch_size,
            settings.max_queue_delay_s,
            settings.max_queue,
            max_wait_s=settings.request_timeout_s,  # beyond it a request would only time out
        )
        self._loaded: dict[str, _Loaded] = {}
        self._locks = {name: asyncio.Lock() for name in REGISTRY}
        self.ready = False
        self.startup_error: str | None = None
        self._started = asyncio.Event()  # start() is over, whether it succeeded or not

    @property
    def loaded_names(self) -> list[str]:
        return [name for name in REGISTRY if name in self._loaded]

    def describe(self, name: str) -> dict[str, Any]:
        spec = get_spec(name)
        loaded = self._loaded.get(name)
        return {
            "name": name,
            "loaded": loaded is not None,
            "device": self.device.type,
            "dtype": self.settings.dtype,
            "max_batch_size": self.settings.max_batch_size,
            "queue_depth": loaded.batcher.depth if loaded else 0,
            "description": spec.description,
            "inputs": [spec.input.as_json()],
            "outputs": [spec.output.as_json()],
        }

    async def start(self) -> None:
        """Load and warm up the default models; the service is ready after that."""
        started = time.perf_counter()
        try:
            for name in self.settings.models:
                await self.load(name)
        except Exception as exc:
            self.startup_error = f"loading the default models failed: {exc}"
            log.error("%s", self.startup_error)
            return
        finally:
            self._started.set()
        self.ready = True
        log.info(
            "models %s loaded and warmed up on %s in %.2f s",
            ", ".join(self.settings.models),
            self.device,
            time.perf_counter() - started,
        )

    async def load(self, name: str) -> bool:
        """Load ``name``; False when it was loaded already."""
        spec = get_spec(name)
        async with self._locks[name]:
            if name in self._loaded:
                return False
            # Building and warming up take a while: the loop keeps serving meanwhile.
            module = await asyncio.to_thread(self._build, spec)
            compute = functools.partial(run_batch, spec, module, self.placement)
            batcher = DynamicBatcher(name, compute, self._policy, metrics.ModelMetrics(name))
            batcher.start()
            self._loaded[name] = _Loaded(spec, module, batcher)
        metrics.record_model_loaded(name, True)
        return True

    def _build(self, spec: ModelSpec) -> nn.Module:
        weights = self.settings.weights_for(spec.name)
        module = build_model(spec, self.placement, Path(weights) if weights else None)
        if self.settings.warmup:
            example = spec.warmup_example()
            for size in warmup_batch_sizes(self.settings.max_batch_size):
                run_batch(spec, module, self.placement, [example] * size)
        return module

    async def unload(self, name: str) -> bool:
        """Unload ``name``; requests waiting for it fail. False when it was not loaded."""
        get_spec(name)
        async with self._locks[name]:
            loaded = self._loaded.pop(name, None)
            if loaded is None:
                return False
            await loaded.batcher.close()
        metrics.record_model_loaded(name, False)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        return True

    async def predict(self, name: str, examples: Sequence[list[Any]]) -> list[list[float]]:
        timeout = self.settings.request_timeout_s
        try:
            async with asyncio.timeout(timeout):
                loaded = await self._when_loaded(name)
                return await loaded.batcher.submit(examples)
        except TimeoutError:
            metrics.record_timeout(name)
            raise RequestTimeoutError(
                f"model {name!r} did not answer within the request timeout of {timeout:g} s "
                f"({self.describe(name)['queue_depth']} examples queued); retry later, send "
                "fewer examples, or raise --request-timeout"
            ) from None

    async def _when_loaded(self, name: str) -> _Loaded:
        if name not in self._loaded and name in self.settings.models:
            # A default model still loading at start-up: wait rather than refuse. With
            # several workers, /ready may come from a worker that is ready sooner.
            await self._started.wait()
        loaded = self._loaded.get(name)
        if loaded is None:
            raise ModelNotLoadedError(name)
        return loaded

    def record_resources(self) -> None:
        metrics.record_process()
        if self.device.type == "cuda":
            free, total = torch.cuda.mem_get_info(self.device)
            metrics.record_gpu_memory(str(self.device), total - free, total)

    async def close(self) -> None:
        for name in list(self._loaded):
            await self.unload(name)
