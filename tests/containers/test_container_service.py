"""The gate against the reference service in a container: a real engine, a real image.

``pytest -m load_light`` runs in a child pytest against a thresholds file whose
``service.container`` names the image (or a Compose file); each test then looks for
what its run left behind: containers, networks and volumes named after its run id, and
processes carrying it. One test runs the light scenario exactly as thresholds.yaml has
it (5 minutes: README "Verdicts" says why it runs them all); the others shorten it.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from container_helpers import leftovers, new_tag, output, project, start_pytest

from pytest_perfgate.core.model import ContainerSpec, ServiceSpec
from pytest_perfgate.errors import ServiceError
from pytest_perfgate.target.container import ContainerService

pytestmark = pytest.mark.e2e

#: the service's arguments in the container (the image's own CMD, spelled out)
ARGS = "--host 0.0.0.0 --port {port} --device cpu --models mlp,encoder"
#: seconds a run's leftovers get to disappear (the watcher's cleanup after a SIGKILL)
GONE_S = 60.0
#: a short copy of light cannot decide its 1 % error budget (README "Verdicts": that takes
#: its 5 minutes); the short runs check everything else and let that budget warn
SHORT = ("--perfgate-inconclusive", "warn")


def wait_gone(engine: str, tag: dict[str, str], within: float = GONE_S) -> list[str]:
    deadline = time.monotonic() + within
    while (left := leftovers(engine, tag)) and time.monotonic() < deadline:
        time.sleep(1.0)
    return left


def finish(proc: subprocess.Popen[bytes], path: Path, timeout: float) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"pytest did not exit in {timeout:g} s:\n{output(path)}") from None


def container_log(path: Path) -> str:
    (log,) = path.joinpath("results").glob("*_service_container.log")
    return log.read_text(encoding="utf-8", errors="replace")


def test_a_short_light_run_passes_against_the_image_and_leaves_nothing(
    tmp_path: Path, container_engine: str, service_image: str
) -> None:
    tag = new_tag()
    project(tmp_path, {"image": service_image, "args": ARGS}, duration="40s")
    code = finish(start_pytest(tmp_path, tag, *SHORT), tmp_path, timeout=600)
    assert code == 0, output(tmp_path)
    assert "1 passed" in output(tmp_path)
    assert "Application startup complete" in container_log(tmp_path)
    assert wait_gone(container_engine, tag, within=10.0) == []


def test_a_short_light_run_passes_against_a_compose_service_and_leaves_nothing(
    tmp_path: Path, container_engine: str, service_image: str
) -> None:
    tmp_path.joinpath("compose.yaml").write_text(
        "services:\n"
        "  api:\n"
        f"    image: {service_image}\n"
        f"    command: [{', '.join(repr(a) for a in ARGS.format(port=8000).split())}]\n"
        '    ports: ["127.0.0.1:${PERFGATE_PORT:-8000}:8000"]\n'
        "    volumes: [scratch:/scratch]\n"
        "volumes:\n"
        "  scratch:\n",
        encoding="utf-8",
    )
    tag = new_tag()
    project(tmp_path, {"compose_file": "compose.yaml", "service": "api"}, duration="30s")
    code = finish(start_pytest(tmp_path, tag, *SHORT), tmp_path, timeout=600)
    assert code == 0, output(tmp_path)
    assert "Application startup complete" in container_log(tmp_path)
    assert wait_gone(container_engine, tag, within=10.0) == []  # its network and volume too


def test_the_light_scenario_of_thresholds_yaml_passes_against_the_container(
    tmp_path: Path, container_engine: str, service_image: str
) -> None:
    """The whole light scenario, 10 users for 5 minutes, as thresholds.yaml has it."""
    tag = new_tag()
    project(tmp_path, {"image": service_image, "args": ARGS}, duration=None)
    code = finish(start_pytest(tmp_path, tag), tmp_path, timeout=900)
    assert code == 0, output(tmp_path)
    assert "1 passed" in output(tmp_path)
    assert wait_gone(container_engine, tag, within=10.0) == []


def start_directly(tmp_path: Path, container: ContainerSpec) -> ServiceError:
    spec = ServiceSpec(ready_path="/ready", startup_timeout_s=120.0, container=container)
    service = ContainerService(spec, tmp_path / "service.log", cwd=tmp_path)
    with pytest.raises(ServiceError) as info:
        service.start()
    return info.value


def test_a_container_that_exits_at_start_fails_with_its_log_and_is_removed(
    tmp_path: Path, container_engine: str, service_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tag = new_tag()
    monkeypatch.setenv("PERFGATE_RUN_ID", tag["PERFGATE_RUN_ID"])
    args = ARGS.replace("mlp,encoder", "no_such_model")
    error = start_directly(tmp_path, ContainerSpec(image=service_image, args=args))
    assert "the container exited with code 2 before it was ready" in str(error)
    assert "unknown model 'no_such_model'" in str(error)  # the end of its log
    assert wait_gone(container_engine, tag, within=10.0) == []


def test_start_and_stop_commands_run_a_container_the_gate_reaches_and_removes(
    tmp_path: Path, container_engine: str, service_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tag = new_tag()
    monkeypatch.setenv("PERFGATE_RUN_ID", tag["PERFGATE_RUN_ID"])
    engine = Path(container_engine).name
    container = ContainerSpec(
        start=f"{engine} run --rm --name {{name}} -p 127.0.0.1:{{port}}:8000 {service_image} "
        + ARGS.format(port=8000),
        stop=f"{engine} rm -f {{name}}",
    )
    spec = ServiceSpec(ready_path="/ready", startup_timeout_s=120.0, container=container)
    with ContainerService(spec, tmp_path / "service.log", cwd=tmp_path) as service:
        assert httpx.get(service.url + "/ready", timeout=5.0).json() == {"ready": True}
        assert service.alive()
    assert not service.alive()
    assert "Application startup complete" in (tmp_path / "service.log").read_text()
    assert wait_gone(container_engine, tag, within=10.0) == []


def test_an_image_that_does_not_exist_fails_clearly_and_leaves_nothing(
    tmp_path: Path, container_engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tag = new_tag()
    monkeypatch.setenv("PERFGATE_RUN_ID", tag["PERFGATE_RUN_ID"])
    missing = "localhost/perfgate-no-such-image:latest"
    error = start_directly(tmp_path, ContainerSpec(image=missing))
    assert f"cannot start the container: {Path(container_engine).name}" in str(error).replace(
        container_engine, Path(container_engine).name
    )
    assert missing in str(error)
    assert wait_gone(container_engine, tag, within=10.0) == []


@pytest.mark.parametrize(
    "signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["SIGINT", "SIGTERM", "SIGKILL"]
)
def test_a_signal_to_pytest_mid_run_leaves_no_container(
    tmp_path: Path, container_engine: str, service_image: str, signum: signal.Signals
) -> None:
    tag = new_tag()
    project(tmp_path, {"image": service_image, "args": ARGS}, duration="5m")
    proc = start_pytest(tmp_path, tag)
    deadline = time.monotonic() + 300
    while "Uvicorn running" not in _log_or_empty(tmp_path) and time.monotonic() < deadline:
        assert proc.poll() is None, output(tmp_path)
        time.sleep(0.5)
    time.sleep(5.0)  # into the load
    proc.send_signal(signum)
    finish(proc, tmp_path, timeout=120)
    assert wait_gone(container_engine, tag) == [], output(tmp_path)


def _log_or_empty(path: Path) -> str:
    try:
        return container_log(path)
    except ValueError:  # not written yet
        return ""
