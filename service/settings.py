"""The service's settings: one frozen value, checked once, passed to every worker.

Standard library only: the launcher reads these before it decides whether to import torch.
Uvicorn workers are separate processes started by import string, so the launcher hands the
settings to them as JSON in the environment variable ``SETTINGS_ENV``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["DEVICES", "DTYPES", "SETTINGS_ENV", "Settings"]

SETTINGS_ENV = "PERFGATE_SERVICE_SETTINGS"
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("float32", "bfloat16", "float16")
#: shortest HS256 secret accepted, in bytes: RFC 7518 3.2 asks for at least the hash's size
MIN_JWT_SECRET_BYTES = 32
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Settings:
    """Everything a worker needs to serve; the CLI flag of each field is in ``__main__``."""

    host: str = "127.0.0.1"
    port: int = 8000
    device: str = "auto"
    dtype: str = "float32"  # of weights; bfloat16 pays off on GPUs and CPUs with AMX
    models: tuple[str, ...] = ("mlp", "encoder")  # loaded (and warmed up) at start-up
    workers: int = 1
    max_batch_size: int = 32  # examples per forward pass
    max_queue_delay_ms: float = 5.0  # how long the first example waits for a batch to fill
    max_queue: int = 256  # examples waiting per model before requests are turned away
    request_timeout_s: float = 10.0
    max_body_bytes: int = 1_048_576
    max_examples: int = 64  # per request
    weights: tuple[tuple[str, str], ...] = ()  # (model name, local state-dict path)
    torch_threads: int = 0  # 0: a worker's share of the CPUs, less one for its event loop
    warmup: bool = True
    log_level: str = "info"
    access_log: bool = False
    # Security (see ``service.security``). No API key and no JWT key: no authentication.
    api_key_sha256: tuple[str, ...] = ()  # hex SHA-256 digests of the accepted API keys
    jwt_secret: str | None = field(default=None, repr=False)  # HS256
    jwt_public_key: str | None = field(default=None, repr=False)  # RS256, PEM text
    jwt_audience: str | None = None  # required with either JWT key
    jwt_issuer: str | None = None  # checked when set
    auth_inference: bool = False  # inference needs credentials too, not only management
    rate_limit: float = 0.0  # requests per second per client on guarded routes; 0: off
    rate_burst: int = 0  # requests a client may send at once; 0: the rate rounded up
    tls_cert: str | None = None  # PEM certificate chain; with tls_key: serve HTTPS
    tls_key: str | None = None
    # The generative model (``service.llm``), served when ``models`` names tiny-gpt.
    llm_max_running: int = 8  # sequences in the running batch (KV-cache slots)
    llm_max_waiting: int = 64  # requests waiting for a slot before 429 + Retry-After
    llm_tokens_per_chunk: int = 1  # tokens per streamed SSE chunk
    llm_prompt_cache_tokens: int = 8192  # prompt positions kept for reuse (KV + logits); 0: off

    def __post_init__(self) -> None:
        for name in (
            "port",
            "workers",
            "max_batch_size",
            "max_queue",
            "max_body_bytes",
            "max_examples",
            "llm_max_running",
            "llm_tokens_per_chunk",
        ):
            _require(name, getattr(self, name), minimum=1)
        _require("llm_max_waiting", self.llm_max_waiting, minimum=0)
        _require("llm_prompt_cache_tokens", self.llm_prompt_cache_tokens, minimum=0)
        _require("max_queue_delay_ms", self.max_queue_delay_ms, minimum=0)
        _require("request_timeout_s", self.request_timeout_s, minimum=0, strict=True)
        _require("torch_threads", self.torch_threads, minimum=0)
        _require("rate_limit", self.rate_limit, minimum=0)
        _require("rate_burst", self.rate_burst, minimum=0)
        self._check_security()
        if self.device not in DEVICES:
            raise ValueError(f"device: expected one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype: expected one of {', '.join(DTYPES)}, got {self.dtype!r}")

    def _check_security(self) -> None:
        for digest in self.api_key_sha256:
            if not _SHA256_HEX.fullmatch(digest):
                raise ValueError(
                    f"api_key_sha256: expected 64 lowercase hex digits (a SHA-256 digest), "
                    f"got {digest[:70]!r}"
                )
        if self.jwt_secret is not None and self.jwt_public_key is not None:
            raise ValueError("jwt_secret and jwt_public_key: give one (HS256 or RS256), not both")
        if self.jwt_secret is not None and len(self.jwt_secret.encode()) < MIN_JWT_SECRET_BYTES:
            raise ValueError(
                f"jwt_secret: expected at least {MIN_JWT_SECRET_BYTES} bytes, "
                f"got {len(self.jwt_secret.encode())}"
            )
        if self.uses_jwt and not self.jwt_audience:
            raise ValueError("jwt_audience: required with a JWT secret or public key")
        if self.auth_inference and not self.auth_enabled:
            raise ValueError("auth_inference: needs an API key or a JWT key to check against")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key: give both or neither")

    @property
    def uses_jwt(self) -> bool:
        return self.jwt_secret is not None or self.jwt_public_key is not None

    @property
    def auth_enabled(self) -> bool:
        """Whether any credential is configured; without one, nothing is authenticated."""
        return bool(self.api_key_sha256) or self.uses_jwt

    @property
    def max_queue_delay_s(self) -> float:
        return self.max_queue_delay_ms / 1000.0

    def weights_for(self, model: str) -> str | None:
        return dict(self.weights).get(model)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Settings:
        raw: dict[str, Any] = json.loads(text)
        known = {field.name for field in fields(cls)}
        if unknown := sorted(set(raw) - known):
            raise ValueError(f"{SETTINGS_ENV}: unknown settings {', '.join(unknown)}")
        # JSON has no tuples; the dataclass stays hashable and immutable with them.
        raw["models"] = tuple(raw.get("models", cls.models))
        raw["api_key_sha256"] = tuple(raw.get("api_key_sha256", ()))
        raw["weights"] = tuple((str(name), str(path)) for name, path in raw.get("weights", ()))
        return cls(**raw)

    @classmethod
    def from_env(cls) -> Settings:
        text = os.environ.get(SETTINGS_ENV)
        return cls() if text is None else cls.from_json(text)


def _require(name: str, value: float, *, minimum: float, strict: bool = False) -> None:
    # bool is an int; a True port or worker count is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    if value < minimum or (strict and value == minimum):
        bound = f"> {minimum}" if strict else f">= {minimum}"
        raise ValueError(f"{name}: expected a value {bound}, got {value!r}")
