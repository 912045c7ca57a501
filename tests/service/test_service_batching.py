"""The dynamic batcher on its own, with a fake forward pass: no torch, no HTTP."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from service.batching import (
    BatcherClosedError,
    BatchPolicy,
    DynamicBatcher,
    QueueFullError,
    QueueTooSlowError,
)

T = TypeVar("T")


@dataclass
class Recorder:
    """A fake model (doubles each example) and a batch observer in one."""

    batches: list[list[int]] = field(default_factory=list)
    depths: list[int] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)
    delay_s: float = 0.0

    def compute(self, examples: list[int]) -> list[int]:
        if -1 in examples:
            raise ValueError("the model cannot take -1")
        time.sleep(self.delay_s)
        self.batches.append(examples)
        return [2 * example for example in examples]

    def on_depth(self, depth: int) -> None:
        self.depths.append(depth)

    def on_rejected(self, reason: str) -> None:
        self.rejected += 1
        self.reasons.append(reason)

    def on_batch_start(self, waits: Sequence[float]) -> None:
        self.waits.extend(waits)

    def on_batch_done(self, size: int, items: int, compute_s: float) -> None:
        pass


def run_with_batcher(
    test: Callable[[DynamicBatcher[int, int], Recorder], Awaitable[T]],
    *,
    max_batch_size: int = 8,
    max_delay_s: float = 0.05,
    max_queue: int = 64,
    max_wait_s: float = float("inf"),
    delay_s: float = 0.0,
) -> tuple[T, Recorder]:
    recorder = Recorder(delay_s=delay_s)

    async def main() -> T:
        policy = BatchPolicy(max_batch_size, max_delay_s, max_queue, max_wait_s)
        batcher = DynamicBatcher("fake", recorder.compute, policy, recorder)
        batcher.start()
        try:
            return await test(batcher, recorder)
        finally:
            await batcher.close()

    return asyncio.run(main()), recorder


async def submit_all(batcher: DynamicBatcher[int, int], requests: Sequence[list[int]]) -> Any:
    return await asyncio.gather(*(batcher.submit(request) for request in requests))


def test_examples_from_concurrent_requests_share_one_batch() -> None:
    async def test(batcher: DynamicBatcher[int, int], _: Recorder) -> Any:
        return await submit_all(batcher, [[1], [2, 3], [4]])

    answers, recorder = run_with_batcher(test)
    assert answers == [[2], [4, 6], [8]]
    assert recorder.batches == [[1, 2, 3, 4]]


def test_a_batch_never_exceeds_the_max_batch_size() -> None:
    async def test(batcher: DynamicBatcher[int, int], _: Recorder) -> Any:
        return await submit_all(batcher, [[1, 2, 3], [4, 5, 6, 7, 8, 9, 10, 11, 12, 13], [14]])

    answers, recorder = run_with_batcher(test, max_batch_size=4)
    assert answers == [[2, 4, 6], [8, 10, 12, 14, 16, 18, 20, 22, 24, 26], [28]]
    assert all(len(batch) <= 4 for batch in recorder.batches)
    assert sorted(example for batch in recorder.batches for example in batch) == list(range(1, 15))


def test_a_lone_request_waits_no_longer_than_the_queue_delay() -> None:
    async def test(batcher: DynamicBatcher[int, int], _: Recorder) -> Any:
        return await batcher.submit([5])

    answer, recorder = run_with_batcher(test, max_delay_s=0.05)
    assert answer == [10]
    (wait,) = recorder.waits
    assert 0.04 <= wait < 0.5


def test_a_full_batch_does_not_wait_for_the_queue_delay() -> None:
    async def test(batcher: DynamicBatcher[int, int], _: Recorder) -> Any:
        return await batcher.submit([1, 2, 3, 4])

    _, recorder = run_with_batcher(test, max_batch_size=4, max_delay_s=5.0)
    assert recorder.waits[0] < 1.0


def test_a_full_queue_refuses_a_request_at_once() -> None:
    async def test(batcher: DynamicBatcher[int, int], _: Recorder) -> Any:
        waiting = asyncio.ensure_future(batcher.submit([1, 2]))
        await asyncio.sleep(0)  # let it enter the queue
        with pytest.raises(QueueFullError, match=r"\(2 examples waiting, limit 3\)"):
            await batcher.submit([3, 4])
        assert batcher.depth == 2
        return await waiting

    answer, recorder = run_with_batcher(test, max_queue=3, max_delay_s=0.05)
    assert answer == [2, 4]
    assert recorder.rejected == 1


def test_a_queue_expected_to_outlast_the_timeout_refuses_a_request_at_once() -> None:
    async def test(batcher: DynamicBatcher[int, int], _: Recorder) -> Any:
        await batcher.submit([0])  # one batch teaches the batcher 0.1 s per example
        computing = asyncio.ensure_future(batcher.submit([1]))
        await asyncio.sleep(0.02)  # in its forward pass
        waiting = asyncio.ensure_future(batcher.submit([2, 3]))
        await asyncio.sleep(0)
        # 1 computing + 2 waiting + 1 new, at 0.1 s or more each (a loaded machine sleeps long)
        assert batcher.expected_wait_s(1) >= 0.4
        with pytest.raises(QueueTooSlowError) as refused:
            await batcher.submit([4, 5, 6, 7])  # 0.7 s or more > 0.35 s
        assert re.fullmatch(
            r"the queue of model 'fake' \(2 examples waiting\) is expected to take "
            r"\d+\.\d s, over the request timeout of 0.35 s",
            str(refused.value),
        )
        assert refused.value.retry_after_s >= 1
        return await asyncio.gather(computing, waiting)

    answers, recorder = run_with_batcher(
        test, max_delay_s=0.0, delay_s=0.1, max_wait_s=0.35, max_batch_size=1
    )
    assert answers == [[2], [4, 6]]
    assert recorder.reasons == ["queue_wait"]


def test_an_empty_queue_takes_a_request_larger_than_its_bound() -> None:
    async def test(batcher: DynamicBatcher[int, int], _: Recorder) -> Any:
        return await batcher.submit([1, 2, 3, 4, 5])

    answer, _ = run_with_batcher(test, max_queue=2)
    assert answer == [2, 4, 6, 8, 10]


def test_an_abandoned_request_gives_its_queue_places_back() -> None:
    async def test(batcher: DynamicBatcher[int, int], recorder: Recorder) -> Any:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(batcher.submit([1, 2, 3]), timeout=0.01)
        assert batcher.depth == 0
        return await batcher.submit([4, 5, 6])  # would not fit if the places were still held

    answer, recorder = run_with_batcher(test, max_queue=4, max_delay_s=0.1)
    assert answer == [8, 10, 12]
    assert [1, 2, 3] not in recorder.batches


def test_a_failing_forward_pass_fails_only_its_own_batch() -> None:
    async def test(batcher: DynamicBatcher[int, int], _: Recorder) -> Any:
        with pytest.raises(ValueError, match="cannot take -1"):
            await batcher.submit([-1])
        return await batcher.submit([3])

    answer, _ = run_with_batcher(test)
    assert answer == [6]


def test_closing_fails_waiting_requests_and_refuses_new_ones() -> None:
    async def test(batcher: DynamicBatcher[int, int], recorder: Recorder) -> Any:
        computing = asyncio.ensure_future(batcher.submit([1]))
        await asyncio.sleep(0.05)  # the first batch is in the slow forward pass
        waiting = asyncio.ensure_future(batcher.submit([2]))
        await asyncio.sleep(0)
        await batcher.close()
        for request in (computing, waiting):
            with pytest.raises(BatcherClosedError, match="model 'fake' was unloaded"):
                await request
        with pytest.raises(BatcherClosedError):
            await batcher.submit([3])
        return batcher.depth

    depth, recorder = run_with_batcher(test, max_delay_s=0.0, delay_s=0.2)
    assert depth == 0
    assert recorder.depths[-1] == 0
