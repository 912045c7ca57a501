"""Continuous batching against one sequence at a time: tiny-gpt, same model, same load.

    nice -n 10 .venv/bin/python benchmarks/llm_serving.py [--quick] [--rounds 3]
        [--seconds 15] [--streams 16] [--max-tokens 32] [--rates 4,8,16,24]
        [--ttft-budget-ms 500] [--tokens-per-chunk 1] [--device cpu]

The reference service runs twice, as real subprocesses on 127.0.0.1, both up for the
whole benchmark: ``batching`` (``python -m service --models tiny-gpt --llm-max-running
16``: iteration-level scheduling, up to 16 sequences share each decode step) and
``one-at-a-time`` (the same with ``--llm-max-running 1``: one sequence decodes, the others
wait). Every run goes through the gate itself (``Gate`` with the real Locust child, a
``kind: openai_chat`` task from a thresholds file written to a temporary folder, early
stopping and the noise check off), streaming ``max_tokens`` tokens a request
(``extra_body: {ignore_eos: true}``, so every answer has the same length):

- **closed loop**: ``--streams`` users, each sending its next request as soon as its
  stream ends (16 concurrent streams): output tokens/s and TTFT P95 of each mode;
- **arrival rates** (Poisson, ``--rates`` requests/s, at most 64 in flight): output
  tokens/s and TTFT P95 at each rate; "at the budget" is the highest rate whose TTFT P95
  stays within ``--ttft-budget-ms`` with under 1 % of requests failed.

The two modes alternate within each round (the order flips every round) so that both
see the same machine; the ratios are medians over rounds. The machine is shared: ratios
hold better than absolute times. Target (issue 15): batching at least 4x the output
tokens/s of one-at-a-time at 16 concurrent streams, with a TTFT P95 no higher. Exits 1
when the target is missed. Locust runs on the same CPUs and takes its share of them.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import statistics
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

# the repository root is not installed everywhere
from pytest_perfgate.config import load_thresholds  # noqa: E402
from pytest_perfgate.core.model import Thresholds  # noqa: E402
from pytest_perfgate.gate import Gate  # noqa: E402
from pytest_perfgate.options import resolve  # noqa: E402
from pytest_perfgate.target.process import ManagedService  # noqa: E402

PROMPTS = ROOT / "tests" / "load" / "chat_prompts.jsonl"
MODES = {"batching": 16, "one-at-a-time": 1}  # mode -> --llm-max-running
CLOSED = "closed"


@dataclass(frozen=True)
class Figures:
    """One run of one mode at one load."""

    tokens_per_s: float
    ttft_p95_ms: float
    tpot_p95_ms: float
    requests: int
    failures: int

    @property
    def error_rate(self) -> float:
        return self.failures / self.requests if self.requests else 1.0


def thresholds_text(args: argparse.Namespace) -> str:
    task = (
        f'{{kind: openai_chat, model: tiny-gpt, prompts_file: "{PROMPTS}", '
        f"max_tokens: {args.max_tokens}, temperature: 0.7, extra_body: {{ignore_eos: true}}}}"
    )
    common = f"duration: {args.seconds}s\n    warmup: 2s\n    request_timeout: 60s\n"
    common += f"    tasks: [{task}]\n"
    scenarios = (
        f"  {CLOSED}:\n    users: {args.streams}\n    spawn_rate: {args.streams}\n"
        f"    wait_time: 0\n    {common}"
    )
    for rate in args.rates:
        scenarios += (
            f"  rate_{rate:g}:\n    arrival_rate: {rate:g}\n    arrivals: poisson\n"
            f"    users: 64\n    {common}"
        )
    return (
        textwrap.dedent(
            f"""\
        service:
          command: "{command(args, 16)}"
          ready_path: /ready
          startup_timeout: 180s
        scenarios:
        """
        )
        + scenarios
    )


def command(args: argparse.Namespace, max_running: int) -> str:
    return (
        "{python} -m service --host 127.0.0.1 --port {port} --models tiny-gpt "
        f"--device {args.device} --llm-max-running {max_running} --llm-max-waiting 64 "
        f"--llm-tokens-per-chunk {args.tokens_per_chunk}"
    )


@contextlib.contextmanager
def services(
    thresholds: Thresholds, args: argparse.Namespace, out: Path
) -> Iterator[dict[str, ManagedService]]:
    """Both modes' services started and ready (one after the other), stopped at the end."""
    with contextlib.ExitStack() as stack:
        running = {}
        for mode, max_running in MODES.items():
            spec = dataclasses.replace(thresholds.service, command=command(args, max_running))
            log = out / f"{mode}.service.log"
            running[mode] = stack.enter_context(ManagedService(spec, log, cwd=ROOT))
        yield running


def run_once(thresholds: Thresholds, service: ManagedService, scenario: str, out: Path) -> Figures:
    cli = {"early_stop": "false", "noise_check": "false", "results_dir": str(out)}
    settings = resolve(cli, {}, {}, ROOT)
    gate = Gate(thresholds, settings, lambda: service, cwd=ROOT)
    total = gate.run(gate.scenario(scenario)).stats.total
    nan = float("nan")
    return Figures(
        tokens_per_s=total.figures.get("output_tokens_per_s", 0.0),
        ttft_p95_ms=total.figures.get("ttft_p95", nan),
        tpot_p95_ms=total.figures.get("tpot_p95", nan),
        requests=total.requests,
        failures=total.failures,
    )


def median(runs: Sequence[Figures]) -> Figures:
    return Figures(
        tokens_per_s=statistics.median(r.tokens_per_s for r in runs),
        ttft_p95_ms=statistics.median(r.ttft_p95_ms for r in runs),
        tpot_p95_ms=statistics.median(r.tpot_p95_ms for r in runs),
        requests=sum(r.requests for r in runs),
        failures=sum(r.failures for r in runs),
    )


def row(mode: str, load: str, f: Figures) -> str:
    return (
        f"{mode:<14} {load:<12} {f.tokens_per_s:>9.1f} {f.ttft_p95_ms:>11.0f} "
        f"{f.tpot_p95_ms:>11.1f} {f.requests:>9} {f.failures:>7}"
    )


def report(figures: dict[tuple[str, str], list[Figures]], args: argparse.Namespace) -> bool:
    """Print the table, the ratios and the verdict; True when the target is met."""
    med = {key: median(runs) for key, runs in figures.items()}
    print(f"\nmedians over {args.rounds} round(s) of {args.seconds:g} s, "
          f"{args.max_tokens} tokens a request:")  # fmt: skip
    print(f"{'mode':<14} {'load':<12} {'tokens/s':>9} {'TTFT P95 ms':>11} "
          f"{'TPOT P95 ms':>11} {'requests':>9} {'failed':>7}")  # fmt: skip
    loads = [CLOSED, *(f"rate_{r:g}" for r in args.rates)]
    for load in loads:
        for mode in MODES:
            label = f"{args.streams} streams" if load == CLOSED else f"{load[5:]} req/s"
            print(row(mode, label, med[mode, load]))
    batching, single = med["batching", CLOSED], med["one-at-a-time", CLOSED]
    ratio = batching.tokens_per_s / single.tokens_per_s if single.tokens_per_s else float("inf")
    print(f"\nat {args.streams} concurrent streams: batching {ratio:.2f}x the output tokens/s "
          f"of one-at-a-time, TTFT P95 {batching.ttft_p95_ms:.0f} ms vs "
          f"{single.ttft_p95_ms:.0f} ms")  # fmt: skip
    ratios = [
        b.tokens_per_s / s.tokens_per_s
        for b, s in zip(figures["batching", CLOSED], figures["one-at-a-time", CLOSED], strict=True)
        if s.tokens_per_s
    ]
    print("  per round: " + ", ".join(f"{r:.2f}x" for r in ratios))
    if args.rates:
        at_budget(med, args)
    met = ratio >= 4.0 and batching.ttft_p95_ms <= single.ttft_p95_ms
    print(f"target (>= 4x tokens/s, TTFT P95 no higher): {'met' if met else 'MISSED'}")
    return met


def at_budget(med: dict[tuple[str, str], Figures], args: argparse.Namespace) -> None:
    """The highest rate each mode serves within the TTFT budget, and its tokens/s."""
    best: dict[str, tuple[float, Figures] | None] = {}
    for mode in MODES:
        within = [
            (rate, med[mode, f"rate_{rate:g}"])
            for rate in args.rates
            if med[mode, f"rate_{rate:g}"].ttft_p95_ms <= args.ttft_budget_ms
            and med[mode, f"rate_{rate:g}"].error_rate < 0.01
        ]
        best[mode] = max(within, key=lambda rf: rf[0]) if within else None
    print(f"\nat a TTFT P95 budget of {args.ttft_budget_ms:g} ms (under 1 % failed):")
    for mode, found in best.items():
        text = "no rate tried" if found is None else (
            f"{found[0]:g} req/s, {found[1].tokens_per_s:.1f} tokens/s "
            f"(TTFT P95 {found[1].ttft_p95_ms:.0f} ms)"
        )  # fmt: skip
        print(f"  {mode:<14} {text}")
    b, s = best["batching"], best["one-at-a-time"]
    if b and s and s[1].tokens_per_s:
        print(f"  ratio: {b[1].tokens_per_s / s[1].tokens_per_s:.2f}x output tokens/s "
              "(a lower bound when batching met the budget at the highest rate tried)")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round of 12 s, no rates")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--rates", default="4,8,16,24", help="Poisson request rates; '' for none")
    parser.add_argument("--ttft-budget-ms", type=float, default=500.0)
    parser.add_argument(
        "--tokens-per-chunk", type=int, default=1, help="tokens per SSE chunk, both modes"
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds, args.rates = 1, 12.0, ""
    args.rates = [float(r) for r in args.rates.split(",") if r.strip()]
    loads = [CLOSED, *(f"rate_{r:g}" for r in args.rates)]
    figures: dict[tuple[str, str], list[Figures]] = {(m, ld): [] for m in MODES for ld in loads}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="perfgate-llm-serving-") as tmp:
        out = Path(tmp)
        path = out / "thresholds.yaml"
        path.write_text(thresholds_text(args))
        thresholds = load_thresholds(path)
        with services(thresholds, args, out) as running:
            print(f"services ready in {time.monotonic() - started:.0f} s", flush=True)
            for round_ in range(args.rounds):
                order = list(MODES) if round_ % 2 == 0 else list(reversed(MODES))
                for load in loads:
                    for mode in order:
                        f = run_once(thresholds, running[mode], load, out)
                        figures[mode, load].append(f)
                        print(f"round {round_ + 1} " + row(mode, load, f), flush=True)
    met = report(figures, args)
    print(f"({time.monotonic() - started:.0f} s in all)")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
