"""Soak: the medium scenario for a long while; does the service's memory or latency drift?

    .venv/bin/python benchmarks/soak.py [--duration 10m] [--url URL] [--results DIR]

Runs thresholds.yaml's ``medium`` scenario (50 users, 0.2-1 s between requests, the
``/predict`` tasks) for ``--duration`` (default 10 minutes; ``60s`` for a quick check) with
the plugin's engine (``runner.run_load``) against ``--url``, or against a
``python -m service`` it starts on a free 127.0.0.1 port and stops afterwards. It reads the
service's resident memory (and GPU memory where the service has a GPU) from ``/metrics``
at the start, once a minute and at the end, then prints them, the growth, and each minute's
request count, error count and P95 (exact, from every sample; the scenario's warm-up
excluded). Target: RSS growth under 50 MB over 10 minutes.

Exit status 0 when the growth is under ``--max-growth-mb`` (default 50), 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pytest_perfgate.config import ServiceSpec, load_thresholds, parse_duration  # noqa: E402
from pytest_perfgate.core.stats import Sample, percentile  # noqa: E402
from pytest_perfgate.load.driver import Progress  # noqa: E402
from pytest_perfgate.load.locust_driver import run_load  # noqa: E402
from pytest_perfgate.target.process import ManagedService, ServiceError  # noqa: E402

READY_TIMEOUT_S = 120.0
RSS = "service_process_resident_memory_bytes"
GPU = "service_gpu_memory_used_bytes"


@dataclass(frozen=True)
class Reading:
    elapsed_s: float
    rss_mb: float
    gpu_mb: float | None


def metric(text: str, name: str) -> float | None:
    values = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]
    return sum(values) if values else None


def read(url: str, elapsed_s: float) -> Reading:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    gpu = metric(text, GPU)
    return Reading(elapsed_s, (metric(text, RSS) or 0.0) / 1e6, None if gpu is None else gpu / 1e6)


@contextlib.contextmanager
def started_service(log: Path) -> Iterator[str]:
    """``python -m service`` on a free port until ready; its process group ended on exit."""
    spec = ServiceSpec(
        command="{python} -m service --port {port}",
        ready_path="/ready",
        startup_timeout_s=READY_TIMEOUT_S,
    )
    try:
        with ManagedService(spec, log, cwd=ROOT) as service:
            yield service.url
    except ServiceError as exc:
        raise SystemExit(str(exc)) from None


def soak(url: str, duration_s: float, results: Path) -> tuple[list[Reading], list[Sample], float]:
    scenario = load_thresholds(ROOT / "thresholds.yaml").scenarios["medium"]
    scenario = scenario.with_overrides(duration_s=duration_s)
    readings = [read(url, 0.0)]

    def every_minute(progress: Progress) -> None:
        if progress.elapsed_s >= 60 * len(readings):
            readings.append(read(url, progress.elapsed_s))
            last = readings[-1]
            print(f"  {last.elapsed_s:5.0f} s  RSS {last.rss_mb:7.1f} MB", flush=True)

    raw = run_load(scenario, url, results, "soak", on_progress=every_minute, cwd=ROOT)
    readings.append(read(url, raw.duration_s))
    return readings, list(raw.samples), scenario.warmup_s


def report(readings: list[Reading], samples: list[Sample], warmup_s: float) -> float:
    first, last = readings[0], readings[-1]
    growth = last.rss_mb - first.rss_mb
    print(f"RSS start {first.rss_mb:.1f} MB, end {last.rss_mb:.1f} MB, growth {growth:+.1f} MB")
    if first.gpu_mb is not None and last.gpu_mb is not None:
        print(f"GPU memory start {first.gpu_mb:.1f} MB, end {last.gpu_mb:.1f} MB")
    print("minute  requests  errors  p95 ms  RSS at its end")
    minutes = int(max((s.t for s in samples), default=0) // 60) + 1
    for minute in range(minutes):
        window = sorted(s.ms for s in samples if warmup_s <= s.t and s.t // 60 == minute)
        errors = sum(not s.ok for s in samples if warmup_s <= s.t and s.t // 60 == minute)
        p95 = f"{percentile(window, 0.95):6.1f}" if window else "     -"
        # the last minute may be partial: it ends with the last reading
        ended = [r for r in readings if r.elapsed_s >= 60 * (minute + 1)] or [last]
        rss = f"{ended[0].rss_mb:.1f} MB"
        print(f"{minute + 1:6d}  {len(window):8d}  {errors:6d}  {p95}  {rss}")
    return growth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", default="10m", help="such as 90s or 10m (default 10m)")
    parser.add_argument("--url", help="a service already running (default: start one)")
    parser.add_argument("--results", type=Path, help="where Locust's files go (default: temp)")
    parser.add_argument("--max-growth-mb", type=float, default=50.0)
    args = parser.parse_args(argv)
    duration_s = parse_duration(args.duration, "--duration")
    with tempfile.TemporaryDirectory(prefix="perfgate-soak-") as temp:
        results = args.results or Path(temp)
        with contextlib.ExitStack() as stack:
            url = args.url or stack.enter_context(started_service(results / "service.log"))
            print(f"soak: medium scenario for {duration_s:g} s against {url}", flush=True)
            readings, samples, warmup_s = soak(url, duration_s, results)
        growth = report(readings, samples, warmup_s)
    return 0 if growth < args.max_growth_mb else 1


if __name__ == "__main__":
    raise SystemExit(main())
