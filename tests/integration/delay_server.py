"""A tiny HTTP server with injected latency and errors, for tests that need a real peer.

Runs as its own process (``python tests/integration/delay_server.py --delay-ms 50``), binds
127.0.0.1 on a free port and prints one line ``listening on http://127.0.0.1:PORT`` on
stdout once it accepts connections. Stdlib only, so any test may start it.

Endpoints (any method; a request body is read and ignored):

- ``/fast``    waits a draw from the latency distribution, fails with ``--error-rate``
- ``/slow``    waits ``--slow-ms`` (default 1000), fails with ``--error-rate``
- ``/health``  answers at once, never fails
- ``/metrics`` answers at once with a small Prometheus text, never fails
- anything else: 404

Latency: ``--delay-ms 20`` (constant) or ``--lognormal MEDIAN_MS,SIGMA``; errors are 500s.
Draws come from one ``random.Random(--seed)``, so a run's distribution is reproducible.

In tests use ``running(...)`` (a context manager that always stops the process) or the
``delay_server`` fixture in ``conftest.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SCRIPT = Path(__file__).resolve()

#: the ``delay_server`` fixture: CLI arguments in, base URL out
StartServer = Callable[..., str]


def _lognormal_arg(text: str) -> tuple[float, float]:
    try:
        median, sigma = (float(x) for x in text.split(","))
    except ValueError:
        message = f"expected MEDIAN_MS,SIGMA such as 20,0.5, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None
    if median <= 0 or sigma < 0:
        raise argparse.ArgumentTypeError(f"median must be > 0 and sigma >= 0, got {text!r}")
    return median, sigma


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=0, help="port to bind (0: a free one)")
    latency = parser.add_mutually_exclusive_group()
    latency.add_argument("--delay-ms", type=float, default=0.0, help="constant latency of /fast")
    latency.add_argument(
        "--lognormal", type=_lognormal_arg, metavar="MEDIAN_MS,SIGMA",
        help="log-normal latency of /fast",
    )  # fmt: skip
    parser.add_argument("--slow-ms", type=float, default=1000.0, help="latency of /slow")
    parser.add_argument(
        "--error-rate", type=float, default=0.0, help="share of /fast and /slow answered with 500"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of latency and error draws")
    return parser.parse_args(argv)


def make_delay(args: argparse.Namespace, rng: random.Random) -> Callable[[], float]:
    """A function drawing the next /fast latency in seconds."""
    if args.lognormal is not None:
        median_ms, sigma = args.lognormal
        mu = math.log(median_ms)
        return lambda: rng.lognormvariate(mu, sigma) / 1000.0
    constant = args.delay_ms / 1000.0
    return lambda: constant


def make_handler(args: argparse.Namespace) -> type[BaseHTTPRequestHandler]:
    rng = random.Random(args.seed)
    lock = threading.Lock()  # Random is shared by the server's threads
    draw_fast = make_delay(args, rng)

    def draw(path: str) -> tuple[float, bool]:
        with lock:
            delay = draw_fast() if path == "/fast" else args.slow_ms / 1000.0
            return delay, rng.random() < args.error_rate

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a load generator expects
        # headers and body go out in two writes: without this, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every response
        disable_nagle_algorithm = True

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            path = self.path.split("?", 1)[0]
            if path in ("/fast", "/slow"):
                delay, fail = draw(path)
                time.sleep(delay)
                self._send(500 if fail else 200, {"path": path, "delay_ms": delay * 1000})
            elif path == "/health":
                self._send(200, {"status": "ok"})
            elif path == "/metrics":
                self._send(200, "# TYPE up gauge\nup 1\n", "text/plain; version=0.0.4")
            else:
                self._send(404, {"detail": f"no such path {path}"})

        def _send(self, status: int, body: object, content_type: str = "application/json") -> None:
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _answer

        def log_message(self, format: str, *args: object) -> None:
            pass  # one line per request would drown the test output

    return Handler


def serve(args: argparse.Namespace) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args))
    server.daemon_threads = True
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@contextlib.contextmanager
def running(*cli_args: str, timeout_s: float = 10.0) -> Iterator[str]:
    """Start the server with ``cli_args`` in a subprocess, yield its base URL, always stop it."""
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), *cli_args],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        url = _await_url(proc, timeout_s)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _await_url(proc: subprocess.Popen[str], timeout_s: float) -> str:
    assert proc.stdout is not None
    timer = threading.Timer(timeout_s, proc.kill)  # readline() has no timeout of its own
    timer.start()
    try:
        line = proc.stdout.readline()
    finally:
        timer.cancel()
    if not line.startswith("listening on "):
        raise RuntimeError(f"delay server did not start (exit code {proc.poll()}): {line!r}")
    return line.split()[-1]


if __name__ == "__main__":
    serve(parse_args())
