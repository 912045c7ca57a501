"""Figures of streamed responses: TTFT, ITL per token, TPOT, tokens/s and goodput, from
synthetic samples, through statistics, verdicts, the stop rule, baselines and reports."""

from __future__ import annotations

import dataclasses
import re
import textwrap
from pathlib import Path

import pytest
from report_samples import make_result

from pytest_perfgate.cli import main
from pytest_perfgate.config import load_thresholds
from pytest_perfgate.core.model import Budget
from pytest_perfgate.core.regression import compare, samples_by_endpoint, series_by_endpoint
from pytest_perfgate.core.sequential import StopRule
from pytest_perfgate.core.stats import TOTAL, RunStats, Sample, Stream, summarize
from pytest_perfgate.core.verdict import Check, Outcome, evaluate
from pytest_perfgate.errors import ConfigError
from pytest_perfgate.results.baselines import load_baseline, save_baseline
from pytest_perfgate.results.files import write_json
from pytest_perfgate.results.result import ScenarioResult, stats_from_dict, stats_to_dict
from pytest_perfgate.results.streams import (
    BATCHED_NOTE,
    stream_csv,
    stream_html_table,
    stream_lines,
    stream_markdown,
)

CHAT = "POST /v1/chat/completions"
HEALTH = "GET /health"


def stream(ttft: float | None, gap: float = 10.0, tokens: int = 5, **kw: object) -> Stream:
    """A stream of ``tokens`` tokens, the first after ``ttft`` ms, then one every ``gap`` ms."""
    itl = (gap,) * (tokens - 1) if ttft is not None else ()
    fields = {"chunks": tokens, "batched": False, "wellformed": True, **kw}
    return Stream(ttft, itl, tokens, **fields)  # type: ignore[arg-type]


def chat(t: float, ttft: float | None, *, ok: bool = True, **kw: object) -> Sample:
    s = stream(ttft, **kw) if ttft is not None or kw else None
    ms = (ttft or 0.0) + 40.0
    return Sample(t, CHAT, ms, ok, 200 if ok else 500, "" if ok else "HTTP 500", s)


def hundred(ttft_of: object = lambda i: float(i + 1)) -> list[Sample]:
    """100 chats at 10 per second, TTFT 1, 2, ..., 100 ms; a health check beside each."""
    out = []
    for i in range(100):
        out.append(chat(i / 10, ttft_of(i)))  # type: ignore[operator]
        out.append(Sample(i / 10, HEALTH, 2.0, True, 200))
    return out


# --- figures -------------------------------------------------------------------------


def test_ttft_itl_and_tpot_percentiles_are_exact_over_their_own_values() -> None:
    row = summarize(hundred(), 10.0).endpoints[CHAT]
    assert (row.figures["ttft_p50"], row.figures["ttft_p95"], row.figures["ttft_p99"]) == (
        50.0,
        95.0,
        99.0,
    )
    assert row.figures["itl_p95"] == row.figures["itl_p99"] == 10.0
    assert row.figures["tpot_p95"] == pytest.approx(10.0)
    assert row.stream is not None
    assert row.stream.counts == {"ttft": 100, "itl": 400, "tpot": 100, "goodput": 0}
    assert row.count("ttft_p95") == 100 and row.count("itl_p95") == 400


def test_a_batched_stream_counts_itl_per_token_and_the_report_says_so() -> None:
    # chunks of 4 tokens 40 ms apart: 4 gaps of 10 ms each, as the child records them
    batched = Stream(100.0, (10.0,) * 11, 12, 3, batched=True, wellformed=True)
    samples = [Sample(i / 10, CHAT, 300.0, True, 200, "", batched) for i in range(50)]
    stats = summarize(samples, 5.0)
    row = stats.endpoints[CHAT]
    assert row.figures["itl_p99"] == 10.0 and row.stream is not None and row.stream.batched == 50
    assert any(BATCHED_NOTE in line for line in stream_lines(stats))
    assert any(BATCHED_NOTE in line for line in stream_markdown(stats))


def test_output_tokens_per_second_is_every_token_over_the_window() -> None:
    row = summarize(hundred(), 20.0).endpoints[CHAT]
    assert row.figures["output_tokens_per_s"] == pytest.approx(100 * 5 / 20.0)


def test_goodput_counts_failures_malformed_streams_and_slow_ones_as_misses() -> None:
    samples = [chat(i, 100.0) for i in range(6)]
    samples += [chat(6, None, ok=False)]  # no stream at all: failed before any token
    samples += [chat(7, 100.0, wellformed=False, problem="no [DONE]")]
    samples += [chat(8, 900.0), chat(9, 100.0, gap=80.0)]  # over ttft_ms, over tpot_ms
    samples += [Sample(i, HEALTH, 2.0, True, 200) for i in range(10)]  # not streaming
    stats = summarize(samples, 10.0, slo={"ttft_ms": 500.0, "tpot_ms": 50.0})
    for row in (stats.endpoints[CHAT], stats.total):
        assert row.figures["goodput"] == pytest.approx(0.6)
        assert row.proportion("goodput") == (6, 10)
    assert stats.endpoints[CHAT].stream.malformed == {"no [DONE]": 1}  # type: ignore[union-attr]
    assert "goodput" not in summarize(samples, 10.0).total.figures  # no slo, no goodput


def test_every_stream_quantile_has_an_interval_fixed_or_anytime_and_a_dependence() -> None:
    samples = hundred()
    for anytime in (False, True):
        row = summarize(samples, 10.0, anytime=anytime, correlated=True).endpoints[CHAT]
        for key in ("ttft_p50", "ttft_p95", "ttft_p99", "itl_p95", "itl_p99", "tpot_p95"):
            low, high = row.ci[key]
            assert low <= row.figures[key] <= high
            assert row.factor(key) >= 1.0
        assert 0.0 < row.ci["ttft_p50"][0] < 50.0 < row.ci["ttft_p50"][1] < 100.0


def test_rows_without_streams_have_no_stream_figures_and_read_as_before() -> None:
    stats = summarize([Sample(i / 10, HEALTH, 2.0, True, 200) for i in range(100)], 10.0)
    assert stats.total.figures == {} and stats.total.stream is None
    assert stats.total.figure("ttft_p95") is None and stats.total.figure("p95") == 2.0
    assert set(stats.total.ci) == {"p50", "p95", "p99"}
    assert "streams" not in stats_to_dict(stats)["total"]
    assert stream_lines(stats) == stream_markdown(stats) == [] and stream_csv(stats) == ""
    assert stream_html_table(stats) == ""


def test_stream_figures_survive_the_json_result() -> None:
    stats = summarize(hundred(), 10.0, slo={"ttft_ms": 50.0})
    back = stats_from_dict(stats_to_dict(stats))
    assert back.endpoints[CHAT].figures == stats.endpoints[CHAT].figures
    assert back.endpoints[CHAT].stream == stats.endpoints[CHAT].stream
    assert back.endpoints[CHAT].ci["ttft_p95"] == stats.endpoints[CHAT].ci["ttft_p95"]


# --- budgets -------------------------------------------------------------------------


def test_ttft_budgets_pass_fail_and_are_invalid_without_streams_with_clear_texts() -> None:
    stats = summarize(hundred(lambda i: 100.0 + i % 10), 10.0, slo={"ttft_ms": 500.0})
    judged = evaluate(
        "chat",
        Budget(goodput=0.9),
        {CHAT: Budget(ttft_p95_ms=50.0, itl_p99_ms=20.0), HEALTH: Budget(ttft_p95_ms=500.0)},
        stats,
    )
    by = {(c.endpoint, c.metric): c for c in judged.checks}
    breach = by[(CHAT, "ttft_p95_ms")]
    assert breach.outcome is Outcome.FAIL and breach.n == 100
    assert breach.message().startswith(f"chat: {CHAT} TTFT p95 109 ms > budget 50 ms")
    assert "95 % CI" in breach.message()
    assert by[(CHAT, "itl_p99_ms")].outcome is Outcome.PASS
    assert by[(CHAT, "itl_p99_ms")].n == 400
    assert by[(TOTAL, "goodput")].outcome is Outcome.PASS
    invalid = by[(HEALTH, "ttft_p95_ms")]
    assert invalid.outcome is Outcome.INVALID
    assert "invalid, no streamed response" in invalid.message()
    assert judged.outcome is Outcome.INVALID
    assert any(r.startswith("no streamed response") for r in judged.reasons)
    assert "got no request" not in judged.failure_text()


def test_goodput_below_its_floor_fails_and_every_request_good_is_judged_on_the_count() -> None:
    samples = [chat(i / 10, 100.0 if i % 2 else 900.0) for i in range(200)]
    stats = summarize(samples, 20.0, slo={"ttft_ms": 500.0})
    judged = evaluate("chat", Budget(goodput=0.9), {}, stats)
    assert judged.checks[0].outcome is Outcome.FAIL
    assert "goodput 50.00 % < budget 90.00 %" in judged.checks[0].message()
    assert evaluate("chat", Budget(goodput=1.0), {}, stats).checks[0].outcome is Outcome.FAIL


def test_tokens_per_second_is_a_floor_judged_as_a_fact() -> None:
    stats = summarize(hundred(), 10.0)  # 50 tok/s
    low = evaluate("chat", Budget(output_tokens_per_s=40.0), {}, stats).checks[0]
    high = evaluate("chat", Budget(output_tokens_per_s=80.0), {}, stats).checks[0]
    assert (low.outcome, high.outcome) == (Outcome.PASS, Outcome.FAIL)
    assert "output tokens/s 50 tok/s < budget 80 tok/s" in high.message()


# --- the stop rule -------------------------------------------------------------------


def _drive(rule: StopRule, ttft: float, seconds: int) -> str | None:
    samples: list[Sample] = []
    for second in range(seconds):
        samples += [chat(second + i / 20, ttft + i % 5) for i in range(20)]
        if (reason := rule(samples, float(second + 1))) is not None:
            return reason
    return None


def test_a_ttft_budget_stops_a_run_early_and_aborts_on_a_clear_breach() -> None:
    passed = _drive(StopRule(Budget(ttft_p95_ms=500.0), min_duration_s=30.0), 100.0, 120)
    assert passed is not None and passed.startswith("stop: ") and "TTFT p95 <= 500 ms" in passed
    failed = _drive(StopRule(Budget(ttft_p95_ms=50.0), abort_window_s=5.0), 100.0, 120)
    assert failed is not None and failed.startswith("abort: ") and "TTFT p95 > 50 ms" in failed


def test_a_goodput_budget_aborts_once_its_misses_are_clear() -> None:
    rule = StopRule(Budget(goodput=0.9), abort_window_s=5.0, slo={"ttft_ms": 50.0})
    reason = _drive(rule, 100.0, 60)
    assert reason is not None and reason.startswith("abort: ") and "missed the slo" in reason


# --- baselines -----------------------------------------------------------------------


def test_a_ttft_regression_is_judged_against_a_saved_baseline(tmp_path: Path) -> None:
    before = [s for s in hundred(lambda i: 100.0 + i) if s.name == CHAT]
    stats = summarize(before, 10.0)
    save_baseline(tmp_path, "main", "chat", samples_by_endpoint(before), stats, {},
                  series=series_by_endpoint(before))  # fmt: skip
    base = load_baseline(tmp_path, "main", "chat")
    assert base.endpoints[CHAT].series["ttft"][:2] == (100.0, 101.0)
    assert len(base.total.series["ttft"]) == 100
    after = [s for s in hundred(lambda i: 200.0 + i) if s.name == CHAT]
    new = summarize(after, 10.0)
    checks = compare(base, samples_by_endpoint(after), new, {"ttft_p95_regression": 0.1},
                     series=series_by_endpoint(after))  # fmt: skip
    assert checks[0].outcome is Outcome.FAIL
    assert "TTFT p95" in checks[0].message() and "194 -> 294 ms" in checks[0].message()
    fewer = [s for s in after if s.t < 5.0]  # half the responses in the same window
    allowance = {"output_tokens_regression": 0.1}
    tokens = compare(base, samples_by_endpoint(fewer), summarize(fewer, 10.0), allowance,
                     series=series_by_endpoint(fewer))  # fmt: skip
    assert tokens[0].outcome is Outcome.FAIL and tokens[0].observed == pytest.approx(0.5)
    assert "50 -> 25 tok/s" in tokens[0].message()
    plain = [Sample(i / 10, CHAT, 5.0, True, 200) for i in range(100)]
    invalid = compare(base, samples_by_endpoint(plain), summarize(plain, 10.0),
                      {"ttft_p95_regression": 0.1}, series=series_by_endpoint(plain))  # fmt: skip
    assert invalid[0].outcome is Outcome.INVALID
    assert "no streamed response in this run" in invalid[0].message()


# --- config --------------------------------------------------------------------------

CHAT_YAML = """
scenarios:
  chat:
    users: 2
    duration: 10s
    tasks: [{method: POST, path: /v1/chat/completions}]
"""


def _load(tmp_path: Path, extra: str) -> object:
    path = tmp_path / "thresholds.yaml"
    path.write_text(textwrap.dedent(CHAT_YAML) + textwrap.indent(textwrap.dedent(extra), "    "))
    return load_thresholds(path)


def test_a_scenario_slo_is_read_in_milliseconds(tmp_path: Path) -> None:
    found = _load(tmp_path, "slo: {ttft_ms: 500, tpot_ms: 50}\nbudgets: {goodput: 0.9}\n")
    assert found.scenarios["chat"].slo == {"ttft_ms": 500.0, "tpot_ms": 50.0}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("slo: {ttft: 500}\n", "scenarios.chat.slo.ttft: unknown key 'ttft'"),
        ("slo: {ttft_ms: fast}\n", "scenarios.chat.slo.ttft_ms: expected a number of milli"),
        ("slo: {ttft_ms: -1}\n", "scenarios.chat.slo.ttft_ms: expected a number of milli"),
        ("slo: {}\n", "scenarios.chat.slo: expected any of ttft_ms, tpot_ms, e2e_ms"),
        ("budgets: {goodput: 0.9}\n", "scenarios.chat.budgets.goodput: goodput counts"),
    ],
)
def test_a_bad_slo_is_a_config_error_naming_its_key_and_value(
    tmp_path: Path, extra: str, message: str
) -> None:
    with pytest.raises(ConfigError) as error:
        _load(tmp_path, extra)
    assert message in str(error.value)


# --- reports -------------------------------------------------------------------------


def _as_result(stats: RunStats, ttft_p95: float) -> ScenarioResult:
    """A sample result (``report_samples``) carrying ``stats`` and a TTFT budget."""
    check = Check("light", TOTAL, "ttft_p95_ms", 500.0, ttft_p95, 100, Outcome.PASS)
    sample = make_result()
    verdict = dataclasses.replace(sample.verdict, checks=(check,))
    return dataclasses.replace(sample, stats=stats, verdict=verdict)


def test_perfgate_compare_flags_a_worse_ttft_p95_and_analyze_shows_the_streams(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = summarize(hundred(), 10.0), summarize(hundred(lambda i: 2.0 * (i + 1)), 10.0)
    paths = []
    for name, stats in (("old", old), ("new", new)):
        ttft = stats.total.figures["ttft_p95"]
        paths.append(str(write_json(tmp_path / f"{name}.json", _as_result(stats, ttft))))
    assert main(["compare", *paths]) == 1
    out = capsys.readouterr().out
    assert re.search(r"\n  Total\s+ttft_p95\s+95 ms\s+190 ms\s+\+100\.0 % WORSE \(budgeted\)", out)
    assert main(["analyze", paths[1]]) == 0
    assert (
        "  streams Total: 100 streamed, TTFT p50/p95/p99 100/190/198 ms" in capsys.readouterr().out
    )


def test_terminal_lines_stay_within_120_columns_and_reports_show_the_figures() -> None:
    long = "POST /v1/a-very-long-endpoint-name/for/chat/completions"
    samples = [dataclasses.replace(s, name=long) for s in hundred() if s.stream is not None]
    stats = summarize(samples, 10.0, slo={"ttft_ms": 50.0})
    lines = stream_lines(stats)
    assert max(map(len, lines)) <= 118  # indented by two in the table
    assert lines[0].startswith(
        "streams POST /v1/a-very-long-endpoint~: 100 streamed, TTFT p50/p95/p99"
    )
    assert lines[1] == "  ITL p95/p99 10/10 ms, TPOT p95 10 ms, 50 tok/s, goodput 50.00 %"
    csv_rows = stream_csv(stats).splitlines()
    assert csv_rows[1].startswith(f"{long},100,50,95,99,10,10,10,50,0.5,")
    assert "<h2>Streamed responses</h2>" in stream_html_table(stats)


def test_an_undecided_itl_budget_counts_more_token_gaps_at_the_rate_they_come() -> None:
    gaps = [tuple(i + j / 10 for j in range(1, 5)) for i in range(100)]  # 400 distinct gaps
    samples = [
        Sample(i / 10, CHAT, 500.0, True, 200, "", Stream(50.0, gaps[i], 5, 5, False, True))
        for i in range(100)
    ]
    judged = evaluate("chat", Budget(itl_p95_ms=95.0), {}, summarize(samples, 10.0))
    check = judged.checks[0]
    assert check.outcome is Outcome.INCONCLUSIVE and check.n == 400
    assert check.rps == pytest.approx(40.0)  # 10 responses/s of 4 gaps each
    assert "more samples would decide it" in check.message()
