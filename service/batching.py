"""Dynamic batching: examples from concurrent requests share one forward pass.

A batcher lives on the event loop. The first example to arrive waits at most
``max_delay_s`` for others to fill a batch of ``max_batch_size`` examples; the batch then
runs in the batcher's own thread, so the loop keeps accepting (and turning away) requests
while it computes, and examples that arrive meanwhile form the next batch. The queue is
bounded twice: a request is refused at once with ``QueueFullError`` instead of waiting
behind work the server cannot finish in time when it does not fit in ``max_queue``
examples, or when the work ahead of it is expected to take longer than ``max_wait_s``
(the request timeout: it would only time out). The expectation is the examples ahead times
a moving average of the seconds per example of recent batches; a count alone would let a
slow model's queue grow far past the timeout.

Knows nothing of torch or HTTP: ``compute`` maps a list of examples to one output each.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

__all__ = [
    "BatchObserver",
    "BatchPolicy",
    "BatcherClosedError",
    "DynamicBatcher",
    "QueueFullError",
    "QueueTooSlowError",
]

In = TypeVar("In")
Out = TypeVar("Out")


class QueueFullError(Exception):
    """The batcher's queue cannot take the request now; retrying later may succeed."""

    def __init__(self, name: str, depth: int, limit: int, *, retry_after_s: int = 1) -> None:
        super().__init__(
            f"the queue of model {name!r} is full ({depth} examples waiting, limit {limit})"
        )
        self.depth = depth
        self.limit = limit
        self.reason = "queue_full"
        self.retry_after_s = retry_after_s


class QueueTooSlowError(QueueFullError):
    """The work queued ahead would outlast the request's time limit."""

    def __init__(self, name: str, depth: int, expected_s: float, limit_s: float) -> None:
        super().__init__(name, depth, 0, retry_after_s=max(1, math.ceil(expected_s - limit_s)))
        self.args = (
            f"the queue of model {name!r} ({depth} examples waiting) is expected to take "
            f"{expected_s:.1f} s, over the request timeout of {limit_s:g} s",
        )
        self.reason = "queue_wait"


class BatcherClosedError(Exception):
    """The batcher was closed (its model unloaded) before the request was served."""


@dataclass(frozen=True)
class BatchPolicy:
    max_batch_size: int
    max_delay_s: float
    max_queue: int  # examples
    max_wait_s: float = math.inf  # expected queueing a request is admitted to


#: weight of the newest batch in the moving average of seconds per example
_COST_SMOOTHING = 0.2


class BatchObserver(Protocol):
    """What a batcher reports, for metrics."""

    def on_depth(self, depth: int) -> None: ...

    def on_rejected(self, reason: str) -> None: ...

    def on_batch_start(self, waits: Sequence[float]) -> None: ...

    def on_batch_done(self, size: int, items: int, compute_s: float) -> None: ...


class _NoObserver:
    def on_depth(self, depth: int) -> None:
        pass

    def on_rejected(self, reason: str) -> None:
        pass

    def on_batch_start(self, waits: Sequence[float]) -> None:
        pass

    def on_batch_done(self, size: int, items: int, compute_s: float) -> None:
        pass


@dataclass(eq=False)
class _Item:
    """A request's examples (at most one batch of them) and the future that answers them."""

    examples: Sequence[Any]
    future: asyncio.Future[list[Any]]
    enqueued_at: float = field(default_factory=time.monotonic)
    waiting: bool = True  # counted in the batcher's queue depth


class DynamicBatcher(Generic[In, Out]):
    def __init__(
        self,
        name: str,
        compute: Callable[[list[In]], list[Out]],
        policy: BatchPolicy,
        observer: BatchObserver | None = None,
    ) -> None:
        self.name = name
        self._compute = compute
        self._policy = policy
        self._observer: BatchObserver = observer or _NoObserver()
        self._queue: deque[_Item] = deque()
        self._waiting = 0  # examples queued and not yet taken into a batch
        self._in_flight: list[_Item] = []
        self._in_flight_examples = 0
        self._seconds_per_example: float | None = None  # moving average; None before a batch
        self._arrived = asyncio.Event()
        # One thread: two forward passes of one model at once would only fight for cores.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"batcher-{name}")
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def depth(self) -> int:
        """Examples waiting for a batch."""
        return self._waiting

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(), name=f"batcher-{self.name}")

    async def submit(self, examples: Sequence[In]) -> list[Out]:
        """The outputs for ``examples``, in order, once the batches holding them have run."""
        if self._closed:
            raise BatcherClosedError(f"model {self.name!r} was unloaded")
        self._admit(len(examples))
        items = self._enqueue(examples)
        try:
            results = await asyncio.gather(*(item.future for item in items))
        except BaseException:
            self._abandon(items)
            raise
        return [output for result in results for output in result]

    def expected_wait_s(self, count: int) -> float:
        """Seconds until ``count`` more examples would be computed, from recent batches."""
        if self._seconds_per_example is None:
            return 0.0
        ahead = self._waiting + self._in_flight_examples + count
        return ahead * self._seconds_per_example

    def _admit(self, count: int) -> None:
        # An empty queue takes any request, so one larger than max_queue is not starved.
        if not self._waiting:
            return
        error: QueueFullError | None = None
        if self._waiting + count > self._policy.max_queue:
            error = QueueFullError(self.name, self._waiting, self._policy.max_queue)
        elif (expected := self.expected_wait_s(count)) > self._policy.max_wait_s:
            error = QueueTooSlowError(self.name, self._waiting, expected, self._policy.max_wait_s)
        if error is not None:
            self._observer.on_rejected(error.reason)
            raise error

    def _enqueue(self, examples: Sequence[In]) -> list[_Item]:
        loop = asyncio.get_running_loop()
        size = self._policy.max_batch_size
        items = [
            _Item(examples[start : start + size], loop.create_future())
            for start in range(0, len(examples), size)
        ]
        self._queue.extend(items)
        self._waiting += len(examples)
        self._observer.on_depth(self._waiting)
        self._arrived.set()
        return items

    def _abandon(self, items: Sequence[_Item]) -> None:
        """Give up a request's items (it timed out or failed): free their queue places."""
        for item in items:
            self._release(item)
            if item.future.done() and not item.future.cancelled():
                item.future.exception()  # mark retrieved: asyncio would log it otherwise
            item.future.cancel()
        self._observer.on_depth(self._waiting)

    def _release(self, item: _Item) -> None:
        """Stop counting an item as waiting: taken into a batch, abandoned, or failed."""
        if item.waiting:
            item.waiting = False
            self._waiting -= len(item.examples)

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch()
            try:
                await self._execute(batch)
            except Exception as exc:  # a bug here must not stall every later request
                _settle(batch, exc)

    async def _next_batch(self) -> list[_Item]:
        while True:
            while not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
            await self._fill(self._queue[0].enqueued_at + self._policy.max_delay_s)
            if batch := self._take():
                return batch

    async def _fill(self, deadline: float) -> None:
        """Wait until a full batch is queued or the oldest example's deadline passes."""
        while self._waiting < self._policy.max_batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._arrived.wait()

    def _take(self) -> list[_Item]:
        batch: list[_Item] = []
        size = 0
        while self._queue:
            item = self._queue[0]
            if item.future.done():  # abandoned while waiting; its places are already free
                self._queue.popleft()
                continue
            if batch and size + len(item.examples) > self._policy.max_batch_size:
                break
            self._queue.popleft()
            self._release(item)
            batch.append(item)
            size += len(item.examples)
        self._observer.on_depth(self._waiting)
        return batch

    async def _execute(self, batch: list[_Item]) -> None:
        started = time.monotonic()
        self._observer.on_batch_start([started - item.enqueued_at for item in batch])
        examples = [example for item in batch for example in item.examples]
        self._in_flight, self._in_flight_examples = batch, len(examples)
        loop = asyncio.get_running_loop()
        try:
            outputs = await loop.run_in_executor(self._executor, self._compute, examples)
        except Exception as exc:
            self._in_flight, self._in_flight_examples = [], 0
            _settle(batch, exc)
            return
        # Not in a finally: when close() cancels this task, it settles _in_flight itself.
        self._in_flight, self._in_flight_examples = [], 0
        elapsed = time.monotonic() - started
        self._note_cost(elapsed / len(examples))
        self._observer.on_batch_done(len(examples), len(batch), elapsed)
        offset = 0
        for item in batch:
            count = len(item.examples)
            if not item.future.done():
                item.future.set_result(outputs[offset : offset + count])
            offset += count

    def _note_cost(self, seconds_per_example: float) -> None:
        previous = self._seconds_per_example
        self._seconds_per_example = (
            seconds_per_example
            if previous is None
            else previous + _COST_SMOOTHING * (seconds_per_example - previous)
        )

    async def close(self) -> None:
        """Stop batching; requests still waiting fail with ``BatcherClosedError``."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        pending = [*self._in_flight, *self._queue]
        self._queue.clear()
        for item in pending:
            self._release(item)
        _settle(pending, BatcherClosedError(f"model {self.name!r} was unloaded"))
        self._observer.on_depth(0)
        self._executor.shutdown(wait=False, cancel_futures=True)


def _settle(items: Sequence[_Item], error: BaseException) -> None:
    for item in items:
        if not item.future.done():
            item.future.set_exception(error)
