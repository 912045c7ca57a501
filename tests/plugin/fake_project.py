"""A pytester project for the plugin's fake runs: a healthy stub service and its files.

``test_fake_runs``, ``test_noisy_runs`` and ``test_streaming_fake`` each run the real plugin
in-process over ``load.fake.FakeDriver`` (set by the project's conftest). The service is a
stdlib HTTP server in a thread that answers 200 to every GET, so readiness checks pass;
``PROBE`` is the conftest's probe of it (no metrics, no GPU).
"""

from __future__ import annotations

import contextlib
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

#: conftest source of a probe that finds the service up, without metrics or a GPU
PROBE = """
class Probe:
    def answers(self, url):
        return True

    def metrics(self, url):
        return None

    def watch_gpu(self, url):
        return lambda: GpuTelemetry(None, ())
"""


class _Healthy(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet


@contextlib.contextmanager
def fake_project(
    pytester: pytest.Pytester, thresholds: str, conftest: str
) -> Iterator[pytest.Pytester]:
    """``pytester`` with ``thresholds.yaml``, the conftest and ``perfgate_url`` pointing at
    a healthy stub server that runs until the block ends."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Healthy)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    pytester.makefile(".yaml", thresholds=textwrap.dedent(thresholds))
    pytester.makeconftest(conftest)
    pytester.makeini(f"[pytest]\nperfgate_url = http://127.0.0.1:{server.server_port}\n")
    try:
        yield pytester
    finally:
        server.shutdown()
        server.server_close()


def run_in_process(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """``pytest *args`` in this process (pytest warns that it cannot rewrite the asserts
    of the plugin, which is imported already)."""
    return pytester.runpytest("-W", "ignore::pytest.PytestAssertRewriteWarning", *args)
