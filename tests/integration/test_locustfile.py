"""tests/load/locustfile.py still works with plain ``locust`` (the web UI's way in)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_perfgate.config import ServiceSpec
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
