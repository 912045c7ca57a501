"""Bad input on every endpoint that takes a body: each gets a 4xx whose message names the
field (or header) and the value. Complements test_service_api, which covers /predict's
field-by-field checks, malformed JSON and the size limit of /predict.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from service_harness import AsgiService

from service.payloads import MLP_FEATURES

MakeService = Callable[..., AsgiService]

MLP_EXAMPLE = [0.25] * MLP_FEATURES
MLP_JSON = f'{{"model": "mlp", "inputs": [[{", ".join(map(str, MLP_EXAMPLE))}]]}}'
BODY_ROUTES = ["/predict", "/models/load", "/v2/models/mlp/infer", "/v2/repository/index"]


def v2_body(datatype: str, shape: list[Any], data: list[Any]) -> dict[str, Any]:
    return {"inputs": [{"name": "input", "datatype": datatype, "shape": shape, "data": data}]}


# --- content types ------------------------------------------------------------------------


@pytest.mark.parametrize("route", BODY_ROUTES)
@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/xml", "image/png"],
)
def test_a_body_declared_as_anything_but_json_is_415_naming_the_header(
    service: AsgiService, route: str, content_type: str
) -> None:
    answer = service.post(route, content=MLP_JSON, headers={"content-type": content_type})
    assert answer.status_code == 415
    assert answer.json() == {
        "error": f"Content-Type: expected application/json, got {content_type!r}"
    }


def test_form_data_is_415(service: AsgiService) -> None:
    form = service.post("/predict", data={"model": "mlp"})
    assert (form.status_code, form.json()["error"]) == (
        415,
        "Content-Type: expected application/json, got 'application/x-www-form-urlencoded'",
    )
    multipart = service.post("/predict", files={"inputs": ("x.json", MLP_JSON.encode())})
    assert multipart.status_code == 415
    assert multipart.json()["error"].startswith(
        "Content-Type: expected application/json, got 'multipart/form-data; boundary="
    )


@pytest.mark.parametrize(
    "content_type",
    [None, "application/json", "application/json; charset=utf-8", "application/vnd.x+json"],
)
def test_json_bodies_are_served_with_or_without_a_json_content_type(
    service: AsgiService, content_type: str | None
) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    assert service.post("/predict", content=MLP_JSON, headers=headers).status_code == 200


def test_a_route_without_a_body_ignores_the_content_type(service: AsgiService) -> None:
    answer = service.post("/models/mlp/load", headers={"content-type": "text/plain"})
    assert answer.status_code == 200


# --- size and nesting ---------------------------------------------------------------------


@pytest.mark.parametrize("route", BODY_ROUTES)
def test_a_huge_body_is_413_on_every_route_that_reads_one(
    make_service: MakeService, route: str
) -> None:
    running = make_service(max_body_bytes=10_000)
    answer = running.post(route, content=b"[" + b"1," * 20_000 + b"1]")
    assert (answer.status_code, answer.json()) == (
        413,
        {"error": "body: 40003 bytes is over the limit of 10000 bytes"},
    )


@pytest.mark.parametrize("route", BODY_ROUTES)
def test_nesting_beyond_the_parser_is_400_on_every_route(service: AsgiService, route: str) -> None:
    answer = service.post(route, content=b'{"inputs": ' + b"[" * 50_000 + b"]" * 50_000 + b"}")
    assert (answer.status_code, answer.json()) == (
        400,
        {"error": "body: malformed JSON: nested too deeply"},
    )


@pytest.mark.parametrize(
    ("route", "prefix", "message"),
    [
        ("/predict", '{"model": "mlp", "inputs": [', "inputs[0]: expected 64 numbers, got 1"),
        ("/predict", '{"model": ', "model: expected a string, got [[[[[[["),
        ("/models/load", '{"name": ', "name: expected a string, got [[[[[[["),
        (
            "/v2/models/mlp/infer",
            '{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64], "data": ',
            "inputs[0].data: expected 64 values for shape [1, 64], got 1",
        ),
    ],
)
def test_deep_nesting_inside_a_field_is_422_naming_it(
    service: AsgiService, route: str, prefix: str, message: str
) -> None:
    nested = "[" * 500 + "]" * 500  # deep, yet within what the parser takes
    suffix = "]}" if prefix.endswith("[") else ("}]}" if "data" in prefix else "}")
    answer = service.post(route, content=prefix + nested + suffix)
    assert answer.status_code == 422
    assert answer.json()["error"].startswith(message)


# --- NaN, Infinity and numbers out of range -----------------------------------------------


@pytest.mark.parametrize(
    ("literal", "shown"), [("NaN", "nan"), ("Infinity", "inf"), ("1e400", "inf")]
)
def test_non_finite_numbers_are_422_in_v2_tensors(
    service: AsgiService, literal: str, shown: str
) -> None:
    values = ", ".join([*map(str, MLP_EXAMPLE[:3]), literal, *map(str, MLP_EXAMPLE[4:])])
    content = (
        '{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64], '
        f'"data": [{values}]}}]}}'
    )
    answer = service.post("/v2/models/mlp/infer", content=content)
    assert (answer.status_code, answer.json()) == (
        422,
        {"error": f"inputs[0].data[3]: expected a finite float32 number, got {shown}"},
    )


def test_1e400_is_422_in_predict(service: AsgiService) -> None:
    content = MLP_JSON.replace("[[0.25,", "[[1e400,", 1)
    answer = service.post("/predict", content=content)
    assert answer.json() == {"error": "inputs[0][0]: expected a finite float32 number, got inf"}


@pytest.mark.parametrize(
    ("literal", "message"),
    [
        ("NaN", "inputs[0][1]: expected an integer token id, got nan"),
        ("-Infinity", "inputs[0][1]: expected an integer token id, got -inf"),
        ("1e400", "inputs[0][1]: expected an integer token id, got inf"),
        ("-1", "inputs[0][1]: token id -1 is out of range 0..30521"),
        ("9223372036854775808", "inputs[0][1]: token id 9223372036854775808 is out of range"),
        ("-9223372036854775809", "inputs[0][1]: token id -9223372036854775809 is out of range"),
        ("1e30", "inputs[0][1]: token id 1000000000000000019884624838656 is out of range"),
        ("true", "inputs[0][1]: expected an integer token id, got True"),
        ('"7"', "inputs[0][1]: expected an integer token id, got '7'"),
    ],
)
def test_bad_token_ids_are_422_naming_the_position(
    service: AsgiService, literal: str, message: str
) -> None:
    answer = service.post("/predict", content=f'{{"model": "encoder", "inputs": [[5, {literal}]]}}')
    assert answer.status_code == 422
    assert answer.json()["error"].startswith(message)


def test_token_ids_written_as_integral_floats_are_the_same_ids(service: AsgiService) -> None:
    # JSON has one number type; JSON Schema (and /openapi.json) calls 5.0 an integer.
    as_ints = service.post("/predict", json={"model": "encoder", "inputs": [[5, 6, 7]]})
    as_floats = service.post("/predict", content=b'{"model": "encoder", "inputs": [[5.0, 6e0, 7]]}')
    assert as_floats.status_code == 200
    assert as_floats.json() == as_ints.json()


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ([1, -3], "inputs[0].shape[1]: expected 1 to 128 token ids, got -3"),
        ([-1, 3], "inputs[0].shape[0]: expected at least 1 example, got 0"),
        ([1.0, 3], "inputs[0].shape: expected [examples, token ids per example], got [1.0, 3]"),
        ([2**64, 3], "inputs[0].shape[0]: at most 64 examples per request, got 18446744073709"),
    ],
)
def test_bad_v2_shapes_are_422_naming_the_dimension(
    service: AsgiService, shape: list[Any], message: str
) -> None:
    answer = service.post("/v2/models/encoder/infer", json=v2_body("INT64", shape, [1, 2, 3]))
    assert answer.status_code == 422
    assert answer.json()["error"].startswith(message)


# --- unknown models and wrong types of names ----------------------------------------------


@pytest.mark.parametrize(
    ("name", "status", "message"),
    [
        ("", 404, "unknown model ''; registered models: mlp, encoder"),
        ("MLP", 404, "unknown model 'MLP'; registered models: mlp, encoder"),
        ("a" * 10_000, 404, "unknown model 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...; registered"),
        (None, 422, "model: expected a string, got None"),
        (["mlp"], 422, "model: expected a string, got ['mlp']"),
        ({"name": "mlp"}, 422, "model: expected a string, got {'name': 'mlp'}"),
    ],
)
def test_unknown_or_mistyped_model_names_are_refused_naming_the_field(
    service: AsgiService, name: Any, status: int, message: str
) -> None:
    answer = service.post("/predict", json={"model": name, "inputs": [MLP_EXAMPLE]})
    assert answer.status_code == status
    assert answer.json()["error"].startswith(message)
    assert len(answer.text) < 200  # a long name is not echoed back whole


def test_an_unknown_model_in_a_v2_path_is_404_on_every_v2_route(service: AsgiService) -> None:
    for method, path in [
        ("GET", "/v2/models/gpt"),
        ("GET", "/v2/models/gpt/ready"),
        ("POST", "/v2/models/gpt/infer"),
        ("POST", "/v2/repository/models/gpt/load"),
        ("POST", "/v2/repository/models/gpt/unload"),
    ]:
        answer = service.request(method, path, json=v2_body("FP32", [1, 64], MLP_EXAMPLE))
        assert (answer.status_code, answer.json()) == (
            404,
            {"error": "unknown model 'gpt'; registered models: mlp, encoder"},
        ), path
