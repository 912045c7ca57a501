"""Load capacity: requests/s the plugin's engine drives, beside bare Locust on the same user.

    .venv/bin/python benchmarks/load_capacity.py [--seconds 15] [--users 20] [--repeat 1]
                                                 [--server auto|nginx|asyncio]

Four runs a round, each ``--seconds`` long against ``GET /fast`` of a local server that
answers ``200 ok`` at once, with ``--users`` users that never wait (a ``FastHttpUser``, the
class ``run_load`` generates for a tasks scenario):

- ``bare, 1 process``: ``locust --headless -f <locustfile> -u U -r U -t Ts``;
- ``plugin, 1 process``: ``runner.run_load`` with the equivalent tasks scenario;
- ``bare, 2 processes``: ``locust --master --headless --expect-workers 2`` and two
  ``locust --worker`` (Locust's ``--processes`` is experimental);
- ``plugin, 2 processes``: the same scenario with ``processes: 2``.

req/s counts the requests that started within the run, divided by ``--seconds``. CPU is
in percent of one core over the run: the load generator's (every process of it; for the
plugin the pytest-side parent too, which parses and keeps every sample) and the server's;
"CPU us/req" is the load generator's CPU time per request, which other tenants of a shared
machine disturb far less than req/s. It prints the median of ``--repeat`` rounds and the
ratios plugin / bare and 2 processes / 1 process.

The server is nginx (one process) when ``nginx`` is on PATH (``apt-get install
nginx-light``), else a minimal asyncio HTTP server in this file: on a 2-core machine a
Python server takes a large share of the CPU the load generator needs, so the figures
then measure the machine more than the engine. A server on the same cores always does
so to a degree: 2 processes reach 2x only with a core each to spare.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import functools
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pytest_perfgate.config import Scenario, Task  # noqa: E402
from pytest_perfgate.load import locust_driver as runner  # noqa: E402 - the repository root is not installed everywhere
from pytest_perfgate.target.process import free_port  # noqa: E402

LOCUSTFILE = '''\
from locust import FastHttpUser, constant, task


class ScenarioUser(FastHttpUser):
    """What run_load generates for the tasks scenario [GET /fast]."""

    wait_time = constant(0)
    network_timeout = connection_timeout = 10.0

    @task
    def fast(self):
        self.client.request("GET", "/fast", name="/fast")
'''

NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "ok"; }}
    }}
}}
"""

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


# --- the server ---------------------------------------------------------------------------


class _Answer(asyncio.Protocol):
    """One ``200 ok`` per request head; bodies are not expected (GET only)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        heads = self.buffer.count(b"\r\n\r\n")
        if heads:
            self.buffer = self.buffer.rsplit(b"\r\n\r\n", 1)[1]
            self.transport.write(RESPONSE * heads)


def serve_asyncio(port: int) -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Answer, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def await_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"the server did not listen on port {port} within {timeout_s:g} s")


@contextlib.contextmanager
def server(kind: str, workdir: Path) -> Iterator[tuple[str, psutil.Process, str]]:
    """Start the server; yield its URL, its process and a description; always stop it."""
    port = free_port()
    if kind == "nginx":
        conf = workdir / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=workdir, port=port))
        command = ["nginx", "-p", str(workdir), "-c", str(conf)]
        what = "nginx, 1 process"
    else:
        command = [sys.executable, __file__, "--serve", str(port)]
        what = "asyncio (Python), 1 process"
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await_port(port)
        yield f"http://127.0.0.1:{port}", psutil.Process(proc.pid), what
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- the runs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    requests: int
    loadgen_cpu_s: float
    server_cpu_s: float


def cpu_s(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def measured(run: Callable[[], int], server_proc: psutil.Process) -> Result:
    """Run; CPU of this process and of every child it waited for, and of the server."""
    mine = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    served = server_proc.cpu_times()
    requests = run()
    after = server_proc.cpu_times()
    loadgen = (
        cpu_s(resource.getrusage(resource.RUSAGE_SELF)) - cpu_s(mine)
        + cpu_s(resource.getrusage(resource.RUSAGE_CHILDREN)) - cpu_s(children)
    )  # fmt: skip
    return Result(requests, loadgen, after.user + after.system - served.user - served.system)


def plugin_run(url: str, out: Path, users: int, seconds: float, processes: int) -> int:
    scenario = Scenario(
        name="capacity", users=users, spawn_rate=users, duration_s=seconds,
        tasks=(Task("GET", "/fast", "GET /fast"),), request_timeout_s=10.0, processes=processes,
    )  # fmt: skip
    raw = runner.run_load(scenario, url, out, f"plugin{processes}_{time.monotonic_ns()}")
    if raw.problems:
        print(f"  (plugin, {processes} process(es): {'; '.join(raw.problems)})")
    return sum(1 for s in raw.samples if s.t < seconds)  # started within the run


def bare_run(url: str, out: Path, users: int, seconds: float, processes: int) -> int:
    locustfile = out / "capacity_locustfile.py"
    locustfile.write_text(LOCUSTFILE)
    base = out / f"bare{processes}_{time.monotonic_ns()}"
    common = ["-f", str(locustfile), "--loglevel", "WARNING"]
    head = [sys.executable, "-m", "locust", *common, "--headless", "--host", url]
    head += ["-u", str(users), "-r", str(users), "-t", f"{seconds:g}s", "--csv", str(base)]
    worker: list[str] = []
    if processes > 1:
        port = free_port()
        head += ["--master", "--expect-workers", str(processes), "--master-bind-port", str(port)]
        worker = [sys.executable, "-m", "locust", *common, "--worker", "--master-port", str(port)]
    with open(f"{base}.log", "wb") as log:
        workers = [
            subprocess.Popen(worker, stdout=log, stderr=log) for _ in range(processes) if worker
        ]
        try:
            subprocess.run(head, stdout=log, stderr=log, check=False, timeout=seconds + 120)
        finally:
            for proc in workers:
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    with open(f"{base}_stats.csv", newline="") as f:
        total = next(row for row in csv.DictReader(f) if row["Name"] == "Aggregated")
    return int(total["Request Count"])


# --- the report ------------------------------------------------------------------------------

RUNS = (("bare", 1), ("plugin", 1), ("bare", 2), ("plugin", 2))


def report(results: dict[tuple[str, int], list[Result]], seconds: float) -> None:
    def rps(key: tuple[str, int]) -> float:
        return median(r.requests for r in results[key]) / seconds

    def cost_us(key: tuple[str, int]) -> float:
        return median(1e6 * r.loadgen_cpu_s / r.requests for r in results[key])

    print(f"\n{'run':<22}{'req/s':>8}{'loadgen CPU %':>15}{'CPU us/req':>12}{'server CPU %':>14}")
    for key in RUNS:
        loadgen = median(r.loadgen_cpu_s for r in results[key]) / seconds * 100
        served = median(r.server_cpu_s for r in results[key]) / seconds * 100
        name = f"{key[0]}, {key[1]} process{'es' if key[1] > 1 else ''}"
        print(f"{name:<22}{rps(key):>8.0f}{loadgen:>15.0f}{cost_us(key):>12.1f}{served:>14.0f}")
    print()
    for processes in (1, 2):
        ratio = rps(("plugin", processes)) / rps(("bare", processes))
        cost = cost_us(("bare", processes)) / cost_us(("plugin", processes))
        print(
            f"plugin / bare, {processes} process(es): {ratio:.3f} in req/s, "
            f"{cost:.3f} in requests per CPU second"
        )
    for kind in ("bare", "plugin"):
        print(f"2 processes / 1 process, {kind}: {rps((kind, 2)) / rps((kind, 1)):.2f}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each run")
    parser.add_argument("--users", type=int, default=20, help="users (in all) of each run")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of the four runs")
    parser.add_argument("--server", choices=("auto", "nginx", "asyncio"), default="auto")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.serve:
        serve_asyncio(args.serve)
        return
    kind = args.server
    if kind == "auto":
        kind = "nginx" if shutil.which("nginx") else "asyncio"
    results: dict[tuple[str, int], list[Result]] = {key: [] for key in RUNS}
    with tempfile.TemporaryDirectory() as tmp, server(kind, Path(tmp)) as (url, proc, what):
        print(f"server: {what}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}")
        print(f"{args.users} users, {args.seconds:g} s a run, {args.repeat} round(s)")
        for round_ in range(args.repeat):
            for name, processes in RUNS:
                drive = functools.partial(
                    plugin_run if name == "plugin" else bare_run,
                    url, Path(tmp), args.users, args.seconds, processes,
                )  # fmt: skip
                result = measured(drive, proc)
                results[(name, processes)].append(result)
                print(
                    f"  round {round_ + 1}: {name}, {processes} process(es): "
                    f"{result.requests / args.seconds:.0f} req/s"
                )
        report(results, args.seconds)
        print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
