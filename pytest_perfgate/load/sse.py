"""A streamed response, token by token: SSE lines -> events -> a ``StreamRow``; and the body.

The pure half of the child's streaming tasks (``load.child`` does the I/O): no locust, no
gevent, no sockets; the standard library and ``load.protocol`` only, so every rule here is
unit-tested without a server.

- ``SseDecoder`` turns the lines of a ``text/event-stream`` body into events as the SSE
  standard says: ``data:`` lines join with newlines, a blank line dispatches, ``:`` starts
  a comment (a keep-alive, never a chunk), ``event:`` names the event.
- ``StreamTally`` reads the events of one response as its task kind says and keeps their
  arrival times. ``openai_chat`` / ``openai_completions``: a chunk carries generated content
  when a choice's ``delta.content`` (or ``reasoning_content``, ``reasoning``,
  ``tool_calls``) / ``text`` is not empty, so a role-only first chunk or an empty last one
  does not count; ``usage.completion_tokens`` (``stream_options.include_usage``) gives the
  token count; ``data: [DONE]`` ends the stream. ``sse``: every data event is one chunk of
  one token, or of ``tokens_field`` tokens when named.
- ``StreamTally.row`` is the ``StreamRow``: TTFT from the given start (the scheduled one
  in the open model) to the first content chunk; one ITL per token after the first chunk
  (a chunk of ``k`` tokens ``g`` ms after the previous one gives ``k`` gaps of ``g / k``);
  what made the stream malformed (``problem``), which fails the request. A problem's text
  is its failure class, so it holds no count or chunk that varies between requests.
- ``request_body`` builds an openai task's JSON body from its spec, drawing the prompt
  and ``max_tokens`` from a seeded ``random.Random``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_perfgate.load.protocol import StreamRow, TaskSpec

__all__ = [
    "DONE",
    "OPENAI_KINDS",
    "STREAM_KINDS",
    "SseDecoder",
    "SseEvent",
    "StreamTally",
    "draw_max_tokens",
    "request_body",
    "spread",
]

DONE = "[DONE]"
OPENAI_KINDS = ("openai_chat", "openai_completions")
STREAM_KINDS = (*OPENAI_KINDS, "sse")
#: the delta fields whose text is generated content (reasoning models stream theirs apart)
_DELTA_TEXT = ("content", "reasoning_content", "reasoning")
_SHOWN = 80  # characters of a bad chunk quoted in a problem


# --- SSE framing -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One dispatched event: its ``event:`` name ("message" by default) and joined data."""

    data: str
    event: str = "message"


@dataclass
class SseDecoder:
    """The SSE standard's line parser, fed one line at a time (its end of line included)."""

    comments: int = 0  # ``:`` lines seen (keep-alives)
    _data: list[str] = field(default_factory=list)
    _event: str = ""

    def feed(self, line: bytes | str) -> SseEvent | None:
        """The event a blank line dispatches, else None (data is kept until then)."""
        text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
        text = text.rstrip("\r\n")
        if not text:
            return self._dispatch()
        if text.startswith(":"):
            self.comments += 1
            return None
        name, _, value = text.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None  # id, retry and unknown fields change no chunk

    def finish(self) -> SseEvent | None:
        """An event whose blank line never came (the body ended right after its data)."""
        return self._dispatch()

    def _dispatch(self) -> SseEvent | None:
        data, event = self._data, self._event or "message"
        self._data, self._event = [], ""
        return SseEvent("\n".join(data), event) if data else None


# --- one response's chunks ---------------------------------------------------------------


def spread(tokens: int, chunks: int) -> list[int]:
    """``tokens`` over ``chunks`` as evenly as whole numbers allow, the extra ones last."""
    if chunks <= 0:
        return []
    base, extra = divmod(tokens, chunks)
    return [base + (1 if i >= chunks - extra else 0) for i in range(chunks)]


@dataclass
class StreamTally:
    """The chunks of one streamed response as they arrive; ``row`` sums them up.

    Times are ``time.perf_counter()`` seconds; ``start`` is the request's start (its due
    time in the open model), from which TTFT runs.
    """

    kind: str
    start: float
    tokens_field: str | None = None
    times: list[float] = field(default_factory=list)  # of each content chunk
    tokens: list[int] = field(default_factory=list)  # each content chunk's own count (sse)
    usage_tokens: int | None = None
    done: bool = False
    events: int = 0
    problems: list[str] = field(default_factory=list)

    def add(self, event: SseEvent, now: float) -> None:
        """Count one event that arrived at ``now``."""
        self.events += 1
        if event.data.strip() == DONE:
            self.done = True
            return
        if event.event == "error":
            self._problem(f"error event: {event.data[:_SHOWN]}")
            return
        if self.kind == "sse" and self.tokens_field is None:
            self._content(now, 1)
            return
        try:
            chunk = json.loads(event.data)
        except ValueError:
            self._problem("malformed chunk: not JSON")
            return
        self._chunk(chunk, now)

    def _chunk(self, chunk: Any, now: float) -> None:
        if not isinstance(chunk, Mapping):
            self._problem("malformed chunk: not a JSON object")
        elif "error" in chunk:
            self._problem(f"error event: {_error_text(chunk['error'])}")
        elif self.kind == "sse":
            self._sse_chunk(chunk, now)
        else:
            self._openai_chunk(chunk, now)

    def _sse_chunk(self, chunk: Mapping[str, Any], now: float) -> None:
        count = chunk.get(str(self.tokens_field))
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            self._problem(f"malformed event: no token count {self.tokens_field}")
        elif count:
            self._content(now, count)

    def _openai_chunk(self, chunk: Mapping[str, Any], now: float) -> None:
        usage = chunk.get("usage")
        if isinstance(usage, Mapping) and isinstance(usage.get("completion_tokens"), int):
            self.usage_tokens = int(usage["completion_tokens"])  # cumulative: the last one holds
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            self._problem("malformed chunk: no choices list")
        elif any(_has_content(self.kind, c) for c in choices):
            self._content(now, 1)

    def _content(self, now: float, count: int) -> None:
        self.times.append(now)
        self.tokens.append(count)

    def _problem(self, text: str) -> None:
        self.problems.append(text)

    def row(self, cut: str = "") -> StreamRow:
        """The response's ``StreamRow``; ``cut``: why reading stopped before the body's end."""
        counts = self._token_counts()
        problem = self._first_problem(cut)
        itl: list[float] = []
        for previous, now, count in zip(self.times, self.times[1:], counts[1:], strict=False):
            itl.extend([(now - previous) * 1000.0 / count] * count)
        ttft = (self.times[0] - self.start) * 1000.0 if self.times else None
        return {
            "ttft_ms": None if ttft is None else max(ttft, 0.0),
            "itl_ms": itl,
            "output_tokens": sum(counts) if self.usage_tokens is None else self.usage_tokens,
            "chunks": len(self.times),
            "batched": any(c > 1 for c in counts),
            "wellformed": not problem,
            "problem": problem,
        }

    def _token_counts(self) -> list[int]:
        """Each content chunk's tokens: usage spread over the chunks when it says more."""
        used = self.usage_tokens
        if used is not None and used > len(self.times):
            return spread(used, len(self.times))
        return list(self.tokens)

    def _first_problem(self, cut: str) -> str:
        if self.problems:
            return self.problems[0]
        if cut:
            return f"stream cut mid-way: {cut}"
        if self.kind in OPENAI_KINDS and not self.done:
            return "stream ended without [DONE]"
        if self.usage_tokens is not None and self.usage_tokens < len(self.times):
            return "usage reports fewer tokens than content chunks arrived"
        return ""


def _has_content(kind: str, choice: Any) -> bool:
    if not isinstance(choice, Mapping):
        return False
    if kind == "openai_completions":
        return bool(choice.get("text"))
    delta = choice.get("delta")
    if not isinstance(delta, Mapping):
        return False
    return any(delta.get(key) for key in _DELTA_TEXT) or bool(delta.get("tool_calls"))


def _error_text(error: Any) -> str:
    message = error.get("message", error) if isinstance(error, Mapping) else error
    return str(message)[:_SHOWN]


# --- the request body ----------------------------------------------------------------------


def draw_max_tokens(value: Any, rng: random.Random) -> int | None:
    """A ``max_tokens`` of the task's spec: an int, uniform ``min``-``max``, clipped normal."""
    if value is None or isinstance(value, int):
        return value
    if "min" in value:
        return rng.randint(int(value["min"]), int(value["max"]))
    return max(1, round(rng.gauss(float(value["mean"]), float(value["sd"]))))


def request_body(task: TaskSpec, rng: random.Random) -> dict[str, Any]:
    """The JSON body of one request of an openai task: a drawn prompt, a drawn max_tokens."""
    body: dict[str, Any] = {}
    if task.get("model"):
        body["model"] = task["model"]
    prompts: list[Any] = task.get("prompts") or [""]
    prompt = prompts[rng.randrange(len(prompts))]
    if task.get("kind") == "openai_chat":
        body["messages"] = _messages(prompt)
    else:
        body["prompt"] = prompt
    max_tokens = draw_max_tokens(task.get("max_tokens"), rng)
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if task.get("temperature") is not None:
        body["temperature"] = task["temperature"]
    if task.get("stream", True):
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return {**body, **(task.get("extra_body") or {})}


def _messages(prompt: Any) -> list[Any]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
