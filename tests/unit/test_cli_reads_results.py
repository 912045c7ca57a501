"""The ``perfgate`` command reads back everything the plugin writes (a property test).

Results are written through the plugin's own writer (``results.files.write_json``, which
goes through ``result_to_dict``) with what real runs produce at the edges: intervals with
an unbounded side, endpoints with no request, runs of failures only, zero requests,
unknown figures; ``perfgate analyze`` and ``perfgate compare`` (``cli.main``, in process)
must read every one of them.
"""

from __future__ import annotations

import math
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pytest_perfgate.cli import main
from pytest_perfgate.config import Budget, Scenario
from pytest_perfgate.core.findings import analyze
from pytest_perfgate.core.stats import TOTAL, EndpointStats, RunStats
from pytest_perfgate.core.verdict import Check, Outcome, Verdict
from pytest_perfgate.load.driver import RawRun
from pytest_perfgate.results.files import write_json
from pytest_perfgate.results.result import ScenarioResult

# the load gate (perf-gate.yml) installs no dev extra: there, this module is skipped
hypothesis = pytest.importorskip("hypothesis")
st = pytest.importorskip("hypothesis.strategies")

FIGURES = ("rps", "mean", "std", "min", "max", "p50", "p95", "p99")
#: a figure as runs report it: a time or a rate, or unknown (no request: NaN, null in JSON)
figure = st.one_of(st.floats(0, 1e6, allow_nan=False), st.just(math.nan))
low = st.one_of(st.floats(0, 1e5, allow_nan=False), st.just(-math.inf), st.just(math.nan))
high = st.one_of(st.floats(0, 1e6, allow_nan=False), st.just(math.inf), st.just(math.nan))


@st.composite
def endpoint(draw: st.DrawFn, name: str) -> EndpointStats:
    """An endpoint's figures; no request, failures only and unbounded intervals included."""
    requests = draw(st.sampled_from([0, 1, 2, 50, 10_000]))
    failures = draw(st.one_of(st.just(requests), st.integers(0, requests)))
    keys = draw(st.lists(st.sampled_from(["p50", "p95", "p99"]), unique=True))
    return EndpointStats(
        name=name, requests=requests, failures=failures,
        **{f: (math.nan if requests == 0 else draw(figure)) for f in FIGURES},
        ci={k: (draw(low), draw(high)) for k in keys},
        ci_level=draw(st.sampled_from([0.8, 0.9, 0.95, 0.99])),
    )  # fmt: skip


@st.composite
def check(draw: st.DrawFn, stats: RunStats) -> Check:
    name = draw(st.sampled_from([*stats.endpoints, TOTAL]))
    e = stats.total if name == TOTAL else stats.endpoints[name]
    metric = draw(st.sampled_from(["p95_ms", "p99_ms", "error_rate", "min_rps", "mean_ms"]))
    # None where the endpoint got no request, as the gate writes it
    observed = None if e.requests == 0 else draw(st.floats(0, 1e6))
    return Check(
        "light", name, metric, draw(st.floats(0.001, 1e4)), observed, e.requests,
        draw(st.sampled_from(list(Outcome))), ci=draw(st.none() | st.tuples(low, high)),
        level=e.ci_level,
    )  # fmt: skip


@st.composite
def result(draw: st.DrawFn) -> ScenarioResult:
    names = draw(st.lists(st.sampled_from(["GET /a", "POST /b", "PUT /c d"]), unique=True))
    stats = RunStats(
        {n: draw(endpoint(n)) for n in names}, draw(endpoint(TOTAL)),
        duration_s=draw(st.floats(0, 1e4)),
    )  # fmt: skip
    checks = tuple(draw(st.lists(check(stats), max_size=4)))
    outcome = draw(st.sampled_from(list(Outcome)))
    scenario = Scenario(name="light", users=2, spawn_rate=1.0, duration_s=60.0, budget=Budget())
    return ScenarioResult(
        scenario=scenario, raw=RawRun(scenario, (), stats.duration_s, "duration", {}),
        stats=stats, verdict=Verdict("light", outcome, checks), analysis=analyze(stats),
        started_at=datetime(2024, 5, 1, tzinfo=UTC),
    )  # fmt: skip


def _no_error(capsys: pytest.CaptureFixture[str]) -> None:
    err = capsys.readouterr().err
    assert "error" not in err, err


@hypothesis.settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture],
)
@hypothesis.given(old=result(), new=result())
def test_analyze_and_compare_read_back_every_result_the_plugin_writes(
    old: ScenarioResult, new: ScenarioResult, capsys: pytest.CaptureFixture[str]
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        a = write_json(Path(folder, "old.json"), old)
        b = write_json(Path(folder, "new.json"), new)
        assert main(["analyze", str(a)]) == 0
        _no_error(capsys)
        assert main(["compare", str(a), str(b)]) in (0, 1)
        _no_error(capsys)
        assert main(["analyze", folder]) == 0
        out = capsys.readouterr().out
        assert "read old.json (perfgate result)" in out and "read new.json" in out
