"""thresholds.yaml's streaming tasks and open-model arrivals: values, defaults, errors.

Real YAML files in ``tmp_path``; the child's spec is built by the driver's own function.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pytest_perfgate.config import ConfigError, load_thresholds
from pytest_perfgate.core.model import Scenario, scenario_settings
from pytest_perfgate.load.locust_driver import child_spec

HEAD = """
service: {url: "http://127.0.0.1:8000"}
scenarios:
  chat:
    arrival_rate: 2
    users: 8
"""


def load(tmp_path: Path, body: str, head: str = HEAD) -> Scenario:
    path = tmp_path / "thresholds.yaml"
    path.write_text(textwrap.dedent(head) + textwrap.indent(textwrap.dedent(body), "    "))
    return load_thresholds(path).scenario("chat")


def error_of(tmp_path: Path, body: str, head: str = HEAD) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, body, head)
    return str(info.value)


def test_a_chat_task_gets_its_path_name_method_and_stream_by_default(tmp_path: Path) -> None:
    chat = load(tmp_path, """
        tasks:
          - kind: openai_chat
            model: tiny-gpt
            prompt: Say hello
            max_tokens: {min: 32, max: 64}
            temperature: 0.7
            extra_body: {seed: 1}
        """)  # fmt: skip
    [task] = chat.tasks
    assert (task.method, task.path, task.name) == (
        "POST", "/v1/chat/completions", "POST /v1/chat/completions",
    )  # fmt: skip
    assert task.kind == "openai_chat" and task.streamed
    assert task.prompts == ("Say hello",)
    assert task.max_tokens == {"min": 32, "max": 64}
    assert (task.temperature, task.extra_body) == (0.7, {"seed": 1})


def test_the_childs_spec_carries_the_streaming_keys_and_a_seed_per_task(tmp_path: Path) -> None:
    chat = load(tmp_path, """
        seed: 7
        tasks:
          - {kind: openai_completions, prompt: Once upon a time, max_tokens: 16}
          - {kind: sse, path: /events, tokens_field: n}
        """)  # fmt: skip
    spec = child_spec(chat, "http://127.0.0.1:8000", tmp_path / "base", tmp_path)
    first, second = spec["scenario"]["tasks"]
    assert first["path"] == "/v1/completions" and first.get("prompts") == ["Once upon a time"]
    assert (first.get("max_tokens"), first.get("seed"), second.get("seed")) == (16, 7, 8)
    assert (second.get("kind"), second.get("tokens_field")) == ("sse", "n")
    assert second["method"] == "POST"


def test_prompts_come_from_a_jsonl_file_beside_the_thresholds_file(tmp_path: Path) -> None:
    (tmp_path / "prompts.jsonl").write_text(
        '{"prompt": "one"}\n\n{"messages": [{"role": "system", "content": "s"},'
        ' {"role": "user", "content": "two"}]}\n'
    )
    [task] = load(tmp_path, """
        tasks: [{kind: openai_chat, prompts_file: prompts.jsonl, max_tokens: {mean: 64, sd: 16}}]
        """).tasks  # fmt: skip
    assert task.prompts == (
        "one", [{"role": "system", "content": "s"}, {"role": "user", "content": "two"}],
    )  # fmt: skip
    assert task.max_tokens == {"mean": 64.0, "sd": 16.0}


@pytest.mark.parametrize(
    ("task", "message"),
    [
        ("{kind: grpc}", "tasks[0].kind: expected one of http, openai_chat, openai_completions, "
         "sse, got 'grpc'"),
        ("{kind: openai_chat, prompt: hi, max_tokens: 0}",
         "tasks[0].max_tokens: expected a number of tokens (an integer >= 1), got 0"),
        ("{kind: openai_chat, prompt: hi, max_tokens: {min: 64, max: 32}}",
         "tasks[0].max_tokens: min 64 is above max 32"),
        ("{kind: openai_chat, prompt: hi, max_tokens: {low: 1}}",
         "tasks[0].max_tokens: expected tokens (64), {min: 16, max: 128} or {mean: 64, sd: 16}"),
        ("{kind: openai_chat, prompt: hi, temperature: hot}",
         "tasks[0].temperature: expected a number from 0 to 2, got 'hot'"),
        ("{kind: openai_chat, prompt: hi, stream: maybe}",
         "tasks[0].stream: expected true or false, got 'maybe'"),
        ("{kind: openai_chat}", "tasks[0]: give one of prompt, messages or prompts_file, got []"),
        ("{kind: openai_completions, messages: [{role: user, content: hi}]}",
         "tasks[0].messages: expected a string, got [{'role': 'user', 'content': 'hi'}]"),
        ("{kind: openai_chat, prompt: hi, json: {a: 1}}",
         "tasks[0]: openai_chat builds its body: put extra fields in extra_body"),
        ("{kind: sse, path: /e, model: m}", "tasks[0].model: applies to openai kinds"),
        ("{path: /predict, max_tokens: 3}",
         "tasks[0].max_tokens: applies to streaming tasks; set kind to one of http"),
        ("{kind: openai_chat, prompts_file: nowhere.jsonl}",
         "tasks[0].prompts_file: cannot read "),
    ],
)  # fmt: skip
def test_a_bad_streaming_key_names_the_task_key_and_the_value(
    tmp_path: Path, task: str, message: str
) -> None:
    text = error_of(tmp_path, f"tasks: [{task}]\n")
    assert text.startswith("thresholds.yaml: scenarios.chat.")
    assert message in text


def test_a_bad_line_of_the_prompts_file_is_named_with_its_number(tmp_path: Path) -> None:
    (tmp_path / "p.jsonl").write_text('{"prompt": "ok"}\n{"prompt": 3}\n')
    text = error_of(tmp_path, "tasks: [{kind: openai_completions, prompts_file: p.jsonl}]\n")
    assert text == "thresholds.yaml: scenarios.chat.tasks[0].prompts_file: p.jsonl line 2: " \
        "expected a string, got 3"  # fmt: skip


def test_poisson_and_gamma_arrivals_are_seeded_and_settled_in_the_settings(tmp_path: Path) -> None:
    task = "tasks: [{path: /health}]\n"
    assert load(tmp_path, task).arrivals == "uniform"
    poisson = load(tmp_path, "arrivals: poisson\nseed: 3\n" + task)
    assert (poisson.arrivals, poisson.seed) == ("poisson", 3)
    bursty = load(tmp_path, "burstiness: 0.5\n" + task)
    settings = scenario_settings(bursty)
    assert (settings["arrivals"], settings["burstiness"], settings["seed"]) == ("gamma", 0.5, 0)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("arrivals: bursty\n", "arrivals: expected uniform or poisson, got 'bursty'"),
        ("burstiness: 0\n", "burstiness: expected a gamma shape > 0"),
        ("arrivals: uniform\nburstiness: 2\n", "burstiness: expected a gamma shape > 0 with "
         "poisson arrivals (or none), got 2"),
        ("seed: x\n", "seed: expected an integer, got 'x'"),
    ],
)  # fmt: skip
def test_bad_arrivals_name_the_key(tmp_path: Path, body: str, message: str) -> None:
    assert message in error_of(tmp_path, body + "tasks: [{path: /health}]\n")


def test_arrivals_need_the_open_model(tmp_path: Path) -> None:
    head = 'service: {url: "http://127.0.0.1:8000"}\nscenarios:\n  chat:\n    users: 2\n'
    text = error_of(tmp_path, "arrivals: poisson\ntasks: [{path: /health}]\n", head)
    assert text == (
        "thresholds.yaml: scenarios.chat.arrivals: applies to the open model: set arrival_rate"
    )
