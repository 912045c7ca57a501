"""Container tests: a real engine (podman, else docker) and the service's image.

The image is the one ``scripts/container_setup.sh`` builds (CI runs it first); a session
that finds it missing runs the script itself. Tests skip only where no container engine
can run (``<engine> info`` fails); an image that cannot be built fails them.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
from container_helpers import IMAGE, ROOT

#: seconds the setup script may take when the image is missing (a first build)
SETUP_TIMEOUT_S = 1800


def engine() -> str | None:
    """The engine that can run containers here, or None."""
    for name in ("podman", "docker"):
        path = shutil.which(name)
        if path is None:
            continue
        if subprocess.run([path, "info"], capture_output=True, check=False).returncode == 0:
            return path
    return None


@pytest.fixture(scope="session")
def container_engine() -> str:
    found = engine()
    if found is None:
        pytest.skip("no container engine can run here (`podman info` and `docker info` fail)")
    return found


@pytest.fixture(scope="session")
def service_image(container_engine: str) -> str:
    """The service's image, built by scripts/container_setup.sh when it is missing."""
    exists = subprocess.run(
        [container_engine, "image", "inspect", IMAGE], capture_output=True, check=False
    )
    if exists.returncode != 0:
        setup = subprocess.run(
            ["bash", str(ROOT / "scripts" / "container_setup.sh")], cwd=ROOT,
            capture_output=True, text=True, timeout=SETUP_TIMEOUT_S, check=False,
        )  # fmt: skip
        if setup.returncode != 0:
            pytest.fail(f"scripts/container_setup.sh failed:\n{setup.stdout}\n{setup.stderr}")
    return IMAGE
