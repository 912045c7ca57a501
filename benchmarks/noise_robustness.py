"""Noise robustness: does a CPU hog on the machine make the gate blame the service?

    .venv/bin/python benchmarks/noise_robustness.py [--quick] [--runs 20] [--seconds 30]
        [--hogs 2] [--hog-share 0.5] [--burn-ms 6] [--allowance 5%] [--keys p50,p95]
        [--cases abc] [--ab-seconds 120] [--ab-users 16] [--ab-hog-from 2]

A service whose handler is CPU-bound (a stdlib HTTP server on 127.0.0.1, started by the
gate from ``service.command``, that burns about ``--burn-ms`` of CPU a request), so a CPU
hog slows it. Each run is a real ``pytest thresholds.yaml::cpu`` in a child process (the
real Locust child, the real machine sampler); the hogs (``python -c 'while 1: pass'``,
``--hogs`` of them) are started by this script, outside the gate's processes, for
``--hog-share`` of the run's planned load: in (a) from a quarter of the way in; in (b)
and (c) ``--ab-hog-from`` seconds after the warm-up (2 s), before the first look at 13 s,
since a pair is judged early: a hog that came a quarter of the way into 2 minutes (at
35 s) found most runs of (c) already decided on a quiet machine.

- (a) absolute budget: ``p95_ms`` at 1.3x the quiet P95 measured by a first run without
  hogs; then ``--runs`` runs with the hogs: how many FAIL (blame the service), how many
  are called noisy (INVALID: the machine was busy), how many PASS; the run times.
- (b) A/A under the hogs (``--ab-users`` users, ``--ab-seconds`` of load a run, at most
  2 minutes as issue 14 asks): both sides burn ``--burn-ms``; a FAIL of a regression key
  (``--keys``: ``p95_regression``, or ``p50,p95`` for both; ``--allowance``) is a false
  regression. (c) A/B under the hogs with the candidate
  10 % slower (it burns 1.1x ``--burn-ms``): a FAIL is a detection. Both need the A/B
  mode (``compare_to: {command: ...}``): they run when ``pytest --help`` lists
  ``--perfgate-against``, else they print ``skipped: A/B mode not available``.

Issue 14's targets: in (a) no FAIL while outside load was present; in (b) no false
regression in 20 runs; in (c) 18 detections of 20. ``--quick`` makes 3 runs a case
(and A/B runs of 40 s).
The runs hog both cores of a 2-core machine: run it alone, with ``nice``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

SERVICE = '''\
"""A CPU-bound service: every POST /work burns about BURN_MS of CPU (under the GIL)."""
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BURN_S = float(sys.argv[2]) / 1000


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self, body):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._answer(b"ok")

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        end, x = time.thread_time() + BURN_S, 0
        while time.thread_time() < end:
            x += sum(range(200))
        self._answer(b"done")

    def log_message(self, *args):
        pass


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
'''

THRESHOLDS = """\
service:
  command: "{{python}} {service} {{port}} {burn_ms}"
  ready_path: /health
  startup_timeout: 30s
{compare_to}scenarios:
  cpu:
    users: {users}
    spawn_rate: {users}
    duration: {seconds}s
    warmup: 3s
    min_samples: 50
    wait_time: [0.1, 0.3]
    tasks:
      - {{method: POST, path: /work, json: {{x: 1}}}}
    budgets: {{{budgets}}}
"""

HOG = "while 1: pass"


@dataclass(frozen=True)
class Run:
    """One ``pytest`` run of the ``cpu`` scenario, as its JSON result tells it."""

    outcome: str  # PASS, FAIL, INCONCLUSIVE, INVALID; ERROR: the run wrote no result
    noisy: bool  # INVALID because the machine was busy
    p95_ms: float
    load_s: float  # seconds of load
    wall_s: float  # the whole pytest run, service start included
    outside: str  # the noise summary
    why: str = ""  # the verdict's first reason, where it has one
    changes: str = ""  # an A/B run's changes of the total with their intervals

    @property
    def label(self) -> str:
        return "NOISY" if self.noisy else self.outcome


@contextlib.contextmanager
def hogs(count: int) -> Iterator[None]:
    """``count`` CPU hogs (children of this script: outside the gate's processes)."""
    procs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(count)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait(timeout=10)


def _write_project(
    folder: Path, *, burn_ms: float, users: int, seconds: float, budgets: str,
    baseline_ms: float | None = None,
) -> None:  # fmt: skip
    """The service, ``pytest.ini`` and ``thresholds.yaml`` of one case in ``folder``; with
    ``baseline_ms``, an A/B project whose baseline (``compare_to``) burns that."""
    folder.mkdir(parents=True, exist_ok=True)
    service = folder / "cpu_service.py"
    service.write_text(SERVICE, encoding="utf-8")
    (folder / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    compare_to = (
        ""
        if baseline_ms is None
        else f'compare_to: {{command: "{{python}} {service} {{port}} {baseline_ms}"}}\n'
    )
    text = THRESHOLDS.format(
        service=service, burn_ms=burn_ms, users=users, seconds=seconds, budgets=budgets,
        compare_to=compare_to,
    )  # fmt: skip
    (folder / "thresholds.yaml").write_text(text, encoding="utf-8")


def _project(folder: Path, args: argparse.Namespace, p95_ms: float) -> None:
    """(a)'s project: an absolute p95 budget."""
    _write_project(
        folder, burn_ms=args.burn_ms, users=args.users, seconds=args.seconds,
        budgets=f"p95_ms: {round(p95_ms, 2)}, error_rate: 0.05",
    )  # fmt: skip


def _hog_later(
    args: argparse.Namespace, seconds: float, done: threading.Event, hog_from: float
) -> None:
    """Hogs for ``--hog-share`` of ``seconds`` of load, from ``hog_from`` s of load."""
    start = 2.0 + 3.0 + hog_from  # service and Locust start, warm-up
    if done.wait(start):
        return
    with hogs(args.hogs):
        done.wait(args.hog_share * seconds)


def run_once(
    folder: Path, args: argparse.Namespace, *, hog: bool, seconds: float,
    hog_from: float | None = None,
) -> Run:  # fmt: skip
    """One ``pytest thresholds.yaml::cpu`` in ``folder``; its result from the JSON file.
    The hogs start ``hog_from`` s after the warm-up (default: a quarter of the load)."""
    results = folder / "results" / f"run-{time.monotonic_ns()}"
    command = [
        sys.executable, "-m", "pytest", "thresholds.yaml::cpu", "-q", "-p", "no:cacheprovider",
        f"--perfgate-results-dir={results}", "--perfgate-min-duration=10s",
    ]  # fmt: skip
    done = threading.Event()
    start = 0.25 * seconds if hog_from is None else hog_from
    hogger = threading.Thread(target=_hog_later, args=(args, seconds, done, start), daemon=True)
    began = time.monotonic()
    if hog:
        hogger.start()
    try:
        done_run = subprocess.run(
            command, cwd=folder, capture_output=True, text=True, timeout=seconds + 180
        )
    finally:
        done.set()
        if hog:
            hogger.join()
    wall = time.monotonic() - began
    found = sorted(results.glob("*_cpu*.json"), key=lambda p: p.stat().st_mtime)
    if not found:  # counted as an ERROR, and the benchmark goes on with the next run
        tail = (done_run.stdout + done_run.stderr).strip().splitlines()[-3:]
        why = f"no result (exit {done_run.returncode}): {' | '.join(tail)}"[:300]
        return Run("ERROR", False, 0.0, 0.0, wall, "no result", why)
    data: dict[str, Any] = json.loads(found[-1].read_text(encoding="utf-8"))
    return _run(data, wall)


def _run(data: dict[str, Any], wall: float) -> Run:
    """A ``Run`` from a JSON result (an A/B result may lack the one-side figures)."""
    noise = data.get("noise") or {}
    sentence = "; ".join(noise.get("reasons") or [])
    reasons = data["verdict"]["reasons"]
    noisy = bool(sentence) and any(r.startswith(sentence) for r in reasons)
    outside = (
        f"outside {noise.get('outside_cores_mean', 0):.2f} cores mean, busy "
        f"{100 * noise.get('busy_share', 0):.0f} % of the run"
        if noise
        else "not sampled"
    )
    p95 = ((data.get("statistics") or {}).get("total") or {}).get("p95") or 0.0
    return Run(
        data["verdict"]["outcome"], noisy, float(p95), float(data.get("duration_s") or 0), wall,
        outside, reasons[0][:90] if reasons and not noisy else "", _changes(data),
    )  # fmt: skip


def _changes(data: dict[str, Any]) -> str:
    """``p50 +13.5 % [+4.9, +22.8]; ...``: the A/B changes of the total (empty if none)."""
    parts = []
    for c in (data.get("ab") or {}).get("changes") or []:
        if c.get("endpoint") != "Total" or c.get("change") is None:
            continue
        ci = c.get("ci")
        interval = f" [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]" if ci else ""
        key = str(c["key"]).removesuffix("_regression")
        parts.append(f"{key} {100 * c['change']:+.1f} %{interval}")
    return "; ".join(parts)


def _summary(case: str, runs: list[Run], args: argparse.Namespace) -> Counter[str]:
    """Print the verdicts' rates and the run times; return the counts by label."""
    counts = Counter(r.label for r in runs)
    n = len(runs)
    rate = ", ".join(f"{k} {v}/{n} ({100 * v / n:.0f} %)" for k, v in sorted(counts.items()))
    print(f"{case} with {args.hogs} hog(s) for {100 * args.hog_share:.0f} % of the planned load: "
          f"{rate}")  # fmt: skip
    print(
        f"    run time: load median {median(r.load_s for r in runs):.1f} s, whole run median "
        f"{median(r.wall_s for r in runs):.1f} s (max {max(r.wall_s for r in runs):.1f} s)"
    )
    return counts


def _runs(
    folder: Path, args: argparse.Namespace, *, seconds: float, p95: bool,
    hog_from: float | None = None,
) -> list[Run]:  # fmt: skip
    """``--runs`` runs with the hogs, each printed as it ends."""
    runs = []
    for i in range(args.runs):
        run = run_once(folder, args, hog=True, seconds=seconds, hog_from=hog_from)
        runs.append(run)
        figure = f"p95 {run.p95_ms:7.1f} ms, " if p95 else ""
        print(
            f"    run {i + 1:>2}/{args.runs}: {run.label:<12} {figure}{run.load_s:5.1f} s of "
            f"load, {run.wall_s:5.1f} s in all; {run.outside}"
        )
        if run.changes:
            print(f"        {run.changes}")
        if run.why:
            print(f"        {run.why}")
    return runs


def case_a(folder: Path, args: argparse.Namespace) -> None:
    """(a) an absolute budget at 1.3x the quiet P95, with the hogs."""
    _project(folder, args, 1e6)
    quiet = run_once(folder, args, hog=False, seconds=args.seconds)
    budget = 1.3 * quiet.p95_ms
    print(f"(a) quiet P95 {quiet.p95_ms:.1f} ms ({quiet.outside}); budget p95_ms {budget:.1f}")
    _project(folder, args, budget)
    counts = _summary("(a)", _runs(folder, args, seconds=args.seconds, p95=True), args)
    met = "met" if not counts["FAIL"] else "MISSED"
    print(f"    target: no FAIL while outside load was present -> {met}")


def ab_available() -> bool:
    """Whether this pytest knows ``--perfgate-against`` (the A/B mode of issue 14)."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--help", "-p", "no:cacheprovider"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    return "--perfgate-against" in done.stdout


def _ab_project(folder: Path, args: argparse.Namespace, candidate_ms: float) -> None:
    """The candidate burns ``candidate_ms`` a request, the baseline (``compare_to``)
    ``--burn-ms``."""
    _write_project(
        folder, burn_ms=candidate_ms, users=args.ab_users, seconds=args.ab_seconds,
        budgets=", ".join(f'{key}_regression: "{args.allowance}"' for key in args.keys.split(",")),
        baseline_ms=args.burn_ms,
    )  # fmt: skip


def case_b(folder: Path, args: argparse.Namespace) -> None:
    """(b) A/A under the hogs: a FAIL is a false regression (needs the A/B mode)."""
    print(f"(b) A/A: both sides burn {args.burn_ms:g} ms, {args.keys} regression {args.allowance}")
    _ab_project(folder, args, args.burn_ms)
    runs = _runs(folder, args, seconds=args.ab_seconds, p95=False, hog_from=args.ab_hog_from)
    counts = _summary("(b)", runs, args)
    met = "met" if not counts["FAIL"] else "MISSED"
    print(f"    target: no false regression -> {met} ({counts['FAIL']} FAIL)")


def case_c(folder: Path, args: argparse.Namespace) -> None:
    """(c) A/B with the candidate 10 % slower under the hogs: a FAIL is a detection."""
    slower = 1.1 * args.burn_ms
    print(f"(c) A/B: the candidate burns {slower:g} ms, the baseline {args.burn_ms:g} ms")
    _ab_project(folder, args, slower)
    runs = _runs(folder, args, seconds=args.ab_seconds, p95=False, hog_from=args.ab_hog_from)
    counts = _summary("(c)", runs, args)
    print(f"    detected (FAIL) in {counts['FAIL']}/{args.runs} runs (target: 18 of 20)")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 runs a case")
    parser.add_argument("--runs", type=int, default=20, help="runs a case (default 20)")
    parser.add_argument("--seconds", type=float, default=30, help="load per run (default 30)")
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--burn-ms", type=float, default=6.0, help="CPU per request (ms)")
    parser.add_argument("--hogs", type=int, default=2, help="CPU hogs (default 2)")
    parser.add_argument("--hog-share", type=float, default=0.5, help="of the load (default 0.5)")
    parser.add_argument("--allowance", default="5%", help="the regression allowance of (b), (c)")
    parser.add_argument(
        "--keys",
        default="p50,p95",
        help="percentiles judged in (b), (c): p95, or p50,p95 (default p50,p95)",
    )
    parser.add_argument("--ab-seconds", type=float, default=120, help="load per A/B run (2 min)")
    parser.add_argument("--ab-users", type=int, default=16, help="users of an A/B run")
    parser.add_argument(
        "--ab-hog-from", type=float, default=2.0, help="A/B: hogs from this many s of load (2)"
    )
    parser.add_argument("--cases", default="abc", help="which cases to run (default abc)")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.ab_seconds = 3, min(args.ab_seconds, 40)
    print(
        f"noise robustness: {os.cpu_count()} cores, {args.runs} runs a case, {args.seconds:g} s "
        f"of load a run, {args.hogs} hog(s), {args.burn_ms:g} ms CPU a request"
    )
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="perfgate-noise-") as tmp:
        folder = Path(tmp)
        if "a" in args.cases:
            case_a(folder / "a", args)
        ab = ("b" in args.cases or "c" in args.cases) and ab_available()
        for case, run in (("b", case_b), ("c", case_c)):
            if case not in args.cases:
                continue
            if ab:
                run(folder / case, args)
            else:
                print(f"({case}) skipped: A/B mode not available")
    print(f"done in {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
