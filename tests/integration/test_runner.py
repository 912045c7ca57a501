"""LocustDriver (``run_load``) against a real Locust child and a real HTTP server.

These run subprocesses because Locust must: importing it patches the process with
gevent, so it only ever runs in the child that the driver starts. The server is
``delay_server.py``. Timing assertions use the child's clock (sample and history times),
not the moment a progress report reaches this process, which scheduling decides.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from delay_server import StartServer, running
from leftovers import load_generators

from pytest_perfgate.config import LoadShape, Scenario, Task
from pytest_perfgate.core.stats import Sample
from pytest_perfgate.errors import LoadRunError
from pytest_perfgate.load import locust_driver as runner
from pytest_perfgate.load.driver import Progress, RawRun
from pytest_perfgate.load.locust_driver import run_load
from pytest_perfgate.processes import end_process_group

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
FAST = Task("GET", "/fast", "GET /fast")


def nearest_rank(sorted_ms: Sequence[float], q: float) -> float:
    """The test's own percentile, to check the runner's figures independently."""
    return sorted_ms[max(0, math.ceil(q * len(sorted_ms)) - 1)]


def scenario(**changes: object) -> Scenario:
    values: dict[str, object] = {
        "name": "probe", "users": 4, "spawn_rate": 100, "duration_s": 3.0,
        "wait_min_s": 0.0, "wait_max_s": 0.0, "tasks": (FAST,), "request_timeout_s": 3.0,
    }  # fmt: skip
    values.update(changes)
    return Scenario(**values)  # type: ignore[arg-type]


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="") as f:
        return list(csv.reader(f))


def locust_csv_headers() -> dict[str, list[str]]:
    """The headers Locust itself writes, asked from Locust (in a subprocess: gevent)."""
    code = textwrap.dedent(
        """
        import json
        from locust.env import Environment
        from locust.stats import PERCENTILES_TO_REPORT, StatsCSV
        w = StatsCSV(Environment(), PERCENTILES_TO_REPORT)
        print(json.dumps({"stats": w.requests_csv_columns, "failures": w.failures_columns}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return json.loads(out.stdout.splitlines()[-1])  # type: ignore[no-any-return]


# --- one steady run, examined by several tests ------------------------------------------


@pytest.fixture(scope="module")
def steady(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RawRun, list[Progress]]]:
    progress: list[Progress] = []
    out = tmp_path_factory.mktemp("steady")
    with running("--delay-ms", "50") as url:
        raw = run_load(scenario(), url, out, "steady", on_progress=progress.append)
    yield raw, progress


def test_samples_match_an_injected_constant_delay(steady: tuple[RawRun, list[Progress]]) -> None:
    raw, _ = steady
    ms = sorted(s.ms for s in raw.samples)
    assert len(ms) > 50
    # never under the injected delay; a busy machine adds to some requests, not to most
    assert ms[0] >= 50 and ms[len(ms) // 2] < 80 and ms[-1] < 300
    assert 50 <= nearest_rank(ms, 0.95) < 150
    seen = {(s.name, s.ok, s.status, s.error) for s in raw.samples}
    assert seen == {("GET /fast", True, 200, "")}
    assert 0 <= min(s.t for s in raw.samples) < 0.5
    assert raw.stop_reason == "duration"
    assert 2.9 <= raw.duration_s < 3.5


def test_samples_keep_full_precision(steady: tuple[RawRun, list[Progress]]) -> None:
    raw, _ = steady
    assert any(s.ms != round(s.ms) for s in raw.samples)


def test_locust_csv_files_have_locusts_own_columns_and_every_request(
    steady: tuple[RawRun, list[Progress]],
) -> None:
    raw, _ = steady
    expected = locust_csv_headers()
    stats_rows = read_csv(raw.files["stats_csv"])
    assert stats_rows[0] == expected["stats"]
    by_name = {row[1]: row for row in stats_rows[1:]}
    # written after the runner quit: Locust's count agrees with ours to the last request
    assert int(by_name["/fast"][2]) == len(raw.samples)
    assert by_name["/fast"][0] == "GET"
    assert read_csv(raw.files["failures_csv"]) == [expected["failures"]]
    history = read_csv(raw.files["stats_history_csv"])
    assert history[0][:4] == ["Timestamp", "User Count", "Type", "Name"]
    assert len(history) >= 3
    assert raw.files["log"].read_text().strip()


def test_history_has_a_row_a_second_from_the_samples(steady: tuple[RawRun, list[Progress]]) -> None:
    raw, _ = steady
    seconds = [row["t"] for row in raw.history]
    # a 3 s run; a request that started in the last instant before the stop opens second 3
    assert seconds in ([0, 1, 2], [0, 1, 2, 3])
    assert sum(row["rps"] for row in raw.history) == len(raw.samples)
    first = raw.history[0]
    assert first["users"] == 4 and first["fails"] == 0
    assert 50 <= first["p50"] <= first["p95"] < 150


def test_progress_is_reported_about_once_a_second(steady: tuple[RawRun, list[Progress]]) -> None:
    raw, progress = steady
    assert 2 <= len(progress) <= 4
    last = progress[-1]
    assert last.users == 4 and last.failures == 0 and last.requests > 0
    assert last.p95_ms is not None and 50 <= last.p95_ms < 150
    assert raw.loadgen_cpu_percent is not None and raw.loadgen_cpu_percent >= 0
    assert raw.problems == ()


# --- stopping ------------------------------------------------------------------------------


def test_should_stop_ends_the_run_early_with_its_reason(
    delay_server: StartServer, tmp_path: Path
) -> None:
    url = delay_server("--delay-ms", "10")
    asked: list[float] = []

    def enough(samples: Sequence[Sample], elapsed: float) -> str | None:
        asked.append(elapsed)
        return "verdict certain" if elapsed >= 1.5 and samples else None

    begun = time.monotonic()
    raw = run_load(scenario(duration_s=30.0), url, tmp_path, "early", should_stop=enough)
    assert raw.stop_reason == "stopped: verdict certain"
    assert raw.duration_s < 4 and time.monotonic() - begun < 10
    assert raw.samples and asked[0] < 1.5 <= asked[-1]


def test_requests_in_flight_at_the_end_are_recorded(
    delay_server: StartServer, tmp_path: Path
) -> None:
    url = delay_server("--slow-ms", "1000")
    slow = Task("GET", "/slow", "GET /slow")
    raw = run_load(scenario(users=3, duration_s=2.5, tasks=(slow,)), url, tmp_path, "inflight")
    # each user starts requests at about 0, 1 and 2 s; the last ends after the stop at 2.5 s
    assert len(raw.samples) == 9
    assert all(s.ok and 1000 <= s.ms < 1300 for s in raw.samples)
    assert max(s.t + s.ms / 1000 for s in raw.samples) > raw.duration_s
    stats_rows = read_csv(raw.files["stats_csv"])
    assert int(stats_rows[1][2]) == 9


def test_locusts_files_cover_the_measured_window_as_our_result_does(
    delay_server: StartServer, tmp_path: Path
) -> None:
    url = delay_server("--delay-ms", "20")
    raw = run_load(scenario(warmup_s=1.0), url, tmp_path, "window")
    measured = [s for s in raw.samples if s.t >= 1.0]  # the gate's rule: started after warm-up
    assert 0 < len(measured) < len(raw.samples)
    with raw.files["stats_csv"].open(newline="") as f:
        rows = {row["Name"]: row for row in csv.DictReader(f)}
    # requests in flight when the warm-up ended count on neither side
    assert int(rows["Aggregated"]["Request Count"]) == len(measured)
    assert int(rows["/fast"]["Request Count"]) == len(measured)
    html = raw.files["locust_html"]
    assert html.name == "window_locust.html"
    text = html.read_text(encoding="utf-8")
    assert text.lstrip().lower().startswith("<!doctype html") and "/fast" in text


def test_a_shape_drives_the_user_count_and_ends_the_run(
    delay_server: StartServer, tmp_path: Path
) -> None:
    url = delay_server("--delay-ms", "10")
    # the second stage lasts 2 s: every report from its second half shows its 3 users
    shape = LoadShape("steps", ((1.0, 1, 10.0), (3.0, 3, 10.0)))
    users: list[int] = []
    raw = run_load(
        scenario(duration_s=30.0, shape=shape, wait_min_s=0.05, wait_max_s=0.05),
        url, tmp_path, "shape", on_progress=lambda p: users.append(p.users),
    )  # fmt: skip
    assert raw.stop_reason == "duration"
    assert 2.9 <= raw.duration_s < 3.6  # the last stage's end, not the 30 s duration
    # the first stage, on the child's clock: one user, so its requests never overlap
    # (a progress report may come before that user starts: it then says 0 users)
    first = sorted((s for s in raw.samples if s.t < 1.0), key=lambda s: s.t)
    assert first, "the first stage's user made no request"
    assert all(a.t + a.ms / 1000 < b.t for a, b in itertools.pairwise(first))
    assert raw.history[0]["users"] <= 1
    # the second stage: 3 users, as the child counted them and as progress reported them
    assert max(row["users"] for row in raw.history) == 3
    assert set(users) <= {0, 1, 2, 3} and 3 in users


# --- what is measured --------------------------------------------------------------------------


def test_error_responses_are_failures_with_their_status(
    delay_server: StartServer, tmp_path: Path
) -> None:
    url = delay_server("--delay-ms", "5", "--error-rate", "0.3")
    raw = run_load(scenario(duration_s=2.0), url, tmp_path, "errors")
    failed = [s for s in raw.samples if not s.ok]
    assert 0.15 < len(failed) / len(raw.samples) < 0.45
    assert {s.status for s in failed} == {500}
    assert all("500" in s.error for s in failed)
    assert {s.status for s in raw.samples if s.ok} == {200}
    failures_csv = read_csv(raw.files["failures_csv"])
    assert failures_csv[1][:2] == ["GET", "/fast"]
    assert int(failures_csv[1][3]) == len(failed)


def test_task_bodies_come_from_a_json_factory_imported_from_cwd(
    delay_server: StartServer, tmp_path: Path
) -> None:
    url = delay_server()
    (tmp_path / "bodies.py").write_text("def body():\n    return {'x': [1, 2]}\n")
    post = Task("POST", "/fast", "POST /fast body", json_factory="bodies:body")
    broken = Task("POST", "/fast", "POST /fast broken", json_factory="bodies:missing")
    raw = run_load(scenario(duration_s=1.5, tasks=(post,)), url, tmp_path, "factory", cwd=tmp_path)
    assert {(s.name, s.ok, s.status) for s in raw.samples} == {("POST /fast body", True, 200)}
    with pytest.raises(LoadRunError, match=r"json_factory 'bodies:missing'.*AttributeError"):
        run_load(scenario(tasks=(broken,)), url, tmp_path, "broken", cwd=tmp_path)


def test_a_locustfile_runs_its_named_user_classes(
    delay_server: StartServer, tmp_path: Path
) -> None:
    url = delay_server()
    chosen = scenario(
        duration_s=1.5, tasks=(), locustfile=str(ROOT / "tests/load/locustfile.py"),
        user_classes=("HealthUser",),
    )  # fmt: skip
    raw = run_load(chosen, url, tmp_path, "file")
    assert {s.name for s in raw.samples} <= {"GET /health", "GET /metrics"}
    assert "GET /health" in {s.name for s in raw.samples}
    assert all(s.ok for s in raw.samples)


def test_a_task_that_raises_is_recorded_as_failures_and_a_problem(
    delay_server: StartServer, tmp_path: Path
) -> None:
    url = delay_server()
    (tmp_path / "raising.py").write_text(
        textwrap.dedent(
            """
            from locust import HttpUser, constant, task

            class Raising(HttpUser):
                wait_time = constant(0.1)

                @task
                def broken(self):
                    self.client.get("/fast")
                    raise KeyError("no such field")
            """
        )
    )
    chosen = scenario(duration_s=1.5, users=1, tasks=(), locustfile=str(tmp_path / "raising.py"))
    raw = run_load(chosen, url, tmp_path, "raising")
    errors = [s for s in raw.samples if s.name == "ERROR Raising"]
    assert errors and all(not s.ok and s.error == "KeyError: 'no such field'" for s in errors)
    assert any(s.name == "GET /fast" and s.ok for s in raw.samples)
    assert raw.problems == ("load generator error: KeyError: 'no such field'",)


# --- failures of the load generator ------------------------------------------------------------


def test_a_locustfile_that_fails_to_import_names_the_file_and_the_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken_locustfile.py"
    broken.write_text("import locust\n1 / 0\n")
    with pytest.raises(LoadRunError) as info:
        run_load(scenario(tasks=(), locustfile=str(broken)), "http://127.0.0.1:9", tmp_path, "b")
    message = str(info.value)
    assert f"locustfile {broken} failed to import: ZeroDivisionError" in message
    assert "last " in message and "b.log" in message
    assert info.value.partial is None and info.value.log == tmp_path / "b.log"
    assert load_generators() == []


def test_an_unknown_user_class_is_named_with_the_ones_there_are(tmp_path: Path) -> None:
    chosen = scenario(
        tasks=(), locustfile=str(ROOT / "tests/load/locustfile.py"), user_classes=("Nobody",)
    )
    with pytest.raises(LoadRunError, match=r"no user class Nobody.*HealthUser, ModelsUser"):
        run_load(chosen, "http://127.0.0.1:9", tmp_path, "unknown")


def test_a_killed_child_raises_and_keeps_the_samples_it_sent(
    delay_server: StartServer, tmp_path: Path
) -> None:
    url = delay_server("--delay-ms", "10")

    def kill_it(samples: Sequence[Sample], elapsed: float) -> None:
        if elapsed >= 1.5:
            for child in load_generators():
                child.send_signal(signal.SIGKILL)

    with pytest.raises(LoadRunError, match=r"died \(signal 9\) before it finished") as info:
        run_load(scenario(duration_s=30.0), url, tmp_path, "killed", should_stop=kill_it)
    assert info.value.partial is not None and len(info.value.partial.samples) > 10
    assert load_generators() == []


def test_a_child_that_never_starts_is_killed_at_the_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "STARTUP_TIMEOUT_S", 3.0)
    monkeypatch.setattr(runner, "TERM_GRACE_S", 1.0)
    stuck = tmp_path / "stuck.py"
    stuck.write_text("import time\ntime.sleep(60)\n")
    with pytest.raises(LoadRunError, match="did not start in time"):
        run_load(scenario(tasks=(), locustfile=str(stuck)), "http://127.0.0.1:9", tmp_path, "s")
    assert load_generators() == []


def test_a_run_without_requests_is_an_error(tmp_path: Path) -> None:
    idle = tmp_path / "idle.py"
    idle.write_text(
        "from locust import User, constant, task\n"
        "class Idle(User):\n"
        "    wait_time = constant(0.2)\n"
        "    @task\n"
        "    def nothing(self):\n"
        "        pass\n"
    )
    chosen = scenario(duration_s=1.0, tasks=(), locustfile=str(idle))
    with pytest.raises(LoadRunError, match="recorded no request"):
        run_load(chosen, "http://127.0.0.1:9", tmp_path, "idle")


def test_keyboard_interrupt_stops_the_child_and_propagates(
    delay_server: StartServer, tmp_path: Path
) -> None:
    url = delay_server()

    def interrupt(progress: Progress) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_load(scenario(duration_s=30.0), url, tmp_path, "ctrl_c", on_progress=interrupt)
    assert load_generators() == []


def test_the_child_stops_gracefully_when_its_parent_closes_stdin(
    delay_server: StartServer, tmp_path: Path
) -> None:
    url = delay_server("--delay-ms", "10")
    spec = runner.child_spec(scenario(duration_s=30.0), url, tmp_path / "orphan", tmp_path)
    child = subprocess.Popen(
        [sys.executable, "-m", "pytest_perfgate.load.child"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        env=runner.child_env(None), start_new_session=True,
    )  # fmt: skip
    try:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(json.dumps(spec).encode() + b"\n")
        child.stdin.flush()
        assert json.loads(child.stdout.readline()) == {"type": "started"}
        time.sleep(1.0)
        child.stdin.close()  # what the pipe does when the parent dies
        timer = threading.Timer(15, child.kill)
        timer.start()
        messages = [json.loads(line) for line in child.stdout]
        timer.cancel()
        assert child.wait() == 0
    finally:
        end_process_group(child)
    assert messages[-1]["type"] == "done"
    assert messages[-1]["stop_reason"] == "interrupted: the parent closed stdin"
    assert (tmp_path / "orphan_stats.csv").exists()


def test_the_runner_module_never_imports_locust() -> None:
    code = "import sys, pytest_perfgate.load.locust_driver; print('locust' in sys.modules)"
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_PLUGINS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "False"
