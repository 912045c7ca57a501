"""What the container tests share: a run id per run, the project they run, its leftovers.

A run's containers, networks and volumes are found by the run id in their names
(``perfgate-<id>``) and labels, its processes by ``PERFGATE_RUN_ID`` in their environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("PERFGATE_IMAGE", "localhost/perfgate-service:latest")
#: These runs check the gate against a container (start, verdict, files, cleanup), not the
#: machine: on a shared CI machine the suite's other worker is outside load that would
#: make the verdict INVALID (the noise check has tests of its own in tests/plugin).
NOISE_OFF = ("--perfgate-noise-check", "false")


def new_tag() -> dict[str, str]:
    """A fresh run id for one run, as the environment variable to start it with."""
    return {"PERFGATE_RUN_ID": uuid.uuid4().hex}


def leftovers(engine_path: str, tag: dict[str, str]) -> list[str]:
    """Containers, networks and volumes of the tagged run, and its processes still running."""
    prefix = f"perfgate-{tag['PERFGATE_RUN_ID'][:12]}"
    found: list[str] = []
    for kind, listing in (
        ("container", ["ps", "-a", "--format", "{{.Names}}"]),
        ("network", ["network", "ls", "--format", "{{.Name}}"]),
        ("volume", ["volume", "ls", "--format", "{{.Name}}"]),
    ):
        names = subprocess.run(
            [engine_path, *listing], capture_output=True, text=True, check=False
        ).stdout.split()
        found += [f"{kind} {name}" for name in names if name.startswith(prefix)]
    label = f"label=perfgate.run_id={tag['PERFGATE_RUN_ID']}"
    labelled = subprocess.run(
        [engine_path, "ps", "-a", "-q", "--filter", label], capture_output=True, text=True
    ).stdout.split()
    found += [f"container {cid} (labelled)" for cid in labelled]
    for proc in psutil.process_iter():
        try:
            ours = proc.environ().get("PERFGATE_RUN_ID") == tag["PERFGATE_RUN_ID"]
            if ours and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(f"process {proc.pid}: {' '.join(proc.cmdline())[:120]}")
        except psutil.Error:
            continue
    return found


def light_scenario(duration: str | None) -> dict[str, object]:
    """The light scenario of the project's thresholds.yaml, ``duration`` shortened if given."""
    data = yaml.safe_load((ROOT / "thresholds.yaml").read_text(encoding="utf-8"))
    light = dict(data["scenarios"]["light"])
    if duration is not None:
        light["duration"] = duration
    return {"defaults": data.get("defaults", {}), "scenarios": {"light": light}}


def project(path: Path, container: dict[str, object], duration: str | None) -> Path:
    """A project folder whose thresholds.yaml runs the light scenario against ``container``."""
    data = {
        "version": 1,
        "service": {"ready_path": "/ready", "startup_timeout": "180s", "container": container},
        **light_scenario(duration),
    }
    path.joinpath("thresholds.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    path.joinpath("pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    return path


def start_pytest(path: Path, tag: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    """``pytest -m load_light`` in ``path`` under the run id ``tag``, output in pytest.out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PERFGATE_", "PYTEST_"))}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-m", "load_light"]
    with path.joinpath("pytest.out").open("wb") as out:
        return subprocess.Popen(
            [*command, "--perfgate-results-dir", "results", *NOISE_OFF, *args], cwd=path,
            env={**env, **tag}, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def output(path: Path) -> str:
    return path.joinpath("pytest.out").read_text(encoding="utf-8", errors="replace")[-4000:]
