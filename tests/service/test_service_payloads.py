"""The load generator's request bodies are valid ``/predict`` bodies."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from service.models import get_spec
from service.payloads import encoder_request, mlp_request


@pytest.mark.parametrize(("factory", "model"), [(mlp_request, "mlp"), (encoder_request, "encoder")])
def test_payload_factories_build_valid_predict_bodies(
    factory: Callable[[], dict[str, Any]], model: str
) -> None:
    random.seed(3)
    for _ in range(200):
        body = factory()
        assert body["model"] == model
        (example,) = body["inputs"]
        get_spec(model).check_example(example, "inputs[0]")


def test_encoder_requests_hold_16_to_64_tokens() -> None:
    random.seed(4)
    lengths = {len(encoder_request()["inputs"][0]) for _ in range(500)}
    assert min(lengths) == 16
    assert max(lengths) == 64
