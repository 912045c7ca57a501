"""``load.sse``: SSE lines -> events -> a StreamRow, and an openai task's request body.

Pure functions over bytes and times: the chunks here are what OpenAI-compatible servers
send (a role-only chunk first, a usage chunk with no choices last, ``data: [DONE]``).
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from pytest_perfgate.load.protocol import StreamRow, TaskSpec, decode_row, encode_row
from pytest_perfgate.load.sse import SseDecoder, SseEvent, StreamTally, request_body, spread


def events(text: str) -> list[SseEvent]:
    decoder = SseDecoder()
    found = [decoder.feed(line) for line in text.encode().splitlines(keepends=True)]
    return [e for e in [*found, decoder.finish()] if e is not None]


def chat(content: str | None = None, role: str | None = None) -> str:
    delta = {k: v for k, v in (("role", role), ("content", content)) if v is not None}
    return json.dumps({"choices": [{"index": 0, "delta": delta}]})


def usage(tokens: int) -> str:
    return json.dumps({"choices": [], "usage": {"completion_tokens": tokens}})


def tally_of(kind: str, timed: list[tuple[float, str]], **kw: Any) -> StreamRow:
    """A tally fed ``(seconds, data)`` events, the request having started at 0."""
    tally = StreamTally(kind, 0.0, **kw)
    for t, data in timed:
        tally.add(SseEvent(data), t)
    return tally.row()


def test_data_lines_join_and_a_blank_line_dispatches_the_event() -> None:
    found = events("event: delta\ndata: a\ndata: b\n\ndata: c\r\n\r\n")
    assert found == [SseEvent("a\nb", "delta"), SseEvent("c")]


def test_comments_are_keep_alives_and_never_events() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b": ping\n") is None and decoder.feed(b"\n") is None
    assert decoder.comments == 1


def test_a_last_event_without_its_blank_line_still_counts() -> None:
    assert events("data: [DONE]") == [SseEvent("[DONE]")]


def test_ids_retries_and_unknown_fields_change_no_chunk() -> None:
    assert events("id: 7\nretry: 100\nfoo: bar\n\n") == []


def test_ttft_runs_to_the_first_content_chunk_not_to_a_role_only_or_empty_one() -> None:
    row = tally_of("openai_chat", [
        (0.01, chat("", role="assistant")), (0.02, chat("")), (0.15, chat("Hi")),
        (0.17, chat(" there")), (0.19, chat(None)), (0.2, usage(2)), (0.2, "[DONE]"),
    ])  # fmt: skip
    assert row["ttft_ms"] == pytest.approx(150.0)
    assert row["itl_ms"] == pytest.approx([20.0])
    assert (row["output_tokens"], row["chunks"], row["batched"]) == (2, 2, False)
    assert row["wellformed"] and row["problem"] == ""


def test_chunks_carrying_several_tokens_give_one_itl_per_token() -> None:
    row = tally_of("openai_chat", [
        (0.1, chat("abcd")), (0.18, chat("efgh")), (0.26, chat("ijkl")), (0.3, usage(12)),
        (0.3, "[DONE]"),
    ])  # fmt: skip
    # 80 ms gaps of 4 tokens: 4 gaps of 20 ms each, after the first chunk
    assert row["itl_ms"] == pytest.approx([20.0] * 8)
    assert (row["output_tokens"], row["chunks"], row["batched"]) == (12, 3, True)
    assert row["wellformed"]


def test_without_usage_each_content_chunk_is_one_token() -> None:
    row = tally_of("openai_completions", [
        (0.1, json.dumps({"choices": [{"text": "a"}]})),
        (0.2, json.dumps({"choices": [{"text": "b"}]})), (0.2, "[DONE]"),
    ])  # fmt: skip
    assert (row["output_tokens"], row["chunks"], row["wellformed"]) == (2, 2, True)


def test_reasoning_and_tool_call_deltas_are_generated_content() -> None:
    reasoning = json.dumps({"choices": [{"delta": {"reasoning_content": "hmm"}}]})
    tool = json.dumps({"choices": [{"delta": {"tool_calls": [{"index": 0}]}}]})
    row = tally_of("openai_chat", [(0.05, reasoning), (0.07, tool), (0.08, "[DONE]")])
    assert row["ttft_ms"] == pytest.approx(50.0) and row["chunks"] == 2


@pytest.mark.parametrize(
    ("timed", "problem"),
    [
        ([(0.1, chat("a"))], "stream ended without [DONE]"),
        ([(0.1, '{"choices": ['), (0.2, "[DONE]")], "malformed chunk: not JSON"),
        ([(0.1, json.dumps({"error": {"message": "overloaded"}})), (0.2, "[DONE]")],
         "error event: overloaded"),
        ([(0.1, chat("a")), (0.2, chat("b")), (0.3, usage(1)), (0.3, "[DONE]")],
         "usage reports fewer tokens than content chunks arrived"),
        ([(0.1, json.dumps({"id": 1})), (0.2, "[DONE]")], "malformed chunk: no choices list"),
    ],
)  # fmt: skip
def test_a_malformed_stream_says_why(timed: list[tuple[float, str]], problem: str) -> None:
    row = tally_of("openai_chat", timed)
    assert not row["wellformed"]
    assert row["problem"].startswith(problem)


def test_an_error_event_type_is_a_problem() -> None:
    tally = StreamTally("openai_chat", 0.0)
    tally.add(SseEvent("rate limited", "error"), 0.1)
    tally.add(SseEvent("[DONE]"), 0.1)
    assert tally.row()["problem"] == "error event: rate limited"


def test_a_stream_cut_mid_way_keeps_what_arrived_and_says_so() -> None:
    tally = StreamTally("openai_chat", 0.0)
    tally.add(SseEvent(chat("a")), 0.1)
    row = tally.row("HTTPParseError: Incomplete response.")
    assert row["ttft_ms"] == pytest.approx(100.0) and row["chunks"] == 1
    assert row["problem"] == "stream cut mid-way: HTTPParseError: Incomplete response."


def test_no_content_at_all_has_no_ttft() -> None:
    row = tally_of("openai_chat", [(0.1, chat("", role="assistant")), (0.2, "[DONE]")])
    assert row["ttft_ms"] is None and row["itl_ms"] == [] and row["output_tokens"] == 0


def test_plain_sse_counts_one_token_an_event_or_the_named_field() -> None:
    one = tally_of("sse", [(0.05, "hello"), (0.08, "world")])
    assert (one["output_tokens"], one["chunks"], one["wellformed"]) == (2, 2, True)
    counted = tally_of("sse", [(0.05, '{"n": 3}'), (0.11, '{"n": 2}')], tokens_field="n")
    assert counted["itl_ms"] == pytest.approx([30.0, 30.0])
    assert (counted["output_tokens"], counted["batched"]) == (5, True)
    missing = tally_of("sse", [(0.05, '{"m": 3}')], tokens_field="n")
    assert missing["problem"] == "malformed event: no token count n"


def test_spread_puts_whole_tokens_evenly_the_extra_ones_last() -> None:
    assert spread(10, 4) == [2, 2, 3, 3]
    assert spread(8, 4) == [2, 2, 2, 2]
    assert spread(3, 0) == []


def test_the_row_crosses_the_wire_and_becomes_the_samples_stream() -> None:
    row = tally_of("openai_chat", [(0.1, chat("ab")), (0.14, chat("cd")), (0.2, usage(4)),
                                   (0.2, "[DONE]")])  # fmt: skip
    sample = decode_row(json.loads(json.dumps(encode_row(1.0, "POST /c", 200.0, True, 200, "",
                                                         row))))  # fmt: skip
    assert sample.stream is not None
    assert sample.stream.ttft_ms == pytest.approx(100.0)
    assert sample.stream.itl_ms == pytest.approx((20.0, 20.0))
    assert sample.stream.tpot_ms == pytest.approx(40.0 / 3)


def spec(**changes: Any) -> TaskSpec:
    base: dict[str, Any] = {
        "method": "POST", "path": "/v1/chat/completions", "name": "POST /v1/chat/completions",
        "weight": 1, "json": None, "json_factory": None, "headers": {}, "kind": "openai_chat",
        "model": "tiny-gpt", "prompts": ["Hello"], "max_tokens": 32, "temperature": 0.0,
        "stream": True, "extra_body": {},
    }  # fmt: skip
    base.update(changes)
    return base  # type: ignore[return-value]


def test_a_chat_body_asks_for_a_stream_with_usage() -> None:
    body = request_body(spec(), random.Random(0))
    assert body == {
        "model": "tiny-gpt", "messages": [{"role": "user", "content": "Hello"}],
        "max_tokens": 32, "temperature": 0.0, "stream": True,
        "stream_options": {"include_usage": True},
    }  # fmt: skip


def test_extra_body_overrides_and_completions_send_a_prompt() -> None:
    task = spec(kind="openai_completions", model=None, temperature=None, max_tokens=None,
                stream=False, extra_body={"stop": ["\n"], "seed": 3})  # fmt: skip
    assert request_body(task, random.Random(0)) == {"prompt": "Hello", "stop": ["\n"], "seed": 3}


def test_prompts_and_max_tokens_are_drawn_reproducibly_within_their_ranges() -> None:
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    task = spec(prompts=["a", messages], max_tokens={"min": 16, "max": 20})
    first = [request_body(task, rng) for rng in [random.Random(5)] for _ in range(200)]
    again = [request_body(task, rng) for rng in [random.Random(5)] for _ in range(200)]
    assert first == again
    assert {b["max_tokens"] for b in first} == {16, 17, 18, 19, 20}
    assert messages in [b["messages"] for b in first]
    normal = spec(max_tokens={"mean": 4, "sd": 10})
    drawn = [request_body(normal, random.Random(i))["max_tokens"] for i in range(300)]
    assert min(drawn) == 1 and max(drawn) > 10  # clipped at 1, spread by sd
