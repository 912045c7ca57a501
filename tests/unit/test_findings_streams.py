"""Grades and findings of streamed endpoints: judged by TTFT and TPOT, not by whole
responses (whose time is mostly their length); plain endpoints keep their rules."""

from __future__ import annotations

import pytest

from pytest_perfgate.core.findings import (
    Analysis,
    analyze,
    endpoint_grade,
    grade,
    tpot_grade,
    ttft_grade,
)
from pytest_perfgate.core.stats import TOTAL, RunStats, Sample, Stream, summarize

CHAT = "POST /v1/chat/completions"
PREDICT = "POST /predict"


def chat(ttft_ms: float, tpot_ms: float, tokens: int = 64, n: int = 200) -> list[Sample]:
    """``n`` streamed responses of ``tokens`` tokens: whole time = TTFT + (tokens-1) TPOT."""
    gaps = (tpot_ms,) * (tokens - 1)
    whole = ttft_ms + tpot_ms * (tokens - 1)
    stream = Stream(ttft_ms, gaps, tokens, tokens, batched=False, wellformed=True)
    return [Sample(i / 10, CHAT, whole, True, 200, "", stream) for i in range(n)]


def plain(ms: float, n: int = 200) -> list[Sample]:
    return [Sample(i / 10, PREDICT, ms, True, 200) for i in range(n)]


def stats_of(samples: list[Sample]) -> RunStats:
    return summarize(samples, duration_s=20.0)


def kinds(analysis: Analysis) -> list[str]:
    return [f.kind for f in analysis.findings]


def test_a_long_stream_with_fast_tokens_is_not_a_high_latency_finding() -> None:
    # 64 tokens at 20 ms after a 150 ms first token: 1.4 s a response, all of it length
    analysis = analyze(stats_of(chat(ttft_ms=150.0, tpot_ms=20.0)))
    assert not {"high_latency", "high_ttft", "high_tpot", "long_tail"} & set(kinds(analysis))
    assert analysis.summary.p95 > 1000  # the whole responses are long ...
    assert analysis.grades[CHAT] == "Good"  # ... yet TTFT is Excellent and TPOT Good
    assert analysis.grades[TOTAL] == "Good"


def test_a_slow_first_token_is_a_ttft_finding_with_its_figures() -> None:
    analysis = analyze(stats_of(chat(ttft_ms=1500.0, tpot_ms=10.0)))
    [finding] = [f for f in analysis.findings if f.kind == "high_ttft"]
    assert finding.severity == "warning"
    assert finding.endpoint == CHAT
    assert finding.title == f"{CHAT}: TTFT P95 1 500 ms is above 1 000 ms"
    assert finding.figures["ttft_p95"] == pytest.approx(1500.0)
    assert "TTFT" in finding.evidence and "TPOT P95" in finding.evidence
    assert "high_tpot" not in kinds(analysis) and "high_latency" not in kinds(analysis)
    assert analysis.grades[CHAT] == "Poor"


def test_slow_tokens_are_a_tpot_finding_critical_beyond_200_ms() -> None:
    analysis = analyze(stats_of(chat(ttft_ms=100.0, tpot_ms=250.0, tokens=8)))
    [finding] = [f for f in analysis.findings if f.kind == "high_tpot"]
    assert finding.severity == "critical"
    assert finding.figures["tpot_p95"] == pytest.approx(250.0)
    assert analysis.grades[CHAT] == "Critical"


@pytest.mark.parametrize(
    ("ms", "ttft", "tpot"),
    [(0.0, "Excellent", "Excellent"), (19.99, "Excellent", "Excellent"),
     (20.0, "Excellent", "Good"), (40.0, "Excellent", "Acceptable"), (100.0, "Excellent", "Poor"),
     (200.0, "Good", "Critical"),
     (500.0, "Acceptable", "Critical"), (1000.0, "Poor", "Critical"),
     (2000.0, "Critical", "Critical")],
)  # fmt: skip
def test_the_stream_grades_change_at_their_boundaries(ms: float, ttft: str, tpot: str) -> None:
    assert (ttft_grade(ms), tpot_grade(ms)) == (ttft, tpot)


def test_plain_endpoints_keep_the_whole_response_rules_beside_a_stream() -> None:
    stats = stats_of(chat(ttft_ms=100.0, tpot_ms=10.0) + plain(300.0))
    analysis = analyze(stats)
    [finding] = [f for f in analysis.findings if f.kind == "high_latency"]
    assert finding.endpoint == PREDICT  # the stream's 730 ms responses are not flagged
    assert analysis.grades[PREDICT] == grade(300.0, 0.0) == "Poor"
    assert analysis.grades[CHAT] == "Excellent"
    assert analysis.grades[TOTAL] == "Poor"  # the worst endpoint, not the mixed P95


def test_without_streams_grades_and_findings_are_unchanged() -> None:
    stats = stats_of(plain(300.0))
    analysis = analyze(stats)
    assert kinds(analysis) == ["high_latency"]
    assert analysis.grades == {PREDICT: "Poor", TOTAL: "Poor"}
    assert endpoint_grade(stats.total) == grade(stats.total.p95, 0.0)


def test_failed_streams_still_lower_the_grade() -> None:
    samples = chat(ttft_ms=100.0, tpot_ms=10.0)
    samples += [Sample(20.0 + i / 10, CHAT, 5.0, False, 503, "503") for i in range(20)]
    analysis = analyze(stats_of(samples))
    assert analysis.grades[CHAT] == "Poor"  # 9 % failed: the error grade wins
    assert "errors" in kinds(analysis)
