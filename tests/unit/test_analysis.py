"""Grades and findings: each finding comes from measured data, and only from it."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from pytest_perfgate.core.findings import (
    Analysis,
    FailureGroup,
    Finding,
    analysis_from_dict,
    analyze,
    classify_failure,
    error_grade,
    grade,
    latency_grade,
    metric_total,
    parse_prometheus_text,
)
from pytest_perfgate.core.stats import TOTAL, EndpointStats, RunStats, Sample
from pytest_perfgate.results.locust_csv import analyze_locust_csv, read_locust_stats

DATA = Path(__file__).parent / "data"


def ep(
    name: str = "POST /predict",
    *,
    requests: int = 1000,
    failures: int = 0,
    mean: float = 25.0,
    p50: float = 20.0,
    p95: float = 40.0,
    p99: float = 60.0,
    rps: float = 10.0,
    ci: Mapping[str, tuple[float, float]] | None = None,
) -> EndpointStats:
    return EndpointStats(
        name=name, requests=requests, failures=failures, rps=rps, mean=mean, std=5.0,
        min=1.0, max=p99 * 1.5, p50=p50, p95=p95, p99=p99, ci=ci or {},
    )  # fmt: skip


def run_stats(*endpoints: EndpointStats, total: EndpointStats | None = None) -> RunStats:
    if total is None:
        requests = sum(e.requests for e in endpoints)
        total = ep(
            TOTAL,
            requests=requests,
            failures=sum(e.failures for e in endpoints),
            mean=sum(e.mean * e.requests for e in endpoints) / requests,
            p50=max(e.p50 for e in endpoints),
            p95=max(e.p95 for e in endpoints),
            p99=max(e.p99 for e in endpoints),
            rps=sum(e.rps for e in endpoints),
        )
    return RunStats(endpoints={e.name: e for e in endpoints}, total=total, duration_s=100.0)


def kinds(analysis: Analysis) -> list[str]:
    return [f.kind for f in analysis.findings]


def only(analysis: Analysis, kind: str) -> Finding:
    found = [f for f in analysis.findings if f.kind == kind]
    assert len(found) == 1, analysis.findings
    return found[0]


# --- grades --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p95_ms", "expected"),
    [(0.0, "Excellent"), (49.99, "Excellent"), (50.0, "Good"), (99.99, "Good"),
     (100.0, "Acceptable"), (199.99, "Acceptable"), (200.0, "Poor"), (499.99, "Poor"),
     (500.0, "Critical"), (10_000.0, "Critical")],
)  # fmt: skip
def test_the_latency_grade_changes_exactly_at_each_p95_boundary(
    p95_ms: float, expected: str
) -> None:
    assert latency_grade(p95_ms) == expected
    assert grade(p95_ms, 0.0) == expected


@pytest.mark.parametrize(
    ("error_rate", "expected"),
    [(0.0, "Excellent"), (0.00099, "Excellent"), (0.001, "Good"), (0.00999, "Good"),
     (0.01, "Acceptable"), (0.04999, "Acceptable"), (0.05, "Poor"), (1.0, "Poor")],
)  # fmt: skip
def test_the_error_grade_changes_exactly_at_each_error_rate_boundary(
    error_rate: float, expected: str
) -> None:
    assert error_grade(error_rate) == expected
    assert grade(10.0, error_rate) == expected


@pytest.mark.parametrize(
    ("p95_ms", "error_rate", "expected"),
    [(40.0, 0.02, "Acceptable"), (300.0, 0.0, "Poor"), (30.0, 0.2, "Poor"),
     (600.0, 0.5, "Critical"), (75.0, 0.005, "Good")],
)  # fmt: skip
def test_the_overall_grade_is_the_worse_of_latency_and_errors(
    p95_ms: float, error_rate: float, expected: str
) -> None:
    assert grade(p95_ms, error_rate) == expected


def test_analyze_grades_every_endpoint_and_the_total() -> None:
    stats = run_stats(ep("GET /health", p95=12.0), ep("POST /predict", p95=150.0, failures=20))
    analysis = analyze(stats)
    assert analysis.grades == {
        "GET /health": "Excellent",
        "POST /predict": "Acceptable",
        TOTAL: "Acceptable",
    }
    s = analysis.summary
    assert (s.p95, s.requests, s.failures, s.grade) == (150.0, 2000, 20, "Acceptable")
    assert s.error_rate == pytest.approx(0.01)


# --- a clean run has no finding ------------------------------------------------------


def test_a_fast_clean_run_without_extra_data_has_no_finding_only_notes() -> None:
    analysis = analyze(run_stats(ep("POST /predict")))
    assert analysis.findings == ()
    assert any("saturation was not analysed" in n for n in analysis.notes)
    assert any("queue and compute time were not analysed" in n for n in analysis.notes)


# --- errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        (None, "HTTPError('503 Server Error: Service Unavailable for url: /p')", "backpressure"),
        (None, "HTTPError('429 Client Error: Too Many Requests for url: /p')", "backpressure"),
        (None, "HTTPError('500 Server Error: Internal Server Error for url: /p')", "server_error"),
        (None, "CatchResponseError('Got status code 503')", "backpressure"),
        (None, "HTTPError('422 Client Error: Unprocessable Entity for url: /p')", "client_error"),
        (None, "ConnectionRefusedError(111, 'Connection refused')", "connection"),
        (None, "RemoteDisconnected('Remote end closed connection without response')", "connection"),
        (None, "ReadTimeout(\"... Read timed out. (read timeout=10)\")", "timeout"),
        (0, "", "connection"),
        (0, "timeout after 10 s", "timeout"),
        (503, "", "backpressure"),
        (502, "", "server_error"),
        (401, "", "client_error"),
        (200, "response body had no 'label'", "other"),
        (None, "something odd", "other"),
    ],
)  # fmt: skip
def test_failures_are_classified_by_status_or_by_error_text(
    status: int | None, error: str, expected: str
) -> None:
    assert classify_failure(status, error) == expected


def test_failed_samples_give_an_error_finding_by_endpoint_and_class() -> None:
    stats = run_stats(ep("POST /predict", requests=1000, failures=60), ep("GET /models"))
    failures = (
        [Sample(1.0, "POST /predict", 5.0, False, 503, "busy")] * 40
        + [Sample(2.0, "POST /predict", 10_000.0, False, 0, "timed out")] * 15
        + [Sample(3.0, "POST /predict", 5.0, False, 500, "boom")] * 5
        + [Sample(4.0, "GET /models", 5.0, True, 200)] * 3  # successes are ignored
    )
    finding = only(analyze(stats, failures=failures), "errors")
    assert finding.severity == "warning"  # 60 of 2 000 = 3 %
    assert "3.00 % of requests failed (60 of 2 000)" in finding.evidence
    assert "POST /predict: 40 x 429/503 backpressure, 15 x timeouts, 5 x 5xx server errors" in (
        finding.evidence
    )
    assert "mostly 429/503 backpressure" in finding.title
    recs = " ".join(finding.recommendations)
    assert "exponential backoff" in recs
    assert "circuit breaker" in recs
    assert "validate inputs" in recs.lower()
    assert len(finding.recommendations) == len(set(finding.recommendations))


def test_failure_groups_from_locust_are_classified_from_their_error_text() -> None:
    stats = run_stats(ep("POST /predict", requests=100, failures=10))
    groups = [FailureGroup("POST /predict", "ConnectionRefusedError(111, 'refused')", 10)]
    finding = only(analyze(stats, failures=groups), "errors")
    assert finding.severity == "critical"  # 10 %
    assert "10 x connection errors" in finding.evidence
    assert "circuit breaker" in " ".join(finding.recommendations)
    assert finding.figures["class_connection"] == 10


def test_failures_without_details_still_name_the_failing_endpoints() -> None:
    stats = run_stats(ep("POST /predict", requests=10_000, failures=5), ep("GET /health"))
    finding = only(analyze(stats), "errors")
    assert finding.severity == "info"  # 5 of 11 000
    assert "POST /predict: 5" in finding.evidence
    assert "error classes are unknown" in finding.evidence
    assert finding.title == "0.05 % of requests failed"


def test_no_error_finding_without_failures() -> None:
    assert "errors" not in kinds(analyze(run_stats(ep(failures=0))))


# --- latency -------------------------------------------------------------------------


def test_a_p95_above_200_ms_gives_a_high_latency_finding_with_its_numbers() -> None:
    stats = run_stats(ep("POST /predict", p50=150.0, p95=412.0, p99=700.0,
                         ci={"p95": (398.0, 426.0)}))  # fmt: skip
    finding = only(analyze(stats), "high_latency")
    assert finding.endpoint == "POST /predict"
    assert finding.severity == "warning"
    assert "P95 412 ms (95 % CI 398-426 ms)" in finding.evidence
    recs = " ".join(finding.recommendations).lower()
    for advice in ("profile", "cache", "batch size", "pre-allocate", "async"):
        assert advice in recs


def test_a_p95_of_exactly_200_ms_gives_no_high_latency_finding() -> None:
    assert "high_latency" not in kinds(analyze(run_stats(ep(p95=200.0, p99=300.0))))


def test_a_p99_more_than_twice_the_p95_gives_a_long_tail_finding() -> None:
    finding = only(analyze(run_stats(ep(p95=40.0, p99=95.0, requests=500))), "long_tail")
    assert "P99 95 ms against P95 40 ms" in finding.evidence
    assert finding.figures["ratio"] == pytest.approx(95 / 40)
    recs = " ".join(finding.recommendations).lower()
    for advice in ("cold start", "gc pause", "warm-up", "timeout", "long tail"):
        assert advice in recs


@pytest.mark.parametrize(
    ("p99", "requests"), [(80.0, 1000), (79.0, 1000), (200.0, 99)], ids=["2x", "below", "few"]
)
def test_no_long_tail_finding_at_twice_the_p95_or_with_too_few_requests(
    p99: float, requests: int
) -> None:
    assert "long_tail" not in kinds(analyze(run_stats(ep(p95=40.0, p99=p99, requests=requests))))


def test_the_endpoint_taking_most_of_the_time_is_named_with_its_share() -> None:
    stats = run_stats(
        ep("POST /predict encoder", requests=200, mean=300.0),
        ep("POST /predict mlp", requests=800, mean=25.0),
    )
    finding = only(analyze(stats), "dominant_endpoint")
    assert finding.endpoint == "POST /predict encoder"
    # 200 * 300 = 60 000 of 80 000 ms
    assert "75.00 % of the time" in finding.evidence
    assert "20.00 % of the requests" in finding.evidence
    assert "slower than the others" in finding.recommendations[0]


def test_no_dominant_endpoint_when_time_is_spread_or_there_is_one_endpoint() -> None:
    spread = run_stats(ep("GET /a", mean=20.0), ep("GET /b", mean=20.0), ep("GET /c", mean=20.0))
    assert "dominant_endpoint" not in kinds(analyze(spread))
    assert "dominant_endpoint" not in kinds(analyze(run_stats(ep("GET /a"))))


# --- saturation ----------------------------------------------------------------------


def history(points: Sequence[tuple[int, float]], rows_each: int = 3) -> list[dict[str, Any]]:
    rows, t = [], 0.0
    for users, rps in points:
        for _ in range(rows_each):
            rows.append({"t": t, "users": users, "rps": rps, "fails": 0.0, "p50": users * 0.5})
            t += 1.0
    return rows


def test_throughput_that_stops_growing_while_users_grow_is_a_saturation_finding() -> None:
    rows = history([(10, 10.0), (20, 20.0), (40, 30.0), (80, 31.0), (160, 30.5)])
    finding = only(analyze(run_stats(ep()), rows), "saturation")
    assert finding.title == "Throughput saturates at about 30 req/s (about 40 users)"
    assert finding.figures["saturation_users"] == 40
    assert finding.evidence == (
        "Users grew 16.0x (from 10 to 160) but throughput only 3.0x (from 10 to 30.5 req/s); "
        "it levelled off at about 30 req/s from about 40 users on, while the median "
        "response time went from 5 to 80 ms."
    )
    recs = " ".join(finding.recommendations).lower()
    for advice in ("uvicorn workers", "async", "horizontally", "load balancer"):
        assert advice in recs


def test_a_spike_that_multiplies_users_but_not_throughput_is_a_saturation_finding() -> None:
    rows = history([(10, 8.0), (500, 30.0), (10, 8.0)], rows_each=5)
    finding = only(analyze(run_stats(ep()), rows), "saturation")
    assert finding.title == "Throughput grew only 3.8x while users grew 50.0x"


def test_throughput_that_grows_with_users_is_no_saturation() -> None:
    rows = history([(10, 10.0), (20, 19.5), (40, 41.0), (80, 79.0), (160, 158.0)])
    assert "saturation" not in kinds(analyze(run_stats(ep()), rows))


def test_a_constant_user_count_says_nothing_about_saturation() -> None:
    rows = history([(0, 0.0), (10, 10.0), (10, 10.2), (10, 9.9)])
    assert "saturation" not in kinds(analyze(run_stats(ep()), rows))


def test_single_noisy_seconds_of_a_ramp_up_are_no_saturation() -> None:
    # 0.8 req/s per user; the second at 4 users happened to see 9 requests
    ramp = [(2, 1.6), (4, 9.0), (6, 4.8), (8, 6.4)]
    rows = history(ramp, rows_each=1) + history([(10, 8.0)], rows_each=30)
    assert "saturation" not in kinds(analyze(run_stats(ep()), rows))


# --- Prometheus metrics and the time breakdown ---------------------------------------

METRICS_TEXT = """\
# HELP service_queue_time_seconds Time a request waits for a batch slot.
# TYPE service_queue_time_seconds histogram
service_queue_time_seconds_bucket{model="mlp",le="0.01"} 3
service_queue_time_seconds_sum{model="mlp"} 1.5
service_queue_time_seconds_count{model="mlp"} 100
service_queue_time_seconds_sum{model="enc"} 0.5
service_queue_time_seconds_count{model="enc"} 20
service_compute_time_seconds_sum 0.6
service_compute_time_seconds_count 120
weird_label{path="/a b}c",note="say \\"hi\\""} 7 1714557600000
gpu_memory_bytes NaN
queue_limit +Inf
this line is broken
"""


def test_prometheus_text_is_parsed_into_series_with_their_labels() -> None:
    m = parse_prometheus_text(METRICS_TEXT)
    assert m['service_queue_time_seconds_sum{model="mlp"}'] == 1.5
    assert m["service_compute_time_seconds_count"] == 120
    assert m['weird_label{path="/a b}c",note="say \\"hi\\""}'] == 7  # timestamp dropped
    assert math.isnan(m["gpu_memory_bytes"])
    assert m["queue_limit"] == math.inf
    assert not any(k.startswith("#") or k.startswith("this") for k in m)


def test_metric_total_adds_up_all_label_sets_of_one_metric_only() -> None:
    m = parse_prometheus_text(METRICS_TEXT)
    assert metric_total(m, "service_queue_time_seconds_count") == 120
    assert metric_total(m, "service_queue_time_seconds") is None
    assert metric_total(m, "absent") is None


def scrape(queue_s: float, compute_s: float, count: int) -> dict[str, float]:
    return parse_prometheus_text(
        f'service_queue_time_seconds_sum{{model="mlp"}} {queue_s}\n'
        f'service_queue_time_seconds_count{{model="mlp"}} {count}\n'
        f"service_compute_time_seconds_sum {compute_s}\n"
        f"service_compute_time_seconds_count {count}\n"
    )


def test_queue_time_above_compute_time_is_named_as_where_the_time_goes() -> None:
    # 1 000 requests between the scrapes: 60 ms queue, 15 ms compute; the client saw 90 ms
    before, after = scrape(10.0, 5.0, 500), scrape(70.0, 20.0, 1500)
    stats = run_stats(ep(requests=1000, mean=90.0))
    finding = only(analyze(stats, server_metrics_before=before, server_metrics_after=after),
                   "time_breakdown")  # fmt: skip
    assert finding.severity == "warning"
    assert finding.title.startswith("Most of the response time is queue")
    assert "waited 60 ms in the queue and computed 15 ms" in finding.evidence
    assert "leaves 15 ms (16.67 %) for network" in finding.evidence
    assert finding.figures["overhead_ms"] == pytest.approx(15.0)
    assert "workers" in finding.recommendations[0]


def test_network_overhead_is_named_when_the_server_is_fast() -> None:
    before, after = scrape(0.0, 0.0, 0), scrape(1.0, 2.0, 1000)  # 1 ms queue, 2 ms compute
    stats = run_stats(ep(requests=1000, mean=40.0))
    finding = only(analyze(stats, server_metrics_before=before, server_metrics_after=after),
                   "time_breakdown")  # fmt: skip
    assert finding.title.startswith("Most of the response time is network/HTTP overhead")
    assert finding.severity == "info"


def test_server_time_above_the_client_mean_is_reported_as_approximate() -> None:
    before, after = scrape(0.0, 0.0, 0), scrape(60.0, 60.0, 1000)  # 60 + 60 ms per request
    stats = run_stats(ep(requests=1000, mean=90.0))
    finding = only(analyze(stats, server_metrics_before=before, server_metrics_after=after),
                   "time_breakdown")  # fmt: skip
    assert "leaves 0 ms" in finding.evidence
    assert "the server counted other requests too" in finding.evidence


def test_no_time_breakdown_without_metrics_or_without_requests_between_scrapes() -> None:
    stats = run_stats(ep())
    same = scrape(1.0, 1.0, 10)
    assert "time_breakdown" not in kinds(analyze(stats))
    assert "time_breakdown" not in kinds(
        analyze(stats, server_metrics_before=same, server_metrics_after=same)
    )
    unrelated = parse_prometheus_text("http_requests_total 5\n")
    assert "time_breakdown" not in kinds(
        analyze(stats, server_metrics_before={}, server_metrics_after=unrelated)
    )


# --- load generator ------------------------------------------------------------------


def test_a_load_generator_at_90_percent_cpu_makes_the_figures_untrustworthy() -> None:
    finding = only(analyze(run_stats(ep()), loadgen_cpu_percent=96.0), "loadgen_saturated")
    assert finding.severity == "critical"
    assert "96 %" in finding.evidence
    assert analyze(run_stats(ep()), loadgen_cpu_percent=95.0).findings[0].kind == (
        "loadgen_saturated"
    )  # critical findings come first


@pytest.mark.parametrize("cpu", [None, 0.0, 89.9])
def test_a_load_generator_below_90_percent_cpu_gives_no_finding(cpu: float | None) -> None:
    assert "loadgen_saturated" not in kinds(analyze(run_stats(ep()), loadgen_cpu_percent=cpu))


def test_findings_are_ordered_critical_then_warning_then_info() -> None:
    stats = run_stats(
        ep("POST /a", requests=100, failures=10, mean=300.0, p95=300.0, p99=400.0),
        ep("POST /b", requests=900, mean=10.0, p95=20.0, p99=30.0),
    )
    severities = [f.severity for f in analyze(stats, loadgen_cpu_percent=99.0).findings]
    assert severities == sorted(severities, key=["critical", "warning", "info"].index)
    assert {"critical", "warning", "info"} <= set(severities)


def test_an_analysis_survives_a_round_trip_through_its_dict() -> None:
    stats = run_stats(ep("POST /a", p95=300.0, failures=30, ci={"p95": (290.0, 310.0)}))
    analysis = analyze(stats, loadgen_cpu_percent=99.0)
    assert analysis_from_dict(analysis.to_dict()) == analysis


# --- plain Locust CSV ----------------------------------------------------------------


def test_locust_stats_csv_becomes_run_stats_keyed_like_our_endpoints() -> None:
    stats = read_locust_stats(DATA / "heavy_stats.csv")
    assert list(stats.endpoints) == ["POST /predict mlp", "POST /predict encoder"]
    mlp = stats.endpoints["POST /predict mlp"]
    assert (mlp.requests, mlp.failures, mlp.p50, mlp.p95, mlp.p99) == (6000, 30, 120, 260, 650)
    assert mlp.mean == pytest.approx(140.5)
    assert math.isnan(mlp.std)
    assert mlp.ci == {}
    assert stats.total.name == TOTAL
    assert stats.total.requests == 8000
    assert stats.duration_s == pytest.approx(8000 / 26.67)


def test_a_locust_csv_set_is_analysed_with_history_and_failures() -> None:
    run = analyze_locust_csv(
        DATA / "heavy_stats.csv",
        DATA / "heavy_stats_history.csv",
        DATA / "heavy_failures.csv",
    )
    assert run.analysis.summary.p95 == 400
    assert run.analysis.summary.grade == "Poor"
    assert len(run.history) == 36 and run.history[0]["t"] == 0.0
    assert math.isnan(run.history[0]["p95"])  # Locust writes N/A before the first request
    found = kinds(run.analysis)
    for kind in ("errors", "high_latency", "long_tail", "saturation", "dominant_endpoint"):
        assert kind in found
    errors = only(run.analysis, "errors")
    assert "150 x 429/503 backpressure, 20 x timeouts" in errors.evidence
    assert "30 x 5xx server errors" in errors.evidence
    assert any("rounded" in n and "no confidence interval" in n for n in run.analysis.notes)


def test_a_clean_locust_csv_alone_gives_no_finding() -> None:
    run = analyze_locust_csv(DATA / "light_stats.csv")
    assert run.analysis.findings == ()
    assert run.analysis.summary.grade == "Excellent"


def test_a_csv_without_locust_columns_is_refused_naming_the_file() -> None:
    with pytest.raises(ValueError, match=r"broken_stats\.csv: not a Locust CSV file"):
        read_locust_stats(DATA / "broken_stats.csv")
