"""GitHub Actions output: the step summary (Markdown from ``results.markdown``) appended
to ``$GITHUB_STEP_SUMMARY``, and ``::error``/``::warning`` annotations.

Pure apart from appending to ``$GITHUB_STEP_SUMMARY``; active only where
``GITHUB_ACTIONS=true``. Annotations point at the ``thresholds.yaml`` line of the budget,
so the breach shows on the pull request's diff of that file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from pytest_perfgate.core.stats import TOTAL
from pytest_perfgate.core.verdict import Check, Outcome
from pytest_perfgate.results.result import ScenarioResult

__all__ = ["in_actions", "publish", "workflow_commands"]


def in_actions(env: Mapping[str, str]) -> bool:
    return env.get("GITHUB_ACTIONS") == "true"


def _escape(text: str, *, prop: bool = False) -> str:
    """Workflow-command escaping (``%``, CR, LF; and ``:``/``,`` in properties)."""
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if prop else text


def budget_line(result: ScenarioResult, check: Check) -> int:
    """The thresholds.yaml line of the budget behind ``check`` (the scenario's line if unknown)."""
    lines = result.scenario.source_lines
    key = (
        f"budgets.{check.metric}"
        if check.endpoint == TOTAL
        else f"endpoints.{check.endpoint}.{check.metric}"
    )
    return lines.get(key) or lines.get("budgets") or lines.get("", 1)


def _level(check: Check) -> str | None:
    if check.outcome is Outcome.FAIL:
        return "error" if check.severity == "block" else "warning"
    if check.outcome in (Outcome.INCONCLUSIVE, Outcome.INVALID):
        return "warning"
    return None


def workflow_commands(results: Sequence[ScenarioResult], root: Path) -> list[str]:
    """One workflow command per breach, warning or invalid run."""
    out: list[str] = []
    for result in results:
        path = result.thresholds or Path("thresholds.yaml")
        try:
            file = str(path.relative_to(root))
        except ValueError:
            file = str(path)
        title = _escape(f"perfgate {result.scenario.name}", prop=True)
        for check in result.verdict.checks:
            level = _level(check)
            if level is not None:
                line = budget_line(result, check)
                out.append(
                    f"::{level} file={_escape(file, prop=True)},line={line},title={title}::"
                    f"{_escape(check.message())}"
                )
        if result.verdict.outcome is Outcome.INVALID:
            line = result.scenario.source_lines.get("", 1)
            for reason in result.verdict.reasons:
                out.append(
                    f"::error file={_escape(file, prop=True)},line={line},title={title}::"
                    f"{_escape(f'{result.scenario.name}: INVALID run: {reason}')}"
                )
        if result.noise is not None and result.noise.noisy and not result.called_noisy:
            line = result.scenario.source_lines.get("", 1)
            noisy = f"{result.scenario.name}: the machine was noisy: {result.noise.sentence()}"
            out.append(
                f"::warning file={_escape(file, prop=True)},line={line},title={title}::"
                f"{_escape(noisy)}"
            )
    return out


def publish(sections: Sequence[str], commands: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """Append the scenario ``sections`` to ``$GITHUB_STEP_SUMMARY`` under one header.

    Returns the workflow ``commands`` to print, or nothing outside GitHub Actions.
    """
    if not in_actions(env) or not sections:
        return []
    summary = env.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as fh:
            fh.write("## pytest-perfgate\n\n" + "\n".join(sections) + "\n")
    return list(commands)
