"""The generation engine without HTTP: continuous batching, sampling, stops, cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import pytest
import torch

from service.llm import CONTEXT_LENGTH
from service.llm.engine import Engine, EngineFullError, Generation, Output
from service.llm.model import TinyGpt, build_tiny_gpt
from service.llm.sampling import SamplingParams, StopMatcher
from service.llm.tokenizer import END_OF_TEXT, IM_END, IM_START, allowed_ids, chat_prompt, encode

CPU = torch.device("cpu")
T = TypeVar("T")


@dataclass
class Recorder:
    """An engine observer that keeps what it is told."""

    steps: list[int] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    rejected: int = 0
    occupancy: list[tuple[int, int, int, int]] = field(default_factory=list)
    first_tokens: int = 0
    later_tokens: int = 0

    def on_rejected(self) -> None:
        self.rejected += 1

    def on_admitted(self, prompt_tokens: int, waited_s: float) -> None:
        pass

    def on_token(self, first: bool, seconds: float) -> None:
        if first:
            self.first_tokens += 1
        else:
            self.later_tokens += 1

    def on_finished(self, reason: str, seconds: float, completion_tokens: int) -> None:
        self.finished.append(reason)

    def on_step(self, batch_size: int) -> None:
        self.steps.append(batch_size)

    def on_occupancy(self, running: int, waiting: int, kv_tokens: int, kv_capacity: int) -> None:
        self.occupancy.append((running, waiting, kv_tokens, kv_capacity))


@pytest.fixture(scope="module")
def model() -> TinyGpt:
    return build_tiny_gpt(CPU, torch.float32)


def run_engine(
    model: TinyGpt,
    test: Callable[[Engine, Recorder], Awaitable[T]],
    *,
    max_running: int = 4,
    max_waiting: int = 4,
) -> tuple[T, Recorder]:
    recorder = Recorder()

    async def main() -> T:
        engine = Engine(
            model,
            CPU,
            torch.float32,
            max_running=max_running,
            max_waiting=max_waiting,
            observer=recorder,
        )
        engine.start()
        try:
            return await asyncio.wait_for(test(engine, recorder), timeout=60)
        finally:
            engine.close()

    return asyncio.run(main()), recorder


def greedy(max_tokens: int) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)


async def first_tokens(generation: Generation, count: int) -> list[Output]:
    outputs = []
    async for output in generation:
        outputs.append(output)
        if len(outputs) == count:
            break
    return outputs


def test_a_generation_ends_at_max_tokens_with_finish_reason_length(model: TinyGpt) -> None:
    prompt = encode("Once upon a time")

    async def test(engine: Engine, recorder: Recorder) -> tuple[str, Output]:
        return await engine.submit(prompt, greedy(12)).collect()

    (text, last), recorder = run_engine(model, test)
    assert len(text) == 12
    assert (last.finish_reason, last.prompt_tokens, last.completion_tokens) == ("length", 16, 12)
    assert recorder.finished == ["length"]
    assert (recorder.first_tokens, recorder.later_tokens) == (1, 11)
    assert all(32 <= ord(c) < 127 or c in "\t\n" for c in text)


def test_greedy_text_is_the_same_alone_and_in_a_batch_with_others(model: TinyGpt) -> None:
    # Different prompt lengths and max_tokens: sequences join and leave at different
    # steps, so cache slots move while the others go on.
    prompts = [encode(text) for text in ("a", "hello there", "x" * 40, "The quick brown fox")]
    lengths = [30, 7, 19, 25]

    async def alone(engine: Engine, recorder: Recorder) -> list[str]:
        return [
            (await engine.submit(prompt, greedy(n)).collect())[0]
            for prompt, n in zip(prompts, lengths, strict=True)
        ]

    async def together(engine: Engine, recorder: Recorder) -> list[str]:
        generations = [
            engine.submit(prompt, greedy(n)) for prompt, n in zip(prompts, lengths, strict=True)
        ]
        return [text for text, _ in await asyncio.gather(*(g.collect() for g in generations))]

    expected, _ = run_engine(model, alone)
    batched, recorder = run_engine(model, together)
    assert batched == expected
    assert [len(text) for text in batched] == lengths
    assert max(recorder.steps) == 4  # all four in one decode step
    assert recorder.occupancy[-1][:3] == (0, 0, 0)  # every slot and cache token freed


def test_requests_join_and_leave_the_running_batch_between_decode_steps(model: TinyGpt) -> None:
    async def test(engine: Engine, recorder: Recorder) -> tuple[int, int]:
        long = engine.submit(encode("long"), greedy(60))
        await first_tokens(long, 5)
        joined_at = len(recorder.steps)
        short = await engine.submit(encode("short"), greedy(5)).collect()
        left_at = len(recorder.steps)
        await long.collect()
        assert short[1].finish_reason == "length"
        return joined_at, left_at

    (joined_at, left_at), recorder = run_engine(model, test)
    steps = recorder.steps
    assert set(steps[:joined_at]) == {1}  # the long one alone
    assert 2 in steps[joined_at:left_at]  # both in the batch
    assert steps[-1] == 1  # the short one left; the long one went on
    assert len(steps) == 59  # one token from the prefill, 59 from decode steps


def test_seeded_sampling_repeats_itself_and_another_seed_differs(model: TinyGpt) -> None:
    def params(seed: int) -> SamplingParams:
        return SamplingParams(max_tokens=40, temperature=1.0, seed=seed, ignore_eos=True)

    async def test(engine: Engine, recorder: Recorder) -> list[str]:
        prompt = encode("seed")
        return [(await engine.submit(prompt, params(s)).collect())[0] for s in (7, 7, 8)]

    (first, again, other), _ = run_engine(model, test)
    assert first == again
    assert other != first


def test_greedy_decoding_is_deterministic_and_differs_from_sampling(model: TinyGpt) -> None:
    async def test(engine: Engine, recorder: Recorder) -> list[str]:
        prompt = chat_prompt([("user", "hi")])
        sampled = SamplingParams(max_tokens=30, temperature=1.5, seed=1, ignore_eos=True)
        runs = [greedy(30), greedy(30), sampled]
        return [(await engine.submit(prompt, p).collect())[0] for p in runs]

    (first, again, sampled), _ = run_engine(model, test)
    assert first == again
    assert sampled != first


def test_a_stop_sequence_ends_the_generation_before_it(model: TinyGpt) -> None:
    prompt = encode("stop here")

    async def test(engine: Engine, recorder: Recorder) -> tuple[str, tuple[str, Output]]:
        full, _ = await engine.submit(prompt, greedy(40)).collect()
        stop = full[20:23]
        params = SamplingParams(max_tokens=40, temperature=0.0, stop=(stop,), ignore_eos=True)
        return full, await engine.submit(prompt, params).collect()

    (full, (text, last)), _ = run_engine(model, test)
    stop = full[20:23]
    assert text == full[: full.index(stop)]
    assert last.finish_reason == "stop"
    assert last.completion_tokens == full.index(stop) + len(stop)


def test_a_full_engine_refuses_at_once(model: TinyGpt) -> None:
    async def test(engine: Engine, recorder: Recorder) -> str:
        running = engine.submit(encode("a"), greedy(200))
        waiting = engine.submit(encode("b"), greedy(200))
        with pytest.raises(EngineFullError) as caught:
            engine.submit(encode("c"), greedy(5))
        running.cancel()
        waiting.cancel()
        return str(caught.value)

    message, recorder = run_engine(model, test, max_running=1, max_waiting=1)
    assert message.startswith("the generation engine is full (")
    assert recorder.rejected == 1


def test_cancelling_a_running_sequence_frees_its_slot_for_a_waiting_one(model: TinyGpt) -> None:
    async def test(engine: Engine, recorder: Recorder) -> tuple[str, Output]:
        running = engine.submit(encode("a"), greedy(CONTEXT_LENGTH - 1))
        waiting = engine.submit(encode("b"), greedy(5))
        await first_tokens(running, 3)
        assert engine.occupancy() == (1, 1)
        running.cancel()
        result = await waiting.collect()
        await asyncio.sleep(0.05)  # the engine's next iteration
        assert engine.occupancy() == (0, 0)
        return result

    (text, last), recorder = run_engine(model, test, max_running=1, max_waiting=1)
    assert (len(text), last.finish_reason) == (5, "length")
    assert recorder.finished == ["abort", "length"]
    assert recorder.occupancy[-1][:3] == (0, 0, 0)


def test_cancelling_a_waiting_request_frees_its_place(model: TinyGpt) -> None:
    async def test(engine: Engine, recorder: Recorder) -> None:
        running = engine.submit(encode("a"), greedy(200))
        await first_tokens(running, 1)
        waiting = engine.submit(encode("b"), greedy(5))
        assert engine.occupancy() == (1, 1)
        waiting.cancel()
        assert engine.occupancy() == (1, 0)
        engine.submit(encode("c"), greedy(5)).cancel()  # room again
        running.cancel()

    _, recorder = run_engine(model, test, max_running=1, max_waiting=1)
    assert recorder.rejected == 0
    assert recorder.finished.count("abort") >= 2


def test_the_stop_matcher_holds_back_a_possible_start_of_a_stop_sequence() -> None:
    matcher = StopMatcher(["END", "\n\n"])
    assert matcher.feed("ab") == ("ab", False)
    assert matcher.feed("E") == ("", False)
    assert matcher.feed("N") == ("", False)
    assert matcher.feed("x") == ("ENx", False)
    assert matcher.feed("\n") == ("", False)
    assert matcher.feed("\n") == ("", True)
    assert StopMatcher(["END"]).feed("aEND") == ("a", True)
    held = StopMatcher(["END"])
    held.feed("xE")
    assert held.flush() == "E"


def test_the_chat_template_marks_each_message_with_special_tokens() -> None:
    ids = chat_prompt([("system", "be brief"), ("user", "hi")])
    assert ids == [
        IM_START,
        *encode("system\nbe brief"),
        IM_END,
        10,
        IM_START,
        *encode("user\nhi"),
        IM_END,
        10,
        IM_START,
        *encode("assistant\n"),
    ]


def test_generation_may_choose_printable_ascii_whitespace_and_end_of_text_only() -> None:
    ids = allowed_ids(end_of_text=True)
    assert END_OF_TEXT in ids and END_OF_TEXT not in allowed_ids(end_of_text=False)
    assert {chr(i) for i in ids if i < 256} == {chr(i) for i in range(32, 127)} | {"\t", "\n"}
