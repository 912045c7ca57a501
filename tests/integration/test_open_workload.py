"""The open model (``arrival_rate``): requests started on a timetable, timed from it.

Real Locust children and a real delay server, because Locust must run in a child process
(importing it patches the process with gevent); the stall is a SIGSTOP of the server.
"""

from __future__ import annotations

import csv
import itertools
import math
import signal
import textwrap
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import psutil
import pytest
from delay_server import StartServer

from pytest_perfgate.config import Scenario, Task
from pytest_perfgate.core.stats import Sample
from pytest_perfgate.errors import LoadRunError
from pytest_perfgate.load.driver import RawRun
from pytest_perfgate.load.locust_driver import run_load

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("no_load_generator_left")]

FAST = Task("GET", "/fast", "GET /fast")


def scenario(**changes: object) -> Scenario:
    values: dict[str, object] = {
        "name": "open", "users": 10, "spawn_rate": 1, "duration_s": 3.0, "tasks": (FAST,),
        "request_timeout_s": 3.0, "arrival_rate": 50.0,
    }  # fmt: skip
    values.update(changes)
    return Scenario(**values)  # type: ignore[arg-type]


def p95(samples: Sequence[Sample]) -> float:
    ms = sorted(s.ms for s in samples)
    return ms[math.ceil(0.95 * len(ms)) - 1]


def stats_row(raw: RawRun, name: str) -> dict[str, str]:
    with raw.files["stats_csv"].open(newline="") as f:
        return next(row for row in csv.DictReader(f) if row["Name"] == name)


def server_process(url: str) -> psutil.Process:
    """The delay server listening on ``url``'s port (a child of this test process)."""
    port = int(url.rsplit(":", 1)[1])
    for child in psutil.Process().children(recursive=True):
        try:
            if any(c.laddr.port == port for c in child.net_connections("tcp")):
                return child
        except psutil.NoSuchProcess:
            pass
    raise LookupError(f"no process of this test listens on port {port}")


@pytest.fixture
def freezer() -> Iterator[list[psutil.Process]]:
    """Processes put in here are SIGCONT-ed at the end, whatever the test did to them."""
    frozen: list[psutil.Process] = []
    yield frozen
    for process in frozen:
        if process.is_running():
            process.send_signal(signal.SIGCONT)


def test_requests_start_on_the_timetable_and_choose_tasks_by_weight(
    delay_server: StartServer, tmp_path: Path
) -> None:
    url = delay_server("--delay-ms", "10")
    tasks = (Task("GET", "/fast", "GET /fast", weight=3), Task("GET", "/health", "GET /health"))
    raw = run_load(scenario(tasks=tasks), url, tmp_path, "steady")
    due = sorted(s.t for s in raw.samples)
    # a sample's t is its due time: k / rate from the start, whatever the send's jitter
    assert 0 <= due[0] < 0.05
    assert all(abs(b - a - 0.02) < 1e-5 for a, b in itertools.pairwise(due))
    assert 148 <= len(due) <= 152
    share = sum(s.name == "GET /fast" for s in raw.samples) / len(raw.samples)
    assert 0.6 < share < 0.88  # 3 in 4, binomial with n ~ 150
    assert raw.dropped_requests == 0 and raw.problems == ()
    counted = int(stats_row(raw, "/fast")["Request Count"]) + int(
        stats_row(raw, "/health")["Request Count"]
    )
    assert counted == len(raw.samples)


def test_a_stalled_server_shows_in_the_open_model_but_hides_in_the_closed_one(
    delay_server: StartServer, tmp_path: Path, freezer: list[psutil.Process]
) -> None:
    url = delay_server("--delay-ms", "10")
    server = server_process(url)

    def stall_at_4s(samples: Sequence[Sample], elapsed: float) -> None:
        if elapsed >= 4.0 and not freezer:
            freezer.append(server)
            server.send_signal(signal.SIGSTOP)
            threading.Timer(2.0, server.send_signal, (signal.SIGCONT,)).start()

    (tmp_path / "paced.py").write_text(
        textwrap.dedent(
            """
            from locust import FastHttpUser, constant_throughput, task

            class Paced(FastHttpUser):
                wait_time = constant_throughput(8)

                @task
                def fast(self):
                    self.client.get("/fast")
            """
        )
    )
    closed = run_load(
        scenario(users=5, spawn_rate=5, duration_s=9.0, tasks=(), arrival_rate=None,
                 locustfile=str(tmp_path / "paced.py")),
        url, tmp_path, "closed", should_stop=stall_at_4s,
    )  # fmt: skip
    freezer.clear()
    # 100 slots for 40 req/s: each has its connection before the stall, none runs out in it
    opened = run_load(
        scenario(users=100, duration_s=9.0, arrival_rate=40.0),
        url, tmp_path, "open", should_stop=stall_at_4s,
    )  # fmt: skip
    # the closed model saw the stall (a 1-2 s request per user) but sent almost nothing into
    # it: 5 stalled requests of ~290, a P95 of a healthy server
    assert max(s.ms for s in closed.samples) > 1000
    assert p95(closed.samples) < 200
    # the open model kept sending on time: ~80 of ~360 requests waited out the stall
    assert 500 < p95(opened.samples) < 2500
    assert opened.dropped_requests == 0 and opened.problems == ()
    # Locust's own stats were fed the same times, from the due time
    fast = stats_row(opened, "/fast")
    assert int(fast["Request Count"]) == len(opened.samples)
    assert float(fast["Max Response Time"]) == pytest.approx(max(s.ms for s in opened.samples))


def test_too_few_users_for_the_rate_drop_requests_and_make_the_run_untrustworthy(
    delay_server: StartServer, tmp_path: Path
) -> None:
    url = delay_server("--slow-ms", "1000")
    slow = Task("GET", "/slow", "GET /slow")
    chosen = scenario(users=2, arrival_rate=20.0, tasks=(slow,), request_timeout_s=1.5)
    raw = run_load(chosen, url, tmp_path, "starved")
    # two slots, 1 s a request: about 2 req/s of the 20 due
    assert 4 <= len(raw.samples) <= 8
    assert raw.late_requests >= 2 and raw.dropped_requests >= 40
    # the late ones are timed from their due time: ~0.9 s of waiting plus 1 s of service
    assert max(s.ms for s in raw.samples) > 1700
    [problem] = raw.problems
    assert problem.startswith("target 20 req/s, achieved ")
    assert f"{raw.dropped_requests} requests dropped" in problem


def test_the_open_model_refuses_a_locustfile(tmp_path: Path) -> None:
    chosen = scenario(tasks=(), locustfile=str(tmp_path / "any.py"))
    with pytest.raises(LoadRunError, match=r"arrival_rate .* cannot drive a locustfile"):
        run_load(chosen, "http://127.0.0.1:9", tmp_path, "refused")
