"""The service's own metrics: ``service.metrics_url`` and ``service.metrics`` (issue 12).

The pure lookup (which metric of a scrape holds which figure, in which unit), the YAML
that configures it, and a run through the gate (``FakeDriver``, the real ``HttpProbe``)
against a small server instrumented with prometheus-client that is not the reference
service: Triton's metric names, on a metrics port of their own.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Gauge, Histogram, ProcessCollector, generate_latest

from pytest_perfgate.config import ConfigError, load_thresholds
from pytest_perfgate.core.model import Budget, Scenario, ServiceSpec, Task, Thresholds
from pytest_perfgate.core.resilience import rss_growth_mb
from pytest_perfgate.core.service_metrics import (
    DEFAULT_METRICS,
    ServiceMetrics,
    Timing,
    gauge_value,
    mean_time_ms,
    metrics_url,
    parse_prometheus_text,
)
from pytest_perfgate.core.service_metrics import Gauge as MetricGauge
from pytest_perfgate.core.stats import Sample
from pytest_perfgate.core.verdict import Outcome
from pytest_perfgate.gate import Gate
from pytest_perfgate.load.fake import FakeDriver
from pytest_perfgate.options import resolve

# --- the pure lookup -------------------------------------------------------------------

#: one scrape before and one after 100 requests, in each family's names
FAMILIES = {
    "reference service": (
        "service_queue_time_seconds_sum 1\nservice_queue_time_seconds_count 100\n"
        "service_compute_time_seconds_sum 2\nservice_compute_time_seconds_count 100\n",
        "service_queue_time_seconds_sum 3\nservice_queue_time_seconds_count 200\n"
        "service_compute_time_seconds_sum 5\nservice_compute_time_seconds_count 200\n",
    ),
    "Triton": (
        'nv_inference_queue_duration_us{model="m",version="1"} 1e6\n'
        'nv_inference_compute_infer_duration_us{model="m",version="1"} 2e6\n'
        'nv_inference_request_success{model="m",version="1"} 100\n',
        'nv_inference_queue_duration_us{model="m",version="1"} 3e6\n'
        'nv_inference_compute_infer_duration_us{model="m",version="1"} 5e6\n'
        'nv_inference_request_success{model="m",version="1"} 200\n',
    ),
    "vLLM": (
        'vllm:request_queue_time_seconds_sum{model_name="x"} 1\n'
        'vllm:request_queue_time_seconds_count{model_name="x"} 100\n'
        'vllm:request_inference_time_seconds_sum{model_name="x"} 2\n'
        'vllm:request_inference_time_seconds_count{model_name="x"} 100\n',
        'vllm:request_queue_time_seconds_sum{model_name="x"} 3\n'
        'vllm:request_queue_time_seconds_count{model_name="x"} 200\n'
        'vllm:request_inference_time_seconds_sum{model_name="x"} 5\n'
        'vllm:request_inference_time_seconds_count{model_name="x"} 200\n',
    ),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_the_default_names_read_queue_and_compute_time_of_each_family(family: str) -> None:
    before, after = (parse_prometheus_text(text) for text in FAMILIES[family])
    # 100 requests in between: 2 s queued (20 ms each), 3 s computing (30 ms each)
    assert mean_time_ms(before, after, DEFAULT_METRICS.queue_time) == pytest.approx((20.0, 100))
    assert mean_time_ms(before, after, DEFAULT_METRICS.compute_time) == pytest.approx((30.0, 100))


@pytest.mark.parametrize(
    ("text", "mb"),
    [
        ("service_process_resident_memory_bytes 104857600\n", 100.0),
        ("process_resident_memory_bytes 104857600\n", 100.0),
    ],
)
def test_the_default_names_read_the_resident_memory(text: str, mb: float) -> None:
    scrape = parse_prometheus_text(text)
    assert gauge_value(scrape, DEFAULT_METRICS.rss) == pytest.approx(mb * 2**20)


def test_the_reference_services_rss_wins_over_the_process_collectors() -> None:
    scrape = parse_prometheus_text(
        "process_resident_memory_bytes 1\nservice_process_resident_memory_bytes 2\n"
    )
    assert gauge_value(scrape, DEFAULT_METRICS.rss) == 2


def test_tritons_gpu_gauges_are_summed_for_memory_and_averaged_as_percent_for_utilisation() -> None:
    scrape = parse_prometheus_text(
        'nv_gpu_memory_used_bytes{gpu_uuid="a"} 1e9\nnv_gpu_memory_used_bytes{gpu_uuid="b"} 2e9\n'
        'nv_gpu_utilization{gpu_uuid="a"} 0.25\nnv_gpu_utilization{gpu_uuid="b"} 0.75\n'
    )
    assert gauge_value(scrape, DEFAULT_METRICS.gpu_memory) == 3e9
    assert gauge_value(scrape, DEFAULT_METRICS.gpu_utilisation, mean=True) == pytest.approx(50.0)


def test_rss_growth_reads_the_same_metric_before_and_after() -> None:
    before = parse_prometheus_text("process_resident_memory_bytes 1048576\n")
    after = parse_prometheus_text(
        "process_resident_memory_bytes 3145728\nservice_process_resident_memory_bytes 9e9\n"
    )
    # the reference name is in one scrape only: the process collector's is read in both
    assert rss_growth_mb(before, after) == pytest.approx(2.0)
    assert rss_growth_mb(before, {}) is None


def test_no_timing_is_read_when_no_request_was_counted_in_between() -> None:
    same = parse_prometheus_text(FAMILIES["Triton"][0])
    assert mean_time_ms(same, same, DEFAULT_METRICS.queue_time) is None
    assert mean_time_ms(None, None, DEFAULT_METRICS.queue_time) is None


@pytest.mark.parametrize(
    ("configured", "expected"),
    [
        (None, "http://svc:8000/metrics"),
        ("/internal/metrics", "http://svc:8000/internal/metrics"),
        (":8002/metrics", "http://svc:8002/metrics"),
        ("http://other:9400/metrics", "http://other:9400/metrics"),
    ],
)
def test_the_metrics_url_is_a_url_a_path_or_a_port_on_the_services_host(
    configured: str | None, expected: str
) -> None:
    assert metrics_url("http://svc:8000/", configured) == expected


def test_a_port_replaces_the_port_of_an_ipv6_host_too() -> None:
    assert metrics_url("http://[::1]:8000", ":8002/m") == "http://[::1]:8002/m"
    assert metrics_url("http://[::1]", ":8002/m") == "http://[::1]:8002/m"


# --- thresholds.yaml -----------------------------------------------------------------------


def service_yaml(tmp_path: Path, service: str) -> Path:
    path = tmp_path / "thresholds.yaml"
    path.write_text(f"service:\n{service}scenarios:\n  light:\n    tasks: [{{path: /x}}]\n")
    return path


def test_a_named_figure_replaces_its_defaults_and_leaves_the_others(tmp_path: Path) -> None:
    path = service_yaml(tmp_path, (
        "  url: http://triton:8000\n"
        "  metrics_url: ':8002/metrics'\n"
        "  metrics:\n"
        "    rss: my_rss_bytes\n"
        "    queue_time: {histogram: my_queue, unit: microseconds}\n"
        "    compute_time: {total: my_compute_us, count: my_requests, unit: microseconds}\n"
        "    gpu_utilisation: [{name: my_gpu_busy, unit: fraction}, other_gpu_percent]\n"
    ))  # fmt: skip
    service = load_thresholds(path).service
    assert service.metrics_url == ":8002/metrics"
    assert service.metrics == ServiceMetrics(
        rss=(MetricGauge("my_rss_bytes"),),
        queue_time=(Timing("my_queue_sum", "my_queue_count", "microseconds"),),
        compute_time=(Timing("my_compute_us", "my_requests", "microseconds"),),
        gpu_memory=DEFAULT_METRICS.gpu_memory,
        gpu_utilisation=(MetricGauge("my_gpu_busy", 100.0), MetricGauge("other_gpu_percent")),
    )


def test_without_a_metrics_section_the_defaults_apply(tmp_path: Path) -> None:
    service = load_thresholds(service_yaml(tmp_path, "  url: http://x\n")).service
    assert (service.metrics_url, service.metrics) == (None, DEFAULT_METRICS)


@pytest.mark.parametrize(
    ("service", "message"),
    [
        ("  metrics: {memory: x}\n", r"service\.metrics\.memory: unknown key 'memory'"),
        ("  metrics: {rss: 'not a name'}\n", r"service\.metrics\.rss: expected a Prometheus"),
        ("  metrics: {queue_time: {histogram: q, unit: hours}}\n",
         r"service\.metrics\.queue_time\.unit: expected one of seconds, milliseconds"),
        ("  metrics: {compute_time: {total: t}}\n",
         r"service\.metrics\.compute_time: expected either histogram, or total and count"),
        ("  metrics: {gpu_utilisation: {name: g, unit: bytes}}\n",
         r"service\.metrics\.gpu_utilisation\.unit: expected one of percent, fraction"),
        ("  metrics_url: 'metrics'\n", r"service\.metrics_url: expected a URL, a /path or a :port"),
    ],
)  # fmt: skip
def test_a_bad_metrics_setting_names_its_key(tmp_path: Path, service: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_thresholds(service_yaml(tmp_path, service))


# --- through the gate, against a prometheus-client server that is not the reference ---------


def serve(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


@dataclass
class TritonLike:
    """A service on one port (``/health`` only) with Triton's metrics on another.

    Triton's duration counters carry no ``_total`` suffix, which prometheus-client's
    ``Counter`` would add: gauges write the same lines.
    """

    registry: CollectorRegistry
    queue_us: Gauge
    compute_us: Gauge
    success: Gauge
    url: str = ""
    metrics_port: int = 0

    def serve_requests(self, n: int, queue_ms: float, compute_ms: float) -> None:
        """What the service's metrics show after ``n`` requests."""
        self.success.labels("m", "1").inc(n)
        self.queue_us.labels("m", "1").inc(n * queue_ms * 1000)
        self.compute_us.labels("m", "1").inc(n * compute_ms * 1000)


def triton_registry() -> TritonLike:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)  # process_resident_memory_bytes, as any service has
    labels = ("model", "version")
    triton = TritonLike(
        registry,
        Gauge("nv_inference_queue_duration_us", "queue", labels, registry=registry),
        Gauge("nv_inference_compute_infer_duration_us", "compute", labels, registry=registry),
        Gauge("nv_inference_request_success", "requests", labels, registry=registry),
    )
    Gauge("nv_gpu_memory_used_bytes", "memory", ["gpu_uuid"], registry=registry).labels(
        "GPU-0"
    ).set(3 * 2**30)
    Gauge("nv_gpu_utilization", "busy", ["gpu_uuid"], registry=registry).labels("GPU-0").set(0.8)
    # a histogram under other names, to show that only the names asked for are read
    Histogram("unrelated_seconds", "noise", registry=registry).observe(9.0)
    return triton


@pytest.fixture
def triton() -> Iterator[TritonLike]:
    found = triton_registry()

    class Metrics(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = generate_latest(found.registry)
            self.send_response(200 if self.path == "/metrics" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    class Health(Metrics):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/health" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    service, service_port = serve(Health)
    metrics, found.metrics_port = serve(Metrics)
    found.url = f"http://127.0.0.1:{service_port}"
    yield found
    for server in (service, metrics):
        server.shutdown()
        server.server_close()


@dataclass
class Up:
    url: str

    def alive(self) -> bool:
        return True


class ServingDriver(FakeDriver):
    """Replays its samples and moves the service's counters as the requests would."""

    def __init__(self, service: TritonLike, samples: list[Sample]) -> None:
        super().__init__(samples)
        self.service = service

    def run(self, *args: Any, **kwargs: Any) -> Any:
        self.service.serve_requests(len(self.samples), queue_ms=30.0, compute_ms=5.0)
        return super().run(*args, **kwargs)


def gate_for(service: TritonLike, spec: ServiceSpec, tmp_path: Path, budget: Budget) -> Gate:
    scenario = Scenario("light", users=4, spawn_rate=4.0, duration_s=10.0, min_samples=20,
                        tasks=(Task("GET", "/x", "GET /x"),), budget=budget)  # fmt: skip
    settings = resolve({"results_dir": str(tmp_path / "results"), "early_stop": "false"},
                       {}, {}, tmp_path)  # fmt: skip
    thresholds = Thresholds(tmp_path / "thresholds.yaml", spec, {"light": scenario})
    return Gate(thresholds, settings, lambda: Up(service.url), cwd=tmp_path,
                driver=ServingDriver(service, [Sample(i / 50, "GET /x", 40.0, True, 200)
                                               for i in range(500)]))  # fmt: skip


def test_a_triton_style_service_gives_its_time_breakdown_memory_and_gpu_to_the_gate(
    triton: TritonLike, tmp_path: Path
) -> None:
    spec = ServiceSpec(url=triton.url, metrics_url=f":{triton.metrics_port}/metrics")
    budget = Budget(rss_growth_mb=1000.0, gpu_mem_mb=4096.0, gpu_util_min=50.0)
    gate = gate_for(triton, spec, tmp_path, budget)
    result = gate.run(gate.scenario("light"))

    (breakdown,) = [f for f in result.analysis.findings if f.kind == "time_breakdown"]
    assert breakdown.figures["queue_ms"] == pytest.approx(30.0)
    assert breakdown.figures["compute_ms"] == pytest.approx(5.0)
    assert breakdown.figures["server_requests"] == 500
    observed = {c.metric: c.observed for c in result.verdict.checks}
    assert observed["rss_growth_mb"] is not None  # the process collector's, on both scrapes
    assert result.gpu is not None
    source = result.gpu.to_dict()["source"]
    if source == "nvml":
        pytest.skip("this machine has an NVIDIA GPU: NVML, not the service, gave its figures")
    assert source == "metrics"  # no NVML here: Triton's gauges
    assert observed["gpu_mem_mb"] == pytest.approx(3072.0)
    assert observed["gpu_util_min"] == pytest.approx(80.0)
    assert result.verdict.outcome is Outcome.PASS


def test_the_metrics_are_looked_for_at_the_services_own_url_without_metrics_url(
    triton: TritonLike, tmp_path: Path
) -> None:
    # the service's port has no /metrics here, so nothing server-side is known: INVALID
    gate = gate_for(triton, ServiceSpec(url=triton.url), tmp_path, Budget(rss_growth_mb=1000.0))
    result = gate.run(gate.scenario("light"))
    assert result.verdict.outcome is Outcome.INVALID
    assert "time_breakdown" not in {f.kind for f in result.analysis.findings}


def test_a_mapping_reads_metrics_under_names_no_default_knows(
    triton: TritonLike, tmp_path: Path
) -> None:
    success = "nv_inference_request_success"
    # queue and compute swapped on purpose: the mapping, not the defaults, is what is read
    names = ServiceMetrics(
        queue_time=(Timing("nv_inference_compute_infer_duration_us", success, "microseconds"),),
        compute_time=(Timing("nv_inference_queue_duration_us", success, "microseconds"),),
    )
    spec = ServiceSpec(url=triton.url, metrics_url=f":{triton.metrics_port}/metrics",
                       metrics=names)  # fmt: skip
    gate = gate_for(triton, spec, tmp_path, Budget(p95_ms=100.0))
    result = gate.run(gate.scenario("light"))
    (breakdown,) = [f for f in result.analysis.findings if f.kind == "time_breakdown"]
    assert breakdown.figures["queue_ms"] == pytest.approx(5.0)
    assert breakdown.figures["compute_ms"] == pytest.approx(30.0)
