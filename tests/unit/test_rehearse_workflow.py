"""The workflow rehearsal's reading of the workflow (scripts/rehearse_workflow.py): the steps
it extracts and how it judges the gate. The rehearsal itself installs and runs load: .ci/run
runs it, not this file."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rehearse_workflow", ROOT / "scripts" /
                                                  "rehearse_workflow.py")  # fmt: skip
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


rehearse = _script()


def test_it_extracts_the_install_and_gate_steps_of_the_required_check() -> None:
    steps = rehearse.workflow_steps(rehearse.WORKFLOW.read_text(), "load_light")
    assert [(s.name, s.script, dict(s.env)) for s in steps] == [
        ("Install (CPU build of torch)",
         "pip install torch==2.13.0\npip install -e '.[service]'", {}),
        ("Load gate",
         "pytest -m load_light --perfgate-duration 2m --perfgate-retry-noisy 2 "
         "--junitxml=results/junit.xml "
         '${BASELINE:+--perfgate-baseline "$BASELINE"} '
         '${SAVE_BASELINE:+--perfgate-save-baseline "$SAVE_BASELINE"}', {}),
    ]  # fmt: skip
    assert [s.is_gate for s in steps] == [False, True]


def test_every_other_step_of_the_required_check_is_an_action_it_stands_in_for() -> None:
    workflow = yaml.safe_load(rehearse.WORKFLOW.read_text())
    uses = [s["uses"].split("@")[0] for s in workflow["jobs"]["load_light"]["steps"] if "uses" in s]
    assert uses == [
        "actions/checkout", "actions/setup-python", "actions/cache/restore",
        "actions/cache/save", "marocchino/sticky-pull-request-comment",
        "actions/upload-artifact",
    ]  # fmt: skip


WORKFLOW = textwrap.dedent(
    """
    jobs:
      gate:
        steps:
          - uses: actions/checkout@v4
          - run: |
              pip install torch==2.1.0 --index-url https://download.pytorch.org/whl/cpu
              pip install -e .
          - name: Gate
            env: {KEPT: plain, ASKED: "${{ github.ref == 'x' && 'y' || '' }}"}
            run: pytest -m load_x --perfgate-duration=2m
    """
)


def test_a_duration_override_replaces_only_the_gates_duration() -> None:
    *_, gate = rehearse.workflow_steps(WORKFLOW, "gate", duration="40s")
    assert gate.script == "pytest -m load_x --perfgate-duration=40s"


def test_the_torch_index_line_becomes_a_plain_pin_and_expressions_are_left_unset() -> None:
    install, gate = rehearse.workflow_steps(WORKFLOW, "gate")
    assert install.name == "step 2" and install.script.splitlines() == [
        "pip install torch==2.1.0", "pip install -e ."
    ]  # fmt: skip
    assert dict(gate.env) == {"KEPT": "plain"}


def test_a_job_without_a_pytest_step_or_an_unknown_job_stops_the_rehearsal() -> None:
    with pytest.raises(SystemExit, match="no job 'nope'"):
        rehearse.workflow_steps(WORKFLOW, "nope")
    with pytest.raises(SystemExit, match="has no step that runs pytest"):
        rehearse.workflow_steps(WORKFLOW.replace("pytest -m", "echo"), "gate")


@pytest.mark.parametrize(
    ("status", "outcomes", "summary", "strict", "why"),
    [
        (0, ["PASS"], True, False, None),
        (1, ["FAIL"], True, False, None),
        (1, ["FAIL"], True, True, "the gate exited 1 (verdicts: FAIL)"),
        (1, ["INVALID"], True, False, "the gate exited 1 (verdicts: INVALID)"),
        (2, [], False, False, "the gate exited 2 and wrote no JSON verdict"),
        (
            0,
            ["PASS"],
            False,
            False,
            "no results/load_tests/summary.md for the pull-request comment",
        ),
    ],
)
def test_the_gate_passes_when_it_judged_and_left_the_files_the_later_steps_read(
    status: int, outcomes: list[str], summary: bool, strict: bool, why: str | None
) -> None:
    assert rehearse.judge(status, outcomes, summary, strict=strict) == why


def test_the_copy_leaves_out_earlier_results_at_the_top_only_not_the_results_package() -> None:
    top = rehearse._skipped(str(rehearse.ROOT), ["results", "pytest_perfgate", ".venv", "x.py"])
    assert top == {"results", ".venv"}
    package = rehearse.ROOT / "pytest_perfgate"
    assert rehearse._skipped(str(package), ["results", "__pycache__"]) == {"__pycache__"}
