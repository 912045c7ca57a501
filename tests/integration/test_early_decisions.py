"""Early stop and early abort through pytest, against a server with a known latency law.

The delay server draws /fast latencies from a log-normal law: median m and sigma s give
a true P95 of m * exp(1.645 s), so each test knows where the budget stands.
"""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path
from typing import Any

import pytest
from test_plugin_e2e import DELAY_SERVER, run

pytestmark = pytest.mark.e2e


def lognormal_thresholds(median_ms: float, sigma: float, p95_budget_ms: float) -> str:
    return textwrap.dedent(
        f"""
        service:
          command: '{{python}} {DELAY_SERVER} --port {{port}} --lognormal {median_ms},{sigma}'
          ready_path: /health
        defaults:
          min_samples: 50
        scenarios:
          light:
            users: 10
            spawn_rate: 10
            duration: 90s
            warmup: 2s
            wait_time: [0.05, 0.1]
            tasks:
              - {{method: GET, path: /fast}}
            budgets: {{p95_ms: {p95_budget_ms}}}
        """
    )


def result_json(pytester: pytest.Pytester) -> dict[str, Any]:
    (path,) = Path(pytester.path, "results", "load_tests").glob("*_light.json")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def true_p95(median_ms: float, sigma: float) -> float:
    return median_ms * math.exp(1.6448536 * sigma)


def test_a_healthy_service_is_passed_as_soon_as_the_verdict_is_certain(
    pytester: pytest.Pytester,
) -> None:
    pytester.makefile(".yaml", thresholds=lognormal_thresholds(10, 0.3, 100))  # true P95 16 ms
    result = run(pytester, "-m", "load_light", "--perfgate-min-duration", "5s")
    result.assert_outcomes(passed=1)
    data = result_json(pytester)
    assert data["stop_reason"].startswith("stopped: stop: every blocking budget decided (PASS)")
    assert data["duration_s"] < 30  # of a configured 90 s
    reported = data["statistics"]["total"]["p95"]
    # the injected delay, plus what a busy two-core machine adds to each request
    assert 0.75 * true_p95(10, 0.3) <= reported <= true_p95(10, 0.3) + 30
