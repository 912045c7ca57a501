"""Continuous batching: iteration-level scheduling of generations over one model.

The engine runs in a thread of its own. Each iteration it admits waiting requests into
free slots of the running batch and prefills each (its prompt into the KV cache, which
yields its first token), then runs one decode step for every running sequence (one new
token each), then lets go of the sequences that finished or were cancelled: requests join
and leave the batch between decode steps, not between batches. At most ``max_running``
sequences run at once and at most ``max_waiting`` more wait; beyond that ``submit``
refuses at once with ``EngineFullError`` (the HTTP layer answers 429 with Retry-After).

Tokens reach a request through its ``Generation``, an async iterator fed from the engine
thread with ``loop.call_soon_threadsafe``, once per step for all the step's tokens (one
wake-up of the event loop, not one per sequence); ``Generation.cancel`` (a client that
went away) frees the sequence's slot at the next iteration.

A prompt prefilled before is not prefilled again: ``prompts.PromptCache`` keeps recent
prompts' keys, values and logits (``prompt_cache_tokens``; 0 turns it off).

Knows nothing of HTTP; the model and cache come from ``model``, token choice and stop
sequences from ``sampling`` (each request with its own ``random.Random(seed)``).
"""

from __future__ import annotations

import asyncio
import random
import sys
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

from service.llm.model import KvCache, TinyGpt
from service.llm.prompts import PromptCache
from service.llm.sampling import SamplingParams, StopMatcher, sample
from service.llm.tokenizer import END_OF_TEXT

__all__ = [
    "Engine",
    "EngineClosedError",
    "EngineFullError",
    "EngineObserver",
    "Generation",
    "Output",
]

_JOIN_TIMEOUT_S = 10.0
_SWITCH_INTERVAL_S = 0.0005


class EngineFullError(Exception):
    """Every running slot and waiting place is taken; retrying later may succeed."""

    def __init__(self, running: int, waiting: int, retry_after_s: int) -> None:
        super().__init__(
            f"the generation engine is full ({running} sequences running, {waiting} waiting)"
        )
        self.retry_after_s = retry_after_s


class EngineClosedError(Exception):
    """The engine stopped (the service is shutting down)."""


@dataclass(frozen=True)
class Output:
    """A step's news for one request: ``tokens`` new tokens and the text they release.

    ``text`` may be empty while it could still become a stop sequence (held back).
    The last output carries ``finish_reason`` ("stop", "length") or ``error``, and the
    token counts of the whole request.
    """

    text: str
    tokens: int
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None

    @property
    def last(self) -> bool:
        return self.finish_reason is not None or self.error is not None


class EngineObserver(Protocol):
    """What the engine reports, for metrics."""

    def on_rejected(self) -> None: ...

    def on_admitted(self, prompt_tokens: int, waited_s: float) -> None: ...

    def on_token(self, first: bool, seconds: float) -> None: ...

    def on_finished(self, reason: str, seconds: float, completion_tokens: int) -> None: ...

    def on_step(self, batch_size: int) -> None: ...

    def on_occupancy(
        self, running: int, waiting: int, kv_tokens: int, kv_capacity: int
    ) -> None: ...


class _NoObserver:
    def on_rejected(self) -> None:
        pass

    def on_admitted(self, prompt_tokens: int, waited_s: float) -> None:
        pass

    def on_token(self, first: bool, seconds: float) -> None:
        pass

    def on_finished(self, reason: str, seconds: float, completion_tokens: int) -> None:
        pass

    def on_step(self, batch_size: int) -> None:
        pass

    def on_occupancy(self, running: int, waiting: int, kv_tokens: int, kv_capacity: int) -> None:
        pass


@dataclass(eq=False)
class _Sequence:
    prompt: list[int]
    params: SamplingParams
    generation: Generation
    rng: random.Random
    stops: StopMatcher
    arrived: float = field(default_factory=time.perf_counter)
    length: int = 0  # tokens in the KV cache
    pending: int = 0  # the last sampled token, fed at the next decode step
    generated: int = 0
    last_token_at: float = 0.0
    finished: bool = False
    cancelled: bool = False


class Generation:
    """One request's generation: iterate for its outputs; ``cancel`` to let it go."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Output] = asyncio.Queue()
        self._sequence: _Sequence | None = None
        self.done = False

    async def __aiter__(self) -> AsyncIterator[Output]:
        while not self.done:
            output = await self._queue.get()
            self.done = output.last
            yield output

    async def batches(self) -> AsyncIterator[list[Output]]:
        """The outputs as they come, each time with all those already there (one write)."""
        while not self.done:
            outputs = [await self._queue.get()]
            while not outputs[-1].last and not self._queue.empty():
                outputs.append(self._queue.get_nowait())
            self.done = outputs[-1].last
            yield outputs

    async def collect(self) -> tuple[str, Output]:
        """All the text, and the last output."""
        parts = []
        async for output in self:
            parts.append(output.text)
            if output.last:
                return "".join(parts), output
        raise EngineClosedError("the generation ended without a last output")

    def cancel(self) -> None:
        if not self.done and self._sequence is not None:
            self.done = True
            self._engine._cancel(self._sequence)


class Engine:
    """Continuous batching over one model; ``start`` its thread, ``submit`` generations."""

    def __init__(
        self,
        model: TinyGpt,
        device: torch.device,
        dtype: torch.dtype,
        *,
        max_running: int,
        max_waiting: int,
        observer: EngineObserver | None = None,
        prompt_cache_tokens: int = 0,
    ) -> None:
        self.model = model
        self.device = device
        self.max_running = max_running
        self.max_waiting = max_waiting
        self.cache = KvCache(max_running, device=device, dtype=dtype)
        self.prompts = PromptCache(prompt_cache_tokens)
        self._observer: EngineObserver = observer or _NoObserver()
        self._outbox: list[tuple[_Sequence, Output]] = []  # delivered once per step
        self._cond = threading.Condition()
        self._waiting: deque[_Sequence] = deque()
        self._running: list[_Sequence] = []  # sequence i holds cache slot i
        self._running_count = 0  # len(_running), readable under the lock
        self._closed = False
        self._thread: threading.Thread | None = None
        self.steps = 0  # decode steps so far
        self.largest_batch = 0  # most sequences in one decode step

    @property
    def kv_capacity(self) -> int:
        return self.cache.slots * self.cache.context

    # --- the event loop's side ------------------------------------------------------------

    def start(self) -> None:
        self._warm_up()
        # The engine releases the GIL in every torch op and must get it back after each:
        # at the default 5 ms switch interval the event loop, busy with a step's chunks,
        # keeps it that long, so the model and HTTP serialise instead of overlapping.
        sys.setswitchinterval(min(sys.getswitchinterval(), _SWITCH_INTERVAL_S))
        self._thread = threading.Thread(target=self._run, name="llm-engine", daemon=True)
        self._thread.start()

    def submit(self, prompt: Sequence[int], params: SamplingParams) -> Generation:
        """Queue a generation; ``EngineFullError`` at once when there is no room."""
        generation = Generation(self)
        rng = random.Random(params.seed) if params.seed is not None else random.Random()
        sequence = _Sequence(list(prompt), params, generation, rng, StopMatcher(params.stop))
        with self._cond:
            if self._closed:
                raise EngineClosedError("the generation engine is shutting down")
            if self._running_count + len(self._waiting) >= self.max_running + self.max_waiting:
                self._observer.on_rejected()
                raise EngineFullError(self._running_count, len(self._waiting), retry_after_s=1)
            self._waiting.append(sequence)
            generation._sequence = sequence
            self._report_occupancy()
            self._cond.notify()
        return generation

    def _cancel(self, sequence: _Sequence) -> None:
        with self._cond:
            sequence.cancelled = True
            if sequence in self._waiting:
                self._waiting.remove(sequence)
                self._observer.on_finished("abort", time.perf_counter() - sequence.arrived, 0)
                self._report_occupancy()
            self._cond.notify()

    def close(self) -> None:
        """Stop the engine; generations still waiting or running end with an error."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(_JOIN_TIMEOUT_S)

    def occupancy(self) -> tuple[int, int]:
        """Sequences running and waiting."""
        with self._cond:
            return self._running_count, len(self._waiting)

    # --- the engine thread ----------------------------------------------------------------

    def _run(self) -> None:
        with torch.inference_mode():
            while (admitted := self._next_admitted()) is not None:
                try:
                    self._iterate(admitted)
                except Exception as exc:  # a bug must not leave requests waiting forever
                    self._fail(self._running, f"generation failed: {type(exc).__name__}: {exc}")
                    self._release_finished()
        with self._cond:
            left = [*self._running, *self._waiting]
            self._waiting.clear()
        self._fail(left, "the service is shutting down")

    def _next_admitted(self) -> list[_Sequence] | None:
        """The sequences to admit this iteration; None once the engine is closed."""
        with self._cond:
            while not self._closed and not self._waiting and not self._running:
                self._cond.wait()
            if self._closed:
                return None
            admitted: list[_Sequence] = []
            while self._waiting and len(self._running) + len(admitted) < self.max_running:
                admitted.append(self._waiting.popleft())
            return admitted

    def _iterate(self, admitted: list[_Sequence]) -> None:
        for sequence in admitted:
            self._prefill(sequence)
        self._release_finished()
        if self._running:
            self._decode()
            self._release_finished()

    def _prefill(self, sequence: _Sequence) -> None:
        now = time.perf_counter()
        self._observer.on_admitted(len(sequence.prompt), now - sequence.arrived)
        slot = len(self._running)
        self._running.append(sequence)
        with self._cond:
            self._running_count = len(self._running)
        sequence.length = len(sequence.prompt)
        logits = self._prompt_logits(sequence.prompt, slot)
        self._accept(sequence, sample(logits, [sequence.params], [sequence.rng])[0])
        self._flush()

    def _prompt_logits(self, prompt: list[int], slot: int) -> torch.Tensor:
        """Prefill ``prompt`` into ``slot``, or copy it there from the prompt cache."""
        cached = self.prompts.get(prompt) if self.prompts.max_tokens else None
        if cached is not None:
            self.cache.write(slot, cached.keys, cached.values)
            return cached.logits
        tokens = torch.tensor([prompt], device=self.device)
        positions = torch.arange(len(prompt), device=self.device).unsqueeze(0)
        logits: torch.Tensor = self.model(tokens, positions, [slot], len(prompt), self.cache)
        if self.prompts.max_tokens:
            self.prompts.store(prompt, self.cache, slot, logits)
        return logits

    def _decode(self) -> None:
        running = self._running
        tokens = torch.tensor([[s.pending] for s in running], device=self.device)
        positions = torch.tensor([[s.length] for s in running], device=self.device)
        length = max(s.length for s in running) + 1
        logits = self.model(tokens, positions, range(len(running)), length, self.cache)
        self.steps += 1
        self.largest_batch = max(self.largest_batch, len(running))
        self._observer.on_step(len(running))
        for sequence, token in zip(
            running,
            sample(logits, [s.params for s in running], [s.rng for s in running]),
            strict=True,
        ):
            sequence.length += 1
            self._accept(sequence, token)
        self._flush()

    def _accept(self, sequence: _Sequence, token: int) -> None:
        """Hand a sampled token to its request; finish the sequence where it ends."""
        if sequence.cancelled:
            return
        now = time.perf_counter()
        first = sequence.generated == 0
        since = sequence.arrived if first else sequence.last_token_at
        self._observer.on_token(first, now - since)
        sequence.generated += 1
        sequence.last_token_at = now
        sequence.pending = token
        if token == END_OF_TEXT:
            self._finish(sequence, sequence.stops.flush(), "stop")
            return
        text, stopped = sequence.stops.feed(chr(token))
        if stopped:
            self._finish(sequence, text, "stop")
        elif (
            sequence.generated >= sequence.params.max_tokens
            or sequence.length >= self.cache.context  # no position left for the next token
        ):
            self._finish(sequence, text + sequence.stops.flush(), "length")
        else:
            self._send(sequence, Output(text, 1))

    def _finish(self, sequence: _Sequence, text: str, reason: str) -> None:
        sequence.finished = True
        elapsed = time.perf_counter() - sequence.arrived
        self._observer.on_finished(reason, elapsed, sequence.generated)
        self._send(
            sequence,
            Output(text, 1, reason, len(sequence.prompt), sequence.generated),
        )

    def _send(self, sequence: _Sequence, output: Output) -> None:
        self._outbox.append((sequence, output))

    def _flush(self) -> None:
        """Hand the outputs of a step to their event loops: one wake-up per loop."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Sequence, Output]]] = {}
        for sequence, output in self._outbox:
            by_loop.setdefault(sequence.generation._loop, []).append((sequence, output))
        self._outbox = []
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_deliver, items)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                for sequence, _ in items:
                    sequence.cancelled = True

    def _release_finished(self) -> None:
        """Free the slots of finished and cancelled sequences, keeping slots 0..n-1 in use."""
        index = 0
        while index < len(self._running):
            sequence = self._running[index]
            if not (sequence.finished or sequence.cancelled):
                index += 1
                continue
            if sequence.cancelled and not sequence.finished:
                elapsed = time.perf_counter() - sequence.arrived
                self._observer.on_finished("abort", elapsed, sequence.generated)
            last = self._running.pop()
            if last is not sequence:  # the last slot's sequence moves into the freed one
                self.cache.move(len(self._running), index, last.length)
                self._running[index] = last
        with self._cond:
            self._running_count = len(self._running)
            self._report_occupancy()

    def _fail(self, sequences: Sequence[_Sequence], message: str) -> None:
        for sequence in sequences:
            if not (sequence.finished or sequence.cancelled):
                sequence.finished = True
                self._send(sequence, Output("", 0, error=message))
        self._flush()

    def _report_occupancy(self) -> None:  # under the lock
        kv_tokens = sum(s.length for s in self._running)
        self._observer.on_occupancy(
            self._running_count, len(self._waiting), kv_tokens, self.kv_capacity
        )

    def _warm_up(self) -> None:
        """One prefill and one decode step, so the first request does not pay for them."""
        with torch.inference_mode():
            prompt = torch.tensor([[END_OF_TEXT, 72, 105]], device=self.device)
            self.model(prompt, torch.arange(3, device=self.device).unsqueeze(0), [0], 3, self.cache)
            step = torch.tensor([[32]], device=self.device)
            self.model(step, torch.tensor([[3]], device=self.device), [0], 4, self.cache)


def _deliver(items: Sequence[tuple[_Sequence, Output]]) -> None:  # on the event loop
    for sequence, output in items:
        sequence.generation._queue.put_nowait(output)
