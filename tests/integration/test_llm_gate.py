"""The gate against the reference generative service: tiny-gpt streaming through pytest.

One pytest run (a subprocess, as a user runs it) starts ``python -m service --models
tiny-gpt`` from ``service.command`` and runs two scenarios of a thresholds file written
here: ``chat`` (Poisson arrivals, streamed chat completions of exactly ``MAX_TOKENS``
tokens, ``ignore_eos``) with every stream budget set loosely, and ``impossible``, whose
TTFT budget no server meets. The machine is shared: the noise check is off (a breach is
then a FAIL, never INVALID), the loose budgets hold with wide margins, and the figures
are asserted on what must be true whatever the timing (counts, order, presence).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

MAX_TOKENS = 16
CHAT = "POST /v1/chat/completions"

TASK = (
    f"{{kind: openai_chat, model: tiny-gpt, max_tokens: {MAX_TOKENS}, temperature: 0.7, "
    'messages: [{role: user, content: "Say something about load tests."}], '
    "extra_body: {ignore_eos: true}}"
)
THRESHOLDS = f"""
service:
  command: "{{python}} -m service --host 127.0.0.1 --port {{port}} --models tiny-gpt --device cpu"
  ready_path: /ready
  startup_timeout: 90s
defaults:
  min_samples: 20
  request_timeout: 30s
scenarios:
  chat:
    arrival_rate: 12           # ~170 requests: a P95 interval at 99 % needs 125
    arrivals: poisson
    seed: 3
    users: 16
    duration: 15s
    tasks: [{TASK}]
    slo: {{ttft_ms: 5000, tpot_ms: 1000}}
    budgets:
      error_rate: 0.2
      ttft_p95_ms: 20000
      itl_p95_ms: 5000
      tpot_p95_ms: 5000
      goodput: 0.5
      output_tokens_per_s: 5
  impossible:
    arrival_rate: 4
    arrivals: poisson
    users: 16
    duration: 6s
    tasks: [{TASK}]
    budgets: {{ttft_p95_ms: 0.001}}
"""


def run(pytester: pytest.Pytester) -> pytest.RunResult:
    pytester.makefile(".yaml", thresholds=textwrap.dedent(THRESHOLDS))
    return pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-m", "load_chat or load_impossible",
        "--perfgate-noise-check", "false", timeout=150,
    )  # fmt: skip


def result_of(results: Path, scenario: str) -> dict[str, Any]:
    (path,) = results.glob(f"*_{scenario}.json")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_the_gate_measures_and_judges_tiny_gpt_streams(pytester: pytest.Pytester) -> None:
    # one run (one service start), several promises: the figures, the files, the verdicts
    outcome = run(pytester)
    results = pytester.path / "results" / "load_tests"
    outcome.assert_outcomes(passed=1, failed=1)
    outcome.stdout.fnmatch_lines(["*impossible: Total TTFT p95 * ms > budget * ms*"])

    chat = result_of(results, "chat")
    assert chat["verdict"]["outcome"] == "PASS", chat["verdict"]
    judged = {b["metric"]: b for b in chat["budgets"]}
    assert {"ttft_p95_ms", "itl_p95_ms", "tpot_p95_ms", "goodput", "output_tokens_per_s"} <= set(
        judged
    )
    total = chat["statistics"]["total"]
    streams = total["streams"]
    figures = streams["figures"]
    assert total["failures"] == 0 and total["requests"] >= 100
    assert 0 < figures["ttft_p50"] <= figures["ttft_p95"] <= figures["ttft_p99"]
    assert figures["itl_p95"] > 0 and figures["tpot_p95"] > 0
    assert figures["output_tokens_per_s"] > 0 and figures["goodput"] > 0.5
    # ignore_eos: every answer is exactly max_tokens long, as usage and the chunks say
    assert streams["requests"] == total["requests"]
    assert streams["output_tokens"] == streams["requests"] * MAX_TOKENS
    assert streams["malformed"] == {}
    assert streams["counts"]["itl"] == streams["requests"] * (MAX_TOKENS - 1)
    assert CHAT in chat["statistics"]["endpoints"]
    # findings judge the stream by its first token and its tokens, not its whole time
    assert "high_latency" not in [f["kind"] for f in chat["analysis"]["findings"]]

    (html,) = results.glob("*_chat.html")
    assert "TTFT and ITL distribution" in html.read_text()
    impossible = result_of(results, "impossible")
    assert impossible["verdict"]["outcome"] == "FAIL"
    (check,) = impossible["budgets"]
    assert (check["metric"], check["outcome"]) == ("ttft_p95_ms", "FAIL")
    assert "TTFT p95" in check["message"] and check["observed"] > 0
