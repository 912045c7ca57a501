"""The reference models' forward pass under pytest-benchmark, judged by ``perf_budget``.

The budgets are loose on purpose (a shared 2-core CI machine): they catch a forward pass
that became an order of magnitude slower, and show how a benchmark gets a budget. The
verdict comes from pytest-benchmark's raw timings with the load tests' statistics.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import torch

from service.models import Placement, build_model, get_spec, run_batch

CPU = Placement(torch.device("cpu"))


def examples(name: str, n: int) -> list[list[float]] | list[list[int]]:
    rng = random.Random(0)
    if name == "mlp":
        return [[rng.uniform(-1, 1) for _ in range(64)] for _ in range(n)]
    return [[rng.randrange(30522) for _ in range(32)] for _ in range(n)]


@pytest.mark.perf_budget(p95_ms=200, max_ms=1000)
def test_the_mlp_forward_pass_of_a_batch_of_32_stays_fast(benchmark: Any) -> None:
    spec = get_spec("mlp")
    module = build_model(spec, CPU)
    batch = examples("mlp", 32)
    rows = benchmark.pedantic(run_batch, args=(spec, module, CPU, batch), rounds=100)
    assert len(rows) == 32 and len(rows[0]) == 10


@pytest.mark.perf_budget(p95_ms=2000, mean_ms=1000)
def test_the_encoder_forward_pass_of_a_batch_of_8_stays_fast(benchmark: Any) -> None:
    spec = get_spec("encoder")
    module = build_model(spec, CPU)
    batch = examples("encoder", 8)
    rows = benchmark.pedantic(run_batch, args=(spec, module, CPU, batch), rounds=100)
    assert len(rows) == 8 and len(rows[0]) == 384
