"""Dynamic batching versus one forward pass per request, under the same closed-loop load.

    .venv/bin/python benchmarks/service_batching.py [--users 32] [--duration 20] [--tokens 4-12]
        [--dtype float32|bfloat16] [--only naive --only service]

The encoder, on short sequences, served three ways, one after the other, each under the
same Locust load (``locust --headless``: ``--users`` users, no wait between requests,
statistics reset once all users run, ``--csv`` read back):

- ``naive``: a plain FastAPI app (below): a sync endpoint that runs one forward pass per
  request in FastAPI's thread pool - what a first version of an inference API looks like;
- ``service, batch 1``: this service with ``--max-batch-size 1``: the same HTTP stack,
  one forward pass per request, one at a time;
- ``service``: this service with its defaults (batches of up to 32, 5 ms queue delay).

Every server runs the same model with the same torch thread count (the service's default,
``service.runtime.default_torch_threads``) and the same ``--dtype``. It prints req/s, P50
and P95 for each and the ratios to ``service``, and exits 1 when the target is missed.
Target on the 2-core development machine: the service's throughput at least 3x the naive
server's at a P95 no higher. Locust runs on the same machine and takes its share of the
CPU in every run, so figures from a busy machine are low and noisy: compare within a run.

Why ``--dtype`` matters here: in float32 a batch of short sequences is already bound by
arithmetic on a CPU core (about 2 ms per example), so batching gains what it saves over
one forward pass per request (about 7 ms each) and no more; in bfloat16, on CPUs with AMX,
batched arithmetic is several times cheaper while a single forward pass stays bound by
per-operation overhead, and batching pays far more.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import shlex
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the service package, when run as a script

from pytest_perfgate.config import ServiceSpec  # noqa: E402
from pytest_perfgate.target.process import ManagedService  # noqa: E402

READY_TIMEOUT_S = 60.0

LOCUSTFILE = """
import random

from locust import FastHttpUser, constant, task


class EncoderUser(FastHttpUser):
    wait_time = constant(0)
    network_timeout = 30.0

    @task
    def predict(self):
        length = random.randint({low}, {high})
        tokens = [random.randrange(30522) for _ in range(length)]
        self.client.post("/predict", json={{"model": "encoder", "inputs": [tokens]}})
"""


@dataclass(frozen=True)
class Variant:
    name: str
    command: tuple[str, ...]  # the server's command line, without --port


@dataclass(frozen=True)
class Result:
    variant: str
    requests: int
    failures: int
    rps: float
    p50_ms: float
    p95_ms: float
    seconds_to_ready: float


def variants(dtype: str = "float32") -> list[Variant]:
    service = (sys.executable, "-m", "service", "--models", "encoder", "--dtype", dtype)
    return [
        Variant("naive", (sys.executable, __file__, "--serve-naive", "--dtype", dtype)),
        Variant("service, batch 1", (*service, "--max-batch-size", "1")),
        Variant("service", service),
    ]


# --- the naive server ---------------------------------------------------------------------


def serve_naive(port: int, dtype: str) -> None:
    """One forward pass per request, in FastAPI's thread pool; no queue, no batching."""
    import torch
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    from service.models import Placement, build_model, get_spec, run_batch
    from service.runtime import default_torch_threads

    # The service's thread count, which was also this server's best setting here.
    torch.set_num_threads(default_torch_threads(workers=1))

    spec = get_spec("encoder")
    placement = Placement(torch.device("cpu"), getattr(torch, dtype))
    module = build_model(spec, placement)
    app = FastAPI()

    @app.get("/ready")
    def ready() -> dict[str, bool]:
        return {"ready": True}

    @app.post("/predict")
    def predict(body: dict[str, Any]) -> JSONResponse:
        examples = [spec.check_example(e, f"inputs[{i}]") for i, e in enumerate(body["inputs"])]
        outputs = run_batch(spec, module, placement, examples)
        return JSONResponse({"model": "encoder", "outputs": outputs})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# --- running one variant ------------------------------------------------------------------


@contextlib.contextmanager
def running(variant: Variant, log: Path) -> Iterator[tuple[str, float]]:
    """The server started and ready: its URL and how long it took to become ready."""
    spec = ServiceSpec(
        command=shlex.join(variant.command) + " --port {port}",
        ready_path="/ready",
        startup_timeout_s=READY_TIMEOUT_S,
    )
    started = time.monotonic()
    with ManagedService(spec, log, cwd=ROOT) as service:
        yield service.url, time.monotonic() - started


def run_locust(url: str, args: argparse.Namespace, workdir: Path, name: str) -> dict[str, str]:
    """Locust's Aggregated row of the run's ``_stats.csv``."""
    low, high = args.tokens
    locustfile = workdir / "locustfile.py"
    locustfile.write_text(textwrap.dedent(LOCUSTFILE.format(low=low, high=high)))
    prefix = workdir / name.replace(" ", "_").replace(",", "")
    command = [
        sys.executable, "-m", "locust", "-f", str(locustfile), "--headless",
        "--host", url, "--users", str(args.users), "--spawn-rate", str(args.users),
        "--run-time", f"{args.duration}s", "--reset-stats", "--only-summary",
        "--csv", str(prefix), "--loglevel", "ERROR",
    ]  # fmt: skip
    with (workdir / f"{prefix.name}.locust.log").open("wb") as log:
        subprocess.run(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, check=False)
    with Path(f"{prefix}_stats.csv").open(newline="") as stats:
        return next(row for row in csv.DictReader(stats) if row["Name"] == "Aggregated")


def measure(variant: Variant, args: argparse.Namespace, workdir: Path) -> Result:
    with running(variant, workdir / f"{variant.name}.server.log") as (url, seconds_to_ready):
        row = run_locust(url, args, workdir, variant.name)
    return Result(
        variant=variant.name,
        requests=int(row["Request Count"]),
        failures=int(row["Failure Count"]),
        rps=float(row["Requests/s"]),
        p50_ms=float(row["50%"]),
        p95_ms=float(row["95%"]),
        seconds_to_ready=seconds_to_ready,
    )


# --- report -------------------------------------------------------------------------------


def report(results: Sequence[Result]) -> bool:
    """Print the table and the verdict; True when the target is met."""
    print(f"{'server':<18} {'req/s':>8} {'P50 ms':>8} {'P95 ms':>8} {'requests':>9} "
          f"{'failed':>7} {'ready s':>8}")  # fmt: skip
    for r in results:
        print(f"{r.variant:<18} {r.rps:>8.1f} {r.p50_ms:>8.0f} {r.p95_ms:>8.0f} "
              f"{r.requests:>9} {r.failures:>7} {r.seconds_to_ready:>8.1f}")  # fmt: skip
    by_name = {r.variant: r for r in results}
    batching = by_name.get("service")
    if batching is None:
        return True
    for r in results:
        if r is not batching and r.rps > 0:
            print(f"service vs {r.variant}: {batching.rps / r.rps:.2f}x req/s, "
                  f"P95 {batching.p95_ms:.0f} ms vs {r.p95_ms:.0f} ms")  # fmt: skip
    naive = by_name.get("naive")
    if naive is None:
        return True
    met = batching.rps >= 3 * naive.rps and batching.p95_ms <= naive.p95_ms
    print(f"target (>= 3x the naive req/s at a P95 no higher): {'met' if met else 'NOT met'}")
    return met and batching.failures == 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--duration", type=int, default=20, help="seconds of load per server")
    parser.add_argument("--tokens", type=_range, default=(4, 12), help="sequence lengths, LOW-HIGH")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--only", action="append", choices=[v.name for v in variants()])
    parser.add_argument("--serve-naive", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _range(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    return int(low), int(high or low)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_naive:
        serve_naive(args.port, args.dtype)
        return 0
    chosen = [v for v in variants(args.dtype) if not args.only or v.name in args.only]
    with tempfile.TemporaryDirectory(prefix="service-batching-") as workdir:
        results = [measure(variant, args, Path(workdir)) for variant in chosen]
    return 0 if report(results) else 1


if __name__ == "__main__":
    sys.exit(main())
