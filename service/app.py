"""The HTTP face of the service: ``create_app(settings)`` builds the FastAPI app.

Routes parse JSON themselves (bounded read, then ``json.loads``) rather than through
pydantic models, so that every bad value is answered with a 4xx whose message names the
field and the value, in one shape for every endpoint: ``{"error": "..."}``. Two APIs share
the models: this service's own (``/predict``, ``/models``) and a subset of the Open
Inference Protocol v2 REST API (``/v2/...``, the JSON shapes of Triton and KServe). The
generative model's OpenAI-compatible routes (``/v1/...``, OpenAI's error body) live in
``service.llm.api``; its engine starts with the app when ``settings.models`` names it.

Model management routes, and inference routes with ``auth_inference``, pass
``security.Guard`` first (a route dependency): credentials and rate limits are checked
before a body is read. ``/openapi.json`` describes the request bodies the routes parse.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.params import Depends as Dependency
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from service import metrics, security
from service.batching import BatcherClosedError, QueueFullError
from service.llm.api import LlmServer, predictive_settings
from service.llm.api import router as llm_router
from service.models import (
    REGISTRY,
    InvalidInputError,
    ModelSpec,
    UnknownModelError,
    WeightsError,
    get_spec,
    show,
)
from service.runtime import ModelNotLoadedError, ModelRuntime, RequestTimeoutError
from service.security import AuthError, Guard, RateLimitedError
from service.settings import Settings

__all__ = ["create_app", "create_app_from_env"]

_VERSION = "1"  # every registered model has one version
_RESOURCE_SAMPLE_S = 5.0  # how often each worker refreshes its CPU, memory and GPU gauges
_JSON_TYPES = ("application/json",)  # and any application/*+json

log = logging.getLogger("uvicorn.error")  # uvicorn configures it: our lines join its log


class HttpError(Exception):
    """An answer other than 200, with the message a client can act on."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.headers = dict(headers or {})


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app; its lifespan loads and warms up ``settings.models`` in the background."""
    settings = settings or Settings()
    app = FastAPI(
        title="pytest-perfgate reference inference service",
        version="0.1.0",
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.guard = Guard(settings)
    app.state.runtime = ModelRuntime(predictive_settings(settings))
    app.state.llm = LlmServer(settings)  # tiny-gpt, when settings.models names it
    app.add_middleware(metrics.RequestMetricsMiddleware)
    for error, handler in _ERROR_HANDLERS.items():
        app.add_exception_handler(error, handler)
    app.include_router(_router)
    app.include_router(llm_router)  # /v1/...: OpenAI-compatible generation
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def create_app_from_env() -> FastAPI:
    """The factory uvicorn workers call: settings come from the launcher's environment."""
    return create_app(Settings.from_env())


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    runtime: ModelRuntime = app.state.runtime
    if warning := security.exposure_warning(app.state.settings):
        log.warning("%s", warning)
    # Loading runs beside the server: /health answers and /ready says 503 until it is done.
    background = [
        asyncio.create_task(runtime.start(), name="load-default-models"),
        asyncio.create_task(_sample_resources(runtime), name="sample-resources"),
    ]
    llm: LlmServer = app.state.llm
    try:
        await llm.start()  # random weights: a fraction of a second, done before serving
        yield
    finally:
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await llm.close()
        await runtime.close()
        metrics.mark_process_dead()


async def _sample_resources(runtime: ModelRuntime) -> None:
    # Each worker refreshes its own gauges; a scrape only reaches one of them.
    while True:
        runtime.record_resources()
        await asyncio.sleep(_RESOURCE_SAMPLE_S)


# --- errors -------------------------------------------------------------------------------


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


_DOMAIN_STATUS: dict[type[Exception], int] = {
    UnknownModelError: 404,
    ModelNotLoadedError: 409,
    InvalidInputError: 422,
    RequestTimeoutError: 504,
    BatcherClosedError: 503,
    WeightsError: 500,
}


async def _on_domain_error(request: Request, exc: Exception) -> Response:
    return _error(_DOMAIN_STATUS[type(exc)], str(exc))


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HttpError)
    return _error(exc.status, str(exc), exc.headers)


async def _on_auth_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AuthError)
    return _error(exc.status, str(exc), {"WWW-Authenticate": exc.challenge})


async def _on_rate_limited(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RateLimitedError)
    return _error(429, str(exc), {"Retry-After": str(exc.retry_after_s)})


async def _on_queue_full(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, QueueFullError)
    retry = exc.retry_after_s
    return _error(503, f"server busy: {exc}; retry after {retry} s", {"Retry-After": str(retry)})


async def _on_starlette_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    message = f"{exc.detail}: {request.method} {request.url.path}"
    return _error(exc.status_code, message, exc.headers)


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()
    )
    return _error(422, problems)


async def _on_unexpected_error(request: Request, exc: Exception) -> Response:
    return _error(500, f"internal error: {type(exc).__name__}: {exc}")


_Handler = Callable[[Request, Exception], Awaitable[Response]]
_ERROR_HANDLERS: dict[type[Exception], _Handler] = {
    **dict.fromkeys(_DOMAIN_STATUS, _on_domain_error),
    HttpError: _on_http_error,
    QueueFullError: _on_queue_full,
    AuthError: _on_auth_error,
    RateLimitedError: _on_rate_limited,
    StarletteHTTPException: _on_starlette_error,
    RequestValidationError: _on_validation_error,
    Exception: _on_unexpected_error,
}


# --- request parsing ----------------------------------------------------------------------


async def _read_json(request: Request, *, optional: bool = False) -> Any:
    """The parsed body; 415 for a declared type other than JSON, 413 past the size limit,
    both checked before anything is parsed. A body without Content-Type is read as JSON."""
    _check_content_type(request.headers.get("content-type"))
    limit: int = request.app.state.settings.max_body_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:  # a chunked body has no length to check up front
            raise _too_large(len(body), limit)
    if optional and not body.strip():
        return {}
    try:
        return json.loads(body)
    # ValueError covers bad JSON, bad UTF-8 and integers too long to convert; deep
    # nesting exhausts the recursion limit. Each is the client's mistake, not a 500.
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise HttpError(400, f"body: malformed JSON: {reason}") from None


def _check_content_type(declared: str | None) -> None:
    if declared is None:
        return
    media = declared.partition(";")[0].strip().lower()
    if media in _JSON_TYPES or (media.startswith("application/") and media.endswith("+json")):
        return
    raise HttpError(415, f"Content-Type: expected application/json, got {show(declared)}")


def _too_large(size: int, limit: int) -> HttpError:
    return HttpError(413, f"body: {size} bytes is over the limit of {limit} bytes")


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInputError(f"{where}: expected a JSON object, got {show(value)}")
    return value


_JSON_KINDS: dict[type, str] = {str: "a string", list: "a list", dict: "an object"}


def _field(obj: dict[str, Any], key: str, kind: type, where: str = "") -> Any:
    path = f"{where}.{key}" if where else key
    if key not in obj:
        raise InvalidInputError(f"{path}: required field is missing")
    value = obj[key]
    if not isinstance(value, kind):
        raise InvalidInputError(f"{path}: expected {_JSON_KINDS[kind]}, got {show(value)}")
    return value


def _model_spec(obj: dict[str, Any], key: str) -> ModelSpec:
    """The registered model that field ``key`` names; 404 for any other name."""
    return get_spec(_field(obj, key, str))


def _runtime(request: Request) -> ModelRuntime:
    runtime: ModelRuntime = request.app.state.runtime
    return runtime


def _max_examples(request: Request) -> int:
    limit: int = request.app.state.settings.max_examples
    return limit


def _check_count(count: int, limit: int, where: str) -> None:
    if count < 1:
        raise InvalidInputError(f"{where}: expected at least 1 example, got 0")
    if count > limit:
        raise InvalidInputError(f"{where}: at most {limit} examples per request, got {count}")


def _examples(spec: ModelSpec, inputs: Any, limit: int) -> list[list[Any]]:
    if not isinstance(inputs, list):
        raise InvalidInputError(f"inputs: expected a list of examples, got {show(inputs)}")
    _check_count(len(inputs), limit, "inputs")
    return [spec.check_example(example, f"inputs[{i}]") for i, example in enumerate(inputs)]


# --- authentication and rate limits ---------------------------------------------------------

_API_KEY = APIKeyHeader(
    name=security.API_KEY_HEADER,
    auto_error=False,
    description="an API key, when the service has API keys configured",
)
_BEARER = HTTPBearer(
    auto_error=False,
    bearerFormat="JWT",
    description="a JWT (HS256 or RS256), when the service has a JWT key configured",
)


def _guarded(right: str) -> list[Dependency]:
    """The route dependency that lets a request on only if ``Guard.check`` says so."""

    async def guard(
        request: Request,
        # Declared so that /openapi.json documents the schemes; the guard reads the
        # headers itself, so that its messages can say what is wrong with them.
        _key: Annotated[str | None, Security(_API_KEY)] = None,
        _token: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)] = None,
    ) -> None:
        peer = request.client.host if request.client else "unknown"
        _guard(request).check(right, peer, request.headers)

    return [Depends(guard)]


def _guard(request: Request) -> Guard:
    guard: Guard = request.app.state.guard
    return guard


_MANAGE = _guarded(security.MANAGE)
_INFER = _guarded(security.INFER)

# --- the service's own API ----------------------------------------------------------------

_router = APIRouter()


# Routes match in the order they are declared: the hot path first.
@_router.post("/predict", dependencies=_INFER)
async def predict(request: Request) -> JSONResponse:
    body = _object(await _read_json(request), "body")
    spec = _model_spec(body, "model")
    if "inputs" not in body:
        raise InvalidInputError("inputs: required field is missing")
    examples = _examples(spec, body["inputs"], _max_examples(request))
    outputs = await _runtime(request).predict(spec.name, examples)
    return JSONResponse({"model": spec.name, "outputs": outputs})


@_router.get("/health")
async def health(request: Request) -> JSONResponse:
    runtime = _runtime(request)
    models = [*runtime.loaded_names, *request.app.state.llm.model_ids]
    return JSONResponse({"status": "ok", "device": runtime.device.type, "models": models})


@_router.get("/ready")
async def ready(request: Request) -> JSONResponse:
    return _readiness(_runtime(request))


def _readiness(runtime: ModelRuntime) -> JSONResponse:
    if runtime.ready:
        return JSONResponse({"ready": True})
    body: dict[str, Any] = {"ready": False}
    if runtime.startup_error:
        body["error"] = runtime.startup_error
    return JSONResponse(body, status_code=503)


@_router.get("/metrics")
async def metrics_text(request: Request) -> Response:
    _runtime(request).record_resources()  # this worker's figures fresh at least
    return Response(metrics.render(), media_type=metrics.CONTENT_TYPE)


@_router.get("/models")
async def list_models(request: Request) -> JSONResponse:
    runtime = _runtime(request)
    return JSONResponse({"models": [runtime.describe(name) for name in REGISTRY]})


@_router.post("/models/load", dependencies=_MANAGE)
async def load_model(request: Request) -> JSONResponse:
    body = _object(await _read_json(request), "body")
    return await _load(request, _model_spec(body, "name").name)


@_router.post("/models/unload", dependencies=_MANAGE)
async def unload_model(request: Request) -> JSONResponse:
    body = _object(await _read_json(request), "body")
    return await _unload(request, _model_spec(body, "name").name)


@_router.post("/models/{name}/load", dependencies=_MANAGE)
async def load_model_by_path(name: str, request: Request) -> JSONResponse:
    return await _load(request, name)


@_router.post("/models/{name}/unload", dependencies=_MANAGE)
async def unload_model_by_path(name: str, request: Request) -> JSONResponse:
    return await _unload(request, name)


async def _load(request: Request, name: str) -> JSONResponse:
    runtime = _runtime(request)
    changed = await runtime.load(name)
    return JSONResponse({**runtime.describe(name), "changed": changed})


async def _unload(request: Request, name: str) -> JSONResponse:
    runtime = _runtime(request)
    changed = await runtime.unload(name)
    return JSONResponse({**runtime.describe(name), "changed": changed})


# --- Open Inference Protocol v2 -----------------------------------------------------------


@_router.get("/v2")
async def v2_server_metadata() -> JSONResponse:
    return JSONResponse(
        {"name": "pytest-perfgate-service", "version": "0.1.0", "extensions": ["model_repository"]}
    )


@_router.get("/v2/health/live")
async def v2_live() -> JSONResponse:
    return JSONResponse({"live": True})


@_router.get("/v2/health/ready")
async def v2_ready(request: Request) -> JSONResponse:
    return _readiness(_runtime(request))


@_router.get("/v2/models/{name}")
async def v2_model_metadata(name: str) -> JSONResponse:
    spec = get_spec(name)
    return JSONResponse(
        {
            "name": name,
            "versions": [_VERSION],
            "platform": "pytorch",
            "inputs": [spec.input.as_json()],
            "outputs": [spec.output.as_json()],
        }
    )


@_router.get("/v2/models/{name}/ready")
async def v2_model_ready(name: str, request: Request) -> JSONResponse:
    get_spec(name)
    loaded = name in _runtime(request).loaded_names
    return JSONResponse({"name": name, "ready": loaded}, status_code=200 if loaded else 503)


@_router.post("/v2/models/{name}/infer", dependencies=_INFER)
async def v2_infer(name: str, request: Request) -> JSONResponse:
    spec = get_spec(name)
    body = _object(await _read_json(request), "body")
    examples = _v2_examples(spec, body, _max_examples(request))
    outputs = await _runtime(request).predict(name, examples)
    answer: dict[str, Any] = {
        "model_name": name,
        "model_version": _VERSION,
        "outputs": [
            {
                "name": spec.output.name,
                "datatype": spec.output.datatype,
                "shape": [len(outputs), len(outputs[0])],
                "data": [value for row in outputs for value in row],
            }
        ],
    }
    if isinstance(body.get("id"), str):
        answer["id"] = body["id"]
    return JSONResponse(answer)


def _v2_examples(spec: ModelSpec, body: dict[str, Any], limit: int) -> list[list[Any]]:
    """The rows of the one input tensor of an inference request, checked."""
    inputs = _field(body, "inputs", list)
    if len(inputs) != 1:
        raise InvalidInputError(f"inputs: expected exactly 1 input tensor, got {len(inputs)}")
    tensor = _object(inputs[0], "inputs[0]")
    for key in ("name", "datatype"):
        expected = getattr(spec.input, key)
        if (got := _field(tensor, key, str, "inputs[0]")) != expected:
            raise InvalidInputError(f"inputs[0].{key}: expected {expected!r}, got {show(got)}")
    rows, width = _v2_shape(spec, _field(tensor, "shape", list, "inputs[0]"), limit)
    data = _v2_flat_data(_field(tensor, "data", list, "inputs[0]"))
    if len(data) != rows * width:
        raise InvalidInputError(
            f"inputs[0].data: expected {rows * width} values for shape [{rows}, {width}], "
            f"got {len(data)}"
        )
    spec.check_values(data, "inputs[0].data")
    return [data[start : start + width] for start in range(0, len(data), width)]


def _v2_shape(spec: ModelSpec, shape: list[Any], limit: int) -> tuple[int, int]:
    if len(shape) != 2 or not all(type(dim) is int for dim in shape):
        raise InvalidInputError(
            f"inputs[0].shape: expected [examples, {spec.element}s per example], got {show(shape)}"
        )
    rows, width = shape
    _check_count(rows, limit, "inputs[0].shape[0]")
    spec.check_length(width, "inputs[0].shape[1]")
    return rows, width


def _v2_flat_data(data: list[Any]) -> list[Any]:
    # The protocol allows row-major data flat or nested by row.
    if data and all(isinstance(row, list) for row in data):
        return [value for row in data for value in row]
    return data


@_router.post("/v2/repository/index")
async def v2_repository_index(request: Request) -> JSONResponse:
    body = _object(await _read_json(request, optional=True), "body")
    only_ready = body.get("ready") is True
    loaded = set(_runtime(request).loaded_names)
    index = [
        {
            "name": name,
            "version": _VERSION,
            "state": "READY" if name in loaded else "UNAVAILABLE",
            "reason": "" if name in loaded else "unloaded",
        }
        for name in REGISTRY
        if name in loaded or not only_ready
    ]
    return JSONResponse(index)


@_router.post("/v2/repository/models/{name}/load", dependencies=_MANAGE)
async def v2_repository_load(name: str, request: Request) -> JSONResponse:
    return await _load(request, name)


@_router.post("/v2/repository/models/{name}/unload", dependencies=_MANAGE)
async def v2_repository_unload(name: str, request: Request) -> JSONResponse:
    return await _unload(request, name)


# --- the OpenAPI document -----------------------------------------------------------------
# The routes parse their bodies themselves (see the module docstring), so FastAPI knows
# nothing of them: the request bodies and model names are described here, from the registry
# and the settings, for clients and for the fuzz tests that generate requests from them.


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        document = get_openapi(title=app.title, version=app.version, routes=app.routes)
        settings: Settings = app.state.settings
        for (path, method), body in _request_bodies(settings.max_examples).items():
            document["paths"][path][method]["requestBody"] = body
        for operations in document["paths"].values():
            for operation in operations.values():
                for parameter in operation.get("parameters", ()):
                    if parameter["in"] == "path" and parameter["name"] == "name":
                        parameter["schema"] = {"type": "string", "enum": list(REGISTRY)}
        app.openapi_schema = document
    return app.openapi_schema


def _request_bodies(max_examples: int) -> dict[tuple[str, str], dict[str, Any]]:
    name = {"type": "object", "required": ["name"], "properties": {"name": _model_names()}}
    return {
        ("/predict", "post"): _json_body(_predict_schema(max_examples)),
        ("/models/load", "post"): _json_body(name),
        ("/models/unload", "post"): _json_body(name),
        ("/v2/models/{name}/infer", "post"): _json_body(_v2_infer_schema(max_examples)),
        ("/v2/repository/index", "post"): _json_body(
            {"type": "object", "properties": {"ready": {"type": "boolean"}}}, required=False
        ),
    }


def _json_body(schema: dict[str, Any], *, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _model_names() -> dict[str, Any]:
    return {"type": "string", "enum": list(REGISTRY)}


def _predict_schema(max_examples: int) -> dict[str, Any]:
    return {
        "oneOf": [
            {
                "type": "object",
                "required": ["model", "inputs"],
                "properties": {
                    "model": {"const": spec.name},
                    "inputs": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": max_examples,
                        "items": spec.example_schema(),
                    },
                },
            }
            for spec in REGISTRY.values()
        ]
    }


def _v2_infer_schema(max_examples: int) -> dict[str, Any]:
    # data must hold shape[0] * shape[1] values: beyond JSON Schema, checked by the route.
    value = {"anyOf": [dict(spec.value_schema) for spec in REGISTRY.values()]}
    tensor = {
        "type": "object",
        "required": ["name", "datatype", "shape", "data"],
        "properties": {
            "name": {"const": "input"},
            "datatype": {"enum": sorted({spec.input.datatype for spec in REGISTRY.values()})},
            "shape": {
                "type": "array",
                "prefixItems": [
                    {"type": "integer", "minimum": 1, "maximum": max_examples},
                    {"type": "integer", "minimum": 1},
                ],
                "minItems": 2,
                "maxItems": 2,
            },
            "data": {"type": "array", "items": value},
        },
    }
    return {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "inputs": {"type": "array", "minItems": 1, "maxItems": 1, "items": tensor},
        },
    }
