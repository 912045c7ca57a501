"""Settings and the command line: bad values are refused with the flag or field named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from service_harness import ROOT

from service.__main__ import parse_settings
from service.settings import Settings


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_batch_size", 0, "max_batch_size: expected a value >= 1, got 0"),
        ("workers", True, "workers: expected a number, got True"),
        ("request_timeout_s", 0, "request_timeout_s: expected a value > 0, got 0"),
        ("max_queue_delay_ms", -1, "max_queue_delay_ms: expected a value >= 0, got -1"),
        ("device", "tpu", "device: expected one of auto, cpu, cuda, got 'tpu'"),
        ("dtype", "int8", "dtype: expected one of float32, bfloat16, float16, got 'int8'"),
    ],
)
def test_settings_refuse_bad_values_naming_the_field(
    field: str, value: object, message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        Settings(**{field: value})  # type: ignore[arg-type]
    assert str(caught.value) == message


def test_settings_travel_to_workers_as_json_unchanged() -> None:
    settings = Settings(port=9001, models=("mlp",), weights=(("mlp", "/w.pt"),), workers=3)
    assert Settings.from_json(settings.to_json()) == settings


def test_settings_from_json_refuse_unknown_keys() -> None:
    with pytest.raises(ValueError, match="unknown settings bogus"):
        Settings.from_json('{"bogus": 1}')


def test_the_command_line_sets_every_field(tmp_path: Path) -> None:
    weights = tmp_path / "mlp.pt"
    weights.touch()
    settings = parse_settings(
        [
            "--host", "0.0.0.0", "--port", "9000", "--device", "cpu", "--dtype", "bfloat16",
            "--models", "mlp", "--workers", "2", "--max-batch-size", "8",
            "--max-queue-delay-ms", "2.5", "--max-queue", "16", "--request-timeout", "3",
            "--max-body-bytes", "4096", "--max-examples", "4", "--weights", f"mlp={weights}",
            "--torch-threads", "3", "--no-warmup", "--log-level", "debug", "--access-log",
        ]
    )  # fmt: skip
    assert settings == Settings(
        host="0.0.0.0", port=9000, device="cpu", dtype="bfloat16", models=("mlp",), workers=2,
        max_batch_size=8, max_queue_delay_ms=2.5, max_queue=16, request_timeout_s=3.0,
        max_body_bytes=4096, max_examples=4, weights=(("mlp", str(weights)),),
        torch_threads=3, warmup=False, log_level="debug", access_log=True,
    )  # fmt: skip


def test_the_command_line_defaults_are_the_settings_defaults() -> None:
    assert parse_settings([]) == Settings()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--models", "mlp,gpt"], "--models: unknown model 'gpt'; registered: mlp, encoder"),
        (["--weights", "mlp"], "expected NAME=PATH, got 'mlp'"),
        (["--weights", "gpt=x.pt"], "--weights gpt=x.pt: unknown model 'gpt'"),
        (["--weights", "mlp=/no/such.pt"], "--weights mlp=/no/such.pt: no such file"),
        (["--max-queue", "0"], "max_queue: expected a value >= 1, got 0"),
        (["--models", ","], "expected model names separated by commas"),
    ],
)
def test_the_command_line_refuses_bad_values_naming_the_flag(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        parse_settings(argv)
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_is_refused_where_there_is_no_cuda(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_settings(["--device", "cuda"])
    assert "--device cuda: CUDA is not available" in capsys.readouterr().err


def test_importing_the_package_and_payloads_loads_no_heavy_module() -> None:
    code = (
        "import sys, service, service.payloads, service.settings\n"
        "heavy = {'torch', 'numpy', 'fastapi', 'uvicorn', 'prometheus_client'}\n"
        "print(sorted(heavy & {name.split('.')[0] for name in sys.modules}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
