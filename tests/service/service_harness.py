"""Test harness for the service: the app in-process over ASGI, the real one as a subprocess,
and reading ``/metrics``. Imported by this directory's conftest and tests (a plain module,
not a conftest, so that tests can import its types).

In-process: the app's lifespan runs on an event loop in a background thread (an anyio
blocking portal) and tests talk to it through ``httpx.ASGITransport`` with plain,
synchronous calls. End to end: ``python -m service`` on a free 127.0.0.1 port, in a
process group of its own so that uvicorn's workers stop with it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
from anyio.from_thread import BlockingPortal, start_blocking_portal
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from service.settings import Settings

READY_TIMEOUT_S = 60.0
ROOT = Path(__file__).resolve().parents[2]
# Warm-up costs start-up time and has tests of its own; most apps here skip it.
FAST = Settings(warmup=False)


@dataclass(frozen=True)
class Call:
    """One request, for ``AsgiService.concurrently``."""

    method: str
    url: str
    json: Any = None


@dataclass(frozen=True)
class AsgiService:
    """A running app and a synchronous face for its async client."""

    portal: BlockingPortal
    client: httpx.AsyncClient
    settings: Settings

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self.portal.call(functools.partial(self.client.request, method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def concurrently(self, calls: Sequence[Call]) -> list[httpx.Response]:
        """Send all calls at once on the app's event loop; answers in order."""
        return self.portal.call(_send_all, self.client, calls)

    def until_ready(self, timeout: float = READY_TIMEOUT_S) -> httpx.Response:
        """Poll ``/ready`` until it answers 200; the last answer if it never does."""
        return self.portal.call(_until_ready, self.client, timeout)


async def _send_all(client: httpx.AsyncClient, calls: Sequence[Call]) -> list[httpx.Response]:
    answers: dict[int, httpx.Response] = {}

    async def send(index: int, call: Call) -> None:
        answers[index] = await client.request(call.method, call.url, json=call.json)

    async with anyio.create_task_group() as group:
        for index, call in enumerate(calls):
            group.start_soon(send, index, call)
    return [answers[index] for index in range(len(calls))]


async def _until_ready(client: httpx.AsyncClient, timeout: float) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while (answer := await client.get("/ready")).status_code != 200:
        if time.monotonic() > deadline or "error" in answer.json():
            return answer
        await anyio.sleep(0.02)
    return answer


@contextlib.asynccontextmanager
async def _serving(settings: Settings, wait: bool) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            if wait and (answer := await _until_ready(client, READY_TIMEOUT_S)).status_code != 200:
                raise RuntimeError(f"/ready answers {answer.status_code}: {answer.text}")
            yield client


@contextlib.contextmanager
def asgi_service(settings: Settings, *, wait: bool = True) -> Iterator[AsgiService]:
    """The app serving in-process; ``wait``: return once ``/ready`` answers 200."""
    with (
        start_blocking_portal(backend="asyncio") as portal,
        portal.wrap_async_context_manager(_serving(settings, wait)) as client,
    ):
        yield AsgiService(portal, client, settings)


# --- the real service, as a subprocess ----------------------------------------------------


@dataclass(frozen=True)
class ServiceProcess:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    seconds_to_ready: float


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def service_process(
    log: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    host: str | None = "127.0.0.1",
    https_cert: Path | None = None,
) -> Iterator[ServiceProcess]:
    """``python -m service ARGS`` until ready; stopped (with its workers) on exit.

    ``host`` None leaves ``--host`` out (the service's default); ``https_cert``: the
    service serves HTTPS with this certificate (give ``--tls-cert``/``--tls-key`` in ARGS),
    which the readiness check trusts.
    """
    port = free_port()
    bind = ["--host", host] if host is not None else []
    command = [sys.executable, "-m", "service", *bind, "--port", str(port), *args]
    started = time.monotonic()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"{'https' if https_cert else 'http'}://127.0.0.1:{port}"
        verify = trusting(https_cert) if https_cert else True
        _wait_until_ready(url, process, log, verify)
        yield ServiceProcess(url, process, log, time.monotonic() - started)
    finally:
        stop(process)


def trusting(cert: Path) -> ssl.SSLContext:
    """An SSL context that trusts ``cert`` (httpx's ``verify``; a path there is deprecated)."""
    return ssl.create_default_context(cafile=str(cert))


def _wait_until_ready(
    url: str, process: subprocess.Popen[bytes], log: Path, verify: ssl.SSLContext | bool
) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited with {process.returncode}:\n{log.read_text()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/ready", timeout=1.0, verify=verify).status_code == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"the service was not ready in {READY_TIMEOUT_S:g} s:\n{log.read_text()}")


def stop(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM the process group (uvicorn and its workers), SIGKILL if it lingers."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode


# --- reading /metrics ---------------------------------------------------------------------


def sample_value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels``."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )
