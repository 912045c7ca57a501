"""OpenAI-compatible routes for the generative model: ``GET /v1/models``,
``POST /v1/completions`` and ``POST /v1/chat/completions``, with and without ``stream``.

Shapes follow OpenAI's API: ``chat.completion`` / ``text_completion`` objects with
``usage``; streamed, ``data: {json}\\n\\n`` server-sent events (a chat stream opens with a
chunk whose delta is ``{"role": "assistant", "content": ""}``, then content chunks, then
a chunk with an empty delta and ``finish_reason``, then with
``stream_options.include_usage`` a chunk with empty ``choices`` and ``usage``) ending with
``data: [DONE]``. Every error, authentication and rate limits included, has OpenAI's body
(``protocol.OpenAIError``, which also parses the request bodies).

A whole (non-streamed) answer is raced against the client's disconnect, and a stream
cancels its generation when Starlette cancels it: a client that goes away frees its
sequence either way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import torch
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from service import metrics, security
from service.llm import MODEL_ID, MODEL_IDS
from service.llm.engine import (
    Engine,
    EngineClosedError,
    EngineFullError,
    Generation,
    Output,
)
from service.llm.model import build_tiny_gpt
from service.llm.protocol import GenerationRequest, OpenAIError, openapi_body, parse
from service.runtime import resolve_device
from service.security import AuthError, RateLimitedError
from service.settings import Settings

__all__ = ["LlmServer", "predictive_settings", "router"]

_OWNER = "pytest-perfgate"
_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_CLIENT_CLOSED = 499  # nginx's "client closed request": the answer nobody reads


def predictive_settings(settings: Settings) -> Settings:
    """The settings for ``ModelRuntime``: ``models`` without the generative ones."""
    models = tuple(name for name in settings.models if name not in MODEL_IDS)
    return dataclasses.replace(settings, models=models)


class LlmServer:
    """The generative models a worker serves (tiny-gpt when ``--models`` names it)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model_ids = tuple(name for name in settings.models if name in MODEL_IDS)
        self.engine: Engine | None = None
        self.created = int(time.time())

    async def start(self) -> None:
        if self.model_ids and self.engine is None:
            self.engine = await asyncio.to_thread(self._build)

    def _build(self) -> Engine:
        device = resolve_device(self.settings.device)
        dtype: torch.dtype = getattr(torch, self.settings.dtype)
        engine = Engine(
            build_tiny_gpt(device, dtype),
            device,
            dtype,
            max_running=self.settings.llm_max_running,
            max_waiting=self.settings.llm_max_waiting,
            observer=metrics.LlmMetrics(MODEL_ID),
            prompt_cache_tokens=self.settings.llm_prompt_cache_tokens,
        )
        engine.start()
        return engine

    async def close(self) -> None:
        if self.engine is not None:
            engine, self.engine = self.engine, None
            await asyncio.to_thread(engine.close)

    def engine_for(self, model: str) -> Engine:
        if model in self.model_ids and self.engine is not None:
            return self.engine
        if model in MODEL_IDS:
            message = (
                f"The model `{model}` is not loaded: start the service with "
                f"--models ...,{model} to serve it"
            )
        else:
            served = ", ".join(self.model_ids) or "none"
            name = model if len(model) <= 40 else model[:37] + "..."
            message = f"The model `{name}` does not exist; served models: {served}"
        raise OpenAIError(404, message, param="model", code="model_not_found")

    def describe(self, model: str) -> dict[str, Any]:
        return {"id": model, "object": "model", "created": self.created, "owned_by": _OWNER}


# --- requests ----------------------------------------------------------------------------


# --- answers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Shape:
    """The JSON objects of one answer: ids, object names, the choice's fields."""

    request: GenerationRequest
    id: str
    created: int

    @classmethod
    def of(cls, request: GenerationRequest) -> _Shape:
        prefix = "chatcmpl" if request.chat else "cmpl"
        return cls(request, f"{prefix}-{uuid.uuid4().hex}", int(time.time()))

    def _object(self, name: str, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": name,
            "created": self.created,
            "model": self.request.model,
            "system_fingerprint": None,
            "choices": choices,
            **extra,
        }

    def whole(self, text: str, last: Output) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0}
        if self.request.chat:
            choice["message"] = {"role": "assistant", "content": text, "refusal": None}
        else:
            choice["text"] = text
        choice |= {"logprobs": None, "finish_reason": last.finish_reason}
        name = "chat.completion" if self.request.chat else "text_completion"
        return self._object(name, [choice], usage=_usage(last))

    @functools.cached_property
    def _content_template(self) -> tuple[bytes, bytes]:
        """A content chunk's event around its text: serialised once, not once a token."""
        event = self._chunk(_PLACEHOLDER, None)
        before, placeholder, after = event.partition(json.dumps(_PLACEHOLDER).encode())
        assert placeholder, "the placeholder is missing from the chunk"
        return before, after

    def chunk(self, text: str | None, finish_reason: str | None = None) -> bytes:
        """A chunk of one choice; ``text`` None in a chat stream: the role chunk."""
        if text and finish_reason is None:  # the content chunks: all but their text is fixed
            before, after = self._content_template
            return before + json.dumps(text).encode() + after
        return self._chunk(text, finish_reason)

    def _chunk(self, text: str | None, finish_reason: str | None) -> bytes:
        choice: dict[str, Any] = {"index": 0}
        if self.request.chat:
            if text is None:
                choice["delta"] = {"role": "assistant", "content": "", "refusal": None}
            else:
                choice["delta"] = {"content": text} if text else {}
        else:
            choice["text"] = text or ""
        choice |= {"logprobs": None, "finish_reason": finish_reason}
        return self._event([choice], None)

    def usage_chunk(self, last: Output) -> bytes:
        return self._event([], _usage(last))

    def _event(self, choices: list[dict[str, Any]], usage: dict[str, int] | None) -> bytes:
        name = "chat.completion.chunk" if self.request.chat else "text_completion"
        extra = {"usage": usage} if self.request.include_usage else {}
        return _sse(self._object(name, choices, **extra))


def _usage(last: Output) -> dict[str, int]:
    return {
        "prompt_tokens": last.prompt_tokens,
        "completion_tokens": last.completion_tokens,
        "total_tokens": last.prompt_tokens + last.completion_tokens,
    }


def _sse(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


_DONE = b"data: [DONE]\n\n"
_PLACEHOLDER = "\x00placeholder\x00"  # a text no generation yields (NUL is not generated)


async def _events(shape: _Shape, generation: Generation, per_chunk: int) -> AsyncIterator[bytes]:
    """The SSE stream of one generation; cancels it if the client goes away."""
    try:
        if shape.request.chat:
            yield shape.chunk(None)
        text, tokens = "", 0
        # Outputs that arrived together go out in one write, each still its own chunk.
        async for outputs in generation.batches():
            events: list[bytes] = []
            for output in outputs:
                if output.error is not None:
                    events.append(_sse(OpenAIError(500, output.error, kind="server_error").body()))
                    break
                text, tokens = text + output.text, tokens + output.tokens
                if text and (tokens >= per_chunk or output.last):
                    events.append(shape.chunk(text))
                    text, tokens = "", 0
                if output.last:
                    events.append(shape.chunk("", output.finish_reason))
                    if shape.request.include_usage:
                        events.append(shape.usage_chunk(output))
            if events:
                yield b"".join(events)
            if outputs[-1].error is not None:
                break
        yield _DONE
    finally:  # the client went away (Starlette cancels the stream), or it is over
        generation.cancel()


async def _whole(request: Request, generation: Generation) -> tuple[str, Output] | None:
    """The whole generation; None if the client went away first (it is cancelled then)."""
    collecting = asyncio.ensure_future(generation.collect())
    watching = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({collecting, watching}, return_when=asyncio.FIRST_COMPLETED)
        return collecting.result() if collecting.done() else None
    finally:
        watching.cancel()
        if not collecting.done():
            collecting.cancel()
            generation.cancel()


async def _disconnected(request: Request) -> None:
    # The body is read: the next message the server sends is the disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass


# --- routes ------------------------------------------------------------------------------


router = APIRouter()


def _llm(request: Request) -> LlmServer:
    server: LlmServer = request.app.state.llm
    return server


@router.get("/v1/models")
async def list_models(request: Request) -> JSONResponse:
    server = _llm(request)
    return JSONResponse(
        {"object": "list", "data": [server.describe(model) for model in server.model_ids]}
    )


@router.get("/v1/models/{model}", include_in_schema=False)  # any string: nothing to fuzz
async def get_model(model: str, request: Request) -> Response:
    server = _llm(request)
    try:
        server.engine_for(model)
    except OpenAIError as exc:
        return _error_response(exc)
    return JSONResponse(server.describe(model))


@router.post("/v1/chat/completions", openapi_extra=openapi_body(chat=True))
async def chat_completions(request: Request) -> Response:
    return await _answer(request, chat=True)


@router.post("/v1/completions", openapi_extra=openapi_body(chat=False))
async def completions(request: Request) -> Response:
    return await _answer(request, chat=False)


def _error_response(error: OpenAIError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


async def _answer(request: Request, *, chat: bool) -> Response:
    try:
        _check_access(request)
        parsed = parse(await _read_json(request), chat=chat)
        generation = _submit(_llm(request).engine_for(parsed.model), parsed)
    except OpenAIError as exc:
        return _error_response(exc)
    shape = _Shape.of(parsed)
    if parsed.stream:
        per_chunk: int = request.app.state.settings.llm_tokens_per_chunk
        events = _events(shape, generation, per_chunk)
        return StreamingResponse(events, media_type="text/event-stream", headers=_SSE_HEADERS)
    whole = await _whole(request, generation)
    if whole is None:
        return Response(status_code=_CLIENT_CLOSED)
    text, last = whole
    if last.error is not None:
        return _error_response(OpenAIError(500, last.error, kind="server_error"))
    return JSONResponse(shape.whole(text, last))


def _submit(engine: Engine, parsed: GenerationRequest) -> Generation:
    try:
        return engine.submit(parsed.prompt, parsed.params)
    except EngineFullError as exc:
        raise OpenAIError(
            429,
            f"{exc}; retry after {exc.retry_after_s} s",
            kind="rate_limit_error",
            code="engine_full",
            headers={"Retry-After": str(exc.retry_after_s)},
        ) from None
    except EngineClosedError as exc:
        raise OpenAIError(503, str(exc), kind="server_error") from None


def _check_access(request: Request) -> None:
    """``security.Guard``'s checks (credentials with --auth-inference, rate limits)."""
    peer = request.client.host if request.client else "unknown"
    guard: security.Guard = request.app.state.guard
    try:
        guard.check(security.INFER, peer, request.headers)
    except AuthError as exc:
        raise OpenAIError(
            exc.status,
            str(exc),
            kind="authentication_error" if exc.status == 401 else "permission_error",
            headers={"WWW-Authenticate": exc.challenge},
        ) from None
    except RateLimitedError as exc:
        raise OpenAIError(
            429,
            str(exc),
            kind="rate_limit_error",
            code="rate_limit_exceeded",
            headers={"Retry-After": str(exc.retry_after_s)},
        ) from None


async def _read_json(request: Request) -> Any:
    """The parsed body; 413 past ``max_body_bytes``, 400 for malformed JSON."""
    limit: int = request.app.state.settings.max_body_bytes
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise OpenAIError(413, f"body: over the limit of {limit} bytes", param="body")
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise OpenAIError(400, f"body: malformed JSON: {reason}", param="body") from None
