"""The OpenAI-compatible routes of tiny-gpt, over real HTTP against ``python -m service``.

One service for the module (``--models mlp,encoder,tiny-gpt``, 4 running sequences, 2
waiting); each test leaves it idle. Streams are parsed strictly: every event one
``data:`` line, the role chunk first, content chunks, one finish chunk, the usage chunk
when asked for, ``[DONE]`` last.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from service_harness import ServiceProcess, sample_value, service_process

from conftest import MakeService
from service.llm.tokenizer import chat_prompt, encode

MAX_RUNNING = 4
MAX_WAITING = 2
LONG = 900  # tokens: seconds of generation, cut short by the tests that use it
CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    log = tmp_path_factory.mktemp("llm") / "service.log"
    args = ["--models", "mlp,encoder,tiny-gpt", "--no-warmup", "--device", "cpu"]
    limits = ["--llm-max-running", str(MAX_RUNNING), "--llm-max-waiting", str(MAX_WAITING)]
    with service_process(log, *args, *limits) as running:
        yield running


@pytest.fixture
def client(live: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=30) as client:
        yield client
        wait_for(client, lambda m: gauge(m, "running") == 0 and gauge(m, "waiting") == 0)


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "tiny-gpt", "messages": MESSAGES, "temperature": 0, **fields}


def completion(**fields: Any) -> dict[str, Any]:
    return {"model": "tiny-gpt", "prompt": "Once upon a time", "temperature": 0, **fields}


# --- reading answers ----------------------------------------------------------------------


def metrics(client: httpx.Client) -> str:
    return client.get("/metrics").text


def gauge(text: str, what: str) -> float:
    return sample_value(text, f"service_llm_requests_{what}", model="tiny-gpt")


def wait_for(client: httpx.Client, condition: Callable[[str], bool], timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    while not condition(text := metrics(client)):
        assert time.monotonic() < deadline, "the condition on /metrics never held"
        time.sleep(0.05)
    return text


def events_of(body: str) -> list[Any]:
    """The events of an SSE body: each exactly one ``data:`` line, JSON or ``[DONE]``."""
    assert body.endswith("\n\n"), body[-80:]
    events: list[Any] = []
    for block in body[:-2].split("\n\n"):
        assert block.startswith("data: ") and "\n" not in block, block
        data = block.removeprefix("data: ")
        events.append(data if data == "[DONE]" else json.loads(data))
    return events


@dataclass(frozen=True)
class Streamed:
    text: str
    chunks: list[str]  # the content of each content chunk
    finish_reason: str
    usage: dict[str, int] | None


def check_stream(events: list[Any], *, chat: bool, include_usage: bool) -> Streamed:
    """The stream's parts, after checking its shape event by event."""
    assert events[-1] == "[DONE]" and "[DONE]" not in events[:-1]
    chunks = events[:-1]
    name = "chat.completion.chunk" if chat else "text_completion"
    assert {(c["object"], c["id"], c["model"]) for c in chunks} == {
        (name, chunks[0]["id"], "tiny-gpt")
    }
    usage = None
    if include_usage:
        *chunks, last = chunks
        assert last["choices"] == [] and set(last["usage"]) == {
            "prompt_tokens",
            "completion_tokens",
            "total_tokens",
        }
        usage = last["usage"]
        assert all(c["usage"] is None for c in chunks)
    else:
        assert all("usage" not in c for c in chunks)
    choices = [c["choices"] for c in chunks]
    assert all(len(choice) == 1 and choice[0]["index"] == 0 for choice in choices)
    if chat:
        role = choices.pop(0)[0]
        assert role["delta"] == {"role": "assistant", "content": "", "refusal": None}
        assert role["finish_reason"] is None
    *content, finish = [choice[0] for choice in choices]
    assert finish["finish_reason"] in ("stop", "length")
    assert finish["delta" if chat else "text"] == ({} if chat else "")
    assert all(c["finish_reason"] is None for c in content)
    texts = [c["delta"]["content"] if chat else c["text"] for c in content]
    if chat:
        assert all(set(c["delta"]) == {"content"} for c in content)
    assert all(isinstance(t, str) and t for t in texts)
    return Streamed("".join(texts), texts, finish["finish_reason"], usage)


def stream(client: httpx.Client, path: str, body: dict[str, Any]) -> Streamed:
    with client.stream("POST", path, json={**body, "stream": True}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        text = "".join(response.iter_text())
    include = bool(body.get("stream_options", {}).get("include_usage"))
    return check_stream(events_of(text), chat=path == CHAT, include_usage=include)


@contextlib.contextmanager
def open_streams(client: httpx.Client, count: int, **fields: Any) -> Iterator[list[Iterator[str]]]:
    """``count`` streams open at once (headers received: submitted), lines not yet read;
    closed (the client goes away) on exit."""
    with contextlib.ExitStack() as stack:
        body = chat(max_tokens=LONG, ignore_eos=True, stream=True, **fields)
        responses = [
            stack.enter_context(client.stream("POST", CHAT, json=body)) for _ in range(count)
        ]
        assert [r.status_code for r in responses] == [200] * count
        yield [r.iter_lines() for r in responses]


def content_events(lines: Iterator[str], count: int) -> None:
    """Read until ``count`` content chunks (after the role chunk) have arrived."""
    seen = 0
    for line in lines:
        if line.startswith("data: ") and '"content":"' in line and '"role"' not in line:
            seen += 1
            if seen == count:
                return
    raise AssertionError("the stream ended early")


# --- tests --------------------------------------------------------------------------------


def test_v1_models_lists_tiny_gpt_beside_the_predictive_models(client: httpx.Client) -> None:
    models = client.get("/v1/models").json()
    assert models["object"] == "list"
    assert [(m["id"], m["object"]) for m in models["data"]] == [("tiny-gpt", "model")]
    assert client.get("/v1/models/tiny-gpt").json()["id"] == "tiny-gpt"
    assert client.get("/health").json()["models"] == ["mlp", "encoder", "tiny-gpt"]
    answer = client.post("/predict", json={"model": "mlp", "inputs": [[0.0] * 64]})
    assert answer.status_code == 200 and len(answer.json()["outputs"][0]) == 10


def test_a_chat_completion_answers_openais_object_with_usage(client: httpx.Client) -> None:
    answer = client.post(CHAT, json=chat(max_tokens=12, ignore_eos=True))
    assert answer.status_code == 200
    body = answer.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["model"] == "tiny-gpt" and isinstance(body["created"], int)
    (choice,) = body["choices"]
    assert choice["message"]["role"] == "assistant"
    assert len(choice["message"]["content"]) == 12 and choice["finish_reason"] == "length"
    prompt = len(chat_prompt([(m["role"], m["content"]) for m in MESSAGES]))
    assert body["usage"] == {
        "prompt_tokens": prompt,
        "completion_tokens": 12,
        "total_tokens": prompt + 12,
    }


def test_a_completion_answers_text_and_usage(client: httpx.Client) -> None:
    body = client.post(COMPLETIONS, json=completion(max_tokens=9, ignore_eos=True)).json()
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-")
    (choice,) = body["choices"]
    assert len(choice["text"]) == 9 and choice["finish_reason"] == "length"
    assert body["usage"]["prompt_tokens"] == len(encode("Once upon a time"))
    default = client.post(COMPLETIONS, json=completion(ignore_eos=True)).json()
    assert default["usage"]["completion_tokens"] == 16  # OpenAI's default max_tokens


def test_a_chat_stream_is_strict_sse_with_the_same_text_as_the_whole_answer(
    client: httpx.Client,
) -> None:
    body = chat(max_tokens=20, ignore_eos=True, stream_options={"include_usage": True})
    streamed = stream(client, CHAT, body)
    whole = client.post(CHAT, json={k: v for k, v in body.items() if k != "stream_options"})
    assert streamed.text == whole.json()["choices"][0]["message"]["content"]
    assert len(streamed.chunks) == 20  # one token per chunk
    assert streamed.finish_reason == "length"
    assert streamed.usage == whole.json()["usage"]


def test_a_completion_stream_sends_text_completion_chunks(client: httpx.Client) -> None:
    streamed = stream(client, COMPLETIONS, completion(max_tokens=7, ignore_eos=True))
    assert len(streamed.text) == 7 and streamed.usage is None


def test_max_completion_tokens_bounds_a_chat_completion(client: httpx.Client) -> None:
    body = chat(max_completion_tokens=5, max_tokens=50, ignore_eos=True)
    answer = client.post(CHAT, json=body).json()
    assert answer["usage"]["completion_tokens"] == 5


def test_a_stop_sequence_cuts_the_text_before_it(client: httpx.Client) -> None:
    full = client.post(CHAT, json=chat(max_tokens=40, ignore_eos=True)).json()
    text = full["choices"][0]["message"]["content"]
    stop = text[15:18]
    cut = text[: text.index(stop)]
    body = chat(max_tokens=40, ignore_eos=True, stop=[stop, "\x7f"])
    answer = client.post(CHAT, json=body).json()["choices"][0]
    assert (answer["message"]["content"], answer["finish_reason"]) == (cut, "stop")
    streamed = stream(client, CHAT, {**body, "stop": stop})
    assert (streamed.text, streamed.finish_reason) == (cut, "stop")


def test_a_seed_makes_sampling_reproducible(client: httpx.Client) -> None:
    def text(seed: int) -> str:
        body = completion(max_tokens=30, temperature=1.0, seed=seed, ignore_eos=True)
        answer: str = client.post(COMPLETIONS, json=body).json()["choices"][0]["text"]
        return answer

    assert text(11) == text(11)
    assert text(11) != text(12)


def test_greedy_answers_are_deterministic(client: httpx.Client) -> None:
    body = chat(max_tokens=25)
    first, again = (client.post(CHAT, json=body).json() for _ in range(2))
    assert first["choices"] == again["choices"]


@pytest.mark.parametrize(
    ("path", "body", "status", "param", "code"),
    [
        (CHAT, chat(model="gpt-4"), 404, "model", "model_not_found"),
        (
            COMPLETIONS,
            completion(prompt="x" * 1000, max_tokens=100),
            400,
            "prompt",
            "context_length_exceeded",
        ),
        (
            CHAT,
            chat(messages=[{"role": "user", "content": "x" * 1030}]),
            400,
            "messages",
            "context_length_exceeded",
        ),
        (CHAT, chat(temperature="hot"), 400, "temperature", "invalid_type"),
        (CHAT, chat(temperature=2.5), 400, "temperature", "invalid_value"),
        (CHAT, chat(max_tokens=0), 400, "max_tokens", "invalid_value"),
        (CHAT, chat(max_tokens=True), 400, "max_tokens", "invalid_type"),
        (
            CHAT,
            chat(messages=[{"role": "robot", "content": "hi"}]),
            400,
            "messages[0].role",
            "invalid_value",
        ),
        (CHAT, {"model": "tiny-gpt"}, 400, "messages", "missing_required_parameter"),
        (COMPLETIONS, completion(stop=["a", "b", "c", "d", "e"]), 400, "stop", "invalid_value"),
        (
            CHAT,
            chat(stream_options={"include_usage": True}),
            400,
            "stream_options",
            "invalid_value",
        ),
        (CHAT, chat(seed="1"), 400, "seed", "invalid_type"),
        (CHAT, chat(n=2), 400, "n", "invalid_value"),
    ],
)
def test_bad_input_gets_openais_error_body_naming_the_field(
    client: httpx.Client, path: str, body: dict[str, Any], status: int, param: str, code: str
) -> None:
    answer = client.post(path, json=body)
    assert answer.status_code == status
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error")
    assert error["message"]


def test_malformed_json_gets_a_400_in_openais_shape(client: httpx.Client) -> None:
    answer = client.post(CHAT, content=b"{nope", headers={"content-type": "application/json"})
    assert answer.status_code == 400
    assert answer.json()["error"]["message"].startswith("body: malformed JSON")


def test_overlapping_requests_share_decode_steps(client: httpx.Client) -> None:
    buckets = "service_llm_decode_batch_size_bucket"

    def single_steps(text: str) -> tuple[float, float]:
        total = sample_value(text, "service_llm_decode_batch_size_count", model="tiny-gpt")
        return total, sample_value(text, buckets, model="tiny-gpt", le="1.0")

    before = single_steps(metrics(client))
    with open_streams(client, MAX_RUNNING) as streams:
        for lines in streams:
            content_events(lines, 3)
        text = metrics(client)
        assert gauge(text, "running") == MAX_RUNNING
        for lines in streams:
            content_events(lines, 3)
    after = single_steps(wait_for(client, lambda m: gauge(m, "running") == 0))
    batched_steps = (after[0] - before[0]) - (after[1] - before[1])
    assert batched_steps >= 3  # decode steps that carried more than one sequence


def test_a_full_engine_answers_429_with_retry_after(client: httpx.Client) -> None:
    with open_streams(client, MAX_RUNNING + MAX_WAITING):
        wait_for(client, lambda m: gauge(m, "waiting") == MAX_WAITING)
        answer = client.post(CHAT, json=chat(max_tokens=5))
        assert answer.status_code == 429
        assert int(answer.headers["retry-after"]) >= 1
        error = answer.json()["error"]
        assert error["type"] == "rate_limit_error" and "full" in error["message"]
    # Going away freed all of them: the service takes requests again.
    wait_for(client, lambda m: gauge(m, "running") == 0 and gauge(m, "waiting") == 0)
    assert client.post(CHAT, json=chat(max_tokens=5)).status_code == 200


def test_a_client_that_goes_away_frees_its_sequence(client: httpx.Client) -> None:
    def aborted(text: str) -> float:
        return sample_value(
            text, "service_llm_requests_finished_total", model="tiny-gpt", finish_reason="abort"
        )

    before = aborted(metrics(client))
    with open_streams(client, MAX_RUNNING - 1) as streams:
        for lines in streams:
            content_events(lines, 3)
        # A whole answer is let go as well when its client stops waiting for it: here
        # long before its 900 tokens, computed beside three other sequences, are done.
        with pytest.raises(httpx.ReadTimeout):
            client.post(CHAT, json=chat(max_tokens=LONG, ignore_eos=True), timeout=0.25)
        text = wait_for(client, lambda m: aborted(m) == before + 1)
        assert gauge(text, "running") == MAX_RUNNING - 1  # the streams go on
    text = wait_for(client, lambda m: aborted(m) == before + MAX_RUNNING)
    assert gauge(text, "running") == 0
    assert sample_value(text, "service_llm_kv_cache_tokens", model="tiny-gpt") == 0


def test_metrics_report_latencies_tokens_and_cache_use(client: httpx.Client) -> None:
    client.post(CHAT, json=chat(max_tokens=8, ignore_eos=True))
    text = metrics(client)

    def value(name: str, **labels: str) -> float:
        return sample_value(text, name, model="tiny-gpt", **labels)

    assert value("service_llm_time_to_first_token_seconds_count") >= 1
    assert value("service_llm_inter_token_latency_seconds_count") >= 7
    assert value("service_llm_e2e_request_latency_seconds_count", finish_reason="length") >= 1
    assert value("service_llm_queue_time_seconds_count") >= 1
    assert value("service_llm_prompt_tokens_total") >= len(chat_prompt([("user", "hi")]))
    assert value("service_llm_generation_tokens_total") >= 8
    assert value("service_llm_kv_cache_capacity_tokens") == MAX_RUNNING * 1024
    assert value("service_llm_kv_cache_usage_ratio") == 0
    assert "service_llm_requests_waiting" in text and "service_llm_rejected_requests" in text


def test_tokens_per_chunk_batches_several_tokens_into_one_chunk(
    make_service: MakeService,
) -> None:
    # In-process: the ASGI client buffers the stream, which changes nothing of its text.
    app = make_service(models=("tiny-gpt",), llm_tokens_per_chunk=4)
    body = chat(max_tokens=10, ignore_eos=True, stream=True)
    answer = app.post(CHAT, json=body)
    streamed = check_stream(events_of(answer.text), chat=True, include_usage=False)
    assert [len(chunk) for chunk in streamed.chunks] == [4, 4, 2]


def test_a_service_without_tiny_gpt_says_how_to_load_it(make_service: MakeService) -> None:
    app = make_service()  # mlp only
    assert app.get("/v1/models").json()["data"] == []
    error = app.post(CHAT, json=chat()).json()["error"]
    assert error["code"] == "model_not_found" and "--models" in error["message"]


def test_the_log_has_no_traceback(live: ServiceProcess) -> None:
    assert "Traceback" not in Path(live.log).read_text()


def test_with_auth_inference_a_request_without_a_key_gets_openais_401(
    make_service: MakeService,
) -> None:
    key = "llm-test-key"
    app = make_service(
        models=("tiny-gpt",),
        api_key_sha256=(hashlib.sha256(key.encode()).hexdigest(),),
        auth_inference=True,
    )
    answer = app.post(CHAT, json=chat(max_tokens=3))
    assert answer.status_code == 401 and "WWW-Authenticate" in answer.headers
    assert answer.json()["error"]["type"] == "authentication_error"
    keyed = app.post(CHAT, json=chat(max_tokens=3), headers={"X-API-Key": key})
    assert keyed.status_code == 200
