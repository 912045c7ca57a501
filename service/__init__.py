"""The reference inference service that pytest-perfgate's default configuration starts.

Run it with ``python -m service --port 8000`` (see ``python -m service --help``). Modules,
one role each: ``__main__`` (command line -> uvicorn), ``settings`` (the frozen settings),
``app`` (HTTP routes), ``runtime`` (loaded models), ``models`` (the registered
architectures), ``batching`` (the dynamic batcher), ``metrics`` (Prometheus) and
``payloads`` (valid request bodies for load generators).

This package's import stays light: it imports neither torch nor fastapi, so that
``service.payloads`` can run inside a Locust process.
"""

from __future__ import annotations

__all__: list[str] = []
