"""``service.container`` in thresholds.yaml: what it becomes, and errors that name the key.

No container engine needed: these read real YAML files only.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_perfgate.config import ConfigError, load_thresholds
from pytest_perfgate.core.model import ContainerSpec

SCENARIOS = """
scenarios:
  light:
    users: 1
    spawn_rate: 1
    duration: 10s
    wait_time: [0.5, 1]
    tasks: [{method: GET, path: /health}]
"""


def load(tmp_path: Path, service: str) -> ContainerSpec | None:
    path = tmp_path / "thresholds.yaml"
    path.write_text(f"service:\n{service}\n{SCENARIOS}", encoding="utf-8")
    return load_thresholds(path).service.container


def error_of(tmp_path: Path, service: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, service)
    return str(info.value)


def test_an_image_with_its_options_becomes_a_container_spec(tmp_path: Path) -> None:
    spec = load(
        tmp_path,
        "  container:\n"
        "    image: localhost/perfgate-service:latest\n"
        "    build: .\n"
        "    build_args: {VARIANT: cuda}\n"
        '    args: "--port {port}"\n'
        "    options: --device nvidia.com/gpu=all\n"
        "    port: 9000\n"
        "    engine: docker\n"
        "    stop_timeout: 30s\n",
    )
    assert spec == ContainerSpec(
        image="localhost/perfgate-service:latest", build=".", build_args={"VARIANT": "cuda"},
        args="--port {port}", options="--device nvidia.com/gpu=all", port=9000,
        engine="docker", stop_timeout_s=30.0,
    )  # fmt: skip


def test_a_compose_service_defaults_to_the_service_named_service(tmp_path: Path) -> None:
    spec = load(tmp_path, "  container: {compose_file: compose.yaml}")
    assert spec is not None
    assert (spec.compose_file, spec.service, spec.port, spec.image) == (
        "compose.yaml",
        "service",
        8000,
        None,
    )


def test_start_and_stop_commands_need_no_image(tmp_path: Path) -> None:
    spec = load(
        tmp_path,
        '  container: {start: "docker run --rm --name {name} -p {port}:8000 img", '
        'stop: "docker rm -f {name}"}',
    )
    assert spec is not None
    assert (spec.start, spec.stop, spec.image) == (
        "docker run --rm --name {name} -p {port}:8000 img",
        "docker rm -f {name}",
        None,
    )


def test_without_a_container_section_there_is_none(tmp_path: Path) -> None:
    assert load(tmp_path, '  command: "{python} -m service --port {port}"') is None


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        ("  container: {image: x, colour: blue}", "service.container.colour: unknown key"),
        ("  container: {}", "service.container: expected image, compose_file or start"),
        (
            "  container: {image: x, compose_file: c.yaml}",
            "service.container: expected image, compose_file or start (one of them)",
        ),
        (
            '  container: {start: "run -p {port}:80 x"}',
            "service.container: start and stop go together",
        ),
        (
            "  container: {start: run x, stop: rm x}",
            "service.container.start: expected a command with a {port} placeholder, got 'run x'",
        ),
        (
            '  container: {start: "run -p {port}:80 x", stop: rm x, options: --privileged}',
            "service.container.options: applies to image, not to start",
        ),
        ("  container: {image: x, port: 0}", "service.container.port: expected a port"),
        ("  container: {image: x, port: http}", "got 'http'"),
        ("  container: {image: x, engine: lxc}", "service.container.engine: expected podman or"),
        ("  container: {image: ''}", "service.container.image: expected a non-empty string"),
        (
            "  container: {compose_file: c.yaml, args: --x}",
            "service.container.args: applies to image, not to compose_file",
        ),
        ("  container: {image: x, stop_timeout: soon}", "service.container.stop_timeout"),
        (
            '  command: "{python} -m service --port {port}"\n  container: {image: x}',
            "give service.command or service.container, not both",
        ),
        ("  container: [x]", "service.container: expected a mapping, got ['x']"),
    ],
)
def test_a_bad_container_section_names_the_key_and_the_value(
    tmp_path: Path, service: str, expected: str
) -> None:
    assert expected in error_of(tmp_path, service)
