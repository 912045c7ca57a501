"""``python -m service``: parse the command line, check it, and run uvicorn.

With ``--workers 1`` the app runs in this process. With more, uvicorn starts each worker
by import string (``service.app:create_app_from_env``) and the settings travel as JSON in
the environment; Prometheus samples are merged across workers through a temporary
``PROMETHEUS_MULTIPROC_DIR`` that this launcher creates before any worker starts and
removes when uvicorn returns.

Security settings (see ``service.security``) come from flags or, for a flag not given,
from the environment variable named in its help (``SERVICE_...``); the JWT secret comes
only from ``SERVICE_JWT_SECRET`` or a file, never from the command line, where ``ps``
would show it. API keys are hashed as they are read: only their digests are kept.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from service.security import read_key_file
from service.settings import DEVICES, DTYPES, SETTINGS_ENV, Settings

_METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
_GRACEFUL_SHUTDOWN_S = 5  # requests still running after this are cut: a test must not hang


def build_parser() -> argparse.ArgumentParser:
    defaults = Settings()
    parser = argparse.ArgumentParser(
        prog="python -m service", description="pytest-perfgate's reference inference service."
    )
    add = parser.add_argument
    add("--host", default=defaults.host, help="address to bind (default: %(default)s)")
    add("--port", type=int, default=defaults.port, help="port to bind (default: %(default)s)")
    add(
        "--device",
        choices=DEVICES,
        default=defaults.device,
        help="where models run; auto: CUDA when present, else CPU (default: %(default)s)",
    )
    add(
        "--dtype",
        choices=DTYPES,
        default=defaults.dtype,
        help="weights' dtype; bfloat16 is much faster on GPUs and AMX CPUs, and less exact "
        "(default: %(default)s)",
    )
    add(
        "--models",
        type=_names,
        default=defaults.models,
        metavar="NAME[,NAME...]",
        help="models loaded and warmed up at start; tiny-gpt, the generative model, adds "
        "the OpenAI-compatible /v1 routes (default: mlp,encoder)",
    )
    add(
        "--workers",
        type=int,
        default=defaults.workers,
        help="uvicorn worker processes (default: %(default)s)",
    )
    add(
        "--max-batch-size",
        type=int,
        default=defaults.max_batch_size,
        help="examples per forward pass (default: %(default)s)",
    )
    add(
        "--max-queue-delay-ms",
        type=float,
        default=defaults.max_queue_delay_ms,
        help="how long a batch waits to fill (default: %(default)s)",
    )
    add(
        "--max-queue",
        type=int,
        default=defaults.max_queue,
        help="examples waiting per model before 503 + Retry-After (default: %(default)s)",
    )
    add(
        "--request-timeout",
        type=float,
        default=defaults.request_timeout_s,
        metavar="SECONDS",
        help="per-request limit, answered with 504 (default: %(default)s)",
    )
    add(
        "--max-body-bytes",
        type=int,
        default=defaults.max_body_bytes,
        help="request body limit, answered with 413 (default: %(default)s)",
    )
    add(
        "--max-examples",
        type=int,
        default=defaults.max_examples,
        help="examples per request (default: %(default)s)",
    )
    add(
        "--weights",
        type=_weights,
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a local state dict (torch.save or .safetensors) for a registered model; repeatable",
    )
    add(
        "--torch-threads",
        type=int,
        default=defaults.torch_threads,
        help="CPU threads per worker; 0: its share of the CPUs less one for HTTP "
        "(default: %(default)s)",
    )
    add(
        "--llm-max-running",
        type=int,
        default=defaults.llm_max_running,
        help="tiny-gpt: sequences in the running batch (default: %(default)s)",
    )
    add(
        "--llm-max-waiting",
        type=int,
        default=defaults.llm_max_waiting,
        help="tiny-gpt: requests waiting for a running slot before 429 + Retry-After "
        "(default: %(default)s)",
    )
    add(
        "--llm-tokens-per-chunk",
        type=int,
        default=defaults.llm_tokens_per_chunk,
        help="tiny-gpt: tokens per streamed chunk (default: %(default)s)",
    )
    add(
        "--llm-prompt-cache-tokens",
        type=int,
        default=defaults.llm_prompt_cache_tokens,
        help="tiny-gpt: prompt positions whose KV cache and logits are kept for later "
        "requests with the same prompt; 0: off (default: %(default)s)",
    )
    add("--no-warmup", action="store_true", help="skip warm-up forward passes at load")
    add(
        "--log-level",
        default=defaults.log_level,
        choices=("critical", "error", "warning", "info", "debug"),
        help="uvicorn log level (default: %(default)s)",
    )
    add("--access-log", action="store_true", help="log every request (costs throughput)")
    _add_security_options(parser)
    return parser


#: flag destination -> (environment variable read when the flag is absent, its parser)
_ENV_OPTIONS: dict[str, tuple[str, Callable[[str], Any]]] = {}


def _add_security_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "security",
        "Without an API key or a JWT key nothing is authenticated: bind 127.0.0.1 (the "
        "default) or configure one. A flag not given falls back to the variable named.",
    )

    def add(flag: str, env: str, parse: Callable[[str], Any], help: str, **kw: Any) -> None:
        dest = flag.removeprefix("--").replace("-", "_")
        _ENV_OPTIONS[dest] = (env, parse)
        if kw.get("action") is None:
            kw["type"] = parse
        group.add_argument(flag, default=None, help=f"{help} [{env}]", **kw)

    path = {"metavar": "PATH"}
    add(
        "--api-keys-sha256",
        "SERVICE_API_KEYS_SHA256",
        _digests,
        "SHA-256 digests (hex) of the accepted API keys, comma-separated",
        metavar="HEX[,HEX...]",
    )
    add(
        "--api-key-file",
        "SERVICE_API_KEY_FILE",
        _file,
        "a file of accepted API keys, one a line; hashed when read",
        **path,
    )
    add(
        "--jwt-secret-file",
        "SERVICE_JWT_SECRET_FILE",
        _file,
        "a file holding the HS256 secret (or set SERVICE_JWT_SECRET itself)",
        **path,
    )
    add("--jwt-public-key", "SERVICE_JWT_PUBLIC_KEY_FILE", _file, "RS256 public key, PEM", **path)
    add("--jwt-audience", "SERVICE_JWT_AUDIENCE", str, "the aud claim tokens must carry")
    add("--jwt-issuer", "SERVICE_JWT_ISSUER", str, "the iss claim tokens must carry, if set")
    add(
        "--auth-inference",
        "SERVICE_AUTH_INFERENCE",
        _flag,
        "require credentials for inference too, not only for model management",
        action="store_const",
        const=True,
    )
    add(
        "--rate-limit",
        "SERVICE_RATE_LIMIT",
        float,
        "requests per second per client (API key, token subject or address) on inference "
        "and management routes; 429 + Retry-After beyond it (default: 0, off)",
        metavar="RPS",
    )
    add(
        "--rate-burst",
        "SERVICE_RATE_BURST",
        int,
        "requests a client may send at once (default: the rate, rounded up)",
        metavar="N",
    )
    add("--tls-cert", "SERVICE_TLS_CERT", _file, "PEM certificate: serve HTTPS", **path)
    add("--tls-key", "SERVICE_TLS_KEY", _file, "PEM private key of --tls-cert", **path)


def _digests(text: str) -> tuple[str, ...]:
    return tuple(part.strip().lower() for part in text.split(",") if part.strip())


def _file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text!r}")
    return path


def _flag(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"expected 1/true/yes or 0/false/no, got {text!r}")


def _security_values(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, Any]:
    """The security fields of ``Settings``: flags first, then the environment."""
    values: dict[str, Any] = {}
    for dest, (env, parse) in _ENV_OPTIONS.items():
        value = getattr(args, dest)
        if value is None and env in environ:
            try:
                value = parse(environ[env])
            except (argparse.ArgumentTypeError, ValueError) as exc:
                raise ValueError(f"{env}={environ[env]!r}: {exc}") from None
        values[dest] = value
    digests = tuple(values["api_keys_sha256"] or ())
    if (key_file := values["api_key_file"]) is not None:
        if not (from_file := read_key_file(key_file)):
            raise ValueError(f"--api-key-file {key_file}: no keys in it")
        digests += from_file
    secret = environ.get("SERVICE_JWT_SECRET")
    if (secret_file := values["jwt_secret_file"]) is not None:
        secret = secret_file.read_text().strip()
    public_key = values["jwt_public_key"]
    return {
        "api_key_sha256": digests,
        "jwt_secret": secret or None,
        "jwt_public_key": public_key.read_text() if public_key is not None else None,
        "jwt_audience": values["jwt_audience"],
        "jwt_issuer": values["jwt_issuer"],
        "auth_inference": bool(values["auth_inference"]),
        "rate_limit": values["rate_limit"] or 0.0,
        "rate_burst": values["rate_burst"] or 0,
        "tls_cert": str(values["tls_cert"]) if values["tls_cert"] else None,
        "tls_key": str(values["tls_key"]) if values["tls_key"] else None,
    }


def _names(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    if not names:
        raise argparse.ArgumentTypeError(f"expected model names separated by commas, got {text!r}")
    return names


def _weights(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, path


def parse_settings(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """The settings from ``argv`` and, for security flags not given, ``environ``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings(
            host=args.host,
            port=args.port,
            device=args.device,
            dtype=args.dtype,
            models=args.models,
            workers=args.workers,
            max_batch_size=args.max_batch_size,
            max_queue_delay_ms=args.max_queue_delay_ms,
            max_queue=args.max_queue,
            request_timeout_s=args.request_timeout,
            max_body_bytes=args.max_body_bytes,
            max_examples=args.max_examples,
            weights=tuple(args.weights),
            torch_threads=args.torch_threads,
            llm_max_running=args.llm_max_running,
            llm_max_waiting=args.llm_max_waiting,
            llm_tokens_per_chunk=args.llm_tokens_per_chunk,
            llm_prompt_cache_tokens=args.llm_prompt_cache_tokens,
            warmup=not args.no_warmup,
            log_level=args.log_level,
            access_log=args.access_log,
            **_security_values(args, os.environ if environ is None else environ),
        )
        _check_against_registry(settings)
        _check_security(settings)
    except ValueError as exc:
        parser.error(str(exc))
    return settings


def _check_against_registry(settings: Settings) -> None:
    """Refuse at once what the workers would only discover after loading torch."""
    # Imports torch: only after argparse has answered --help and plain usage errors.
    import torch

    from service.llm import MODEL_IDS
    from service.models import REGISTRY

    servable = ", ".join([*REGISTRY, *MODEL_IDS])
    for name in settings.models:
        if name not in REGISTRY and name not in MODEL_IDS:
            raise ValueError(f"--models: unknown model {name!r}; registered: {servable}")
    registered = ", ".join(REGISTRY)
    for name, path in settings.weights:
        if name not in REGISTRY:
            raise ValueError(
                f"--weights {name}={path}: unknown model {name!r}; registered: {registered}"
            )
        if not Path(path).is_file():
            raise ValueError(f"--weights {name}={path}: no such file")
    if settings.device == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"--device cuda: CUDA is not available (torch {torch.__version__}); "
            "use --device auto or --device cpu"
        )


def _check_security(settings: Settings) -> None:
    """Refuse a JWT key that does not load, or PyJWT missing, before any worker tries."""
    from service.security import Guard

    try:
        Guard(settings)
    except RuntimeError as exc:
        raise ValueError(str(exc)) from None


@contextlib.contextmanager
def _metrics_dir() -> Iterator[None]:
    """A fresh directory for prometheus-client's multiprocess files, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="perfgate-service-metrics-") as path:
        os.environ[_METRICS_DIR_ENV] = path
        try:
            yield
        finally:
            del os.environ[_METRICS_DIR_ENV]


def main(argv: Sequence[str] | None = None) -> None:
    settings = parse_settings(argv)
    if settings.workers == 1:
        from service.app import create_app

        _serve(settings, create_app(settings))
        return
    os.environ[SETTINGS_ENV] = settings.to_json()
    with _metrics_dir():
        _serve(settings, "service.app:create_app_from_env", factory=True)


def _serve(settings: Settings, app: Any, *, factory: bool = False) -> None:
    import uvicorn

    uvicorn.run(
        app,
        factory=factory,
        workers=settings.workers if factory else None,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.access_log,
        timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_S,
        ssl_certfile=settings.tls_cert,
        ssl_keyfile=settings.tls_key,
        # X-Forwarded-For from 127.0.0.1 would otherwise let any local process pose as
        # another client, and the rate limits are per client address.
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
