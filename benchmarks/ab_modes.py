"""A/B modes on this machine: the noise floor of an A/A pair, duet against interleaved.

    .venv/bin/python benchmarks/ab_modes.py [--runs 3] [--seconds 60] [--round 2s]
        [--models mlp] [--users 10] [--modes duet,interleaved]

Both sides are the reference service (``python -m service --device cpu``, CPU-bound
inference), started twice with the same command: an A/A pair, whose true change is
zero. Each run is the gate's A/B run (``duet_gate.DuetGate``, the real Locust child)
with early stopping off, alternating the modes run by run so both see the same machine.
It prints, per mode, each run's noise floor (the half-width of the change's interval,
``core.duet``) for the p50 and p95, their medians, and how many runs were judged a
regression (false ones: the allowances are 10 %). The smaller floor is the more accurate
mode here. The runs load both cores: run it alone, with ``nice``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

# the repository root is not installed everywhere
from pytest_perfgate.config import load_thresholds  # noqa: E402
from pytest_perfgate.core.verdict import Outcome  # noqa: E402
from pytest_perfgate.duet_gate import DuetGate, ab_source  # noqa: E402
from pytest_perfgate.options import resolve  # noqa: E402
from pytest_perfgate.target.process import ManagedService  # noqa: E402

KEYS = ("p50_regression", "p95_regression")


def thresholds_text(args: argparse.Namespace) -> str:
    command = (
        "{python} -m service --host 127.0.0.1 --port {port} --device cpu --models " + args.models
    )
    return textwrap.dedent(
        f"""
        service:
          command: "{command}"
          ready_path: /ready
          startup_timeout: 120s
        compare_to:
          command: "{command}"
          round: {args.round}
        scenarios:
          aa:
            users: {args.users}
            spawn_rate: {args.users}
            duration: {args.seconds}s
            warmup: 5s
            wait_time: [0.05, 0.2]
            tasks:
              - {{method: POST, path: /predict, json_factory: "service.payloads:mlp_request"}}
            budgets: {{p50_regression: "10%", p95_regression: "10%"}}
        """
    )


def run_once(path: Path, mode: str, out: Path) -> tuple[dict[str, float], bool, float]:
    """One A/A run: each key's noise floor, whether any key FAILed, the run's seconds."""
    thresholds = load_thresholds(path)
    cli = {"early_stop": "false", "results_dir": str(out), "ab_mode": mode}
    settings = resolve(cli, {}, {}, ROOT)
    source = ab_source(thresholds, settings)
    assert source is not None
    with ManagedService(thresholds.service, out / f"{mode}_service.log", cwd=ROOT) as service:
        gate = DuetGate(thresholds, settings, lambda: service, source=source, cwd=ROOT)
        result = gate.run(gate.scenario("aa"))
    assert result.comparison is not None
    floors = {c.key: c.floor for c in result.comparison.changes if c.floor is not None}
    failed = any(c.outcome is Outcome.FAIL for c in result.verdict.checks)
    return floors, failed, result.raw.duration_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--round", default="2s", help="interleaved: seconds per round")
    parser.add_argument("--models", default="mlp")
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--modes", default="duet,interleaved")
    args = parser.parse_args()
    modes = args.modes.split(",")
    floors: dict[str, dict[str, list[float]]] = {m: {k: [] for k in KEYS} for m in modes}
    false_regressions = dict.fromkeys(modes, 0)
    with tempfile.TemporaryDirectory(prefix="perfgate-ab-modes-") as tmp:
        path = Path(tmp) / "thresholds.yaml"
        path.write_text(thresholds_text(args), encoding="utf-8")
        for i in range(args.runs):
            for mode in modes if i % 2 == 0 else modes[::-1]:
                found, failed, seconds = run_once(path, mode, Path(tmp) / "results")
                for key, value in found.items():
                    floors[mode][key].append(value)
                false_regressions[mode] += failed
                shown = ", ".join(f"{k.split('_')[0]} +-{100 * v:.1f} %" for k, v in found.items())
                print(f"run {i + 1} {mode:<11} {seconds:5.0f} s  floor {shown}  "
                      f"{'FALSE REGRESSION' if failed else 'clean'}", flush=True)  # fmt: skip
    for mode in modes:
        medians = ", ".join(
            f"{k.split('_')[0]} +-{100 * statistics.median(v):.1f} %"
            for k, v in floors[mode].items()
            if v
        )
        print(f"{mode:<11} median noise floor {medians}; false regressions "
              f"{false_regressions[mode]} of {args.runs}")  # fmt: skip


if __name__ == "__main__":
    main()
