"""A shortened spike against the real service, driven by the project's own load engine.

The spike scenario of thresholds.yaml (0 -> 500 users) scaled to a 2-core machine that
also runs the load generator: 5 users for 8 s, 150 users until 16 s, 5 users until 30 s.
The service runs with a short queue and request timeout (``--max-queue 32
--request-timeout 3``) so that the spike overflows it and the shedding path is exercised:
what does not fit is refused at once with 503 + Retry-After.

Measured once, examined by several tests: the service never crashes or hangs, every answer
is a success or a fast 503, nothing waits past the request timeout, memory stays bounded,
and P95 is back to its pre-spike value within 10 s of the spike's end.

A subprocess because what is tested is the process under real HTTP load, and because
Locust must run in the child process ``run_load`` starts (it patches the process with
gevent).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from service_harness import ROOT, ServiceProcess, sample_value, service_process

from pytest_perfgate.config import LoadShape, Scenario, Task
from pytest_perfgate.core.stats import Sample, percentile
from pytest_perfgate.load.driver import RawRun
from pytest_perfgate.load.locust_driver import run_load

pytestmark = pytest.mark.e2e

REQUEST_TIMEOUT_S = 3.0
#: time a request may spend before the service's clock starts (accept queue, HTTP parsing
#: on an event loop saturated by the spike): on 2 shared cores, up to about 1.5 s measured
SLACK_S = 3.0
BEFORE = (2.0, 8.0)  # seconds of the run: after the users have started, before the spike
SPIKE = (8.0, 16.0)
RECOVERY_S = 10.0  # P95 is back within this long after the spike's end
AFTER = (SPIKE[1] + RECOVERY_S, 30.0)
RSS_GROWTH_MB = 200.0
#: Recovered: P95 after <= P95 before x 2 + 20 ms, and under a third of the spike's P95. On
#: a quiet machine it comes back to within 20 % (29.5 ms before, 23.5 ms after); on two
#: cores shared with other work, two 6-second windows of the same load differ by up to
#: 1.6x (89 and 141 ms seen), while the spike itself is 8-30x the level before it.
P95_RATIO, P95_ALLOWANCE_MS, SPIKE_SHARE = 2.0, 20.0, 1 / 3
#: Under outside CPU load the service's estimate of the queue wait can be short, so a few
#: queued requests time out (504, within the timeout) instead of being refused at once.
MAX_TIMEOUT_SHARE = 0.05

TASKS = (
    Task("POST", "/predict", "/predict mlp", 3, json_factory="service.payloads:mlp_request"),
    Task(
        "POST", "/predict", "/predict encoder", 1, json_factory="service.payloads:encoder_request"
    ),
)
SCENARIO = Scenario(
    name="spike",
    users=150,
    spawn_rate=50,
    duration_s=AFTER[1],
    wait_min_s=0.05,
    wait_max_s=0.2,
    tasks=TASKS,
    shape=LoadShape("spike", ((SPIKE[0], 5, 5.0), (SPIKE[1], 150, 50.0), (AFTER[1], 5, 50.0))),
    request_timeout_s=15.0,  # the client's: longer than any answer the service may give
)


@dataclass
class Probes:
    """What a side thread saw while the load ran: /health, and /predict's 503 headers."""

    health: list[tuple[int | str, float]] = field(default_factory=list)
    busy_retry_after: list[str | None] = field(default_factory=list)


@dataclass(frozen=True)
class Spike:
    raw: RawRun
    probes: Probes
    rss_before: float
    rss_after: float
    alive_after: bool

    def window(self, span: tuple[float, float]) -> list[Sample]:
        return [s for s in self.raw.samples if span[0] <= s.t < span[1]]

    def summary(self) -> str:
        """The figures, for ``pytest -s`` and failure messages."""
        parts = [f"{len(self.raw.samples)} requests"]
        for label, span in (("before", BEFORE), ("during", SPIKE), ("after", AFTER)):
            window = self.window(span)
            refused = sum(s.status == 503 for s in window)
            parts.append(f"{label}: n={len(window)} p95={p95(window):.1f} ms 503={refused}")
        slowest = max(s.ms for s in self.raw.samples)
        health = max(seconds for _, seconds in self.probes.health)
        growth = (self.rss_after - self.rss_before) / 1e6
        return (
            f"{'; '.join(parts)}; max {slowest:.0f} ms; slowest /health {health * 1000:.0f} ms; "
            f"RSS {self.rss_before / 1e6:.0f} MB {growth:+.0f} MB"
        )


def rss(url: str) -> float:
    return sample_value(httpx.get(f"{url}/metrics").text, "service_process_resident_memory_bytes")


def probe(url: str, probes: Probes, stop: threading.Event) -> None:
    body = {"model": "mlp", "inputs": [[0.1] * 64]}
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S + SLACK_S) as client:
        while not stop.wait(0.25):
            started = time.monotonic()
            try:
                status: int | str = client.get("/health").status_code
            except httpx.HTTPError as exc:
                status = repr(exc)
            probes.health.append((status, time.monotonic() - started))
            answer = client.post("/predict", json=body)
            if answer.status_code == 503:
                probes.busy_retry_after.append(answer.headers.get("retry-after"))


@pytest.fixture(scope="module")
def spike(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Spike]:
    out = tmp_path_factory.mktemp("spike")
    args = ("--max-queue", "32", "--request-timeout", str(REQUEST_TIMEOUT_S))
    with service_process(out / "service.log", *args) as service:
        yield measure(service, out)


def measure(service: ServiceProcess, out: Path) -> Spike:
    rss_before = rss(service.url)
    probes, stop = Probes(), threading.Event()
    prober = threading.Thread(target=probe, args=(service.url, probes, stop))
    prober.start()
    try:
        raw = run_load(SCENARIO, service.url, out, "spike", cwd=ROOT)
    finally:
        stop.set()
        prober.join()
    alive = service.process.poll() is None and httpx.get(f"{service.url}/health").is_success
    return Spike(raw, probes, rss_before, rss(service.url), alive)


def p95(samples: Sequence[Sample]) -> float:
    return percentile(sorted(s.ms for s in samples), 0.95)


def test_the_service_survives_the_spike_and_answers_health_throughout(spike: Spike) -> None:
    print(spike.summary())
    assert spike.alive_after
    assert len(spike.probes.health) >= 80  # one every 0.25 s or so for 30 s
    assert {status for status, _ in spike.probes.health} == {200}
    assert len(spike.window(SPIKE)) > 5 * len(spike.window(BEFORE))  # it was a spike


def test_every_answer_is_a_success_a_fast_503_or_a_rare_timeout(spike: Spike) -> None:
    statuses = {s.status for s in spike.raw.samples}
    assert statuses <= {200, 503, 504}, [
        s for s in spike.raw.samples if s.status not in (200, 503, 504)
    ][:5]
    timed_out = [s for s in spike.raw.samples if s.status == 504]
    assert len(timed_out) <= MAX_TIMEOUT_SHARE * len(spike.window(SPIKE)), timed_out[:5]
    refused = [s.ms for s in spike.raw.samples if s.status == 503]
    served = [s.ms for s in spike.window(SPIKE) if s.status == 200]
    assert refused, "the spike never filled the queue: nothing tested the shedding"
    # Fast: refused before any queueing, so quicker than the typical success.
    assert percentile(sorted(refused), 0.5) <= percentile(sorted(served), 0.5)
    assert max(refused) < REQUEST_TIMEOUT_S * 1000
    assert all(value is not None and int(value) >= 1 for value in spike.probes.busy_retry_after)


def test_no_request_waits_past_the_request_timeout(spike: Spike) -> None:
    slowest = max(s.ms for s in spike.raw.samples)
    assert slowest <= (REQUEST_TIMEOUT_S + SLACK_S) * 1000


def test_memory_stays_bounded(spike: Spike) -> None:
    growth_mb = (spike.rss_after - spike.rss_before) / 1e6
    assert growth_mb < RSS_GROWTH_MB, f"RSS {spike.rss_before / 1e6:.0f} -> +{growth_mb:.0f} MB"


def test_p95_is_back_to_its_pre_spike_value_within_10_s(spike: Spike) -> None:
    before, after = p95(spike.window(BEFORE)), p95(spike.window(AFTER))
    during = p95(spike.window(SPIKE))
    assert len(spike.window(AFTER)) >= 50
    assert after <= before * P95_RATIO + P95_ALLOWANCE_MS and after < during * SPIKE_SHARE, (
        f"P95 {before:.1f} ms before, {during:.0f} ms during, {after:.1f} ms "
        f"{RECOVERY_S:g} s after the spike"
    )
