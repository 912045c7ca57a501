"""The machine during a load run: a sampler thread that reads ``/proc`` about twice a second.

Each sample (``core.noise.MachineSample``) holds the machine's busy CPU and steal time
(``/proc/stat``), the CPU of the processes the gate knows (``/proc/<pid>/stat``: this
process with its threads and every process it started, which covers the load generator
and a service the gate started; the load generator's busiest process is the Locust child
or one of its workers), and memory pressure (``/proc/pressure/memory``, else
``MemAvailable``). Outside CPU = busy - known, in cores; ``core.noise.assess`` judges it.

A known process that ended between two samples still counts (its parent's waited-for
children time grows by it); only the CPUs this process may run on count (a cpuset).
Measured on a 2-core machine with every process counted as known, the CPU left
unattributed (kernel threads, orphans) was 0.02-0.04 cores on average and 0.24 at most
(0.12 during a light run): below the default 0.5 cores of ``--perfgate-noise-cores``.

Linux only: where ``/proc/stat`` is missing the sampler records nothing (the result then
says the machine was not sampled). No psutil: a sample costs a few milliseconds of CPU.
A service the gate did not start (``--perfgate-url``) on this machine cannot be told from
outside load: the record says so (``service_known``) and the finding only notes it.
"""

from __future__ import annotations

import ipaddress
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from pytest_perfgate.core.noise import MachineSample

__all__ = [
    "LOADGEN_MARK",
    "SERVICE_ROOTS",
    "MachineRecord",
    "MachineSampler",
    "Sampler",
    "StopSampling",
    "on_this_machine",
]

#: processes of a service the gate started that are not in this process's tree: a
#: container's monitor (conmon, or the engine's shim) and all it runs, which the engine
#: starts outside it. ``target.container`` adds them at start and removes them at stop;
#: every sampler counts their trees as known, as it does this process's.
SERVICE_ROOTS: set[int] = set()

#: the load generator's command line names its module (``python -m pytest_perfgate.load.child``)
LOADGEN_MARK = b"pytest_perfgate.load.child"
_TICK = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0


@dataclass(frozen=True)
class MachineRecord:
    """What the sampler saw over one run."""

    samples: tuple[MachineSample, ...]
    cores: int
    service_known: bool  # False: the service runs here but outside the gate's processes
    started: float | None = None  # time.monotonic() when sampling began: samples' t = 0


StopSampling = Callable[[], MachineRecord]


class Sampler(Protocol):
    """What the gate needs of a machine sampler (``MachineSampler``; tests give a fake)."""

    def watch(self, service_url: str | None = None, *, started_here: bool = True) -> StopSampling:
        """Start sampling; the returned function stops it and returns what it saw."""
        ...


@dataclass(frozen=True)
class _Proc:
    ppid: int
    start: int  # start time in ticks since boot: (pid, start) names one process
    ticks: int  # user + system CPU time of the process (all its threads)
    reaped: int = 0  # user + system CPU time of its children that ended and were waited for


@dataclass(frozen=True)
class _Snapshot:
    when: float  # time.monotonic()
    busy: int  # machine-wide busy ticks (all CPUs), steal excluded
    total: int  # every tick of every CPU
    steal: int
    procs: Mapping[int, _Proc]
    memory_stall_us: int | None  # PSI "some" total, microseconds


def on_this_machine(url: str) -> bool:
    """Whether ``url``'s host is this machine (a loopback address or ``localhost``)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:  # the process ended, or the file does not exist here
        return None


def _numbers(line: bytes) -> list[int]:
    """The first 8 numbers of a ``cpu`` line of ``/proc/stat`` (zeros where missing)."""
    fields = [int(f) for f in line.split()[1:9]]
    return fields + [0] * (8 - len(fields))


def _cpu_ticks(proc: Path, cpus: frozenset[int] | None = None) -> tuple[int, int, int] | None:
    """(busy, total, steal) ticks from ``/proc/stat``: of the CPUs ``cpus`` (those this
    process may run on) where they are fewer than the machine's, else of all of them."""
    text = _read(proc / "stat")
    if text is None:
        return None
    lines = text.split(b"\n")
    each = {int(ln.split()[0][3:]): ln for ln in lines if ln[:3] == b"cpu" and ln[3:4].isdigit()}
    if cpus and len(each) > len(cpus):  # a cpuset (a container, taskset): only our CPUs
        rows = [_numbers(line) for cpu, line in each.items() if cpu in cpus]
        return _ticks([sum(column) for column in zip(*rows, strict=True)])
    return _ticks(_numbers(lines[0]))


def _ticks(fields: list[int]) -> tuple[int, int, int]:
    """(busy, total, steal) from the numbers of a ``cpu`` line."""
    user, nice, system, idle, iowait, _irq, _softirq, steal = fields
    # guest time is inside user; interrupts are left out: the run's own network traffic
    # (loopback) is handled there and no process is charged for it
    busy = user + nice + system
    return busy, busy + idle + iowait + steal, steal


def _process(text: bytes) -> _Proc | None:
    """ppid, start time and CPU ticks from one ``/proc/<pid>/stat`` line."""
    rest = text[text.rfind(b")") + 2 :].split()  # the command may hold spaces and parens
    if len(rest) < 20:
        return None
    return _Proc(
        ppid=int(rest[1]),
        start=int(rest[19]),
        ticks=int(rest[11]) + int(rest[12]),
        reaped=int(rest[13]) + int(rest[14]),
    )


def _processes(proc: Path) -> dict[int, _Proc]:
    found: dict[int, _Proc] = {}
    try:
        names = os.listdir(proc)
    except OSError:
        return found
    for name in names:
        text = _read(proc / name / "stat") if name.isdigit() else None
        if text is not None and (parsed := _process(text)) is not None:
            found[int(name)] = parsed
    return found


def _memory_stall_us(proc: Path) -> int | None:
    text = _read(proc / "pressure" / "memory")
    if text is None or not text.startswith(b"some"):
        return None
    total = text.split(b"\n", 1)[0].rsplit(b"total=", 1)[-1]
    return int(total) if total.strip().isdigit() else None


def _memory_available(proc: Path) -> float | None:
    """MemAvailable / MemTotal from ``/proc/meminfo``."""
    text = _read(proc / "meminfo")
    if text is None:
        return None
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(b":")
        values[key] = rest.split()[0] if rest.split() else b"0"
    try:
        return int(values[b"MemAvailable"]) / max(int(values[b"MemTotal"]), 1)
    except (KeyError, ValueError):
        return None


def _descendants(procs: Mapping[int, _Proc], roots: Iterable[int]) -> set[int]:
    """``roots`` (those alive) and every process below them."""
    children: dict[int, list[int]] = {}
    for pid, p in procs.items():
        children.setdefault(p.ppid, []).append(pid)
    found, todo = set(), [r for r in roots if r in procs]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo += children.get(pid, [])
    return found


class MachineSampler:
    """Samples the machine in a thread while a run goes on; ``watch`` starts it.

    ``roots``: the processes whose trees the gate knows (this process by default: pytest,
    and through it the load generator and a service the gate started). ``proc`` is the
    ``/proc`` folder to read (a test may point it elsewhere); ``cpus`` the CPUs that count
    (by default those this process may run on: in a container with a cpuset, its own).
    A CPU quota without a cpuset (``docker --cpus``) is not seen: the machine's other
    tenants then count as outside load.
    """

    def __init__(
        self,
        interval_s: float = 0.5,
        *,
        roots: Iterable[int] | None = None,
        proc: Path = Path("/proc"),
        cpus: Iterable[int] | None = None,
    ) -> None:
        self.interval_s = interval_s
        self.roots = tuple(roots) if roots is not None else (os.getpid(),)
        self.proc = proc
        if cpus is None and hasattr(os, "sched_getaffinity"):
            cpus = os.sched_getaffinity(0)
        self.cpus = frozenset(cpus) if cpus is not None else None
        self._loadgen: dict[tuple[int, int], bool] = {}  # (pid, start) -> is the Locust child

    def watch(self, service_url: str | None = None, *, started_here: bool = True) -> StopSampling:
        """Start sampling; the returned function stops it and returns the record.

        ``started_here`` False with a ``service_url`` on this machine: the service's CPU
        cannot be separated from outside load (``MachineRecord.service_known`` False).
        """
        known = started_here or service_url is None or not on_this_machine(service_url)
        cores = len(self.cpus) if self.cpus else os.cpu_count() or 1
        if _cpu_ticks(self.proc) is None:
            return lambda: MachineRecord((), cores, known)
        samples: list[MachineSample] = []
        done = threading.Event()
        started = time.monotonic()
        thread = threading.Thread(
            target=self._loop, args=(samples, done, started), name="perfgate-machine",
            daemon=True,
        )  # fmt: skip
        thread.start()

        def stop() -> MachineRecord:
            done.set()
            thread.join(timeout=5.0)
            return MachineRecord(tuple(samples), cores, known, started)

        return stop

    def _loop(self, samples: list[MachineSample], done: threading.Event, started: float) -> None:
        previous = self.snapshot()
        while previous is not None:
            stopping = done.wait(self.interval_s)
            current = self.snapshot()
            if current is None or (stopping and current.when - previous.when < 0.1):
                return  # a last sliver of an interval says nothing
            samples.append(self.sample(previous, current, current.when - started))
            if stopping:
                return
            previous = current

    def snapshot(self) -> _Snapshot | None:
        """The machine now (None where ``/proc/stat`` cannot be read)."""
        cpu = _cpu_ticks(self.proc, self.cpus)
        if cpu is None:
            return None
        busy, total, steal = cpu
        return _Snapshot(
            time.monotonic(), busy, total, steal, _processes(self.proc),
            _memory_stall_us(self.proc),
        )  # fmt: skip

    def sample(self, before: _Snapshot, after: _Snapshot, t: float) -> MachineSample:
        """The interval between two snapshots as a ``MachineSample``."""
        interval = max(after.when - before.when, 1e-6)
        known = _descendants(after.procs, (*self.roots, *SERVICE_ROOTS))
        used = {pid: self._used(pid, before, after) for pid in known}
        loadgen = _descendants(after.procs, [p for p in known if self._is_loadgen(p, after)])
        total = max(after.total - before.total, 1)
        stall = (
            None
            if after.memory_stall_us is None or before.memory_stall_us is None
            else (after.memory_stall_us - before.memory_stall_us) / 1e6 / interval
        )
        return MachineSample(
            t=t,
            interval_s=interval,
            busy_cores=(after.busy - before.busy) / _TICK / interval,
            known_cores=(sum(used.values()) + self._reaped(known, before, after))
            / _TICK
            / interval,
            steal=(after.steal - before.steal) / total,
            loadgen_peak=max((used[p] for p in loadgen), default=0) / _TICK / interval
            if loadgen
            else None,
            memory_stall=stall,
            memory_available=_memory_available(self.proc) if stall is None else None,
        )

    @staticmethod
    def _reaped(known: set[int], before: _Snapshot, after: _Snapshot) -> int:
        """Ticks of known processes' children that ended between the snapshots.

        A parent's ``reaped`` time grows by a child's whole life when it waits for it; the
        part up to ``before`` was counted then (that child was alive), so only the rest is
        new. A child whose parent is not known (an orphan) is lost: never below zero.
        """
        gone: dict[int, int] = {}  # parent -> life of its children that ended, up to ``before``
        for pid, old in before.procs.items():
            new = after.procs.get(pid)
            if new is None or new.start != old.start:
                gone[old.ppid] = gone.get(old.ppid, 0) + old.ticks + old.reaped
        total = 0
        for pid in known:
            now, then = after.procs[pid], before.procs.get(pid)
            grown = (
                now.reaped if then is None or then.start != now.start else now.reaped - then.reaped
            )
            total += max(grown - gone.get(pid, 0), 0)
        return total

    @staticmethod
    def _used(pid: int, before: _Snapshot, after: _Snapshot) -> int:
        """Ticks ``pid`` used between the snapshots (all of them if it started since)."""
        now, then = after.procs[pid], before.procs.get(pid)
        if then is None or then.start != now.start:
            return now.ticks
        return max(now.ticks - then.ticks, 0)

    def _is_loadgen(self, pid: int, snap: _Snapshot) -> bool:
        key = (pid, snap.procs[pid].start)
        if key not in self._loadgen:
            cmdline = _read(self.proc / str(pid) / "cmdline") or b""
            self._loadgen[key] = LOADGEN_MARK in cmdline
        return self._loadgen[key]
