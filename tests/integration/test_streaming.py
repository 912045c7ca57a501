"""Streaming tasks and LLM-style arrivals: the real Locust child against a stand-in server.

``stream_server.py`` streams tokens whose times follow known laws (the request body says
which), so the samples can be checked against the truth: TTFT, ITL per token, output
tokens, and why a malformed stream failed. Real processes because Locust must run in a
child (importing it patches the process with gevent). One load runs at a time; the
module's main run is shared by the tests that read it.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import math
import random
import statistics
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from stream_server import running

from pytest_perfgate.config import Scenario, Task
from pytest_perfgate.core.stats import Sample, Stream, quantile_ci
from pytest_perfgate.load.driver import RawRun
from pytest_perfgate.load.locust_driver import run_load

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("no_load_generator_left")]

TTFT_MS, ITL_MS = 150.0, 20.0
#: what a busy two-core machine may add to a wait: scheduling of the server's thread and of
#: the child's greenlet; a wait is never shorter than the server's sleep
SLACK_MS = 40.0


def chat(name: str, weight: int = 1, **answer: Any) -> Task:
    """A chat task on ``/<name>/v1/chat/completions``; ``answer``: the server's law and mode."""
    law = {"ttft_ms": TTFT_MS, "itl_ms": ITL_MS, **answer}
    return Task(
        "POST", f"/{name}/v1/chat/completions", f"POST {name}", weight=weight,
        kind="openai_chat", model="stand-in", prompts=("hi",),
        max_tokens=int(answer.get("max_tokens", 10)), extra_body=law,
    )  # fmt: skip


TASKS = (
    chat("plain", weight=2, role_first=True, keepalive=True),
    chat("batched", weight=2, per_chunk=4, max_tokens=16),
    chat("exp", weight=4, law="exp", ttft_ms=80.0, itl_ms=10.0, max_tokens=30),
    Task("POST", "/c/v1/completions", "POST completions", kind="openai_completions",
         prompts=("Once",), max_tokens=6, extra_body={"ttft_ms": 50.0, "itl_ms": ITL_MS}),
    Task("POST", "/e/events", "POST events", kind="sse", tokens_field="n",
         json={"max_tokens": 5, "per_chunk": 2, "ttft_ms": 50.0, "itl_ms": ITL_MS}),
    chat("no_done", fault="no_done"),
    chat("bad_json", fault="bad_json"),
    chat("cut", fault="cut"),
    chat("error_event", fault="error_event"),
    chat("usage_low", fault="usage_low"),
    chat("json_answer", json_answer=True),
    Task("POST", "/whole/v1/chat/completions", "POST whole", kind="openai_chat",
         prompts=("hi",), stream=False),
)  # fmt: skip


@pytest.fixture(scope="module")
def stream_url() -> Iterator[str]:
    with running() as url:
        yield url


@pytest.fixture(scope="module")
def streamed(stream_url: str, tmp_path_factory: pytest.TempPathFactory) -> RawRun:
    """Every kind of stream, at once: 10 users, no wait, 5 s."""
    scenario = Scenario(
        name="streams", users=10, spawn_rate=100, duration_s=5.0, tasks=TASKS,
        request_timeout_s=5.0,
    )  # fmt: skip
    return run_load(scenario, stream_url, tmp_path_factory.mktemp("streams"), "streams")


def of(raw: RawRun, name: str) -> list[Sample]:
    found = [s for s in raw.samples if s.name == f"POST {name}"]
    assert found, f"no request of POST {name}"
    return found


def streams(samples: Sequence[Sample]) -> list[Stream]:
    found = [s.stream for s in samples]
    assert all(s is not None for s in found)
    return [s for s in found if s is not None]


def test_ttft_runs_to_the_first_token_not_to_the_role_chunk_nor_to_the_end(
    streamed: RawRun,
) -> None:
    samples = of(streamed, "plain")
    for sample, stream in zip(samples, streams(samples), strict=True):
        assert sample.ok and stream.wellformed and stream.problem == ""
        assert stream.ttft_ms is not None
        # the role-only chunk and the keep-alives came at once; the first token after 150 ms
        assert stream.ttft_ms >= TTFT_MS
        # and the body was not buffered: nine more tokens 20 ms apart came after it
        assert sample.ms - stream.ttft_ms > 9 * ITL_MS - SLACK_MS
        assert (stream.output_tokens, stream.chunks, stream.batched) == (10, 10, False)
        assert len(stream.itl_ms) == 9
    # a busy machine may delay a few (the run's first requests share the CPU with its start)
    ttft = [s.ttft_ms or 0.0 for s in streams(samples)]
    assert sum(t < TTFT_MS + SLACK_MS for t in ttft) >= 0.9 * len(ttft)


def test_itl_and_ttft_are_within_5_percent_plus_2_ms_of_a_fixed_law(streamed: RawRun) -> None:
    found = streams(of(streamed, "plain"))
    itl = sorted(g for s in found for g in s.itl_ms)
    ttft = sorted(s.ttft_ms or 0.0 for s in found)
    for figures, truth in ((itl, ITL_MS), (ttft, TTFT_MS)):
        assert statistics.median(figures) == pytest.approx(truth, rel=0.05, abs=2.0)


def test_chunks_of_several_tokens_give_one_itl_per_token_and_say_they_were_batched(
    streamed: RawRun,
) -> None:
    samples = of(streamed, "batched")
    for sample, stream in zip(samples, streams(samples), strict=True):
        assert sample.ok and stream.wellformed and stream.batched
        # 16 tokens in 4 chunks of 4, 80 ms apart: usage said 16, each gap is 4 of 20 ms
        assert (stream.output_tokens, stream.chunks, len(stream.itl_ms)) == (16, 4, 12)
        assert stream.tpot_ms is not None
    gaps = [g for s in streams(samples) for g in s.itl_ms]
    assert statistics.median(gaps) == pytest.approx(ITL_MS, rel=0.05, abs=2.0)


def test_exponential_laws_lie_within_the_intervals_of_their_samples(streamed: RawRun) -> None:
    found = streams(of(streamed, "exp"))
    itl = sorted(g for s in found for g in s.itl_ms)
    ttft = sorted(s.ttft_ms or 0.0 for s in found)
    assert len(itl) > 300 and len(ttft) > 10
    # an exponential of mean m has its q-quantile at -m ln(1 - q); the measured waits may
    # exceed the server's by scheduling, never fall short of them
    for figures, mean, q in ((itl, 10.0, 0.5), (itl, 10.0, 0.95), (ttft, 80.0, 0.5)):
        low, high = quantile_ci(figures, q, level=0.999)
        truth = -mean * math.log(1 - q)
        assert low - 2.0 <= truth <= high + 2.0, (q, low, truth, high)


def test_completions_and_plain_sse_streams_are_timed_too(streamed: RawRun) -> None:
    completions = streams(of(streamed, "completions"))
    assert all(s.wellformed and s.output_tokens == 6 and s.chunks == 6 for s in completions)
    assert all((s.ttft_ms or 0) >= 50.0 for s in completions)
    assert statistics.median(s.ttft_ms or 0 for s in completions) < 50.0 + SLACK_MS
    events = streams(of(streamed, "events"))
    # 5 tokens as chunks of 2, 2 and 1: the n field counts them; no [DONE] needed
    assert all((s.output_tokens, s.chunks, s.batched) == (5, 3, True) for s in events)
    assert all(s.wellformed for s in events)


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("no_done", "StreamError: stream ended without [DONE]"),
        ("bad_json", "StreamError: malformed chunk: not JSON"),
        ("cut", "StreamError: stream cut mid-way: HTTPParseError: "),
        ("error_event", "StreamError: error event: KV cache exhausted"),
        ("usage_low", "StreamError: usage reports fewer tokens than content chunks arrived"),
        ("json_answer", "StreamError: not a stream: the response is application/json"),
    ],
)
def test_a_malformed_stream_fails_its_request_with_its_reason(
    streamed: RawRun, name: str, error: str
) -> None:
    samples = of(streamed, name)
    assert all(not s.ok and s.status == 200 and s.error.startswith(error) for s in samples)
    assert all(not s.wellformed for s in streams(samples))


def test_a_task_with_stream_false_is_a_plain_request_of_the_same_body(streamed: RawRun) -> None:
    samples = of(streamed, "whole")
    assert all(s.ok and s.status == 200 and s.stream is None for s in samples)


def test_locust_counts_streams_end_to_end_and_their_failures(streamed: RawRun) -> None:
    with streamed.files["stats_csv"].open(newline="") as f:
        rows = {row["Name"]: row for row in csv.DictReader(f)}
    plain = of(streamed, "plain")
    assert float(rows["plain"]["Max Response Time"]) == pytest.approx(max(s.ms for s in plain))
    assert int(rows["cut"]["Failure Count"]) == len(of(streamed, "cut"))
    assert int(rows["plain"]["Failure Count"]) == 0


def gaps_of(raw: RawRun) -> list[float]:
    return [b - a for a, b in itertools.pairwise(sorted(s.t for s in raw.samples))]


def expected_gaps(draw: Any, count: int) -> list[float]:
    return [draw() for _ in range(count)]


@pytest.mark.parametrize(
    ("arrivals", "burstiness", "cv"), [("poisson", 1.0, 1.0), ("gamma", 0.25, 2.0)]
)
def test_random_arrivals_follow_their_seeded_law_timed_from_the_schedule(
    stream_url: str, tmp_path: Path, arrivals: str, burstiness: float, cv: float
) -> None:
    rate = 40.0
    task = chat("open", ttft_ms=20.0, itl_ms=5.0, max_tokens=3)
    scenario = Scenario(
        name="arrivals", users=40, spawn_rate=100, duration_s=5.0, tasks=(task,),
        request_timeout_s=3.0, arrival_rate=rate, arrivals=arrivals,  # type: ignore[arg-type]
        burstiness=burstiness, seed=11,
    )  # fmt: skip
    raw = run_load(scenario, stream_url, tmp_path, arrivals)
    assert raw.dropped_requests == 0 and raw.problems == ()
    rng = random.Random(11)
    if arrivals == "poisson":
        truth = expected_gaps(lambda: rng.expovariate(rate), len(raw.samples) - 1)
    else:
        truth = expected_gaps(
            lambda: rng.gammavariate(burstiness, 1 / (burstiness * rate)), len(raw.samples) - 1
        )
    gaps = gaps_of(raw)
    # the same seed, the same timetable: each sample's t is its due time
    assert gaps == pytest.approx(truth, abs=1e-5)
    assert statistics.mean(gaps) == pytest.approx(1 / rate, rel=0.35)
    assert statistics.stdev(gaps) / statistics.mean(gaps) == pytest.approx(cv, rel=0.4)
    # TTFT runs from the due time: never below the server's 20 ms
    assert all(s.stream is not None and (s.stream.ttft_ms or 0) >= 20.0 for s in raw.samples)


def test_workers_each_draw_their_share_of_poisson_arrivals(stream_url: str, tmp_path: Path) -> None:
    rate = 40.0
    # max_tokens drawn from 1-10 000 (the server streams that many, 500 to a chunk, at
    # once): workers with the same draws would send each length twice
    task = dataclasses.replace(
        chat("open", ttft_ms=5.0, itl_ms=0.0, per_chunk=500), max_tokens={"min": 1, "max": 10_000}
    )
    scenario = Scenario(
        name="shared", users=20, spawn_rate=100, duration_s=3.0, tasks=(task,),
        request_timeout_s=3.0, arrival_rate=rate, arrivals="poisson", seed=5, processes=2,
    )  # fmt: skip
    raw = run_load(scenario, stream_url, tmp_path, "shared")
    assert raw.dropped_requests == 0 and raw.problems == ()
    # worker i runs rate / 2 from seed 5 + i, i / rate late: the union is the timetable
    due: list[float] = []
    for index in (0, 1):
        rng, t = random.Random(5 + index), index / rate
        while t < 5.0:  # the stop lets requests due just after the end start
            due.append(t)
            t += rng.expovariate(rate / 2)
    assert all(s.ok and s.stream is not None for s in raw.samples)  # sent on by the master
    lengths = [s.stream.output_tokens for s in raw.samples if s.stream is not None]
    assert len(set(lengths)) >= 0.9 * len(lengths), "the workers drew the same max_tokens"
    measured = sorted(s.t for s in raw.samples)
    assert len(measured) >= 0.9 * sum(t < 3.0 for t in due)
    due.sort()
    assert all(min(abs(t - d) for d in due) < 1e-5 for t in measured)
