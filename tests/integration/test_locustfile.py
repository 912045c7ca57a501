"""Locustfiles: the shipped one still works with plain ``locust`` (the web UI's way in), and
a user's own runs under the gate as under ``locust`` (events, shape, tags, options), with
one process or several."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from delay_server import StartServer

from pytest_perfgate.config import Scenario, ServiceSpec
from pytest_perfgate.load.locust_driver import run_load
from pytest_perfgate.target.process import ManagedService

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def test_plain_locust_runs_the_shipped_locustfile_against_the_reference_service(
    tmp_path: Path,
) -> None:
    spec = ServiceSpec(command="{python} -m service --port {port}", ready_path="/ready")
    with ManagedService(spec, tmp_path / "service.log", cwd=ROOT) as service:
        done = subprocess.run(
            [sys.executable, "-m", "locust", "-f", str(ROOT / "tests/load/locustfile.py"),
             "--host", service.url, "--headless", "-u", "4", "-r", "4", "-t", "4s",
             "--csv", str(tmp_path / "plain"), "PredictUser", "HealthUser"],
            capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    with open(tmp_path / "plain_stats.csv", newline="") as fh:
        rows = {row["Name"]: row for row in csv.DictReader(fh)}
    assert int(rows["Aggregated"]["Request Count"]) > 20
    assert int(rows["Aggregated"]["Failure Count"]) == 0
    assert any(name.startswith("/predict") for name in rows)


# --- a locustfile runs under the gate as it runs under ``locust`` ---------------------------

FEATURES_LOCUSTFILE = """
import json
import os
from pathlib import Path

from locust import HttpUser, LoadTestShape, constant, events, tag, task

OUT = Path(__file__).with_name("events")
OUT.mkdir(exist_ok=True)
REQUESTS = {"count": 0}


def record(event, **data):
    (OUT / f"{event}-{os.getpid()}.json").write_text(json.dumps(data))


@events.init.add_listener
def on_init(environment, runner, **_):
    o = environment.parsed_options
    options = None if o is None else {
        "num_users": o.num_users, "spawn_rate": o.spawn_rate, "host": o.host,
        "run_time": o.run_time, "tags": o.tags, "exclude_tags": o.exclude_tags,
        "headless": o.headless,
    }
    record("init", runner=type(runner).__name__, options=options)


@events.request.add_listener
def on_request(**_):
    REQUESTS["count"] += 1


@events.test_start.add_listener
def on_test_start(environment, **_):
    record("test_start", runner=type(environment.runner).__name__)


@events.test_stop.add_listener
def on_test_stop(environment, **_):
    record("test_stop", runner=type(environment.runner).__name__, requests=REQUESTS["count"])


class TaggedUser(HttpUser):
    wait_time = constant(0.05)

    @tag("keep")
    @task
    def fast(self):
        self.client.get("/fast")

    @tag("drop")
    @task
    def slow(self):
        self.client.get("/slow")

    @tag("keep", "skip")
    @task
    def health(self):
        self.client.get("/health")


class TwoThenThree(LoadTestShape):
    def tick(self):
        run_time = self.get_run_time()
        if run_time < 3:
            users = 2 if run_time < 1.5 else 3
            record(f"shape-{users}", users=users)  # a file a user count
            return (users, 10)
        return None
"""


def events_of(folder: Path, event: str) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob(f"{event}-*.json"))]


@pytest.mark.parametrize("processes", [1, 2])
def test_a_locustfile_gets_locusts_events_shape_tags_and_options(
    delay_server: StartServer, tmp_path: Path, processes: int
) -> None:
    url = delay_server("--delay-ms", "5", "--slow-ms", "50")
    (tmp_path / "features.py").write_text(FEATURES_LOCUSTFILE, encoding="utf-8")
    scenario = Scenario(
        name="features", users=3, spawn_rate=3, duration_s=20.0, locustfile="features.py",
        user_classes=("TaggedUser",), tags=("keep",), exclude_tags=("skip",),
        processes=processes, request_timeout_s=2.0,
    )  # fmt: skip
    raw = run_load(scenario, url, tmp_path / "out", "features", cwd=tmp_path)
    folder = tmp_path / "events"
    # the file's LoadTestShape drove the users, and ended the run at 3 s, not 20
    assert {e["users"] for e in events_of(folder, "shape")} == {2, 3}
    assert raw.duration_s < 10 and "stopped the test" in raw.stop_reason
    # tags and exclude_tags chose the tasks: /fast only
    assert raw.samples and {s.name for s in raw.samples} == {"GET /fast"}
    # init fired once per process, with the runner Locust would give it ...
    runners = sorted(e["runner"] for e in events_of(folder, "init"))
    expected = ["LocalRunner"] if processes == 1 else ["MasterRunner", *["WorkerRunner"] * 2]
    assert runners == expected
    # ... and the scenario's values as parsed options where the load is driven
    driver = "LocalRunner" if processes == 1 else "MasterRunner"
    options = next(e["options"] for e in events_of(folder, "init") if e["runner"] == driver)
    assert options == {
        "num_users": 3, "spawn_rate": 3.0, "host": url, "run_time": 20.0,
        "tags": ["keep"], "exclude_tags": ["skip"], "headless": False,
    }  # fmt: skip
    # test_start and test_stop fired, and the file's request listener saw every request
    assert driver in {e["runner"] for e in events_of(folder, "test_start")}
    stops = events_of(folder, "test_stop")
    assert driver in {e["runner"] for e in stops}
    assert sum(e["requests"] for e in stops) == len(raw.samples)
