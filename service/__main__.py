"""``python -m service``: parse the command line, check it, and run uvicorn.

With ``--workers 1`` the app runs in this process. With more, uvicorn starts each worker
by import string (``service.app:create_app_from_env``) and the settings travel as JSON in
the environment; Prometheus samples are merged across workers through a temporary
``PROMETHEUS_MULTIPROC_DIR`` that this launcher creates before any worker starts and
removes when uvicorn returns.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

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
        help="models loaded and warmed up at start (default: mlp,encoder)",
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
    add("--no-warmup", action="store_true", help="skip warm-up forward passes at load")
    add(
        "--log-level",
        default=defaults.log_level,
        choices=("critical", "error", "warning", "info", "debug"),
        help="uvicorn log level (default: %(default)s)",
    )
    add("--access-log", action="store_true", help="log every request (costs throughput)")
    return parser


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


def parse_settings(argv: Sequence[str] | None = None) -> Settings:
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
            warmup=not args.no_warmup,
            log_level=args.log_level,
            access_log=args.access_log,
        )
        _check_against_registry(settings)
    except ValueError as exc:
        parser.error(str(exc))
    return settings


def _check_against_registry(settings: Settings) -> None:
    """Refuse at once what the workers would only discover after loading torch."""
    # Imports torch: only after argparse has answered --help and plain usage errors.
    import torch

    from service.models import REGISTRY

    registered = ", ".join(REGISTRY)
    for name in settings.models:
        if name not in REGISTRY:
            raise ValueError(f"--models: unknown model {name!r}; registered: {registered}")
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
    )


if __name__ == "__main__":
    main()
