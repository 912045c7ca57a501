"""A/B runs judged on the pair (``core.duet``), their gate over a FakeDriver, their reports.

The statistics run on synthetic paired samples whose two sides share a noise factor
that changes over time (a busy neighbour), as both services on one machine do. The
gate's tests replay such samples with ``load.fake.FakeDriver`` against a real
``http.server`` baseline on 127.0.0.1 (its ``/health`` is all the gate asks of it).
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pytest_perfgate.config import load_thresholds
from pytest_perfgate.core import duet
from pytest_perfgate.core.metrics import regression
from pytest_perfgate.core.model import Budget, CompareSpec, Scenario, ServiceSpec, Task, Thresholds
from pytest_perfgate.core.stats import Sample
from pytest_perfgate.core.verdict import Outcome
from pytest_perfgate.duet_gate import DuetGate, ab_source
from pytest_perfgate.errors import ConfigError, GateError, ServiceError
from pytest_perfgate.load.fake import FakeDriver
from pytest_perfgate.options import resolve
from pytest_perfgate.results import duet as duet_report
from pytest_perfgate.results.html import render_html
from pytest_perfgate.results.markdown import github_summary_markdown
from pytest_perfgate.results.result import ScenarioResult, result_to_dict
from pytest_perfgate.results.terminal import terminal_table
from pytest_perfgate.target.baseline import git_worktree, running_baseline
from pytest_perfgate.target.machine import MachineRecord
from pytest_perfgate.target.telemetry import GpuTelemetry

NAME = "GET /fast"


def paired(
    seed: int, *, slower: float = 1.0, seconds: int = 60, rate: int = 20, start: float = 0.0,
    shared_sigma: float = 0.3, own_sigma: float = 0.15, busy: float = 3.0, pairs: bool = False,
) -> list[Sample]:  # fmt: skip
    """``rate`` pairs a second: the candidate ``slower`` times the baseline; both sides
    share a per-request factor and, in busy spells (about a fifth of the seconds), a
    factor ``busy``: a neighbour that slows both. ``pairs``: the samples carry their
    pair, as the Locust child's do in a duet."""
    rng = random.Random(seed)
    out = []
    level = 1.0
    for second in range(seconds):
        if rng.random() < 0.3:
            level = busy if rng.random() < 0.2 else 1.0
        for k in range(rate):
            t = start + second + k / rate
            shared = 20.0 * level * rng.lognormvariate(0.0, shared_sigma)
            cand = shared * slower * rng.lognormvariate(0.0, own_sigma)
            base = shared * rng.lognormvariate(0.0, own_sigma)
            pair = len(out) // 2 + 1 if pairs else 0
            out.append(Sample(t, NAME, cand, True, 200, pair=pair))
            out.append(Sample(t + 0.001, duet.baseline_name(NAME), base, True, 200, pair=pair))
    return out


def changes(
    samples: list[Sample], keys: list[str], level: float = 0.95
) -> dict[str, duet.PairChange]:
    blocks = duet.paired_blocks(duet.split_sides(samples), 2.0, origin_s=0.0, end_s=60.0)
    return {c.key: c for c in duet.pair_changes(blocks, keys, level, resamples=200, block_s=2.0)}


# --- the statistics ----------------------------------------------------------------------


def test_split_sides_gives_the_baseline_its_own_names_back() -> None:
    sides = duet.split_sides(paired(1, seconds=2))
    assert {s.name for s in sides.candidate} == {NAME} == {s.name for s in sides.baseline}
    assert len(sides.candidate) == len(sides.baseline) == 40


def test_an_a_a_pair_is_within_a_ten_percent_allowance_and_its_interval_holds_zero() -> None:
    found = changes(paired(2), ["p95_regression", "p50_regression"])
    for c in found.values():
        assert c.ci is not None and c.ci[0] < 0.0 < c.ci[1]
        assert c.floor is not None and c.floor < 0.10
    checks = duet.pair_checks(list(found.values()), {"p95_regression": 0.1, "p50_regression": 0.1},
                              "light", 0.95)  # fmt: skip
    assert [c.outcome for c in checks] == [Outcome.PASS, Outcome.PASS]


def test_a_candidate_thirty_percent_slower_is_over_a_ten_percent_allowance() -> None:
    # a P95 decided by a few busy spells gets a t quantile on few units: +30 %, not +20 %
    found = changes(paired(3, slower=1.3), ["p95_regression", "p50_regression", "avg_regression"])
    for c in found.values():
        assert c.ci is not None and c.ci[0] > 0.10, c
    checks = duet.pair_checks(list(found.values()), dict.fromkeys(found, 0.1), "light", 0.95)
    assert {c.outcome for c in checks} == {Outcome.FAIL}
    assert "beyond the allowed +10 %" in checks[0].message()


@pytest.mark.parametrize("pairs", [False, True], ids=["pooled", "pairs"])
def test_ninety_percent_intervals_cover_the_true_ratio_in_most_simulated_pairs(
    pairs: bool,
) -> None:
    # 60 runs of 60 s with a busy neighbour that comes and goes; both truths (1.0, 1.15)
    misses = 0
    runs = 60
    for seed in range(runs):
        slower = 1.0 if seed % 2 else 1.15
        samples = paired(100 + seed, slower=slower, rate=10, pairs=pairs)
        c = changes(samples, ["p50_regression"], 0.90)
        low, high = c["p50_regression"].ci or (0.0, 0.0)
        misses += not low <= slower - 1.0 <= high
    assert misses <= 12  # 6 expected; a bootstrap interval may be a little optimistic


def test_pairing_in_time_cancels_a_neighbour_both_sides_shared() -> None:
    # the shared spells triple the latency a fifth of the time; the pair's p95 stays tight
    c = changes(paired(4, busy=5.0), ["p95_regression"])["p95_regression"]
    assert c.floor is not None and c.floor < 0.10


def test_a_duet_judges_its_median_on_its_pairs_which_cancel_what_both_sides_share() -> None:
    # each request's ratio to its twin: the shared factor and busy spells cancel pair by
    # pair, where the two sides' medians each carry them (their interval twice as wide)
    floors = []
    for seed in range(5):
        samples = paired(seed, slower=1.1, pairs=True)
        on_pairs = changes(samples, ["p50_regression", "p95_regression"])
        pooled = changes(paired(seed, slower=1.1), ["p50_regression"])["p50_regression"]
        p50 = on_pairs["p50_regression"]
        assert p50.pairs == 1200 and pooled.pairs == 0 and on_pairs["p95_regression"].pairs == 0
        assert p50.ci is not None and p50.ci[0] < 0.10 < p50.ci[1]
        assert p50.floor is not None and pooled.floor is not None
        floors.append(p50.floor / pooled.floor)
    assert max(floors) < 0.8 and sum(floors) / len(floors) < 0.6, floors
    (check,) = duet.pair_checks([p50], {"p50_regression": 0.05}, "light", 0.95)
    assert check.outcome is Outcome.FAIL and "median of 1 200 pairs' ratios" in check.message()


def test_a_pair_counts_only_when_both_requests_were_answered_and_only_in_a_duet() -> None:
    samples = paired(8, seconds=20, pairs=True)
    # the baseline's twin of every tenth pair failed: those pairs are left out
    samples = [
        dataclasses.replace(s, ok=False, status=500) if s.pair % 10 == 0 and i % 2 else s
        for i, s in enumerate(samples)
    ]
    blocks = duet.paired_blocks(duet.split_sides(samples), 2.0, origin_s=0.0, end_s=20.0)
    assert sum(len(b.ratios) for b in blocks) == 400 - 40
    duo = duet.pair_changes(blocks, ["p50_regression"], 0.95, block_s=2.0)[0]
    rounds = duet.pair_changes(blocks, ["p50_regression"], 0.95, mode="interleaved", block_s=2.0)
    assert duo.pairs == 360 and rounds[0].pairs == 0


def test_errors_are_judged_in_points_and_never_with_a_zero_width_interval() -> None:
    c = changes(paired(5), ["error_rate_regression"])["error_rate_regression"]
    assert c.observed == 0.0 and c.ci is not None and c.ci[1] > 0.0


def test_throughput_is_compared_only_when_interleaved() -> None:
    c = changes(paired(6), ["rps_regression"])["rps_regression"]
    assert c.ci is None and "interleaved mode" in c.reason


def interleaved(seed: int, *, fewer: float = 0.0, seconds: int = 40) -> list[Sample]:
    """Rounds of 1 s alternate the sides (each pair in random order); the candidate's
    server answers ``fewer`` of the baseline's requests in its rounds (less throughput)."""
    rng = random.Random(seed)
    first = [rng.random() < 0.5 for _ in range(seconds // 2)]  # the baseline's, by pair
    out = []
    for r in range(seconds):
        on_baseline = (r % 2 == 0) == first[r // 2]
        rate = 40 if on_baseline else round(40 * (1.0 - fewer))
        name = duet.baseline_name(NAME) if on_baseline else NAME
        out += [Sample(r + k / rate, name, 20 * rng.lognormvariate(0, 0.2), True, 200)
                for k in range(rate)]  # fmt: skip
    return out


def test_interleaved_rounds_pair_by_two_and_compare_throughput() -> None:
    keys = ["rps_regression", "p50_regression"]
    for fewer, outcome in ((0.0, Outcome.PASS), (0.3, Outcome.FAIL)):
        sides = duet.split_sides(interleaved(13, fewer=fewer))
        blocks = duet.paired_blocks(sides, duet.block_length(40.0, "interleaved", 1.0),
                                    origin_s=0.0, end_s=40.0)  # fmt: skip
        assert len(blocks) == 20
        found = duet.pair_changes(blocks, keys, 0.95, mode="interleaved")
        checks = duet.pair_checks(found, dict.fromkeys(keys, 0.1), "light", 0.95)
        assert checks[0].outcome is outcome, checks[0].message()
        assert checks[1].outcome is Outcome.PASS


def test_too_few_paired_blocks_cannot_be_judged() -> None:
    blocks = duet.paired_blocks(duet.split_sides(paired(7, seconds=6)), 2.0, origin_s=0.0,
                                end_s=6.0)  # fmt: skip
    (c,) = duet.pair_changes(blocks, ["p95_regression"], 0.95)
    assert c.ci is None and "3 paired blocks" in c.reason
    (check,) = duet.pair_checks([c], {"p95_regression": 0.1}, "light", 0.95)
    assert check.outcome is Outcome.INVALID


def test_looks_grow_by_half_and_end_at_the_duration_and_share_the_error() -> None:
    assert duet.look_times(30.0, 300.0) == (30.0, 45.0, 67.5, 101.25, 151.875, 227.8125, 300.0)
    assert duet.look_times(30.0, 20.0) == (20.0,)
    assert duet.look_levels(0.95, 1) == (0.95,)
    # the last look gets four fifths of the 5 %, the two before it 0.5 % each
    assert duet.look_levels(0.95, 3) == (0.995, 0.995, 0.96)
    # 7 earlier looks share 1 %: 0.143 % each, rounded down to 0.14 %
    assert duet.look_levels(0.95, 8) == (*([0.9986] * 7), 0.96)
    assert sum(1 - x for x in duet.look_levels(0.9, 5)) <= 0.1 + 1e-12


def test_a_look_s_level_is_the_last_one_s_only_from_the_end_of_the_schedule() -> None:
    plan = _plan((30.0, 45.0, 60.0))
    assert plan.level_at(60.0) == plan.level_at(61.0) == 0.96
    assert plan.level_at(30.0) == plan.level_at(59.0) == 0.995


def _plan(looks: tuple[float, ...]) -> duet.PairPlan:
    allowances = {"Total": ({"p95_regression": 0.1}, "block")}
    return duet.PairPlan("light", "duet", 2.0, 0.0, looks, 0.95, allowances, "main")


def test_the_stop_rule_aborts_at_its_first_look_on_a_clear_regression() -> None:
    rule = duet.PairStopRule(_plan((30.0, 45.0, 60.0)))
    samples = paired(8, slower=2.0)
    assert rule([s for s in samples if s.t < 29], 29.0) is None
    reason = rule([s for s in samples if s.t < 30], 30.0)
    assert reason is not None and reason.startswith("clear regression") and rule.looked == 1


def test_the_stop_rule_leaves_the_last_look_to_the_end_of_the_run() -> None:
    rule = duet.PairStopRule(_plan((60.0,)))
    assert rule(paired(9, slower=1.5), 60.0) is None


def hogged(seed: int, *, slower: float = 1.0, seconds: float = 40.0) -> list[Sample]:
    """A duet run with a CPU hog for the middle half (both sides x2.5, descheduling
    delays) while the scheduler starves one side or the other for seconds at a time
    (a log factor per side wandering with sd 0.06 and a correlation of 5 s), and the
    first request of each pair (random order) 15 % slower: ``duet_quality``'s
    ``imbalance`` noise, where the normal-approximation bootstrap of single blocks
    said FAIL in 11 of 300 A/A runs (the seeds below). The samples carry their pairs."""
    rng = random.Random(seed)
    on = seconds * (0.25 + rng.uniform(-0.05, 0.05))
    off = on + seconds / 2
    rho = math.exp(-0.1 / 5.0)
    walk = [[rng.gauss(0.0, 0.06)], [rng.gauss(0.0, 0.06)]]
    for w in walk:
        while len(w) < seconds * 10 + 2:
            w.append(rho * w[-1] + rng.gauss(0.0, 0.06 * math.sqrt(1 - rho * rho)))
    out, t = [], 0.0
    while t < seconds:
        hog = on <= t < off
        t += rng.expovariate(35.0 if hog else 60.0)
        shared = 8.0 * (2.5 if hog else 1.0) * rng.lognormvariate(0.0, 0.25)
        candidate_first = rng.random() < 0.5
        for side in (0, 1):
            ms = shared * rng.lognormvariate(0.0, 0.15)
            if rng.random() < (0.25 if hog else 0.03):
                ms += rng.paretovariate(2.5) * (6.0 if hog else 2.0)
            ms *= math.exp(walk[side][int(t * 10)]) if hog else 1.0
            ms *= (1.15 if (side == 0) == candidate_first else 1.0) * (slower if side == 0 else 1)
            name = NAME if side == 0 else duet.baseline_name(NAME)
            out.append(Sample(t + 0.001 * side, name, ms, True, 200, pair=len(out) // 2 + 1))
    return out


def _hogged_outcome(samples: list[Sample], key: str = "p95_regression") -> Outcome:
    """The gate's outcome of a 40 s duet (warm-up 3 s, looks from 13 s, 1 s blocks)."""
    allowances = {"Total": ({key: 0.05}, "block")}
    looks = duet.look_times(13.0, 40.0)
    plan = duet.PairPlan("cpu", "duet", 1.0, 3.0, looks, 0.95, allowances, "A", resamples=200)
    rule = duet.PairStopRule(plan)
    for look in looks[:-1]:
        if rule([s for s in samples if s.t < look], look) is not None:
            return duet.judge_pair(plan, [s for s in samples if s.t < look], look).checks[0].outcome
    return duet.judge_pair(plan, samples, looks[-1]).checks[0].outcome


# the seeds of 0-299 where the single-block normal bootstrap said FAIL
HOGGED_SEEDS = (32, 85, 130, 141, 154, 189, 236, 244, 274, 291, 299)


def test_an_a_a_duet_with_a_hog_in_the_middle_almost_never_fails() -> None:
    # The old method failed all 11. The t interval over runs of blocks fails two (141,
    # 236): its last look spends four fifths of the 5 %, and over all 300 seeds that is
    # 2 false FAILs (0.7 %, where a one-sided 2.5 % is allowed); with 5 % / 4 at every
    # look it was 0, and a 10 % slower candidate was caught in 36 of 300, not 68.
    fails = [seed for seed in HOGGED_SEEDS if _hogged_outcome(hogged(seed)) is Outcome.FAIL]
    assert len(fails) <= 2, fails


def test_a_hogged_duet_judged_on_its_pairs_catches_a_slower_b_the_medians_miss() -> None:
    # the hog triples both sides for half the run: the sides' medians sit between the
    # quiet and the hogged mode, where few requests fall; each pair's ratio does not care.
    # Over seeds 0-99: A/A 0 FAIL; a 10 % slower B caught in 81 on pairs, 25 pooled;
    # over these 20: 17 and 5.
    seeds = range(20)
    aa = [_hogged_outcome(hogged(s), "p50_regression") for s in seeds]
    slow = [hogged(s, slower=1.1) for s in seeds]
    on_pairs = [_hogged_outcome(run, "p50_regression") for run in slow]
    pooled = [_hogged_outcome([dataclasses.replace(x, pair=0) for x in run], "p50_regression")
              for run in slow]  # fmt: skip
    assert aa.count(Outcome.FAIL) == 0
    assert on_pairs.count(Outcome.FAIL) >= 14 > 8 >= pooled.count(Outcome.FAIL)
    assert Outcome.PASS not in on_pairs + pooled


def test_a_percentile_decided_by_a_few_hogged_blocks_counts_only_those() -> None:
    blocks = duet.paired_blocks(duet.split_sides(hogged(32)), 1.0, origin_s=3.0, end_s=40.0)
    whole = duet._pool(blocks, range(len(blocks)))
    run = duet.run_length(len(blocks))
    assert run == 4  # RUN_S of 1 s blocks
    p95, avg = (
        duet._units(regression(f"{k}_regression"), blocks, whole, run) for k in ("p95", "avg")
    )
    assert avg == len(blocks) // run == 9
    assert p95 < avg  # only the hog's middle half holds the P95's tail


def test_t_quantiles_match_the_tables_and_runs_grow_as_the_cube_root() -> None:
    table = [(0.975, 1, 12.706), (0.975, 5, 2.571), (0.995, 3, 5.841), (0.9975, 10, 3.581)]
    for p, df, want in table:
        assert duet.t_quantile(p, df) == pytest.approx(want, abs=2e-3)
    assert duet.t_quantile(0.975, 500) == pytest.approx(1.96, abs=1e-3)
    assert [duet.run_length(m, 10.0) for m in (5, 8, 26, 27, 64)] == [1, 2, 2, 3, 4]
    assert duet.run_length(30, 1.0) == 4 and duet.run_length(30, 2.0) == 3


# --- thresholds.yaml and the options ------------------------------------------------------


def _yaml(tmp_path: Path, compare: str) -> Path:
    path = tmp_path / "thresholds.yaml"
    path.write_text(
        "service: {url: 'http://127.0.0.1:1'}\n"
        f"compare_to: {compare}\n"
        "scenarios:\n  light:\n    users: 1\n    spawn_rate: 1\n    duration: 5s\n"
        "    tasks: [{method: GET, path: /fast}]\n"
    )
    return path


def test_compare_to_reads_a_ref_a_mode_and_a_round(tmp_path: Path) -> None:
    spec = load_thresholds(_yaml(tmp_path, "{ref: main, mode: interleaved, round: 3s}")).compare_to
    assert spec == CompareSpec(ref="main", mode="interleaved", round_s=3.0)


@pytest.mark.parametrize(
    ("compare", "message"),
    [
        ("{ref: main, url: 'http://x'}", "compare_to: expected exactly one of ref, command"),
        ("{command: 'serve'}", "compare_to.command: expected a command with a {port}"),
        ("{url: 'http://x', mode: sideways}", "compare_to.mode: expected duet or interleaved"),
        ("{url: 'http://x', every: 2}", "compare_to.every: unknown key 'every'"),
    ],
)
def test_a_bad_compare_to_names_its_key_and_value(
    tmp_path: Path, compare: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("{", r"\{").replace("(", r"\(")):
        load_thresholds(_yaml(tmp_path, compare))


def test_against_takes_a_url_or_a_ref_over_compare_to(tmp_path: Path) -> None:
    thresholds = load_thresholds(_yaml(tmp_path, "{ref: main, mode: interleaved}"))
    by_url = resolve({"against": "http://127.0.0.1:9/"}, {}, {}, tmp_path)
    assert ab_source(thresholds, by_url) == CompareSpec(
        url="http://127.0.0.1:9", mode="interleaved"
    )
    by_ref = resolve({"against": "HEAD~1", "ab_mode": "duet"}, {}, {}, tmp_path)
    assert ab_source(thresholds, by_ref) == CompareSpec(ref="HEAD~1", mode="duet")
    assert ab_source(load_thresholds(tmp_path / "thresholds.yaml"), resolve({}, {}, {}, tmp_path))


# --- the baseline's worktree ------------------------------------------------------------


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A real git repository of two commits: ``old`` then ``new`` in ``version.txt``."""
    path = tmp_path / "repo"
    (path / "app").mkdir(parents=True)
    _git(path, "init", "-q")
    for text in ("old", "new"):
        (path / "app" / "version.txt").write_text(text)
        _git(path, "add", "-A")
        _git(path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", text)
    return path


def test_a_ref_is_checked_out_into_a_worktree_that_is_removed_afterwards(repo: Path) -> None:
    with git_worktree(repo / "app", "HEAD~1") as (tree, commit):
        assert (tree / "version.txt").read_text() == "old"
        assert commit == _git(repo, "rev-parse", "HEAD~1").strip()
        assert str(tree.parent) in _git(repo, "worktree", "list")
    assert not tree.exists() and len(_git(repo, "worktree", "list").splitlines()) == 1


def test_a_ref_with_a_command_runs_that_command_in_the_worktree(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "{ref: main, command: 'old --port {port}'}")
    assert load_thresholds(path).compare_to == CompareSpec(ref="main", command="old --port {port}")


def test_a_baseline_that_cannot_start_leaves_no_worktree_and_says_so(
    repo: Path, tmp_path: Path
) -> None:
    service = ServiceSpec(command="serve {port}", startup_timeout_s=10.0)
    source = CompareSpec(ref="HEAD", command="{python} -c 'import sys; sys.exit(3)' {port}")
    with (
        pytest.raises(ServiceError, match="A/B baseline: the service exited with code 3"),
        running_baseline(source, service, rootdir=repo, results_dir=tmp_path),
    ):
        pass
    assert len(_git(repo, "worktree", "list").splitlines()) == 1


def test_an_unknown_ref_is_a_service_error_naming_it(repo: Path, tmp_path: Path) -> None:
    service = ServiceSpec(command="serve {port}")
    with (
        pytest.raises(ServiceError, match="A/B baseline: git rev-parse --verify nope"),
        running_baseline(CompareSpec(ref="nope"), service, rootdir=repo, results_dir=tmp_path),
    ):
        pass


# --- the gate over a FakeDriver -----------------------------------------------------------


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def baseline_url() -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 standing in for a baseline: it answers /health."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _Target:
    url = "http://service.test"

    def alive(self) -> bool:
        return True


class _Probe:
    def answers(self, url: str) -> bool:
        return True

    def metrics(self, url: str) -> None:
        return None

    def watch_gpu(self, url: str) -> Callable[[], GpuTelemetry]:
        return lambda: GpuTelemetry(None, ())


class _Sampler:
    def watch(
        self, service_url: str | None = None, *, started_here: bool = True
    ) -> Callable[[], MachineRecord]:
        return lambda: MachineRecord((), 2, True)


def _scenario(**budget: object) -> Scenario:
    return Scenario(
        "light", users=4, spawn_rate=4.0, duration_s=60.0, min_samples=20,
        tasks=(Task("GET", "/fast", NAME),), budget=Budget(regressions=budget or None),  # type: ignore[arg-type]
    )  # fmt: skip


def run_gate(
    tmp_path: Path, url: str, samples: list[Sample], scenario: Scenario, **options: str
) -> ScenarioResult:
    settings = resolve({"results_dir": str(tmp_path / "results"), **options}, {}, {}, tmp_path)
    thresholds = Thresholds(tmp_path / "t.yaml", ServiceSpec(url=_Target.url), {"light": scenario})
    gate = DuetGate(
        thresholds, settings, _Target, source=CompareSpec(url=url), driver=FakeDriver(samples),
        probe=_Probe(), sampler=_Sampler(), cwd=tmp_path,
    )  # fmt: skip
    return gate.run(gate.scenario("light"))


def test_an_a_a_run_passes_with_the_default_allowances_and_reports_both_sides(
    tmp_path: Path, baseline_url: str
) -> None:
    samples = paired(10, rate=40)  # 2 400 a side: a P95 within +-10 % despite the spells
    result = run_gate(tmp_path, baseline_url, samples, _scenario(), early_stop="false")
    assert result.verdict.outcome is Outcome.PASS, result.verdict.failure_text()
    assert result.comparison is not None and result.comparison.baseline == baseline_url
    assert {c.metric for c in result.verdict.checks} == set(duet.DEFAULT_ALLOWANCES)
    table = "\n".join(terminal_table([result]))
    assert "candidate" in table and "baseline" in table and "noise floor: p95 +-" in table
    data = result_to_dict(result)
    assert data["ab"]["baseline_statistics"]["total"]["requests"] == result.stats.total.requests
    assert {c["key"] for c in data["ab"]["changes"]} == set(duet.DEFAULT_ALLOWANCES)
    json.dumps(data)
    page = render_html(result)
    assert "Latency distribution, both sides" in page and f"baseline {baseline_url}" in page
    assert "| p95 | Total |" in github_summary_markdown([result])


def test_a_clear_regression_ends_the_run_early_as_fail(tmp_path: Path, baseline_url: str) -> None:
    scenario = _scenario(p95_regression=0.1)
    result = run_gate(tmp_path, baseline_url, paired(11, slower=1.5), scenario, min_duration="20s")
    assert result.verdict.outcome is Outcome.FAIL
    assert result.raw.stop_reason.startswith("stopped: clear regression")
    assert result.comparison is not None and result.comparison.looked == 1
    assert duet_report.noise_floor_line(result).startswith("noise floor: p95 +-")


def test_a_dead_baseline_makes_the_run_invalid(tmp_path: Path) -> None:
    result = run_gate(tmp_path, "http://127.0.0.1:9", paired(12), _scenario(), early_stop="false")
    assert result.verdict.outcome is Outcome.INVALID
    assert any("the baseline at http://127.0.0.1:9 died" in r for r in result.verdict.reasons)


def test_a_locustfile_scenario_cannot_be_paired(tmp_path: Path, baseline_url: str) -> None:
    scenario = Scenario("light", users=1, spawn_rate=1.0, duration_s=5.0, locustfile="x.py")
    with pytest.raises(GateError, match="a locustfile scenario cannot be paired"):
        run_gate(tmp_path, baseline_url, [], scenario)
