"""OpenAI's request bodies and error body for the generative routes, checked by hand.

``parse`` turns a ``/v1/completions`` or ``/v1/chat/completions`` body into a
``GenerationRequest`` or raises ``OpenAIError``, whose body is OpenAI's
``{"error": {"message", "type", "param", "code"}}`` with ``param`` naming the field at
fault and the message its value. As ``service.app`` does, bodies are parsed by hand rather
than through pydantic, so that every message says which field and what was wrong with it.
Fields a client may send that this model ignores (``logprobs``, ``user``,
``frequency_penalty`` ...) are accepted and ignored, as vLLM does; ``openapi_body``
describes what is accepted, for ``/openapi.json``.

No fastapi here: plain Python over parsed JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from service.llm import CONTEXT_LENGTH
from service.llm.sampling import SamplingParams
from service.llm.tokenizer import END_OF_TEXT, VOCAB_SIZE, chat_prompt, encode

__all__ = ["GenerationRequest", "OpenAIError", "openapi_body", "parse"]

_COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions
_MAX_STOPS = 4  # as OpenAI
_ROLES = ("system", "developer", "user", "assistant", "tool", "function")


class OpenAIError(Exception):
    """An answer other than 200, in OpenAI's error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        kind: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.param = param
        self.code = code
        self.kind = kind
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": str(self),
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        }


def _invalid(param: str, message: str, code: str = "invalid_value") -> OpenAIError:
    return OpenAIError(400, f"{param}: {message}", param=param, code=code)


def _show(value: object) -> str:
    text = json.dumps(value) if _is_json(value) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_json(value: object) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


@dataclass(frozen=True)
class GenerationRequest:
    """A checked generation request."""

    chat: bool
    model: str
    prompt: list[int]
    params: SamplingParams
    stream: bool
    include_usage: bool


def parse(body: Any, *, chat: bool) -> GenerationRequest:
    if not isinstance(body, dict):
        raise _invalid("body", f"expected a JSON object, got {_show(body)}", "invalid_type")
    model = _typed(body, "model", str, required=True)
    prompt, where = (_chat_prompt(body), "messages") if chat else (_text_prompt(body), "prompt")
    max_tokens = _max_tokens(body, chat)
    if max_tokens is None:
        max_tokens = CONTEXT_LENGTH - len(prompt)
    if len(prompt) + max(max_tokens, 1) > CONTEXT_LENGTH:
        raise OpenAIError(
            400,
            f"This model's maximum context length is {CONTEXT_LENGTH} tokens. However, you "
            f"requested {len(prompt) + max_tokens} tokens ({len(prompt)} in the {where}, "
            f"{max_tokens} in the completion). Please reduce the length of the {where} or "
            "completion.",
            param=where,
            code="context_length_exceeded",
        )
    stream = _typed(body, "stream", bool) or False
    return GenerationRequest(
        chat, model, prompt, _sampling(body, max_tokens), stream, _include_usage(body, stream)
    )


_KINDS: dict[type, str] = {
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    list: "an array",
    dict: "an object",
}


def _typed(
    body: dict[str, Any], key: str, kind: type, *, required: bool = False, where: str = ""
) -> Any:
    """``body[key]`` if it has JSON type ``kind``; None when absent or null (and optional)."""
    path = f"{where}.{key}" if where else key
    value = body.get(key)
    if value is None:
        if required:
            raise _invalid(path, "required field is missing", "missing_required_parameter")
        return None
    ok = (
        isinstance(value, int | float) and not isinstance(value, bool)
        if kind is float
        else type(value) is kind
    )
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)  # JSON has one number type: 5.0 is the integer 5
    if not ok:
        raise _invalid(path, f"expected {_KINDS[kind]}, got {_show(value)}", "invalid_type")
    return value


def _chat_prompt(body: dict[str, Any]) -> list[int]:
    messages = _typed(body, "messages", list, required=True)
    if not messages:
        raise _invalid("messages", "expected at least one message, got []")
    return chat_prompt([_message(message, f"messages[{i}]") for i, message in enumerate(messages)])


def _message(message: Any, where: str) -> tuple[str, str]:
    if not isinstance(message, dict):
        raise _invalid(where, f"expected an object, got {_show(message)}", "invalid_type")
    role = _typed(message, "role", str, required=True, where=where)
    if role not in _ROLES:
        raise _invalid(f"{where}.role", f"expected one of {', '.join(_ROLES)}, got {_show(role)}")
    content = message.get("content")
    if content is None or isinstance(content, str):
        return role, content or ""
    if isinstance(content, list):
        parts = (_text_part(part, f"{where}.content[{i}]") for i, part in enumerate(content))
        return role, "".join(parts)
    raise _invalid(
        f"{where}.content",
        f"expected a string or an array of text parts, got {_show(content)}",
        "invalid_type",
    )


def _text_part(part: Any, where: str) -> str:
    if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
        text: str = part["text"]
        return text
    raise _invalid(where, f'expected {{"type": "text", "text": ...}}, got {_show(part)}')


def _text_prompt(body: dict[str, Any]) -> list[int]:
    if "prompt" not in body or body["prompt"] is None:
        raise _invalid("prompt", "required field is missing", "missing_required_parameter")
    prompt = body["prompt"]
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str | list):
        prompt = prompt[0]  # a batch of one prompt
    if isinstance(prompt, str):
        ids = encode(prompt)
    elif isinstance(prompt, list) and all(type(token) is int for token in prompt):
        ids = prompt
        if bad := [token for token in ids if not 0 <= token < VOCAB_SIZE]:
            raise _invalid("prompt", f"token id {bad[0]} is out of range 0..{VOCAB_SIZE - 1}")
    else:
        raise _invalid(
            "prompt",
            f"expected a string, an array of token ids, or an array of one of them, "
            f"got {_show(prompt)}",
            "invalid_type",
        )
    return ids or [END_OF_TEXT]  # an empty prompt starts from end-of-text, as GPT-2's do


def _max_tokens(body: dict[str, Any], chat: bool) -> int | None:
    keys = ("max_completion_tokens", "max_tokens") if chat else ("max_tokens",)
    for key in keys:
        if (value := _typed(body, key, int)) is not None:
            if value < 1:
                raise _invalid(key, f"expected an integer >= 1, got {value}")
            return int(value)
    return None if chat else _COMPLETIONS_DEFAULT_MAX_TOKENS


def _sampling(body: dict[str, Any], max_tokens: int) -> SamplingParams:
    temperature = _number(body, "temperature", 0.0, 2.0, default=1.0)
    top_p = _number(body, "top_p", 0.0, 1.0, default=1.0)
    if top_p == 0.0:
        raise _invalid("top_p", "expected a number > 0 and <= 1, got 0")
    if (n := _typed(body, "n", int)) is not None and n != 1:
        raise _invalid("n", f"only n=1 is supported, got {n}")
    if _typed(body, "echo", bool):
        raise _invalid("echo", "echo is not supported, got true")
    seed = _typed(body, "seed", int)
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        stop=_stops(body),
        ignore_eos=bool(_typed(body, "ignore_eos", bool)),
    )


def _number(body: dict[str, Any], key: str, low: float, high: float, *, default: float) -> float:
    value = _typed(body, key, float)
    if value is None:
        return default
    if not low <= value <= high:
        raise _invalid(key, f"expected a number from {low:g} to {high:g}, got {_show(value)}")
    return float(value)


def _stops(body: dict[str, Any]) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise _invalid(
            "stop",
            f"expected a non-empty string or an array of them, got {_show(stop)}",
            "invalid_type",
        )
    if len(stops) > _MAX_STOPS:
        raise _invalid("stop", f"at most {_MAX_STOPS} stop sequences, got {len(stops)}")
    return tuple(stops)


def _include_usage(body: dict[str, Any], stream: bool) -> bool:
    options = _typed(body, "stream_options", dict)
    if options is None:
        return False
    if not stream:
        raise _invalid("stream_options", "only allowed when stream is true")
    include = options.get("include_usage")
    if include is not None and type(include) is not bool:
        raise _invalid(
            "stream_options.include_usage",
            f"expected a boolean, got {_show(include)}",
            "invalid_type",
        )
    return bool(include)


def openapi_body(*, chat: bool) -> dict[str, Any]:
    """The request body ``/openapi.json`` describes: what ``parse`` accepts."""
    tokens = {"type": ["integer", "null"], "minimum": 1, "maximum": CONTEXT_LENGTH}
    text_part = {
        "type": "object",
        "required": ["type", "text"],
        "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
    }
    message = {
        "type": "object",
        "required": ["role"],
        "properties": {
            "role": {"enum": list(_ROLES)},
            "content": {
                "anyOf": [{"type": ["string", "null"]}, {"type": "array", "items": text_part}]
            },
        },
    }
    prompt: dict[str, Any] = (
        {"messages": {"type": "array", "minItems": 1, "items": message}}
        if chat
        else {
            "prompt": {
                "anyOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"type": "integer", "minimum": 0}},
                ]
            }
        }
    )
    stop = {"type": "string", "minLength": 1}
    properties = {
        "model": {"type": "string"},
        **prompt,
        "max_tokens": tokens,
        **({"max_completion_tokens": tokens} if chat else {}),
        "temperature": {"type": ["number", "null"], "minimum": 0, "maximum": 2},
        "top_p": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 1},
        "seed": {"type": ["integer", "null"]},
        "stop": {"anyOf": [stop, {"type": "array", "maxItems": _MAX_STOPS, "items": stop}]},
        "stream": {"type": ["boolean", "null"]},
        "stream_options": {
            "type": ["object", "null"],
            "properties": {"include_usage": {"type": "boolean"}},
        },
        "n": {"const": 1},
        "ignore_eos": {"type": "boolean"},
    }
    schema = {"type": "object", "required": ["model", *prompt], "properties": properties}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
