"""A streaming scenario end to end through the plugin: TTFT budgets, report files, breaches.

As in ``test_fake_runs``, the load driver is ``load.fake.FakeDriver`` replaying samples
whose ``Sample.stream`` a streaming task would have recorded (the child's SSE parsing is
tested in tests/integration), and the service a stdlib HTTP server in a thread.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fake_project import PROBE, fake_project
from fake_project import run_in_process as run

# imported once so that pytester's in-process runs keep one copy (see test_fake_runs)
import pytest_perfgate.gate
import pytest_perfgate.load.fake
import pytest_perfgate.plugin.lock
import pytest_perfgate.results.files
import pytest_perfgate.results.github
import pytest_perfgate.results.markdown
import pytest_perfgate.results.streams
import pytest_perfgate.results.terminal
import pytest_perfgate.target.probe  # noqa: F401

THRESHOLDS = """
scenarios:
  chat:
    users: 4
    duration: 4s
    min_samples: 20
    slo: {ttft_ms: 300, tpot_ms: 50}
    tasks:
      - {method: POST, path: /v1/chat/completions}
    budgets: {ttft_p95_ms: 400, goodput: 0.5, output_tokens_per_s: 100}
"""

# 200 streamed responses over 4 s: TTFT 100-199 ms, 8 tokens 20 ms apart, chunks of 2
# tokens (so ITL is per token); every tenth stream is cut before [DONE]
CONFTEST = (
    """
import pytest

from pytest_perfgate.core.stats import Sample, Stream
from pytest_perfgate.load.fake import FakeDriver
from pytest_perfgate.plugin.session import SESSION_KEY
from pytest_perfgate.target.telemetry import GpuTelemetry


"""
    + PROBE
    + """

def sample(i):
    cut = i % 10 == 9
    stream = Stream(100.0 + i % 100, (20.0,) * 7, 8, 4, batched=True, wellformed=not cut,
                    problem="cut mid-way" if cut else "")
    return Sample(i / 50, "POST /v1/chat/completions", 260.0 + i % 100, True, 200, "", stream)


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    session = config.stash[SESSION_KEY]
    session.driver = FakeDriver([sample(i) for i in range(200)])
    session.probe = Probe()
"""
)


@pytest.fixture
def project(pytester: pytest.Pytester) -> Iterator[pytest.Pytester]:
    with fake_project(pytester, THRESHOLDS, CONFTEST) as project:
        yield project


def test_a_streaming_scenario_within_its_ttft_budget_passes_and_reports_its_figures(
    project: pytest.Pytester,
) -> None:
    result = run(project, "-m", "load_chat")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "*streams POST /v1/chat/completions: 200 streamed, TTFT p50/p95/p99 149/194/198 ms (97.5*",
        "*ITL p95/p99 20/20 ms, TPOT p95 20 ms, 400 tok/s, goodput 90.00 %",
        "*note: 20 malformed (cut mid-way 20)*",
        "*note: chunks carried several tokens: ITL is per token*",
    ])  # fmt: skip
    folder = project.path / "results" / "load_tests"
    data = json.loads(next(folder.glob("*_chat.json")).read_text())
    streams = data["statistics"]["endpoints"]["POST /v1/chat/completions"]["streams"]
    assert streams["figures"]["ttft_p95"] == 194.0
    assert streams["figures"]["goodput"] == pytest.approx(0.9)
    assert streams["malformed"] == {"cut mid-way": 20}
    assert data["statistics"]["total"]["ci"]["ttft_p95"][0] <= 194.0
    assert {b["metric"]: b["outcome"] for b in data["budgets"]} == {
        "ttft_p95_ms": "PASS", "output_tokens_per_s": "PASS", "goodput": "PASS",
    }  # fmt: skip
    csv = next(folder.glob("*_chat_streams.csv")).read_text()
    assert csv.splitlines()[0].startswith("Name,Streams,ttft_p50_ms,ttft_p95_ms")
    page = next(folder.glob("*_chat.html")).read_text()
    assert "Streamed responses" in page and "TTFT and ITL distribution" in page
    summary = (folder / "summary.md").read_text()
    assert "| streamed endpoint | streams | TTFT p50 |" in summary


def test_a_ttft_breach_fails_the_test_with_a_line_naming_ttft(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_chat="""
        import pytest

        @pytest.mark.perf_budget(ttft_p95_ms=150)
        def test_chat(perfgate):
            perfgate.run("chat")
        """
    )
    result = run(project, "test_chat.py")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*chat: Total TTFT p95 194 ms > budget 150 ms*"])
