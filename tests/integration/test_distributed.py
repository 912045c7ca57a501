"""Distributed runs: a Locust master in the child, workers that send it every request.

Real processes throughout (a master, ``locust --worker`` processes, the delay server):
Locust must run outside the pytest process, and the point is the processes' cooperation.
"""

from __future__ import annotations

import csv
import itertools
import math
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from delay_server import StartServer
from leftovers import load_generators

from pytest_perfgate.config import Scenario, Task
from pytest_perfgate.core.stats import Sample
from pytest_perfgate.errors import LoadRunError
from pytest_perfgate.load import locust_driver as runner
from pytest_perfgate.load.driver import RawRun
from pytest_perfgate.load.locust_driver import master_address, run_load
from pytest_perfgate.target.process import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("no_load_generator_left")]

FAST = Task("GET", "/fast", "GET /fast")
#: the percentile columns of Locust's stats CSV (locust.stats.PERCENTILES_TO_REPORT)
LOCUST_PERCENTILES = {"50%": 0.5, "66%": 0.66, "75%": 0.75, "80%": 0.8, "90%": 0.9,
                      "95%": 0.95, "98%": 0.98, "99%": 0.99, "99.9%": 0.999,
                      "99.99%": 0.9999, "100%": 1.0}  # fmt: skip


def scenario(**changes: object) -> Scenario:
    values: dict[str, object] = {
        "name": "spread", "users": 4, "spawn_rate": 100, "duration_s": 3.0, "tasks": (FAST,),
        "request_timeout_s": 3.0, "processes": 2,
    }  # fmt: skip
    values.update(changes)
    return Scenario(**values)  # type: ignore[arg-type]


def aggregated_row(raw: RawRun) -> dict[str, str]:
    with raw.files["stats_csv"].open(newline="") as f:
        return next(row for row in csv.DictReader(f) if row["Name"] == "Aggregated")


def locust_bucket(ms: float) -> int:
    """Locust's rounding of a response time (locust.stats.bucket_response_time)."""
    if ms < 100:
        return round(ms)
    return int(round(ms, -1 if ms < 1000 else -2 if ms < 10000 else -3))


def locust_percentile(samples: Sequence[Sample], q: float) -> int:
    """Locust's percentile of rounded times (locust.stats.calculate_response_time_percentile)."""
    buckets = sorted(locust_bucket(s.ms) for s in samples)
    return buckets[min(len(buckets) - 1, int(len(buckets) * q))]


# --- a master and two local workers ------------------------------------------------------------


def test_two_workers_send_every_request_and_locusts_merged_figures_agree(
    delay_server: StartServer, tmp_path: Path
) -> None:
    url = delay_server("--lognormal", "20,0.5")
    raw = run_load(scenario(), url, tmp_path, "two")
    assert len(raw.requests_per_worker) == 2
    assert all(n > 50 for n in raw.requests_per_worker.values())
    assert sum(raw.requests_per_worker.values()) == len(raw.samples)
    assert raw.problems == () and raw.stop_reason == "duration"
    assert 0 <= min(s.t for s in raw.samples) < 0.5  # rebased onto the master's start
    # the master's Locust stats merged the workers' reports: the same requests ...
    row = aggregated_row(raw)
    assert int(row["Request Count"]) == len(raw.samples)
    # ... and percentiles that are Locust's rounding of the same times
    for column, q in LOCUST_PERCENTILES.items():
        assert int(row[column]) == locust_percentile(raw.samples, q), column
    ms = sorted(s.ms for s in raw.samples)
    exact = ms[math.ceil(0.95 * len(ms)) - 1]  # the nearest rank: ours
    next_rank = ms[int(0.95 * len(ms))]  # Locust takes this rank (one more when 0.95n is whole)
    assert locust_bucket(exact) <= int(row["95%"]) <= locust_bucket(next_rank)
    assert raw.files["worker_locustfile"].read_text().startswith('"""Worker locustfile')


def test_two_workers_keep_locusts_files_to_the_measured_window(
    delay_server: StartServer, tmp_path: Path
) -> None:
    url = delay_server("--delay-ms", "20")
    raw = run_load(scenario(warmup_s=1.0), url, tmp_path, "window")
    measured = [s for s in raw.samples if s.t >= 1.0]  # the gate's rule: started after warm-up
    assert 0 < len(measured) < len(raw.samples)
    assert int(aggregated_row(raw)["Request Count"]) == len(measured)
    assert "/fast" in raw.files["locust_html"].read_text(encoding="utf-8")


def test_an_open_models_rate_is_shared_by_the_workers(
    delay_server: StartServer, tmp_path: Path
) -> None:
    url = delay_server("--delay-ms", "5")
    raw = run_load(scenario(arrival_rate=40.0, duration_s=2.5), url, tmp_path, "open")
    assert 95 <= len(raw.samples) <= 103  # 40 req/s for 2.5 s
    assert sorted(raw.requests_per_worker.values())[0] >= 45
    due = sorted(s.t for s in raw.samples)
    # each worker runs 20 req/s from the master's start, half an interval after the other:
    # one timetable of a request every 25 ms
    assert due[0] < 1e-3
    assert all(abs(b - a - 0.025) < 1e-5 for a, b in itertools.pairwise(due))
    assert raw.dropped_requests == 0 and raw.problems == ()


def test_a_worker_that_dies_is_a_problem_and_the_run_goes_on(
    delay_server: StartServer, tmp_path: Path
) -> None:
    url = delay_server("--delay-ms", "10")

    def kill_a_worker(samples: Sequence[Sample], elapsed: float) -> None:
        workers = [p for p in load_generators() if "--worker" in p.cmdline()]
        if elapsed >= 1.5 and len(workers) == 2:
            workers[0].send_signal(signal.SIGKILL)

    raw = run_load(scenario(), url, tmp_path, "dying", should_stop=kill_a_worker)
    assert raw.stop_reason == "duration" and raw.samples
    assert any(
        "local worker process" in p and "exited with code -9" in p and "into the run" in p
        for p in raw.problems
    ), raw.problems


# --- workers started elsewhere -----------------------------------------------------------------


def test_an_external_worker_is_awaited_and_fetches_the_locustfile_from_the_master(
    delay_server: StartServer, tmp_path: Path
) -> None:
    url = delay_server("--delay-ms", "10")
    port = free_port()
    # the command the run log and the worker locustfile tell users to run; started first,
    # it retries until the master is up
    command = ["locust", "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)]
    with (tmp_path / "worker.log").open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", *command, "-f", "-"], cwd=tmp_path,
            env=runner.child_env(None), stdout=log, stderr=log,
        )  # fmt: skip
    try:
        chosen = scenario(processes=1, external_workers=1, master_bind=f"127.0.0.1:{port}")
        raw = run_load(chosen, url, tmp_path, "external")
        assert worker.wait(timeout=20) == 0  # told to quit by the master
    finally:
        worker.kill()
        worker.wait()
    assert list(raw.requests_per_worker.values()) == [len(raw.samples)]
    assert len(raw.samples) > 50 and raw.problems == ()
    assert " ".join([*command, "-f", "-"]) in raw.files["log"].read_text()


def test_a_master_without_its_workers_gives_up_and_names_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "WORKER_CONNECT_TIMEOUT_S", 2.0)
    port = free_port()
    chosen = scenario(processes=1, external_workers=1, master_bind=f"127.0.0.1:{port}")
    with pytest.raises(LoadRunError) as info:
        run_load(chosen, "http://127.0.0.1:9", tmp_path, "alone")
    assert (
        f"0 of 1 workers connected to the master at 127.0.0.1:{port} within 2 s; start the "
        f"missing ones with: locust --worker --master-host 127.0.0.1 --master-port {port} -f -"
    ) in str(info.value)


@pytest.mark.parametrize(
    ("bind", "external", "address"),
    [
        ("127.0.0.1", False, ("127.0.0.1", 0)),
        ("127.0.0.1", True, ("127.0.0.1", 5557)),
        ("0.0.0.0:6000", True, ("0.0.0.0", 6000)),
        ("*", True, ("*", 5557)),
        ("::1", False, ("::1", 0)),
    ],
)
def test_master_bind_names_a_host_and_maybe_a_port(
    bind: str, external: bool, address: tuple[str, int]
) -> None:
    assert master_address(bind, external=external) == address
