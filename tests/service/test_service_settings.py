"""Settings and the command line: bad values are refused with the flag or field named."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from service_harness import ROOT

from service.__main__ import parse_settings
from service.settings import Settings

DIGEST = hashlib.sha256(b"key").hexdigest()
RSA_PUBLIC_PEM = (
    rsa.generate_private_key(public_exponent=65537, key_size=2048)
    .public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)


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
    weights, cert, key, public = (tmp_path / name for name in ("mlp.pt", "c", "k", "pub"))
    for path in (weights, cert, key):
        path.touch()
    public.write_text(RSA_PUBLIC_PEM)
    settings = parse_settings(
        [
            "--host", "0.0.0.0", "--port", "9000", "--device", "cpu", "--dtype", "bfloat16",
            "--models", "mlp", "--workers", "2", "--max-batch-size", "8",
            "--max-queue-delay-ms", "2.5", "--max-queue", "16", "--request-timeout", "3",
            "--max-body-bytes", "4096", "--max-examples", "4", "--weights", f"mlp={weights}",
            "--torch-threads", "3", "--no-warmup", "--log-level", "debug", "--access-log",
            "--api-keys-sha256", f"{DIGEST},{DIGEST.upper()}", "--jwt-public-key", str(public),
            "--jwt-audience", "svc", "--jwt-issuer", "idp", "--auth-inference",
            "--rate-limit", "2.5", "--rate-burst", "5", "--tls-cert", str(cert),
            "--tls-key", str(key),
        ],
        environ={},
    )  # fmt: skip
    assert settings == Settings(
        host="0.0.0.0", port=9000, device="cpu", dtype="bfloat16", models=("mlp",), workers=2,
        max_batch_size=8, max_queue_delay_ms=2.5, max_queue=16, request_timeout_s=3.0,
        max_body_bytes=4096, max_examples=4, weights=(("mlp", str(weights)),),
        torch_threads=3, warmup=False, log_level="debug", access_log=True,
        api_key_sha256=(DIGEST, DIGEST), jwt_public_key=RSA_PUBLIC_PEM, jwt_audience="svc",
        jwt_issuer="idp", auth_inference=True, rate_limit=2.5, rate_burst=5,
        tls_cert=str(cert), tls_key=str(key),
    )  # fmt: skip


def test_the_command_line_defaults_are_the_settings_defaults() -> None:
    assert parse_settings([], environ={}) == Settings()


def test_security_flags_not_given_come_from_the_environment(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("a-key\n")
    environ = {
        "SERVICE_API_KEYS_SHA256": DIGEST,
        "SERVICE_API_KEY_FILE": str(keys),
        "SERVICE_JWT_SECRET": "x" * 32,
        "SERVICE_JWT_AUDIENCE": "svc",
        "SERVICE_AUTH_INFERENCE": "yes",
        "SERVICE_RATE_LIMIT": "10",
        "SERVICE_RATE_BURST": "20",
    }
    settings = parse_settings(["--rate-limit", "3"], environ=environ)
    assert settings.api_key_sha256 == (DIGEST, hashlib.sha256(b"a-key").hexdigest())
    assert (settings.jwt_secret, settings.jwt_audience) == ("x" * 32, "svc")
    assert settings.auth_inference is True
    assert (settings.rate_limit, settings.rate_burst) == (3.0, 20)  # the flag wins
    assert "x" * 32 not in repr(settings)


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        ([], {"SERVICE_RATE_LIMIT": "fast"}, "SERVICE_RATE_LIMIT='fast': could not convert"),
        ([], {"SERVICE_AUTH_INFERENCE": "maybe"}, "SERVICE_AUTH_INFERENCE='maybe': expected"),
        (["--api-keys-sha256", "abc"], {}, "api_key_sha256: expected 64 lowercase hex digits"),
        (["--api-key-file", "/no/such"], {}, "--api-key-file: no such file: '/no/such'"),
        ([], {"SERVICE_JWT_SECRET": "short"}, "jwt_secret: expected at least 32 bytes, got 5"),
        ([], {"SERVICE_JWT_SECRET": "x" * 32}, "jwt_audience: required with a JWT secret"),
        (["--auth-inference"], {}, "auth_inference: needs an API key or a JWT key"),
        (["--rate-limit", "-1"], {}, "rate_limit: expected a value >= 0, got -1.0"),
    ],
)
def test_bad_security_settings_are_refused_naming_the_flag_or_variable(
    argv: list[str], environ: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse_settings(argv, environ=environ)
    assert message in capsys.readouterr().err


def test_an_empty_api_key_file_is_refused_rather_than_turning_auth_off(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# no keys yet\n\n")
    with pytest.raises(SystemExit):
        parse_settings(["--api-key-file", str(keys)], environ={})
    assert f"--api-key-file {keys}: no keys in it" in capsys.readouterr().err


def test_a_public_key_that_does_not_load_is_refused_at_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    public = tmp_path / "pub.pem"
    public.write_text("-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n")
    with pytest.raises(SystemExit):
        parse_settings(["--jwt-public-key", str(public), "--jwt-audience", "a"], environ={})
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"jwt_secret": "x" * 32, "jwt_public_key": "pem", "jwt_audience": "a"}, "give one"),
        ({"tls_cert": "c.pem"}, "tls_cert and tls_key: give both or neither"),
        ({"rate_burst": -1}, "rate_burst: expected a value >= 0, got -1"),
    ],
)
def test_settings_refuse_inconsistent_security_values(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Settings(**changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--models", "mlp,gpt"],
            "--models: unknown model 'gpt'; registered: mlp, encoder, tiny-gpt",
        ),
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
