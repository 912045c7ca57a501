"""GPU telemetry: sampled from /metrics where NVML is absent; absent, never zero, on a CPU."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pytest_perfgate.config import Budget, ConfigError, budget_from_mapping, load_thresholds
from pytest_perfgate.core.stats import Sample, summarize
from pytest_perfgate.core.verdict import Outcome, evaluate
from pytest_perfgate.target.telemetry import GpuSampler, GpuTelemetry


def serve(metrics: str) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = metrics.encode()
            self.send_response(200 if self.path == "/metrics" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def gpu_service() -> Iterator[str]:
    yield from serve("# TYPE service_gpu_memory_used_bytes gauge\n"
                     "service_gpu_memory_used_bytes 1.048576e+09\n")  # fmt: skip


@pytest.fixture
def cpu_service() -> Iterator[str]:
    yield from serve("# TYPE service_requests_total counter\nservice_requests_total 3\n")


def test_the_services_gpu_gauge_is_sampled_when_nvml_is_absent(gpu_service: str) -> None:
    sampler = GpuSampler(gpu_service + "/metrics", interval_s=0.05).start()
    time.sleep(0.3)
    gpu = sampler.stop()
    # this machine has no NVIDIA driver, so NVML is absent and /metrics is the source
    assert gpu.source == "metrics"
    assert len(gpu.samples) >= 3
    assert gpu.peak_mem_mb == pytest.approx(1000.0)
    assert gpu.mean_util_percent is None  # /metrics has no utilisation: absent, not 0


def test_without_any_gpu_figures_the_telemetry_is_absent_not_zero(cpu_service: str) -> None:
    gpu = GpuSampler(cpu_service + "/metrics", interval_s=0.05).start().stop()
    assert gpu.source is None and gpu.samples == ()
    assert gpu.figures() == {"gpu_mem_mb": None, "gpu_util_min": None}
    assert gpu.to_dict()["peak_mem_mb"] is None


def stats_of(n: int = 100):  # type: ignore[no-untyped-def]
    return summarize([Sample(t=i / 10, name="GET /x", ms=5.0, ok=True) for i in range(n)], 10.0)


def test_a_gpu_budget_without_telemetry_is_invalid_and_says_why() -> None:
    verdict = evaluate("light", Budget(gpu_mem_mb=2000), {}, stats_of(),
                       figures=GpuTelemetry(None, ()).figures())  # fmt: skip
    assert verdict.outcome is Outcome.INVALID
    (check,) = verdict.checks
    assert check.message() == (
        "light: Total GPU memory budget 2 000 MB: invalid, no GPU telemetry: "
        "no NVIDIA GPU, and the service's metrics have none"
    )


def test_gpu_budgets_compare_the_peak_memory_and_the_mean_utilisation() -> None:
    figures = {"gpu_mem_mb": 2500.0, "gpu_util_min": 35.0}
    verdict = evaluate("light", Budget(gpu_mem_mb=2000, gpu_util_min=50), {}, stats_of(),
                       figures=figures)  # fmt: skip
    assert verdict.outcome is Outcome.FAIL
    lines = [c.message() for c in verdict.checks]
    assert lines == [
        "light: Total GPU memory 2 500 MB > budget 2 000 MB (+25 %, n=100)",
        "light: Total GPU utilisation 35 % < budget 50 % (-30 %, n=100)",
    ]
    ok = evaluate("light", Budget(gpu_mem_mb=3000, gpu_util_min=30), {}, stats_of(),
                  figures=figures)  # fmt: skip
    assert ok.outcome is Outcome.PASS


def test_gpu_budgets_belong_to_the_whole_run_not_to_an_endpoint(tmp_path: Path) -> None:
    assert budget_from_mapping({"gpu_mem_mb": 100}, "m") == Budget(gpu_mem_mb=100)
    with pytest.raises(ConfigError, match=r"^m.gpu_util_min: expected a utilisation"):
        budget_from_mapping({"gpu_util_min": "high"}, "m")
    path = tmp_path / "thresholds.yaml"
    path.write_text(
        "scenarios:\n  light:\n    tasks: [{path: /x}]\n"
        "    endpoints: {'GET /x': {gpu_mem_mb: 100}}\n"
    )
    with pytest.raises(ConfigError, match="gpu_mem_mb apply to the whole run: put them in budgets"):
        load_thresholds(path)
