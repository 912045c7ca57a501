"""target.machine: the sampler reads /proc; a CPU hog it does not know shows as outside CPU.

The /proc tests read this machine's own /proc while a hog subprocess spins; the margins
hold on a busy 2-core machine (the hog gets at least a third of a core). The arithmetic
is tested on a /proc folder written by the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_perfgate.core.noise import assess
from pytest_perfgate.target.machine import LOADGEN_MARK, MachineSampler, on_this_machine

pytestmark = pytest.mark.skipif(not Path("/proc/stat").exists(), reason="Linux /proc only")

HOG = "import time\nend = time.monotonic() + 30\nwhile time.monotonic() < end: pass"


@pytest.fixture
def hog() -> Iterator[subprocess.Popen[bytes]]:
    """A process that spins one core (for 30 s at most), tagged as the load generator."""
    proc = subprocess.Popen([sys.executable, "-c", HOG, LOADGEN_MARK.decode()])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def test_a_hog_outside_the_known_processes_raises_outside_cpu(
    hog: subprocess.Popen[bytes],
) -> None:
    stop_unknown = MachineSampler(0.25, roots=()).watch()  # nothing known: all is outside
    stop_known = MachineSampler(0.25).watch()  # this process and its children: the hog too
    time.sleep(2.0)
    unknown, known = stop_unknown(), stop_known()
    assert len(unknown.samples) >= 4 and unknown.cores == len(os.sched_getaffinity(0))
    # on a busy machine the hog may get a fifth of a core; the figures move with what it got
    hog_cpu = _mean([s.known_cores for s in known.samples])  # the hog is a child of ours
    assert hog_cpu > 0.05
    outside_unknown = _mean([s.outside_cores for s in unknown.samples])
    outside_known = _mean([s.outside_cores for s in known.samples])
    assert outside_unknown - outside_known > 0.5 * hog_cpu  # the same machine, hog unknown
    peaks = [s.loadgen_peak for s in known.samples if s.loadgen_peak is not None]
    assert peaks and max(peaks) > 0.05  # its command line names the load generator


def test_a_quiet_child_adds_nothing_to_the_known_cpu() -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        time.sleep(0.3)  # past the interpreter's start
        stop = MachineSampler(0.25, roots=(sleeper.pid,)).watch()
        time.sleep(1.0)
        record = stop()
    finally:
        sleeper.kill()
        sleeper.wait(timeout=10)
    assert record.samples and all(s.known_cores < 0.1 for s in record.samples)


def test_an_external_service_on_this_machine_is_not_known() -> None:
    record = MachineSampler(roots=()).watch("http://127.0.0.1:8000", started_here=False)()
    assert record.service_known is False
    assert MachineSampler().watch("https://api.example.com", started_here=False)().service_known


@pytest.mark.parametrize(
    ("url", "here"),
    [
        ("http://127.0.0.1:8000", True),
        ("http://localhost", True),
        ("http://[::1]:80", True),
        ("http://10.0.0.5:8000", False),
        ("https://api.example.com", False),
    ],
)
def test_on_this_machine_knows_loopback_hosts(url: str, here: bool) -> None:
    assert on_this_machine(url) is here


# --- the arithmetic, on a /proc folder of our own -------------------------------------


def _fake_proc(
    root: Path,
    *,
    cpu: str,
    procs: dict[int, tuple[int, int, int]],
    psi: int | None = None,
    reaped: dict[int, int] | None = None,
) -> None:
    """``cpu``: the numbers of /proc/stat's cpu line; ``procs``: pid -> (ppid, ticks, start);
    ``reaped``: pid -> CPU ticks of its children that ended (cutime)."""
    root.mkdir(exist_ok=True)
    (root / "stat").write_text(f"cpu  {cpu}\ncpu0 {cpu}\n")
    for old in root.iterdir():
        if old.name.isdigit():
            for f in old.iterdir():
                f.unlink()
            old.rmdir()
    for pid, (ppid, ticks, start) in procs.items():
        (root / str(pid)).mkdir()
        cutime = str((reaped or {}).get(pid, 0))
        fields = ["S", str(ppid), *["0"] * 9, str(ticks), "0", cutime, *["0"] * 5, str(start)]
        (root / str(pid) / "stat").write_text(f"{pid} (odd) name) " + " ".join(fields) + "\n")
        (root / str(pid) / "cmdline").write_bytes(b"python\0-m\0pytest_perfgate.load.child\0")
    if psi is not None:
        (root / "pressure").mkdir(exist_ok=True)
        (root / "pressure" / "memory").write_text(
            f"some avg10=0.00 avg60=0.00 avg300=0.00 total={psi}\nfull total=0\n"
        )


def test_outside_cpu_is_the_machine_busy_time_less_the_known_processes(tmp_path: Path) -> None:
    tick = os.sysconf("SC_CLK_TCK")
    proc = tmp_path / "proc"
    # user nice system idle iowait irq softirq steal
    _fake_proc(proc, cpu="0 0 0 0 0 0 0 0", procs={10: (1, 0, 5), 11: (10, 0, 6)}, psi=0)
    sampler = MachineSampler(roots=(10,), proc=proc)
    before = sampler.snapshot()
    busy, steal = 3 * tick // 2, tick // 2  # over "one second": 1.5 cores busy, 0.5 stolen
    cpu = f"{busy} 0 0 {tick - busy + tick // 2} 0 0 0 {steal}"
    _fake_proc(proc, cpu=cpu, procs={10: (1, tick // 4, 5), 11: (10, tick // 4, 6)}, psi=300_000)
    after = sampler.snapshot()
    assert before is not None and after is not None
    sample = sampler.sample(before, after, 1.0)
    interval = sample.interval_s
    assert sample.busy_cores * interval == pytest.approx(1.5)
    assert sample.known_cores * interval == pytest.approx(0.5)  # the two known processes
    assert sample.steal == pytest.approx(0.25)  # of every CPU tick of the interval
    assert sample.memory_stall is not None and sample.memory_stall * interval == pytest.approx(0.3)
    assert sample.loadgen_peak is not None and sample.loadgen_peak * interval == pytest.approx(0.25)


def test_a_process_that_started_between_samples_counts_all_its_time(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    tick = os.sysconf("SC_CLK_TCK")
    _fake_proc(proc, cpu="0 0 0 0", procs={10: (1, 100, 5)})
    sampler = MachineSampler(roots=(10,), proc=proc)
    before = sampler.snapshot()
    # pid 10 ended and a new process took its number; 12 is new below it
    _fake_proc(proc, cpu=f"{tick} 0 0 0", procs={10: (1, tick // 2, 9), 12: (10, tick // 2, 9)})
    after = sampler.snapshot()
    assert before is not None and after is not None
    sample = sampler.sample(before, after, 1.0)
    assert sample.known_cores * sample.interval_s == pytest.approx(1.0)
    assert sample.memory_stall is None and sample.memory_available is None  # neither file


def test_without_proc_stat_the_sampler_records_nothing(tmp_path: Path) -> None:
    record = MachineSampler(0.05, proc=tmp_path).watch()()
    assert record.samples == ()
    assert assess(record.samples, record.cores) is None


def test_a_known_child_that_ended_between_samples_still_counts(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    tick = os.sysconf("SC_CLK_TCK")
    # 10 (known) runs child 11, which has used half a second so far
    _fake_proc(proc, cpu="0 0 0 0", procs={10: (1, 0, 5), 11: (10, tick // 2, 6)})
    sampler = MachineSampler(roots=(10,), proc=proc)
    before = sampler.snapshot()
    # 11 used a quarter second more, ended, and 10 waited for it: 10's cutime holds its life
    life = tick // 2 + tick // 4
    _fake_proc(proc, cpu=f"{tick} 0 0 0", procs={10: (1, 0, 5)}, reaped={10: life})
    after = sampler.snapshot()
    assert before is not None and after is not None
    sample = sampler.sample(before, after, 1.0)
    assert sample.known_cores * sample.interval_s == pytest.approx(0.25)  # only the new part


def test_in_a_cpuset_only_its_own_cpus_count(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    proc.mkdir()
    tick = os.sysconf("SC_CLK_TCK")
    stat = "cpu  {a} 0 0 0\ncpu0 {b} 0 0 0\ncpu1 {c} 0 0 0\ncpu2 0 0 0 0\n"
    (proc / "stat").write_text(stat.format(a=0, b=0, c=0))
    sampler = MachineSampler(roots=(), proc=proc, cpus=(1,))
    before = sampler.snapshot()
    # the machine used 3 CPUs' worth; cpu1, ours, was busy for a second
    (proc / "stat").write_text(stat.format(a=3 * tick, b=2 * tick, c=tick))
    after = sampler.snapshot()
    assert before is not None and after is not None
    sample = sampler.sample(before, after, 1.0)
    assert sample.busy_cores * sample.interval_s == pytest.approx(1.0)
    assert sampler.watch()().cores == 1
