"""The wire contract of ``POST /predict``: tensor shapes and valid random request bodies.

Hard constraint: imports only the standard library. The Locust load generator imports
this module (``json_factory: "service.payloads:mlp_request"`` in thresholds.yaml), and it
must stay free of torch and numpy there.
"""

from __future__ import annotations

import random
from typing import Any

__all__ = [
    "EMBEDDING_DIM",
    "ENCODER_MAX_TOKENS",
    "MLP_CLASSES",
    "MLP_FEATURES",
    "VOCAB_SIZE",
    "encoder_request",
    "mlp_request",
]

MLP_FEATURES = 64
MLP_CLASSES = 10
VOCAB_SIZE = 30522
ENCODER_MAX_TOKENS = 128
EMBEDDING_DIM = 384

# Load scenarios send short, varied sequences: long enough that padding matters when
# the batcher groups them, short enough that one request stays cheap.
_ENCODER_TOKENS = (16, 64)


def mlp_request() -> dict[str, Any]:
    """A valid ``/predict`` body for ``mlp``: one example of 64 floats in [-1, 1)."""
    example = [random.uniform(-1.0, 1.0) for _ in range(MLP_FEATURES)]
    return {"model": "mlp", "inputs": [example]}


def encoder_request() -> dict[str, Any]:
    """A valid ``/predict`` body for ``encoder``: one sequence of 16 to 64 token ids."""
    length = random.randint(*_ENCODER_TOKENS)
    example = [random.randrange(VOCAB_SIZE) for _ in range(length)]
    return {"model": "encoder", "inputs": [example]}
