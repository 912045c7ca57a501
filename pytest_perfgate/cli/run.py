"""``perfgate run``: the scenarios of a thresholds file outside pytest, with the same gate.

Starts processes (the service unless ``--url`` names one, the Locust child) and talks HTTP
to the service, so ``cli`` imports this module only when the command is ``run``. Exit
status 0 when every verdict passes, 1 on a breach, 2 on an error (one line on stderr).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pytest_perfgate.config import load_thresholds
from pytest_perfgate.duet_gate import DuetGate, make_gate
from pytest_perfgate.errors import GateError, ServiceError
from pytest_perfgate.gate import Gate
from pytest_perfgate.load.driver import Progress, ProgressCallback
from pytest_perfgate.options import OPTIONS, resolve
from pytest_perfgate.results.result import ScenarioResult
from pytest_perfgate.results.terminal import progress_line, terminal_table
from pytest_perfgate.target.container import ContainerService, start_container
from pytest_perfgate.target.probe import Target, external_target, health_check
from pytest_perfgate.target.process import ManagedService, start_service

__all__ = ["run_cli"]


def run_cli(args: argparse.Namespace) -> int:
    """``perfgate run``: the scenarios outside pytest; 0 pass, 1 a breach, 2 an error."""
    cwd = Path.cwd()
    cli = {o.name: getattr(args, o.name, None) for o in OPTIONS}
    settings = resolve(cli, {}, os.environ, cwd, cli_prefix="--")
    thresholds = load_thresholds(settings.thresholds)
    names = list(thresholds.scenarios) if args.scenario == "all" else [args.scenario]
    for name in names:
        thresholds.scenario(name)  # an unknown name fails before any process starts
    service: ManagedService | ContainerService | None = None
    try:
        target: Target | None = external_target(thresholds, settings)
        if target is None:
            start = start_container if thresholds.service.container else start_service
            service = target = start(thresholds, settings, cwd)
        health_check(target, thresholds.service.ready_path)
        gate = make_gate(thresholds, settings, lambda: target, cwd=cwd)
        results = [_run_one(gate, name, target) for name in names]
    except (GateError, ServiceError) as exc:
        print(f"perfgate: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if service is not None:
            service.stop()
    for line in terminal_table(results):
        print(line)
    return 0 if all(r.verdict.passed for r in results) else 1


def _run_one(gate: Gate, name: str, target: Target) -> ScenarioResult:
    """One scenario, run again while the machine's noise explains its verdict, at most
    ``--retry-noisy`` more times (each attempt's files are kept; the last one counts)."""
    against = f", A/B against {gate.source.label}" if isinstance(gate, DuetGate) else ""
    print(f"perfgate: running {name} against {target.url}{against}", file=sys.stderr)
    total = 1 + gate.settings.retry_noisy
    for n in range(1, total + 1):
        result = gate.run(gate.scenario(name), on_progress=_stderr_progress(), attempt=(n, total))
        if result.noise is None or not result.called_noisy or total == 1:
            break
        then = "running it again" if n < total else "no attempt left"
        print(
            f"perfgate: {name} attempt {n}/{total}: {result.noise.sentence()}; {then}",
            file=sys.stderr,
        )
    return result


def _stderr_progress() -> ProgressCallback | None:
    """The live line on stderr, rewritten in place; None where stderr is no terminal."""
    if not sys.stderr.isatty():
        return None

    def write(progress: Progress) -> None:
        print("\r\x1b[2K" + progress_line(progress), end="", file=sys.stderr, flush=True)

    return write
