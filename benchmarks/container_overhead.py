"""Container overhead: the P95 of the same light run, service as a process vs in a container.

    .venv/bin/python benchmarks/container_overhead.py [--rounds 3] [--seconds 60]
        [--image localhost/perfgate-service:latest] [--engine podman]

The light scenario of thresholds.yaml (10 users, 0.5-2 s between requests, /predict on
mlp and encoder), shortened to ``--seconds`` and with early stopping off, runs through
the gate against the reference service started two ways, alternating in each round so
that both see the same machine: ``process`` (``python -m service`` on 127.0.0.1, as
thresholds.yaml's ``service.command`` starts it) and ``container`` (the image, run by the
gate's ``service.container``, its port published on 127.0.0.1). Both get the same
arguments (``--device cpu --models mlp,encoder``). It prints each run's P95, the median of
each side, and the ratio container / process (the target: at most 1.10).

Build the image first: ``scripts/container_setup.sh``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

# the repository root is not installed everywhere
from pytest_perfgate.config import load_thresholds  # noqa: E402
from pytest_perfgate.core.model import ContainerSpec, ServiceSpec, Thresholds  # noqa: E402
from pytest_perfgate.gate import Gate  # noqa: E402
from pytest_perfgate.options import resolve  # noqa: E402
from pytest_perfgate.target.container import ContainerService  # noqa: E402
from pytest_perfgate.target.process import ManagedService  # noqa: E402

ARGS = "--device cpu --models mlp,encoder"
COMMAND = "{python} -m service --host 127.0.0.1 --port {port} " + ARGS


def run_once(
    kind: str, thresholds: Thresholds, spec: ServiceSpec, seconds: float, out: Path
) -> tuple[float, int, int]:
    """One light run against a fresh service of ``kind``: (P95 ms, requests, failures)."""
    settings = resolve({"early_stop": "false", "results_dir": str(out)}, {}, {}, ROOT)
    log = out / f"{kind}.log"
    service: ManagedService | ContainerService
    if kind == "process":
        service = ManagedService(dataclasses.replace(spec, command=COMMAND), log, cwd=ROOT)
    else:
        service = ContainerService(spec, log, cwd=ROOT)
    with service:
        gate = Gate(thresholds, settings, lambda: service, cwd=ROOT)
        result = gate.run(gate.scenario("light", duration_s=seconds))
    total = result.stats.total
    return total.p95, total.requests, total.failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--image", default="localhost/perfgate-service:latest")
    parser.add_argument("--engine", default=None)
    args = parser.parse_args()
    base = load_thresholds(ROOT / "thresholds.yaml")
    container = ContainerSpec(
        image=args.image, args=f"--host 0.0.0.0 --port {{port}} {ARGS}", engine=args.engine
    )
    spec = dataclasses.replace(base.service, command=None, container=container)
    thresholds = dataclasses.replace(base, scenarios={"light": base.scenario("light")})
    p95: dict[str, list[float]] = {"process": [], "container": []}
    with tempfile.TemporaryDirectory(prefix="perfgate-container-overhead-") as tmp:
        for round_ in range(args.rounds):
            order = ("process", "container") if round_ % 2 == 0 else ("container", "process")
            for kind in order:
                ms, requests, failures = run_once(kind, thresholds, spec, args.seconds, Path(tmp))
                p95[kind].append(ms)
                print(
                    f"round {round_ + 1} {kind:<9}  P95 {ms:7.2f} ms  "
                    f"{requests} requests, {failures} failed",
                    flush=True,
                )
    process, in_container = (statistics.median(p95[k]) for k in ("process", "container"))
    print(f"\nmedian P95 over {args.rounds} rounds of {args.seconds:g} s:")
    print(f"  process    {process:7.2f} ms")
    print(f"  container  {in_container:7.2f} ms")
    print(f"  ratio container / process: {in_container / process:.3f} (target <= 1.10)")


if __name__ == "__main__":
    main()
