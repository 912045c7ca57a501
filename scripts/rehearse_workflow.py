"""Rehearse the required check: run the install and gate steps of
``.github/workflows/perf-gate.yml`` as written, in a clean virtual environment and a copy
of the repository, then check the exit status and the files the later steps read.

Usage: ``python scripts/rehearse_workflow.py [--workflow PATH] [--job NAME] [--keep]``
(``.ci/run`` runs it). Exit status 0 when the rehearsal passed, 1 when it did not.

Every ``run`` step of the job runs through ``bash --noprofile --norc -eo pipefail`` as
Actions runs it, in order, with the step's ``env``. Only these differ from a runner, each
for the reason given:

- the line ``pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu``
  runs as ``pip install torch==2.13.0``: that index cannot be reached from here, and the
  same CPU wheel lies on this machine's disk, where pip's find-links finds it;
- the interpreter running this script stands for ``actions/setup-python``, and the
  ``uses:`` steps (checkout, cache, comment, upload) do not run: the copy of the
  repository is the checkout; the files the comment and upload steps read are checked;
- a step ``env`` value that is a ``${{ ... }}`` expression is left unset (only Actions
  evaluates those): the run is that of a pull request for which no baseline was
  restored, which saves none;
- ``REHEARSAL_DURATION`` (for example ``40s``), when set, replaces the value of the gate's
  ``--perfgate-duration``: the workflow's ``2m`` plus the install can take more than 3
  minutes on a busy 2-core machine; unset, the command runs exactly as written;
- ``GITHUB_ACTIONS=true`` and a ``GITHUB_STEP_SUMMARY`` file, as on a runner; variables
  of the calling shell that would change the run (``PERFGATE_*``, ``PYTEST_ADDOPTS``,
  ``PYTHONPATH``, the calling virtual environment) are dropped.

The gate passes the rehearsal when it exits 0, or 1 with every scenario judged (a JSON
verdict of FAIL or INCONCLUSIVE: the gate worked, the machine was slow; ``--strict``
refuses that), and left its JSON verdict and ``summary.md`` (the comment's text).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "perf-gate.yml"
#: the workflow's torch line and what runs instead (the module docstring says why)
TORCH_INDEX = re.compile(
    r"^(\s*pip install torch==\S+)\s+--index-url\s+\S*download\.pytorch\.org\S*"
)
DURATION = re.compile(r"(--perfgate-duration[= ])(\S+)")
#: what a rehearsal never copies: caches and environments, wherever they are ...
SKIP = (".git", ".venv", "*.egg-info", ".*_cache", "__pycache__", "node_modules", ".benchmarks",
        ".hypothesis")  # fmt: skip
#: ... and, at the top only, build outputs, earlier results and baselines (a package may
#: have a folder of such a name: pytest_perfgate/results)
SKIP_AT_TOP = frozenset({"build", "dist", "results", ".perfgate"})
#: variables of the calling shell that would change the run
DROPPED = re.compile(r"^(PERFGATE_\w+|PYTEST_\w+|PYTHONPATH|PYTHONHOME|VIRTUAL_ENV|GITHUB_\w+)$")
RESULTS = Path("results", "load_tests")


@dataclass(frozen=True)
class Step:
    """One ``run`` step of the job, as the rehearsal runs it."""

    name: str
    script: str
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_gate(self) -> bool:
        return re.search(r"(^|\s)pytest\s", self.script) is not None


def _step_env(raw: Mapping[str, Any] | None) -> dict[str, str]:
    """The step's env, without the values only Actions can evaluate."""
    return {k: str(v) for k, v in (raw or {}).items() if "${{" not in str(v)}


def _script(run: str, duration: str | None) -> str:
    lines = [TORCH_INDEX.sub(r"\1", line) for line in run.splitlines()]
    script = "\n".join(lines)
    return DURATION.sub(lambda m: m.group(1) + duration, script) if duration else script


def workflow_steps(text: str, job: str, *, duration: str | None = None) -> list[Step]:
    """Every ``run`` step of ``job`` in the workflow ``text``, as the rehearsal runs it."""
    jobs = yaml.safe_load(text)["jobs"]
    if job not in jobs:
        raise SystemExit(f"rehearse: no job {job!r} in the workflow (jobs: {', '.join(jobs)})")
    steps = []
    for n, raw in enumerate(jobs[job]["steps"], 1):
        if "run" in raw:
            name = str(raw.get("name", f"step {n}"))
            steps.append(Step(name, _script(str(raw["run"]), duration), _step_env(raw.get("env"))))
    if not any(step.is_gate for step in steps):
        raise SystemExit(f"rehearse: job {job!r} has no step that runs pytest")
    return steps


def _skipped(folder: str, names: list[str]) -> set[str]:
    """What ``copytree`` leaves out of ``folder`` (``SKIP``, ``SKIP_AT_TOP``)."""
    skipped = set(shutil.ignore_patterns(*SKIP)(folder, names))
    return skipped | (SKIP_AT_TOP & set(names)) if Path(folder) == ROOT else skipped


def _environment(venv: Path, summary: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not DROPPED.match(k)}
    active = os.environ.get("VIRTUAL_ENV")
    path = [p for p in env.get("PATH", "").split(os.pathsep) if not active or
            not p.startswith(active)]  # fmt: skip
    env["PATH"] = os.pathsep.join([str(venv / "bin"), *path])
    env.update(VIRTUAL_ENV=str(venv), GITHUB_ACTIONS="true", GITHUB_STEP_SUMMARY=str(summary))
    return env


def _run_step(step: Step, cwd: Path, env: Mapping[str, str], timeout_s: float) -> int:
    print(f"rehearse: == {step.name}\n{step.script}", flush=True)
    started = time.monotonic()
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step.script],
        cwd=cwd, env={**env, **step.env}, timeout=timeout_s, check=False,
    )  # fmt: skip
    print(f"rehearse: {step.name}: exit {done.returncode} in {time.monotonic() - started:.0f} s")
    return done.returncode


def _verdicts(copy: Path) -> list[str]:
    outcomes = []
    for path in sorted((copy / RESULTS).glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if str(data.get("format", "")).startswith("pytest-perfgate/result/"):
            outcomes.append(str(data["verdict"]["outcome"]))
            print(f"rehearse: {path.relative_to(copy)}: {data['verdict']['outcome']}")
    return outcomes


def judge(status: int, outcomes: Sequence[str], has_summary: bool, *, strict: bool) -> str | None:
    """Why the gate step did not pass the rehearsal; None when it did."""
    if not outcomes:
        return f"the gate exited {status} and wrote no JSON verdict"
    if not has_summary:
        return f"no {RESULTS / 'summary.md'} for the pull-request comment"
    if status == 0:
        return None
    judged = status == 1 and all(o in ("FAIL", "INCONCLUSIVE") for o in outcomes)
    if judged and not strict:
        print("rehearse: budgets judged FAIL here (a slow machine); the gate itself worked")
        return None
    return f"the gate exited {status} (verdicts: {', '.join(outcomes)})"


def rehearse(workflow: Path, job: str, *, keep: bool, strict: bool) -> int:
    steps = workflow_steps(workflow.read_text(encoding="utf-8"), job,
                           duration=os.environ.get("REHEARSAL_DURATION"))  # fmt: skip
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="perfgate-rehearsal-"))
    try:
        copy = Path(shutil.copytree(ROOT, work / "repo", ignore=_skipped))
        venv = work / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        env = _environment(venv, work / "step_summary.md")
        status = 0
        for step in steps:
            status = _run_step(step, copy, env, timeout_s=15 * 60)
            if status and not step.is_gate:
                return _fail(f"{step.name!r} exited {status}", started)
            if step.is_gate:
                break
        why = judge(status, _verdicts(copy), (copy / RESULTS / "summary.md").is_file(),
                    strict=strict)  # fmt: skip
        return _fail(why, started) if why else _passed(started)
    finally:
        if keep:
            print(f"rehearse: kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _fail(why: str, started: float) -> int:
    print(f"rehearse: FAILED after {time.monotonic() - started:.0f} s: {why}")
    return 1


def _passed(started: float) -> int:
    print(f"rehearse: passed in {time.monotonic() - started:.0f} s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--workflow", type=Path, default=WORKFLOW)
    parser.add_argument("--job", default="load_light")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--strict", action="store_true", help="a budget FAIL fails too")
    args = parser.parse_args(argv)
    return rehearse(args.workflow, args.job, keep=args.keep, strict=args.strict)


if __name__ == "__main__":
    sys.exit(main())
