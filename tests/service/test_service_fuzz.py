"""Property-based fuzzing of every endpoint, in-process (ASGI): no request gets a 5xx.

Requests come from two sources: schemathesis, which reads the service's own
``/openapi.json`` and generates valid (positive) and invalid (negative) requests for each
operation, and strategies of this module's own for what an OpenAPI document cannot
describe: any JSON value, any bytes, any Content-Type. After each test the service must
still answer fixed inputs exactly as it did before any fuzzing.

Every request sent is counted in ``SENT``; the last test checks the total (at least
``MIN_REQUESTS``) when the whole module ran in this process. Hypothesis keeps no example
database (``database=None``), and its other files go to a temporary directory (conftest).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode
from service_harness import FAST, AsgiService, asgi_service

from service.app import create_app
from service.models import REGISTRY
from service.payloads import MLP_FEATURES

MIN_REQUESTS = 1000
SENT: Counter[str] = Counter()  # requests sent, by fuzz test (see fuzz_tests)
FUZZ = settings(
    max_examples=40,
    deadline=None,
    database=None,
    # Inference makes some examples slow; big generated bodies are the point here.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# At most 4 examples a request (/openapi.json says so too): bodies stay quick to serve.
FUZZED = replace(FAST, max_queue_delay_ms=1.0, max_examples=4)
FIXED = {
    "mlp": {"model": "mlp", "inputs": [[0.01 * j for j in range(MLP_FEATURES)]]},
    "encoder": {"model": "encoder", "inputs": [[101, 2023, 2003, 1037, 3231, 102]]},
}
# 503 is how readiness endpoints say "not ready" (a model the fuzzer unloaded).
READINESS = {"/ready", "/v2/health/ready", "/v2/models/{name}/ready"}


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[AsgiService]:
    """An app of its own: the fuzzer unloads and loads models."""
    with asgi_service(FUZZED) as running:
        yield running


@pytest.fixture(scope="module")
def reference(fuzzed: AsgiService) -> dict[str, Any]:
    """The outputs for fixed inputs before any fuzzing."""
    return {name: fuzzed.post("/predict", json=body).json() for name, body in FIXED.items()}


def openapi_operations() -> list[Any]:
    # The document needs no running app: building one is enough (no lifespan, no model).
    schema = schemathesis.openapi.from_dict(create_app(FUZZED).openapi())
    return [result.ok() for result in schema.get_all_operations()]


OPERATIONS = openapi_operations()


def generation_cases() -> list[Any]:
    cases = []
    for operation in OPERATIONS:
        modes = [GenerationMode.POSITIVE]
        # An operation without parameters or body has no invalid form to generate.
        if operation.body or any(True for _ in operation.iter_parameters()):
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:
            label = f"{operation.method.upper()} {operation.path} {mode.value}"
            cases.append(pytest.param(operation, mode, id=label))
    return cases


CASES = generation_cases()


def send(running: AsgiService, request_id: str, **kwargs: Any) -> httpx.Response | None:
    """Send one generated request; None when httpx itself cannot encode it (bad headers)."""
    try:
        answer = running.request(**kwargs)
    except (httpx.LocalProtocolError, UnicodeEncodeError, ValueError, TypeError):
        return None
    SENT[request_id] += 1
    return answer


def check_answer(answer: httpx.Response, route: str) -> None:
    """No 5xx (readiness's 503 apart), and every error in the service's one error shape."""
    if route in READINESS and answer.status_code == 503:
        assert answer.json()["ready"] is False
        return
    assert answer.status_code < 500, f"{answer.status_code} {answer.text[:500]}"
    if answer.status_code >= 400:
        body = answer.json()
        assert set(body) == {"error"}, body
        if route.startswith("/v1/"):  # OpenAI-compatible routes: OpenAI's error body
            assert set(body["error"]) == {"message", "type", "param", "code"}, body
            assert isinstance(body["error"]["message"], str) and body["error"]["message"]
            return
        assert isinstance(body["error"], str) and body["error"]


def assert_still_serving(running: AsgiService, reference: dict[str, Any]) -> None:
    """Models reloaded where the fuzzer unloaded them, fixed inputs answer as before."""
    for name in REGISTRY:
        assert running.post("/models/load", json={"name": name}).status_code == 200
    assert running.get("/health").json()["status"] == "ok"
    for name, body in FIXED.items():
        assert running.post("/predict", json=body).json() == reference[name]


def test_the_openapi_document_describes_the_bodies_and_the_security_schemes(
    fuzzed: AsgiService,
) -> None:
    document = fuzzed.get("/openapi.json").json()
    paths = document["paths"]
    predict = paths["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert [variant["properties"]["model"] for variant in predict["oneOf"]] == [
        {"const": "mlp"},
        {"const": "encoder"},
    ]
    assert predict["oneOf"][0]["properties"]["inputs"]["maxItems"] == FUZZED.max_examples
    assert set(document["components"]["securitySchemes"]) == {"APIKeyHeader", "HTTPBearer"}
    guarded = {path for path, ops in paths.items() if "security" in ops.get("post", {})}
    assert guarded == {
        "/predict",
        "/models/load",
        "/models/unload",
        "/models/{name}/load",
        "/models/{name}/unload",
        "/v2/models/{name}/infer",
        "/v2/repository/models/{name}/load",
        "/v2/repository/models/{name}/unload",
    }


@pytest.mark.parametrize(("operation", "mode"), CASES)
def test_generated_requests_from_the_openapi_document_never_get_a_5xx(
    fuzzed: AsgiService, reference: dict[str, Any], operation: Any, mode: GenerationMode
) -> None:
    label = f"{operation.method.upper()} {operation.path} {mode.value}"

    @FUZZ
    @given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case: Any) -> None:
        kwargs = case.as_transport_kwargs(base_url="http://service")
        data = kwargs.pop("data", None)
        kwargs.pop("cookies", None)
        if data is not None:
            kwargs["content"] = data if isinstance(data, bytes) else str(data).encode()
        if (answer := send(fuzzed, label, **kwargs)) is not None:
            check_answer(answer, operation.path)
            if mode is GenerationMode.POSITIVE and operation.path == "/predict":
                check_positive_prediction(case.body, answer)

    fuzz()
    assert SENT[label] >= 1
    assert_still_serving(fuzzed, reference)


def check_positive_prediction(body: dict[str, Any], answer: httpx.Response) -> None:
    """A valid body is served (or its model was unloaded by an earlier example)."""
    assert answer.status_code in (200, 409), answer.text[:500]
    if answer.status_code == 200:
        outputs = answer.json()["outputs"]
        assert len(outputs) == len(body["inputs"])
        assert all(math.isfinite(value) for row in outputs for value in row)


# --- what the OpenAPI document cannot describe --------------------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and the infinities too: json.dumps writes them as literals
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=6)
        | st.dictionaries(st.sampled_from(["model", "inputs", "name", "ready", "x"]), children)
    ),
    max_leaves=40,
)
PREDICT_LIKE = st.fixed_dictionaries(
    {"model": st.sampled_from([*REGISTRY, "../x", "http://127.0.0.1:9/x.pt"])},
    optional={"inputs": JSON_VALUES},
)
POST_ROUTES = [
    "/predict",
    "/models/load",
    "/models/unload",
    "/v2/models/mlp/infer",
    "/v2/models/encoder/infer",
    "/v2/repository/index",
]
CONTENT_TYPES = st.sampled_from(
    [
        None,
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/octet-stream",
        "",
    ]
)


@pytest.mark.parametrize("route", POST_ROUTES)
@FUZZ
@given(body=JSON_VALUES | PREDICT_LIKE, content_type=CONTENT_TYPES)
def test_any_json_value_with_any_content_type_gets_an_answer_below_500(
    fuzzed: AsgiService, route: str, body: Any, content_type: str | None
) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    content = json.dumps(body).encode()
    answer = send(
        fuzzed, f"json {route}", method="POST", url=route, content=content, headers=headers
    )
    assert answer is not None
    check_answer(answer, route)


@pytest.mark.parametrize("route", POST_ROUTES)
@FUZZ
@given(content=st.binary(max_size=200))
def test_any_bytes_get_an_answer_below_500(fuzzed: AsgiService, route: str, content: bytes) -> None:
    answer = send(fuzzed, f"bytes {route}", method="POST", url=route, content=content)
    assert answer is not None
    check_answer(answer, route)


def test_the_service_answers_fixed_inputs_as_before_after_all_the_fuzzing(
    fuzzed: AsgiService, reference: dict[str, Any]
) -> None:
    assert_still_serving(fuzzed, reference)


def test_the_fuzz_tests_sent_at_least_1000_requests_in_all() -> None:
    fuzz_tests = {
        *(case.id for case in CASES),
        *(f"{kind} {route}" for kind in ("json", "bytes") for route in POST_ROUTES),
    }
    if missing := fuzz_tests - set(SENT):
        # -k, -x or xdist: the total of a part says nothing
        pytest.skip(f"counts only when every fuzz test ran in this process; missing {missing}")
    total = sum(SENT.values())
    assert total >= MIN_REQUESTS, f"{total} requests: {dict(SENT)}"
