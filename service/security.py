"""Who may call what, and how often: API keys, JWT bearer tokens, per-client rate limits.

Off by default: with no API key and no JWT key configured nothing is authenticated (the
load scenarios in thresholds.yaml rely on it), and with ``rate_limit`` 0 nothing is
throttled. ``Guard.check`` is the one entry point; ``app`` calls it on the guarded routes
before it reads a request's body.

- **API keys** arrive in the ``X-API-Key`` header. Only their SHA-256 digests are kept
  (``hash_key``); a presented key is hashed and compared with every stored digest with
  ``hmac.compare_digest``, so neither the comparison nor the number of comparisons depends
  on how much of a digest matched. A key grants every right.
- **JWT bearer tokens** arrive as ``Authorization: Bearer <token>``: HS256 with a shared
  secret or RS256 with a public key (one of the two, so that a public key can never be used
  as an HMAC secret). Signature, ``exp`` (required), ``aud`` (required) and ``iss`` (when
  configured) are checked by PyJWT. Rights come from the ``scope`` claim (space-separated
  or a list): ``models:manage`` for loading and unloading, ``models:infer`` for inference.
- **Rights**: management routes always need ``models:manage`` once auth is configured;
  inference routes need ``models:infer`` only with ``auth_inference``. Missing or invalid
  credentials: 401 with ``WWW-Authenticate``; a valid token without the scope: 403.
- **Rate limits**: a token bucket per client (the key's digest, the token's ``sub``, or the
  peer address when the route is not authenticated). The buckets live in one worker
  process: with N workers a client may get up to N times the rate. At most
  ``MAX_CLIENTS`` buckets are kept; the least recently seen is dropped first.

Imports PyJWT only when a JWT key is configured.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.settings import Settings

__all__ = [
    "API_KEY_HEADER",
    "INFER",
    "MANAGE",
    "MAX_CLIENTS",
    "AuthError",
    "Guard",
    "Identity",
    "RateLimitedError",
    "RateLimiter",
    "exposure_warning",
    "hash_key",
    "is_loopback",
    "read_key_file",
]

API_KEY_HEADER = "X-API-Key"
MANAGE = "models:manage"
INFER = "models:infer"
MAX_CLIENTS = 10_000
REALM = "perfgate-service"
_JWT_LEEWAY_S = 10  # clock skew tolerated on exp, nbf and iat


class AuthError(Exception):
    """401 (no or bad credentials) or 403 (valid, without the right); says which."""

    def __init__(self, status: int, message: str, challenge: str) -> None:
        super().__init__(message)
        self.status = status
        self.challenge = challenge  # the WWW-Authenticate header's value


class RateLimitedError(Exception):
    """The client spent its burst; ``retry_after_s`` until its next request is allowed."""

    def __init__(self, client: str, rate: float, burst: int, wait_s: float) -> None:
        super().__init__(
            f"rate limit exceeded: at most {rate:g} requests/s with bursts of {burst} "
            f"per client; retry after {wait_s:.2f} s"
        )
        self.client = client
        self.retry_after_s = max(1, math.ceil(wait_s))  # Retry-After takes whole seconds


def hash_key(key: str) -> str:
    """The form in which an API key is stored: its SHA-256 digest, hex."""
    return hashlib.sha256(key.encode()).hexdigest()


def read_key_file(path: Path) -> tuple[str, ...]:
    """The digests of the keys in ``path``: one key a line; blank lines and ``#`` comments
    skipped. The keys themselves are not kept."""
    keys = (line.strip() for line in path.read_text().splitlines())
    return tuple(hash_key(key) for key in keys if key and not key.startswith("#"))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def exposure_warning(settings: Settings) -> str | None:
    """What to warn about at start-up when anyone on the network can manage the models."""
    if settings.auth_enabled or is_loopback(settings.host):
        return None
    return (
        f"serving on {settings.host}, beyond this machine, without authentication: anyone "
        "who can reach it may load and unload models. Configure API keys "
        "(SERVICE_API_KEYS_SHA256 or --api-key-file) or a JWT key (SERVICE_JWT_SECRET or "
        "--jwt-public-key), or bind 127.0.0.1"
    )


@dataclass(frozen=True)
class Identity:
    """An authenticated caller: ``name`` keys its rate limit; ``rights`` None means all."""

    name: str
    rights: frozenset[str] | None = None

    def may(self, right: str) -> bool:
        return self.rights is None or right in self.rights


class _KeyChecker:
    def __init__(self, digests: Iterable[str]) -> None:
        self._digests = tuple(digest.encode() for digest in digests)

    def identify(self, key: str) -> Identity | None:
        presented = hash_key(key).encode()
        # No early exit: the time taken says nothing about which digest (if any) matched.
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(presented, digest)
        return Identity(f"key:{presented[:16].decode()}") if matched else None


class _TokenChecker:
    def __init__(self, settings: Settings) -> None:
        try:
            import jwt
        except ImportError:  # pragma: no cover - the service extra installs it
            raise RuntimeError(
                "JWT authentication needs the PyJWT package: pip install 'PyJWT[crypto]'"
            ) from None
        self._jwt = jwt
        self._key: Any
        if settings.jwt_public_key is not None:
            self._key = _rsa_public_key(settings.jwt_public_key)
            self._algorithms = ["RS256"]
        else:
            self._key = settings.jwt_secret
            self._algorithms = ["HS256"]
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer

    def identify(self, token: str) -> Identity:
        """The token's identity, or ``ValueError`` saying why the token is refused."""
        required = ["exp", "aud", *(["iss"] if self._issuer else [])]
        try:
            claims: dict[str, Any] = self._jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                leeway=_JWT_LEEWAY_S,
                options={"require": required},
            )
        except self._jwt.PyJWTError as exc:
            raise ValueError(str(exc) or type(exc).__name__) from None
        subject = claims.get("sub")
        name = subject if isinstance(subject, str) else hash_key(token)[:16]
        return Identity(f"jwt:{name}", frozenset(_scopes(claims.get("scope"))))


def _rsa_public_key(pem: str) -> Any:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    key = load_pem_public_key(pem.encode())
    if not isinstance(key, RSAPublicKey):
        raise ValueError(f"jwt_public_key: expected an RSA public key, got {type(key).__name__}")
    return key


def _scopes(claim: object) -> list[str]:
    if isinstance(claim, str):
        return claim.split()
    if isinstance(claim, list):
        return [scope for scope in claim if isinstance(scope, str)]
    return []


class RateLimiter:
    """Token buckets: each client gets ``burst`` requests at once and ``rate`` a second."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, time

    def __len__(self) -> int:
        return len(self._buckets)

    def acquire(self, client: str) -> float:
        """Take a token for ``client``: 0 when allowed, else the seconds until one is free."""
        now = self._clock()
        tokens, then = self._buckets.pop(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
        self._buckets[client] = (tokens - 1 if wait == 0 else tokens, now)  # most recent last
        while len(self._buckets) > self._max_clients:
            self._buckets.popitem(last=False)
        return wait


class Guard:
    """Authentication, rights and rate limits for the guarded routes, from the settings."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.monotonic):
        self._keys = _KeyChecker(settings.api_key_sha256) if settings.api_key_sha256 else None
        self._tokens = _TokenChecker(settings) if settings.uses_jwt else None
        self._auth_inference = settings.auth_inference
        self.limiter: RateLimiter | None = None
        if settings.rate_limit > 0:
            burst = settings.rate_burst or max(1, math.ceil(settings.rate_limit))
            self.limiter = RateLimiter(settings.rate_limit, burst, clock=clock)

    @property
    def enabled(self) -> bool:
        return self._keys is not None or self._tokens is not None

    def check(self, right: str, peer: str, headers: Mapping[str, str]) -> Identity | None:
        """The caller's identity where ``right`` needs one; raises ``AuthError`` or
        ``RateLimitedError`` when the request must not go on."""
        identity = self._authenticate(right, headers) if self._needs_auth(right) else None
        if self.limiter is not None:
            client = identity.name if identity else f"ip:{peer}"
            if wait := self.limiter.acquire(client):
                raise RateLimitedError(client, self.limiter.rate, self.limiter.burst, wait)
        return identity

    def _needs_auth(self, right: str) -> bool:
        return self.enabled and (right == MANAGE or self._auth_inference)

    def _authenticate(self, right: str, headers: Mapping[str, str]) -> Identity:
        identity = self._identify(headers)
        if not identity.may(right):
            raise AuthError(
                403,
                f"forbidden: the token of {identity.name!r} lacks the scope {right!r}",
                f'Bearer realm="{REALM}", error="insufficient_scope", scope="{right}"',
            )
        return identity

    def _identify(self, headers: Mapping[str, str]) -> Identity:
        key = headers.get(API_KEY_HEADER.lower())
        authorization = headers.get("authorization")
        if key is not None and self._keys is not None:
            if identity := self._keys.identify(key):
                return identity
            raise self._unauthorized(f"{API_KEY_HEADER}: the API key is not valid")
        if authorization is not None and self._tokens is not None:
            scheme, _, token = authorization.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise self._unauthorized(
                    f"Authorization: expected 'Bearer <token>', got the {scheme!r} scheme"
                )
            try:
                return self._tokens.identify(token.strip())
            except ValueError as exc:
                message = f"Authorization: the bearer token is refused: {exc}"
                raise self._unauthorized(message, exc) from None
        raise self._unauthorized(f"credentials required: {self._accepted()}")

    def _accepted(self) -> str:
        ways = []
        if self._keys is not None:
            ways.append(f"an API key in the {API_KEY_HEADER} header")
        if self._tokens is not None:
            ways.append("a JWT in 'Authorization: Bearer <token>'")
        return " or ".join(ways)

    def _unauthorized(self, message: str, token_error: Exception | None = None) -> AuthError:
        challenges = []
        if self._tokens is not None:
            bearer = f'Bearer realm="{REALM}"'
            if token_error is not None:
                # RFC 6750 3: no quotes or backslashes inside a quoted error_description
                reason = str(token_error).replace('"', "'").replace("\\", "/")
                bearer += f', error="invalid_token", error_description="{reason}"'
            challenges.append(bearer)
        if self._keys is not None:
            challenges.append(f'ApiKey realm="{REALM}", header="{API_KEY_HEADER}"')
        return AuthError(401, message, ", ".join(challenges))
