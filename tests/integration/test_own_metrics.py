"""Your own service's metrics through the whole plugin: real Locust, real scrapes (pytester).

The service is not the reference one: a small server in this test process, instrumented
with prometheus-client under Triton's names, with its metrics on a port of their own
(``service.metrics_url``), as Triton serves them on 8002 beside its HTTP port.
"""

from __future__ import annotations

import json
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import CollectorRegistry, Gauge, ProcessCollector, generate_latest

pytestmark = pytest.mark.e2e


def _server(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def triton_like() -> Iterator[tuple[str, int]]:
    """(service URL, metrics port): each ``GET /x`` queues 1 ms and computes 2 ms."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    labels = ("model", "version")
    # Triton's counters have no ``_total`` suffix (prometheus-client's Counter adds one)
    queue = Gauge("nv_inference_queue_duration_us", "queue", labels, registry=registry)
    compute = Gauge("nv_inference_compute_infer_duration_us", "compute", labels, registry=registry)
    success = Gauge("nv_inference_request_success", "requests", labels, registry=registry)
    gpu = ("gpu_uuid",)
    Gauge("nv_gpu_memory_used_bytes", "memory", gpu, registry=registry).labels("G0").set(2**31)
    Gauge("nv_gpu_utilization", "busy", gpu, registry=registry).labels("G0").set(0.6)
    lock = threading.Lock()

    class Service(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/x":
                time.sleep(0.003)
                with lock:
                    success.labels("m", "1").inc()
                    queue.labels("m", "1").inc(1000)
                    compute.labels("m", "1").inc(2000)
            self.send_response(200 if self.path in ("/x", "/health") else 404)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    class Metrics(Service):
        def do_GET(self) -> None:
            body = generate_latest(registry)
            self.send_response(200 if self.path == "/metrics" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    service, metrics = _server(Service), _server(Metrics)
    yield f"http://127.0.0.1:{service.server_address[1]}", metrics.server_address[1]
    for server in (service, metrics):
        server.shutdown()
        server.server_close()


def test_a_triton_style_service_on_its_own_metrics_port_feeds_every_server_figure(
    pytester: pytest.Pytester, triton_like: tuple[str, int]
) -> None:
    url, metrics_port = triton_like
    pytester.makefile(".yaml", thresholds=textwrap.dedent(f"""
        service:
          url: {url}
          metrics_url: ':{metrics_port}/metrics'
        scenarios:
          light:
            users: 3
            spawn_rate: 3
            duration: 3s
            wait_time: [0.01, 0.02]
            min_samples: 20
            tasks: [{{method: GET, path: /x}}]
            budgets: {{p95_ms: 2000, rss_growth_mb: 500, gpu_mem_mb: 4096, gpu_util_min: 50}}
        """))  # fmt: skip
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-m", "load_light",
                                           timeout=120)  # fmt: skip
    result.assert_outcomes(passed=1)
    data = json.loads(next((pytester.path / "results" / "load_tests").glob("*.json")).read_text())
    observed = {b["metric"]: b["observed"] for b in data["budgets"]}
    assert observed["rss_growth_mb"] is not None
    (breakdown,) = [f for f in data["analysis"]["findings"] if f["kind"] == "time_breakdown"]
    assert breakdown["figures"]["queue_ms"] == pytest.approx(1.0)
    assert breakdown["figures"]["compute_ms"] == pytest.approx(2.0)
    if data["gpu"]["source"] == "nvml":
        pytest.skip("this machine has an NVIDIA GPU: NVML, not the service, gave its figures")
    assert observed["gpu_mem_mb"] == pytest.approx(2048.0)
    assert observed["gpu_util_min"] == pytest.approx(60.0)
