"""Security: API keys, JWT bearer tokens, rights, rate limits, TLS, the default bind address,
and models chosen only by registered name.

In-process (ASGI) except where the process itself is under test: TLS and the bind address
need the real ``python -m service`` (marked e2e).
"""

from __future__ import annotations

import base64
import builtins
import datetime
import hashlib
import hmac
import io
import ipaddress
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import psutil
import pytest
import torch
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from service_harness import AsgiService, service_process, trusting

from service import security
from service.__main__ import parse_settings
from service.models import MlpClassifier, show
from service.payloads import MLP_FEATURES
from service.security import RateLimiter, hash_key
from service.settings import Settings

MakeService = Callable[..., AsgiService]

KEY = "k-3f9a1c7e5b2d4086a1e9c3b5d7f9e1a2"
OTHER_KEY = "k-0000000000000000000000000000000"
SECRET = "s" * 32 + "-hs256-secret-for-tests"
AUDIENCE = "perfgate-service"
MLP_BODY = {"model": "mlp", "inputs": [[0.5] * MLP_FEATURES]}
MANAGEMENT = [
    ("/models/load", {"name": "mlp"}),
    ("/models/unload", {"name": "mlp"}),
    ("/models/mlp/load", None),
    ("/models/mlp/unload", None),
    ("/v2/repository/models/mlp/load", None),
    ("/v2/repository/models/mlp/unload", None),
]


def token(
    key: Any = SECRET,
    algorithm: str = "HS256",
    *,
    expires_in: float = 300,
    scope: str | None = "models:manage models:infer",
    **claims: Any,
) -> str:
    payload: dict[str, Any] = {
        "sub": "ci-bot",
        "aud": AUDIENCE,
        "exp": int(time.time() + expires_in),
        **claims,
    }
    if scope is not None:
        payload["scope"] = scope
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, key, algorithm)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


@pytest.fixture
def keyed(make_service: MakeService) -> AsgiService:
    """API keys and an HS256 secret configured; inference left open."""
    return make_service(api_key_sha256=(hash_key(KEY),), jwt_secret=SECRET, jwt_audience=AUDIENCE)


# --- no credentials configured: as before -------------------------------------------------


def test_without_credentials_configured_nothing_is_authenticated(service: AsgiService) -> None:
    assert service.post("/models/mlp/load").status_code == 200
    assert service.post("/predict", json=MLP_BODY).status_code == 200


def test_the_service_binds_127_0_0_1_unless_told_otherwise() -> None:
    assert Settings().host == "127.0.0.1"
    assert parse_settings([], environ={}).host == "127.0.0.1"


def test_binding_beyond_loopback_without_auth_logs_a_warning(
    make_service: MakeService, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="uvicorn.error"):
        make_service(host="0.0.0.0")
        make_service(host="0.0.0.0", api_key_sha256=(hash_key(KEY),))
        make_service(host="::1")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith("serving on 0.0.0.0, beyond this machine, without auth")


# --- API keys -----------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "body"), MANAGEMENT)
def test_management_without_credentials_is_401_with_a_challenge(
    keyed: AsgiService, path: str, body: Any
) -> None:
    answer = keyed.post(path, json=body)
    assert answer.status_code == 401
    assert answer.json()["error"] == (
        "credentials required: an API key in the X-API-Key header or a JWT in "
        "'Authorization: Bearer <token>'"
    )
    assert answer.headers["www-authenticate"] == (
        'Bearer realm="perfgate-service", ApiKey realm="perfgate-service", header="X-API-Key"'
    )


def test_a_valid_api_key_may_manage_models(keyed: AsgiService) -> None:
    answer = keyed.post("/models/encoder/load", headers={"X-API-Key": KEY})
    assert (answer.status_code, answer.json()["loaded"]) == (200, True)


def test_a_wrong_api_key_is_401_naming_the_header(keyed: AsgiService) -> None:
    answer = keyed.post("/models/mlp/unload", headers={"X-API-Key": OTHER_KEY})
    assert answer.status_code == 401
    assert answer.json() == {"error": "X-API-Key: the API key is not valid"}
    assert "www-authenticate" in answer.headers
    assert keyed.get("/health").json()["models"] == ["mlp"]  # nothing was unloaded


def test_credentials_are_checked_before_the_body_is_read(make_service: MakeService) -> None:
    running = make_service(api_key_sha256=(hash_key(KEY),), max_body_bytes=100)
    assert running.post("/models/load", content=b"x" * 10_000).status_code == 401


def test_inference_is_open_unless_auth_inference_is_set(
    keyed: AsgiService, make_service: MakeService
) -> None:
    assert keyed.post("/predict", json=MLP_BODY).status_code == 200
    strict = make_service(api_key_sha256=(hash_key(KEY),), auth_inference=True)
    assert strict.post("/predict", json=MLP_BODY).status_code == 401
    v2 = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64], "data": [0.0] * 64}]}
    assert strict.post("/v2/models/mlp/infer", json=v2).status_code == 401
    assert strict.post("/predict", json=MLP_BODY, headers={"X-API-Key": KEY}).status_code == 200
    assert strict.get("/health").status_code == 200  # probes stay open


def test_only_the_sha256_of_an_api_key_is_kept(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"# CI\n{KEY}\n\n{OTHER_KEY}\n")
    settings = parse_settings(["--api-key-file", str(keys)], environ={})
    assert settings.api_key_sha256 == (
        hashlib.sha256(KEY.encode()).hexdigest(),
        hashlib.sha256(OTHER_KEY.encode()).hexdigest(),
    )
    for form in (settings.to_json(), repr(settings)):
        assert KEY not in form and OTHER_KEY not in form


def test_api_keys_are_compared_with_every_digest_in_constant_time(
    keyed: AsgiService, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = security.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(security.hmac, "compare_digest", spy)
    guard = security.Guard(Settings(api_key_sha256=(hash_key(KEY), hash_key(OTHER_KEY))))
    guard.check(security.MANAGE, "peer", {"x-api-key": KEY})
    # Both digests compared, though the first matched: no early exit to time.
    assert compared == [
        (hash_key(KEY).encode(), hash_key(KEY).encode()),
        (hash_key(KEY).encode(), hash_key(OTHER_KEY).encode()),
    ]


# --- JWT ----------------------------------------------------------------------------------


def test_a_valid_hs256_token_may_manage_models(keyed: AsgiService) -> None:
    assert keyed.post("/models/mlp/load", headers=bearer(token())).status_code == 200


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: token(expires_in=-3600), "Signature has expired"),
        (lambda: token(aud="someone-else"), "Audience doesn't match"),
        (lambda: token("x" * 40), "Signature verification failed"),
        (lambda: token(exp=None), 'Token is missing the "exp" claim'),
        (lambda: token(aud=None), 'Token is missing the "aud" claim'),
        (
            lambda: jwt.encode({"aud": AUDIENCE, "exp": 2**40}, None, "none"),
            "The specified alg value",
        ),
        (lambda: "not-a-jwt", "Not enough segments"),
    ],
    ids=["expired", "wrong-audience", "bad-signature", "no-exp", "no-aud", "alg-none", "junk"],
)
def test_a_refused_token_is_401_saying_why(
    keyed: AsgiService, make: Callable[[], str], reason: str
) -> None:
    # tokens are made when the test runs: made at collection, the 5-minute ones could
    # expire before a slow suite reaches them, and fail for the wrong reason
    answer = keyed.post("/models/mlp/load", headers=bearer(make()))
    assert answer.status_code == 401
    message = answer.json()["error"]
    assert message.startswith(f"Authorization: the bearer token is refused: {reason}")
    challenge = answer.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="perfgate-service", error="invalid_token"')


def test_a_token_without_the_management_scope_is_403(keyed: AsgiService) -> None:
    answer = keyed.post("/models/mlp/load", headers=bearer(token(scope="models:infer")))
    assert answer.status_code == 403
    assert answer.json() == {
        "error": "forbidden: the token of 'jwt:ci-bot' lacks the scope 'models:manage'"
    }
    assert 'error="insufficient_scope"' in answer.headers["www-authenticate"]


def test_an_authorization_header_of_another_scheme_is_401_naming_it(keyed: AsgiService) -> None:
    answer = keyed.post("/models/mlp/load", headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert answer.status_code == 401
    assert answer.json() == {
        "error": "Authorization: expected 'Bearer <token>', got the 'Basic' scheme"
    }


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def test_rs256_tokens_are_checked_with_the_public_key(
    make_service: MakeService, rsa_key: rsa.RSAPrivateKey
) -> None:
    running = make_service(jwt_public_key=public_pem(rsa_key), jwt_audience=AUDIENCE)
    signed = token(rsa_key, "RS256")
    assert running.post("/models/mlp/load", headers=bearer(signed)).status_code == 200
    impostor = token(rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256")
    assert running.post("/models/mlp/load", headers=bearer(impostor)).status_code == 401
    # The public key is public: an HS256 token "signed" with it must not pass.
    confused = _hs256_with_raw_key(public_pem(rsa_key).encode())
    answer = running.post("/models/mlp/load", headers=bearer(confused))
    assert answer.status_code == 401
    assert "The specified alg value is not allowed" in answer.json()["error"]


def _hs256_with_raw_key(key: bytes) -> str:
    """An HS256 token whose HMAC key is ``key`` (PyJWT refuses to sign with a PEM key)."""

    def part(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    header = part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {"aud": AUDIENCE, "exp": int(time.time()) + 300, "scope": "models:manage"}
    body = part(json.dumps(claims).encode())
    signature = part(hmac.new(key, header + b"." + body, hashlib.sha256).digest())
    return (header + b"." + body + b"." + signature).decode()


@settings(max_examples=60, deadline=None, database=None)
@given(
    key=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80),
    authorization=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=200),
)
def test_any_credentials_are_answered_with_401_never_a_5xx(key: str, authorization: str) -> None:
    guard = security.Guard(
        Settings(api_key_sha256=(hash_key(KEY),), jwt_secret=SECRET, jwt_audience=AUDIENCE)
    )
    for headers in ({"x-api-key": key}, {"authorization": authorization}):
        with pytest.raises(security.AuthError) as refused:
            guard.check(security.MANAGE, "peer", headers)
        assert refused.value.status == 401


# --- rate limits --------------------------------------------------------------------------


def test_past_the_burst_a_client_gets_429_with_retry_after(make_service: MakeService) -> None:
    running = make_service(rate_limit=0.5, rate_burst=3)
    answers = [running.post("/predict", json=MLP_BODY) for _ in range(4)]
    assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
    assert answers[3].headers["retry-after"] == "2"  # one token every 2 s
    assert (
        answers[3]
        .json()["error"]
        .startswith(
            "rate limit exceeded: at most 0.5 requests/s with bursts of 3 per client; retry after"
        )
    )
    assert running.get("/health").status_code == 200  # probes are not limited


def test_each_api_key_has_a_bucket_of_its_own(make_service: MakeService) -> None:
    digests = (hash_key(KEY), hash_key(OTHER_KEY))
    running = make_service(api_key_sha256=digests, rate_limit=0.1, rate_burst=1)
    first = {"X-API-Key": KEY}
    assert running.post("/models/mlp/load", headers=first).status_code == 200
    assert running.post("/models/mlp/load", headers=first).status_code == 429
    assert running.post("/models/mlp/load", headers={"X-API-Key": OTHER_KEY}).status_code == 200


def test_a_token_bucket_refills_at_the_rate_up_to_the_burst() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=2, clock=lambda: now[0])
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.5]
    now[0] = 0.5  # one token back
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") == pytest.approx(0.5)
    now[0] = 100.0  # full again, never beyond the burst
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.5]


def test_the_rate_limiter_keeps_at_most_max_clients_buckets() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, clock=lambda: 0.0, max_clients=3)
    for client in "abcd":
        limiter.acquire(client)
    assert len(limiter) == 3
    assert limiter.acquire("d") > 0  # the most recent kept its state
    assert limiter.acquire("a") == 0.0  # the least recent was dropped: a fresh bucket


# --- models only by registered name -------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[tuple[int, list[object]]]:
    """A TCP port on 127.0.0.1 that records every connection it gets."""
    connections: list[object] = []
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connections.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], connections
    stop.set()
    thread.join()
    server.close()


def test_a_model_named_by_a_path_or_url_is_refused_and_nothing_is_read(
    make_service: MakeService,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    listener: tuple[int, list[object]],
) -> None:
    port, connections = listener
    weights = tmp_path / "x"
    torch.save(MlpClassifier().state_dict(), weights)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # "../x" names the weights file
    running = make_service()
    opened: list[str] = []
    real_open = io.open

    def spy_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    for module in (io, builtins):
        monkeypatch.setattr(module, "open", spy_open)
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: pytest.fail("torch.load called"))
    names = ["../x", str(weights), "x", f"http://127.0.0.1:{port}/x", "file:///etc/passwd"]
    for name in names:
        for path, body in (("/models/load", {"name": name}), ("/predict", {"model": name})):
            answer = running.post(path, json={**body, "inputs": [[1]]})
            assert (answer.status_code, answer.json()["error"]) == (
                404,
                f"unknown model {show(name)}; registered models: mlp, encoder",
            )
    for encoded in ("..%2Fx", "%2E%2E%2Fx", "http:%2F%2F127.0.0.1"):
        assert running.post(f"/models/{encoded}/load").status_code == 404
        assert running.post(f"/v2/repository/models/{encoded}/load").status_code == 404
    assert not [path for path in opened if Path(path).name == "x"]
    assert connections == []


# --- TLS and the bind address, in the real process ----------------------------------------


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.mark.e2e
def test_the_real_service_serves_https_with_keys_and_tokens_on_127_0_0_1(
    tmp_path: Path,
) -> None:
    cert, key = self_signed(tmp_path)
    keys = tmp_path / "api-keys"
    keys.write_text(f"{KEY}\n")
    args = ["--models", "mlp", "--no-warmup", "--tls-cert", str(cert), "--tls-key", str(key)]
    env = {
        "SERVICE_API_KEY_FILE": str(keys),
        "SERVICE_JWT_SECRET": SECRET,
        "SERVICE_JWT_AUDIENCE": AUDIENCE,
    }
    with service_process(
        tmp_path / "service.log", *args, env=env, host=None, https_cert=cert
    ) as running:
        listening = {
            (c.laddr.ip, c.laddr.port)
            for c in psutil.Process(running.process.pid).net_connections("inet")
            if c.status == psutil.CONN_LISTEN
        }
        assert {ip for ip, _ in listening} == {"127.0.0.1"}
        with httpx.Client(base_url=running.url, verify=trusting(cert)) as client:
            assert client.post("/predict", json=MLP_BODY).status_code == 200
            assert client.post("/models/mlp/load").status_code == 401
            assert client.post("/models/mlp/load", headers={"X-API-Key": KEY}).status_code == 200
            assert client.post("/models/mlp/load", headers=bearer(token())).status_code == 200
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{running.url}/health")  # the system's trust store knows no such cert
        plain = running.url.replace("https://", "http://")
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{plain}/health", timeout=5)
    assert "without authentication" not in running.log.read_text()
