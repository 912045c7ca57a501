"""A/B runs for real: two services on this machine at once, one Locust run driving both.

pytest runs in a subprocess (pytester), as a user runs it. The services are
``delay_server.py`` processes whose latency the command line sets, so the true change is
known: a candidate 50 % slower is detected, an A/A pair is clean. One run checks out
``HEAD`` of this repository into a temporary git worktree and starts the reference
service from there beside the working tree's (``--perfgate-against HEAD``): the worktree
is gone afterwards and no process of the run is left. Each run is short (20-25 s).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from delay_server import StartServer
from leftovers import new_tag, still_running

REPO = Path(__file__).resolve().parents[2]
DELAY_SERVER = Path(__file__).with_name("delay_server.py")

pytestmark = pytest.mark.e2e


def delay_command(delay_ms: float) -> str:
    return f"{{python}} {DELAY_SERVER} --port {{port}} --delay-ms {delay_ms}"


FAST = "{method: GET, path: /fast}"


def thresholds(
    service: str, compare_to: str, budgets: str, *, duration: str = "20s", task: str = FAST,
    ready: str = "/health", startup: str = "20s",
) -> str:  # fmt: skip
    return textwrap.dedent(
        f"""
        service:
          {service}
          ready_path: {ready}
          startup_timeout: {startup}
        compare_to: {compare_to}
        defaults:
          min_samples: 50
        scenarios:
          light:
            users: 8
            spawn_rate: 8
            duration: {duration}
            warmup: 2s
            wait_time: [0.02, 0.05]
            tasks:
              - {task}
            budgets: {budgets}
        """
    )


def run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, *args: str
) -> tuple[pytest.RunResult, list[str]]:
    """pytest in a subprocess with a run tag of its own; its result and what it left running."""
    tag = new_tag()
    for key, value in tag.items():
        monkeypatch.setenv(key, value)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=180)
    return result, still_running(tag)


def written(pytester: pytest.Pytester) -> dict[str, object]:
    (path,) = (pytester.path / "results" / "load_tests").glob("*_light.json")
    data: dict[str, object] = json.loads(path.read_text(encoding="utf-8"))
    return data


def test_a_candidate_half_again_as_slow_as_its_baseline_command_fails_on_the_pair(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = thresholds(
        f"command: '{delay_command(30)}'", f"{{command: '{delay_command(20)}'}}",
        '{p50_regression: "10%", p95_regression: "10%"}',
    )  # fmt: skip
    pytester.makefile(".yaml", thresholds=text)
    result, left = run(pytester, monkeypatch, "-m", "load_light")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*Total p50 +* vs baseline*beyond the allowed +10 %*median of * pairs' ratios*",
        "*A/B against command*duet*",
        "*candidate*", "*baseline*",
        "*p50 of pairs *",
        "*noise floor: p50 of pairs +-*, p95 +-*",
    ])  # fmt: skip
    assert left == []
    ab = written(pytester)["ab"]
    assert isinstance(ab, dict)
    p50 = next(c for c in ab["changes"] if c["key"] == "p50_regression")
    assert 0.3 < p50["ci"][0] < p50["change"] < p50["ci"][1] < 0.8  # truly +50 % (30 vs 20 ms)
    # the median is judged on the duet's pairs: each request of the window with its twin
    # (a pair whose twin fell outside the measured window is left out)
    assert 0.9 * p50["candidate_requests"] <= p50["pairs"] <= p50["candidate_requests"]
    p95 = next(c for c in ab["changes"] if c["key"] == "p95_regression")
    assert p95["pairs"] is None  # a tail is judged on the pooled sides


def test_an_a_a_pair_of_running_services_is_clean_and_prints_its_noise_floor(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, delay_server: StartServer
) -> None:
    baseline, candidate = delay_server("--delay-ms", "20"), delay_server("--delay-ms", "20")
    text = thresholds(
        f"url: '{candidate}'", f"{{url: '{baseline}'}}",
        '{p50_regression: "10%", p95_regression: "25%", error_rate_regression: "1%"}',
    )  # fmt: skip
    pytester.makefile(".yaml", thresholds=text)
    # clean: no false regression; a pair this short may leave the p95 undecided (warn)
    result, left = run(pytester, monkeypatch, "-m", "load_light", "--perfgate-inconclusive=warn")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*A/B against {baseline}, duet*", "*noise floor: *p95 +-*"])
    assert "FAIL" not in result.stdout.str()
    assert left == []


def test_interleaved_rounds_detect_a_slower_candidate_and_judge_throughput(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = thresholds(
        f"command: '{delay_command(30)}'", f"{{command: '{delay_command(20)}', round: 1s}}",
        '{p50_regression: "10%", rps_regression: "50%"}',
    )  # fmt: skip
    pytester.makefile(".yaml", thresholds=text)
    result, left = run(pytester, monkeypatch, "-m", "load_light", "--perfgate-ab-mode=interleaved")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*Total p50 +* vs baseline*beyond the allowed +10 %*",
        "*A/B against command*interleaved, * paired blocks of 2 s*",
        "*throughput*Total*req*PASS*",
    ])  # fmt: skip
    assert left == []


def _worktrees() -> str:
    return subprocess.run(
        ["git", "worktree", "list"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout


def test_against_head_starts_the_reference_service_from_a_worktree_and_removes_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # rootdir is this repository, so the candidate is its working tree's service and the
    # baseline HEAD's, each started with the same service.command
    command = "{python} -m service --host 127.0.0.1 --port {port} --device cpu --models mlp"
    task = "{method: POST, path: /predict, json_factory: 'service.payloads:mlp_request'}"
    text = thresholds(f"command: '{command}'", "null", '{p50_regression: "25%"}',
                      duration="25s", task=task, ready="/ready", startup="90s")  # fmt: skip
    pytester.makefile(".yaml", thresholds=text)
    pytester.makefile(".ini", pytest="[pytest]\n")
    before = _worktrees()
    path = pytester.path / "thresholds.yaml"
    result, left = run(
        pytester, monkeypatch, "--rootdir", str(REPO), "-c", str(pytester.path / "pytest.ini"),
        str(path), "--perfgate-thresholds", str(path), "--perfgate-against", "HEAD",
        "--perfgate-results-dir", str(pytester.path / "results" / "load_tests"),
    )  # fmt: skip
    result.stdout.fnmatch_lines(["*A/B against HEAD (*, git worktree), duet*", "*noise floor:*"])
    assert result.ret in (0, 1), result.stdout.str()[-2000:]
    assert "perfgate-baseline-" not in _worktrees() and _worktrees() == before
    assert left == []
    assert sys.executable  # the services ran on this interpreter ({python})


def test_perfgate_run_judges_the_pair_as_the_plugin_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # compare_to: in the thresholds file is an A/B run for ``perfgate run`` too
    text = thresholds(
        f"command: '{delay_command(30)}'", f"{{command: '{delay_command(20)}'}}",
        '{p50_regression: "10%"}', duration="12s",
    )  # fmt: skip
    (tmp_path / "thresholds.yaml").write_text(text, encoding="utf-8")
    tag = new_tag()
    for key, value in tag.items():
        monkeypatch.setenv(key, value)
    done = subprocess.run(
        [sys.executable, "-m", "pytest_perfgate", "run", "light", "--results-dir", "results"],
        cwd=tmp_path, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr[-2000:]
    assert "A/B against command" in done.stderr
    assert still_running(tag) == []
    (path,) = (tmp_path / "results").glob("*_light.json")
    ab = json.loads(path.read_text(encoding="utf-8"))["ab"]
    p50 = next(c for c in ab["changes"] if c["key"] == "p50_regression")
    assert 0.3 < p50["change"] < 0.8  # truly +50 % (30 vs 20 ms)
