"""The HTTP API in-process (ASGI): every endpoint, every error path, the queue bound."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from service_harness import AsgiService, Call, sample_value

from service.payloads import EMBEDDING_DIM, MLP_CLASSES, MLP_FEATURES

MakeService = Callable[..., AsgiService]

MLP_EXAMPLE = [0.01 * j for j in range(MLP_FEATURES)]
SEQUENCES = [[7, 8, 9], list(range(1, 41)), [30521], list(range(100, 164))]


def mlp_body(count: int = 1) -> dict[str, Any]:
    return {"model": "mlp", "inputs": [MLP_EXAMPLE] * count}


# --- health, readiness, metrics -----------------------------------------------------------


def test_health_reports_status_device_and_loaded_models(service: AsgiService) -> None:
    answer = service.get("/health")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "device": "cpu", "models": ["mlp", "encoder"]}


def test_ready_answers_503_until_the_default_models_are_warmed_up(
    make_service: MakeService,
) -> None:
    running = make_service(models=("encoder",), warmup=True, wait=False)
    first = running.get("/ready")
    assert (first.status_code, first.json()) == (503, {"ready": False})
    assert running.get("/health").status_code == 200  # alive while it loads
    later = running.until_ready()
    assert (later.status_code, later.json()) == (200, {"ready": True})


def test_a_request_during_start_up_waits_for_its_model(make_service: MakeService) -> None:
    # With several workers, /ready may come from one while another still loads.
    running = make_service(models=("encoder",), warmup=True, wait=False)
    answer = running.post("/predict", json={"model": "encoder", "inputs": [[1, 2, 3]]})
    assert answer.status_code == 200
    assert running.get("/ready").status_code == 200


def test_ready_says_why_the_default_models_failed_to_load(
    make_service: MakeService, tmp_path: Path
) -> None:
    weights = tmp_path / "wrong.pt"
    torch.save({"not.a.layer": torch.zeros(1)}, weights)
    running = make_service(weights=(("mlp", str(weights)),), wait=False)
    answer = running.until_ready()
    assert answer.status_code == 503
    assert answer.json()["error"].startswith(
        f"loading the default models failed: {weights}: does not fit architecture 'mlp'"
    )
    assert running.get("/health").json()["models"] == []


def test_metrics_parse_and_their_counters_move(service: AsgiService) -> None:
    before = service.get("/metrics")
    assert before.status_code == 200
    assert before.headers["content-type"].startswith("text/plain")
    assert service.post("/predict", json=mlp_body(3)).status_code == 200
    after = service.get("/metrics").text

    def moved(name: str, **labels: str) -> float:
        return sample_value(after, name, **labels) - sample_value(before.text, name, **labels)

    assert moved("service_requests_total", endpoint="/predict", status="200") == 1
    assert moved("service_request_duration_seconds_count", endpoint="/predict") == 1
    assert moved("service_queue_time_seconds_count", model="mlp") == 1
    assert moved("service_compute_time_seconds_count", model="mlp") == 1
    assert moved("service_compute_time_seconds_sum", model="mlp") > 0
    assert moved("service_batch_size_sum", model="mlp") == 3
    assert sample_value(after, "service_models_loaded", model="encoder") == 1
    assert sample_value(after, "service_process_resident_memory_bytes") > 10_000_000
    assert sample_value(after, "service_process_cpu_seconds") > 0


def test_metrics_label_unknown_paths_as_unmatched(service: AsgiService) -> None:
    assert service.get("/no/such/path/12345").status_code == 404
    text = service.get("/metrics").text
    assert sample_value(text, "service_requests_total", endpoint="unmatched", status="404") >= 1
    assert "/no/such/path/12345" not in text


# --- models -------------------------------------------------------------------------------


def test_models_lists_every_registered_model_with_its_state(service: AsgiService) -> None:
    models = {model["name"]: model for model in service.get("/models").json()["models"]}
    assert set(models) == {"mlp", "encoder"}
    assert models["mlp"]["loaded"] is True
    assert models["mlp"]["device"] == "cpu"
    assert models["mlp"]["dtype"] == "float32"
    assert models["mlp"]["max_batch_size"] == 32
    assert models["encoder"]["outputs"] == [
        {"name": "output", "datatype": "FP32", "shape": [-1, EMBEDDING_DIM]}
    ]


def test_loading_a_loaded_model_answers_200_and_changes_nothing(service: AsgiService) -> None:
    first = service.post("/models/load", json={"name": "mlp"})
    second = service.post("/models/load", json={"name": "mlp"})
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json()["loaded"] is True
    assert second.json()["changed"] is False


def test_an_unloaded_model_is_refused_with_409_until_loaded_again(
    make_service: MakeService,
) -> None:
    running = make_service()
    unloaded = running.post("/models/unload", json={"name": "mlp"})
    assert (unloaded.status_code, unloaded.json()["changed"]) == (200, True)
    assert running.post("/models/unload", json={"name": "mlp"}).json()["changed"] is False
    refused = running.post("/predict", json=mlp_body())
    assert refused.status_code == 409
    assert "model 'mlp' is not loaded" in refused.json()["error"]
    assert running.get("/health").json()["models"] == []
    assert running.post("/models/load", json={"name": "mlp"}).json()["changed"] is True
    assert running.post("/predict", json=mlp_body()).status_code == 200


def test_models_load_and_unload_by_path(make_service: MakeService) -> None:
    running = make_service()
    assert running.post("/models/encoder/load").json()["loaded"] is True
    assert running.get("/health").json()["models"] == ["mlp", "encoder"]
    assert running.post("/models/encoder/unload").json()["loaded"] is False


@pytest.mark.parametrize(
    "path", ["/models/load", "/models/unload", "/models/gpt/load", "/models/gpt/unload"]
)
def test_managing_an_unknown_model_is_404_naming_it(service: AsgiService, path: str) -> None:
    answer = service.post(path, json={"name": "gpt"})
    assert answer.status_code == 404
    assert answer.json()["error"] == "unknown model 'gpt'; registered models: mlp, encoder"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "name: required field is missing"),
        ({"name": 3}, "name: expected a string, got 3"),
        ([], "body: expected a JSON object, got []"),
    ],
)
def test_models_load_rejects_a_body_without_a_name(
    service: AsgiService, body: Any, message: str
) -> None:
    answer = service.post("/models/load", json=body)
    assert (answer.status_code, answer.json()) == (422, {"error": message})


# --- predict ------------------------------------------------------------------------------


def test_predict_mlp_returns_one_probability_row_per_example(service: AsgiService) -> None:
    answer = service.post("/predict", json=mlp_body(2))
    assert answer.status_code == 200
    body = answer.json()
    assert body["model"] == "mlp"
    assert len(body["outputs"]) == 2
    assert all(len(row) == MLP_CLASSES for row in body["outputs"])
    assert math.isclose(sum(body["outputs"][0]), 1.0, rel_tol=1e-5)


def test_predict_encoder_returns_one_embedding_per_sequence(service: AsgiService) -> None:
    answer = service.post("/predict", json={"model": "encoder", "inputs": SEQUENCES})
    assert answer.status_code == 200
    outputs = answer.json()["outputs"]
    assert [len(row) for row in outputs] == [EMBEDDING_DIM] * len(SEQUENCES)


def test_batched_outputs_equal_unbatched_outputs(service: AsgiService) -> None:
    together = service.post("/predict", json={"model": "encoder", "inputs": SEQUENCES})
    alone = [
        service.post("/predict", json={"model": "encoder", "inputs": [sequence]}).json()
        for sequence in SEQUENCES
    ]
    concurrent = service.concurrently(
        [Call("POST", "/predict", {"model": "encoder", "inputs": [s]}) for s in SEQUENCES]
    )
    expected = torch.tensor([answer["outputs"][0] for answer in alone])
    for answer in (together.json()["outputs"], [c.json()["outputs"][0] for c in concurrent]):
        torch.testing.assert_close(torch.tensor(answer), expected, atol=1e-4, rtol=1e-4)


def test_concurrent_requests_share_forward_passes(make_service: MakeService) -> None:
    running = make_service(max_queue_delay_ms=200)
    answers = running.concurrently([Call("POST", "/predict", mlp_body())] * 8)
    assert [answer.status_code for answer in answers] == [200] * 8
    text = running.get("/metrics").text
    # Other tests' apps share this process's metrics: the largest batch shows batching.
    assert sample_value(text, "service_batch_size_bucket", model="mlp", le="4.0") < sample_value(
        text, "service_batch_size_bucket", model="mlp", le="8.0"
    )


TOO_MANY = {"model": "mlp", "inputs": [MLP_EXAMPLE] * 65}


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ([1, 2], 422, "body: expected a JSON object, got [1, 2]"),
        ({"inputs": []}, 422, "model: required field is missing"),
        ({"model": 3, "inputs": []}, 422, "model: expected a string, got 3"),
        (
            {"model": "gpt", "inputs": []},
            404,
            "unknown model 'gpt'; registered models: mlp, encoder",
        ),
        ({"model": "mlp"}, 422, "inputs: required field is missing"),
        ({"model": "mlp", "inputs": "x"}, 422, "inputs: expected a list of examples, got 'x'"),
        ({"model": "mlp", "inputs": []}, 422, "inputs: expected at least 1 example, got 0"),
        (TOO_MANY, 422, "inputs: at most 64 examples per request, got 65"),
        ({"model": "mlp", "inputs": [5]}, 422, "inputs[0]: expected a list of numbers, got 5"),
        (
            {"model": "mlp", "inputs": [MLP_EXAMPLE, MLP_EXAMPLE[:63]]},
            422,
            "inputs[1]: expected 64 numbers, got 63",
        ),
        (
            {"model": "mlp", "inputs": [[*MLP_EXAMPLE[:5], "x", *MLP_EXAMPLE[6:]]]},
            422,
            "inputs[0][5]: expected a number, got 'x'",
        ),
        (
            {"model": "mlp", "inputs": [[True, *MLP_EXAMPLE[1:]]]},
            422,
            "inputs[0][0]: expected a number, got True",
        ),
        (
            {"model": "mlp", "inputs": [[1e39, *MLP_EXAMPLE[1:]]]},
            422,
            "inputs[0][0]: expected a finite float32 number, got 1e+39",
        ),
        (
            {"model": "encoder", "inputs": [[1, 2, 30522]]},
            422,
            "inputs[0][2]: token id 30522 is out of range 0..30521",
        ),
        (
            {"model": "encoder", "inputs": [[1], [-1]]},
            422,
            "inputs[1][0]: token id -1 is out of range 0..30521",
        ),
        (
            {"model": "encoder", "inputs": [[1, 1.5]]},
            422,
            "inputs[0][1]: expected an integer token id, got 1.5",
        ),
        (
            {"model": "encoder", "inputs": [[1] * 129]},
            422,
            "inputs[0]: expected 1 to 128 token ids, got 129",
        ),
        (
            {"model": "encoder", "inputs": [[]]},
            422,
            "inputs[0]: expected 1 to 128 token ids, got 0",
        ),
    ],
)
def test_predict_rejects_bad_input_naming_the_field_and_value(
    service: AsgiService, body: Any, status: int, message: str
) -> None:
    answer = service.post("/predict", json=body)
    assert (answer.status_code, answer.json()) == (status, {"error": message})


@pytest.mark.parametrize(
    ("constant", "shown"),
    [("NaN", "nan"), ("Infinity", "inf"), ("-Infinity", "-inf"), ("1e999", "inf")],
)
def test_predict_rejects_non_finite_floats(service: AsgiService, constant: str, shown: str) -> None:
    values = ", ".join([constant, *map(str, MLP_EXAMPLE[1:])])
    content = f'{{"model": "mlp", "inputs": [[{values}]]}}'
    answer = service.post("/predict", content=content)
    assert answer.status_code == 422
    assert answer.json() == {
        "error": f"inputs[0][0]: expected a finite float32 number, got {shown}"
    }


@pytest.mark.parametrize(
    "content",
    [
        b'{"model": "mlp", "inputs": [[',
        b"\xff\xfe",
        b"",
        b"[" * 100_000 + b"]" * 100_000,  # deeper than the recursion limit
        b'{"model": "mlp", "inputs": [[' + b"9" * 5000 + b"]]}",  # past int conversion limit
    ],
    ids=["truncated", "not-utf8", "empty", "deep", "huge-int"],
)
def test_predict_rejects_malformed_json_with_400(service: AsgiService, content: bytes) -> None:
    answer = service.post("/predict", content=content)
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("body: malformed JSON: ")


def test_predict_rejects_a_body_over_the_size_limit_before_parsing(
    make_service: MakeService,
) -> None:
    running = make_service(max_body_bytes=1000)
    declared = running.post("/predict", content=b"x" * 1001)
    assert (declared.status_code, declared.json()) == (
        413,
        {"error": "body: 1001 bytes is over the limit of 1000 bytes"},
    )
    streamed = running.post("/predict", content=_chunks(b"x" * 600, b"x" * 600))
    assert streamed.status_code == 413
    assert running.post("/predict", json=mlp_body(1)).status_code == 200  # under the limit
    assert running.post("/predict", json=mlp_body(4)).status_code == 413


async def _chunks(*chunks: bytes) -> AsyncIterator[bytes]:
    """A body without Content-Length: the limit is checked as it arrives."""
    for chunk in chunks:
        yield chunk


def test_the_service_keeps_serving_after_bad_requests(service: AsgiService) -> None:
    for content in (b"{", b"[]", b'{"model": "mlp", "inputs": [[1e999]]}'):
        assert service.post("/predict", content=content).status_code in (400, 422)
    assert service.post("/predict", json=mlp_body()).status_code == 200


def test_unknown_routes_and_methods_answer_json_errors(service: AsgiService) -> None:
    missing = service.get("/nope")
    assert (missing.status_code, missing.json()) == (404, {"error": "Not Found: GET /nope"})
    wrong = service.get("/predict")
    assert (wrong.status_code, wrong.json()) == (
        405,
        {"error": "Method Not Allowed: GET /predict"},
    )


# --- backpressure -------------------------------------------------------------------------


def test_a_full_queue_answers_503_with_retry_after(make_service: MakeService) -> None:
    # The first request waits up to 1 s for a batch that cannot fill: the queue stays full.
    running = make_service(max_queue=2, max_queue_delay_ms=1000)
    labels = {"model": "mlp", "reason": "queue_full"}
    before = sample_value(running.get("/metrics").text, "service_rejected_requests_total", **labels)
    answers = running.concurrently([Call("POST", "/predict", mlp_body())] * 10)
    busy = [answer for answer in answers if answer.status_code == 503]
    assert len(busy) + 2 == len(answers)  # all but the two that fit
    assert {answer.status_code for answer in answers} == {200, 503}
    assert {answer.headers["retry-after"] for answer in busy} == {"1"}
    assert busy[0].json()["error"] == (
        "server busy: the queue of model 'mlp' is full (2 examples waiting, limit 2); "
        "retry after 1 s"
    )
    after = sample_value(running.get("/metrics").text, "service_rejected_requests_total", **labels)
    assert after - before == len(busy)
    assert running.post("/predict", json=mlp_body()).status_code == 200  # it recovers


def test_a_request_past_the_timeout_answers_504(make_service: MakeService) -> None:
    running = make_service(request_timeout_s=0.2, max_queue_delay_ms=2000)
    before = sample_value(
        running.get("/metrics").text, "service_request_timeouts_total", model="mlp"
    )
    answer = running.post("/predict", json=mlp_body())
    assert answer.status_code == 504
    assert answer.json()["error"].startswith(
        "model 'mlp' did not answer within the request timeout of 0.2 s"
    )
    after = sample_value(
        running.get("/metrics").text, "service_request_timeouts_total", model="mlp"
    )
    assert after - before == 1
    # The abandoned request gave its queue place back.
    assert running.get("/models").json()["models"][0]["queue_depth"] == 0


# --- Open Inference Protocol v2 -----------------------------------------------------------


def test_v2_health_and_server_metadata(service: AsgiService) -> None:
    assert service.get("/v2/health/live").json() == {"live": True}
    assert service.get("/v2/health/ready").json() == {"ready": True}
    assert service.get("/v2").json()["extensions"] == ["model_repository"]


def test_v2_model_metadata_names_inputs_and_outputs(service: AsgiService) -> None:
    assert service.get("/v2/models/encoder").json() == {
        "name": "encoder",
        "versions": ["1"],
        "platform": "pytorch",
        "inputs": [{"name": "input", "datatype": "INT64", "shape": [-1, -1]}],
        "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, EMBEDDING_DIM]}],
    }
    assert service.get("/v2/models/gpt").status_code == 404
    assert service.get("/v2/models/mlp/ready").json() == {"name": "mlp", "ready": True}


def test_v2_infer_matches_predict(service: AsgiService) -> None:
    flat = [value for row in [MLP_EXAMPLE, MLP_EXAMPLE] for value in row]
    tensor = {"name": "input", "shape": [2, MLP_FEATURES], "datatype": "FP32", "data": flat}
    answer = service.post("/v2/models/mlp/infer", json={"id": "r1", "inputs": [tensor]})
    assert answer.status_code == 200
    body = answer.json()
    assert (body["model_name"], body["id"]) == ("mlp", "r1")
    (output,) = body["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("output", "FP32", [2, 10])
    expected = service.post("/predict", json=mlp_body(2)).json()["outputs"]
    torch.testing.assert_close(torch.tensor(output["data"]).view(2, 10), torch.tensor(expected))


def test_v2_infer_takes_int64_token_ids_flat_or_nested(service: AsgiService) -> None:
    rows = [[1, 2, 3, 4], [5, 6, 7, 8]]
    for data in (rows, [value for row in rows for value in row]):
        tensor = {"name": "input", "shape": [2, 4], "datatype": "INT64", "data": data}
        answer = service.post("/v2/models/encoder/infer", json={"inputs": [tensor]})
        assert answer.status_code == 200
        assert answer.json()["outputs"][0]["shape"] == [2, EMBEDDING_DIM]


def _tensor(**changes: Any) -> dict[str, Any]:
    tensor = {"name": "input", "shape": [1, 3], "datatype": "INT64", "data": [1, 2, 3]}
    return {"inputs": [{**tensor, **changes}]}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "inputs: required field is missing"),
        ({"inputs": []}, "inputs: expected exactly 1 input tensor, got 0"),
        (_tensor(name="ids"), "inputs[0].name: expected 'input', got 'ids'"),
        (_tensor(datatype="FP32"), "inputs[0].datatype: expected 'INT64', got 'FP32'"),
        (
            _tensor(shape=[3]),
            "inputs[0].shape: expected [examples, token ids per example], got [3]",
        ),
        (_tensor(shape=[1, 129]), "inputs[0].shape[1]: expected 1 to 128 token ids, got 129"),
        (_tensor(shape=[65, 1]), "inputs[0].shape[0]: at most 64 examples per request, got 65"),
        (_tensor(data=[1, 2]), "inputs[0].data: expected 3 values for shape [1, 3], got 2"),
        (_tensor(data=[1, 2, 99999]), "inputs[0].data[2]: token id 99999 is out of range 0..30521"),
        (_tensor(data="abc"), "inputs[0].data: expected a list, got 'abc'"),
    ],
)
def test_v2_infer_rejects_bad_tensors_naming_the_field(
    service: AsgiService, body: Any, message: str
) -> None:
    answer = service.post("/v2/models/encoder/infer", json=body)
    assert (answer.status_code, answer.json()) == (422, {"error": message})


def test_v2_infer_of_an_unknown_model_is_404(service: AsgiService) -> None:
    answer = service.post("/v2/models/gpt/infer", json=_tensor())
    assert answer.status_code == 404
    assert "unknown model 'gpt'" in answer.json()["error"]


def test_v2_repository_lists_loads_and_unloads_models(make_service: MakeService) -> None:
    running = make_service()
    index = running.post("/v2/repository/index").json()
    assert [(entry["name"], entry["state"]) for entry in index] == [
        ("mlp", "READY"),
        ("encoder", "UNAVAILABLE"),
    ]
    assert [
        e["name"] for e in running.post("/v2/repository/index", json={"ready": True}).json()
    ] == ["mlp"]
    assert running.post("/v2/repository/models/encoder/load").status_code == 200
    assert running.get("/v2/models/encoder/ready").json()["ready"] is True
    assert running.post("/v2/repository/models/encoder/unload").status_code == 200
    not_ready = running.get("/v2/models/encoder/ready")
    assert (not_ready.status_code, not_ready.json()["ready"]) == (503, False)


def test_v2_errors_share_the_error_body(service: AsgiService) -> None:
    answer = service.post("/v2/repository/index", content=b"{")
    assert answer.status_code == 400
    assert set(answer.json()) == {"error"}
    assert json.loads(answer.text)["error"].startswith("body: malformed JSON")
